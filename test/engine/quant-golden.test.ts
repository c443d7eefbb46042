// quantizeWeight against ggml's numpy reference (gguf.quants, 0.19) and bf16 rounding against
// torch's .to(torch.bfloat16): fixture test/fixtures/quant/golden.json from
// tools/make_quant_fixture.py. gguf interleaves each block as [d f16][qs]; our QWeight holds the
// same d in `scales` and qs in `data`, so the test splits gguf's blocks (same bytes, two arrays).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { quantizeWeight, dequantizeWeight, f32ToBf16, QK, type QWeight } from '../../src/engine/quant.js';

const FIX = fileURLToPath(new URL('../../../test/fixtures/quant/golden.json', import.meta.url));

interface Case { name: string; N: number; K: number; values: number[]; q8_0: { blocks: string; dequantized: number[] }; q4_0: { blocks: string; dequantized: number[] } }
const golden = JSON.parse(readFileSync(FIX, 'utf8')) as { cases: Case[]; bf16: { f32_bits: number[]; bits: number[] } };

/** gguf's [d][qs] blocks → (scales, data) as QWeight lays them out. */
function splitBlocks(hex: string, N: number, K: number, qsBytes: number): { scales: Uint16Array; data: Uint8Array } {
  const b = Buffer.from(hex, 'hex');
  const nb = K / QK, blk = 2 + qsBytes;
  assert.equal(b.length, N * nb * blk);
  const scales = new Uint16Array(N * nb), data = new Uint8Array(N * nb * qsBytes);
  for (let i = 0; i < N * nb; i++) {
    scales[i] = b[i * blk] | (b[i * blk + 1] << 8);
    data.set(b.subarray(i * blk + 2, (i + 1) * blk), i * qsBytes);
  }
  return { scales, data };
}

const bytesOf = (q: QWeight): Uint8Array => new Uint8Array(q.data.buffer, q.data.byteOffset, q.data.byteLength);

describe('quantizeWeight matches gguf.quants byte for byte', () => {
  it('covers the edge blocks it claims to', () => {
    const edge = golden.cases.find((c) => c.name === 'edge')!;
    // The all-zero block gets d = ±0 (ggml: 0 / -8 = -0); q4_0's d = max / -8 takes the sign opposite to the signed max.
    const { scales } = splitBlocks(edge.q4_0.blocks, edge.N, edge.K, 16);
    assert.equal(scales[0] & 0x7fff, 0);
    assert.equal(scales[3] & 0x8000, 0, 'block with max -1000: d = -1000 / -8 is positive');
    assert.equal(scales[4] & 0x8000, 0x8000, 'block with max +3: d is negative');
  });
  for (const c of golden.cases) {
    for (const [fmt, qs] of [['q8_0', 32], ['q4_0', 16]] as const) {
      it(`${c.name} ${c.N}×${c.K} ${fmt}`, () => {
        const w = Float32Array.from(c.values);
        const q = quantizeWeight(w, c.N, c.K, 'out_in', fmt);
        const ref = splitBlocks(c[fmt].blocks, c.N, c.K, qs);
        assert.deepEqual([...q.scales!], [...ref.scales], 'd (f16 bits)');
        assert.deepEqual([...bytesOf(q)], [...ref.data], 'qs');
        assert.deepEqual([...dequantizeWeight(q)], c[fmt].dequantized.map(Math.fround), 'dequantized');
        // The same matrix given in GPT-2's Conv1D layout ([K, N]) quantizes to the same [N, K] blocks.
        const t = new Float32Array(c.N * c.K);
        for (let n = 0; n < c.N; n++) for (let k = 0; k < c.K; k++) t[k * c.N + n] = w[n * c.K + k];
        const qt = quantizeWeight(t, c.N, c.K, 'in_out', fmt);
        assert.deepEqual([...bytesOf(qt)], [...ref.data]);
        assert.deepEqual([...qt.scales!], [...ref.scales]);
      });
    }
  }
});

describe('bf16 rounding matches torch .to(torch.bfloat16)', () => {
  it('ties to even, infinities, signed zero, subnormals, overflow and random values', () => {
    const f = new Float32Array(Uint32Array.from(golden.bf16.f32_bits).buffer);
    const ours = [...f].map(f32ToBf16);
    assert.deepEqual(ours, golden.bf16.bits);
    const q = quantizeWeight(f.subarray(0, 96), 3, 32, 'out_in', 'bf16');
    assert.deepEqual([...(q.data as Uint16Array)], golden.bf16.bits.slice(0, 96));
  });
});

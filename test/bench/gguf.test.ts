// bench/gguf.ts (the llama.cpp twin bench's model export): a tiny GPT-2 written as llama.cpp's
// gpt2 GGUF parses back — header, metadata, tensor table, aligned offsets, and tensor data in
// ggml's orientation (Conv1D weights transposed) — with our reader and, when the `gguf` Python
// package is installed, with its GGUFReader; the synthetic vocabulary's merges are valid; bad
// files fail with one line naming the file.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createModel } from '../../src/models/index.js';
import { gpt2Gguf, writeGguf, readGgufHeader, readGgufF32, syntheticVocab, ggufSummary, GGUF_ALIGNMENT } from '../../bench/gguf.js';

const S = { vocab: 300, nPositions: 32, d: 64, L: 2, H: 2 };
function tinyModel() {
  return createModel('gpt2', { vocab_size: S.vocab, n_positions: S.nPositions, n_embd: S.d, n_layer: S.L, n_head: S.H }, 7);
}
function param(model: ReturnType<typeof tinyModel>, name: string): Float32Array {
  const p = model.namedParameters().find(([n]) => n === name);
  assert.ok(p, `parameter ${name}`);
  return p[1].f32;
}

test('a tiny GPT-2 as GGUF: header, metadata, tensor table and data parse back in ggml orientation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-gguf-'));
  const model = tinyModel();
  try {
    const file = join(dir, 'tiny.gguf');
    const { kv, tensors } = gpt2Gguf(model, S, 'tiny');
    writeGguf(file, kv, tensors);
    const h = readGgufHeader(file);
    assert.equal(h.version, 3);
    assert.equal(h.kv.get('general.architecture'), 'gpt2');
    assert.equal(h.kv.get('gpt2.block_count'), S.L);
    assert.equal(h.kv.get('gpt2.embedding_length'), S.d);
    assert.equal(h.kv.get('gpt2.feed_forward_length'), 4 * S.d);
    assert.equal(h.kv.get('gpt2.context_length'), S.nPositions);
    assert.equal(h.kv.get('gpt2.attention.head_count'), S.H);
    assert.equal(Math.fround(h.kv.get('gpt2.attention.layer_norm_epsilon') as number), Math.fround(1e-5));
    assert.equal(h.kv.get('tokenizer.ggml.model'), 'gpt2');
    const toks = h.kv.get('tokenizer.ggml.tokens') as string[], types = h.kv.get('tokenizer.ggml.token_type') as number[];
    assert.equal(toks.length, S.vocab);
    assert.equal(toks[S.vocab - 1], '<|endoftext|>');
    assert.equal(types[S.vocab - 1], 3);
    assert.equal(types[0], 1);
    assert.equal((h.kv.get('tokenizer.ggml.merges') as string[]).length, S.vocab - 257);
    assert.equal(h.kv.get('tokenizer.ggml.eos_token_id'), S.vocab - 1);

    // llama.cpp's gpt2 tensor list: 5 global + 12 per block, ne0 = input size.
    assert.equal(h.tensors.length, 5 + 12 * S.L);
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    assert.deepEqual(byName.get('token_embd.weight')?.dims, [S.d, S.vocab]);
    assert.deepEqual(byName.get('output.weight')?.dims, [S.d, S.vocab]);
    assert.deepEqual(byName.get('position_embd.weight')?.dims, [S.d, S.nPositions]);
    assert.deepEqual(byName.get('blk.1.attn_qkv.weight')?.dims, [S.d, 3 * S.d]);
    assert.deepEqual(byName.get('blk.1.ffn_up.weight')?.dims, [S.d, 4 * S.d]);
    assert.deepEqual(byName.get('blk.1.ffn_down.weight')?.dims, [4 * S.d, S.d]);
    assert.deepEqual(byName.get('blk.0.attn_output.bias')?.dims, [S.d]);
    for (const t of h.tensors) assert.equal(t.type, 0, `${t.name} is f32`);

    // Offsets aligned, in order, not overlapping; the file ends with the last tensor.
    assert.equal(h.dataOffset % GGUF_ALIGNMENT, 0);
    let end = 0;
    for (const t of h.tensors) {
      assert.equal(t.offset % GGUF_ALIGNMENT, 0, `${t.name} offset aligned`);
      assert.ok(t.offset >= end, `${t.name} does not overlap its predecessor`);
      end = t.offset + 4 * t.dims.reduce((a, d) => a * d, 1);
    }
    assert.equal(statSync(file).size, h.dataOffset + end);

    // Data: embeddings as they are, Conv1D [in, out] transposed to rows of `in`, the tied head copied.
    const wte = param(model, 'transformer.wte.weight');
    assert.deepEqual(readGgufF32(file, h, 'token_embd.weight'), wte);
    assert.deepEqual(readGgufF32(file, h, 'output.weight'), wte);
    const cAttn = param(model, 'transformer.h.1.attn.c_attn.weight'); // [C, 3C]
    const qkv = readGgufF32(file, h, 'blk.1.attn_qkv.weight'); // [3C rows][C]
    for (const [o, i] of [[0, 0], [5, 3], [3 * S.d - 1, S.d - 1], [100, 17]]) assert.equal(qkv[o * S.d + i], cAttn[i * 3 * S.d + o], `qkv[${o}][${i}]`);
    const down = readGgufF32(file, h, 'blk.0.ffn_down.weight'); // [C rows][4C]
    const cProj = param(model, 'transformer.h.0.mlp.c_proj.weight'); // [4C, C]
    for (const [o, i] of [[0, 0], [S.d - 1, 4 * S.d - 1], [9, 200]]) assert.equal(down[o * 4 * S.d + i], cProj[i * S.d + o], `ffn_down[${o}][${i}]`);
    assert.deepEqual(readGgufF32(file, h, 'blk.1.ffn_norm.bias'), param(model, 'transformer.h.1.ln_2.bias'));

    assert.deepEqual(ggufSummary(file).types, { f32: 5 + 12 * S.L });

    // An independent parser, when installed.
    const py = spawnSync('/usr/bin/python3', ['-c', `
import sys, json
try:
    import gguf
except ImportError:
    print('NO_GGUF'); sys.exit(0)
r = gguf.GGUFReader(sys.argv[1])
f = r.fields
print(json.dumps({'n': len(r.tensors),
  'shapes': {t.name: [int(x) for x in t.shape] for t in r.tensors}, 'arch': bytes(f['general.architecture'].parts[-1]).decode(),
  'ntok': len(f['tokenizer.ggml.tokens'].data), 'first': float(r.tensors[0].data.reshape(-1)[1])}))
`, file], { encoding: 'utf8' });
    if (py.error || py.stdout.trim() === 'NO_GGUF') return; // no python, or no gguf package: our reader's checks stand
    assert.equal(py.status, 0, py.stderr);
    const j = JSON.parse(py.stdout.trim().split('\n').pop()!);
    assert.equal(j.n, 5 + 12 * S.L);
    assert.equal(j.arch, 'gpt2');
    assert.equal(j.ntok, S.vocab);
    assert.deepEqual(j.shapes['blk.1.attn_qkv.weight'], [S.d, 3 * S.d]);
    assert.deepEqual(j.shapes['token_embd.weight'], [S.d, S.vocab]);
    assert.equal(Math.fround(j.first), wte[1]);
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('synthetic vocabulary: every merge joins two tokens into a token; tokens unique', () => {
  const v = syntheticVocab(1000);
  assert.equal(v.tokens.length, 1000);
  assert.equal(new Set(v.tokens).size, 1000);
  const ids = new Map(v.tokens.map((t, i) => [t, i]));
  assert.equal(v.merges.length, 1000 - 257);
  for (const m of v.merges) {
    const [a, b, ...rest] = m.split(' ');
    assert.equal(rest.length, 0, m);
    assert.ok(ids.has(a) && ids.has(b) && ids.has(a + b), `merge '${m}'`);
  }
  // The 256 byte tokens are printable (GPT-2's byte-level alphabet): no spaces or control chars.
  for (const t of v.tokens.slice(0, 256)) assert.match(t, /^[^\s\x00-\x1f]$/u);
  assert.throws(() => syntheticVocab(100), /vocabulary size 100 out of range/);
});

test('bad GGUF files: one-line errors naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-gguf-'));
  try {
    const bad = join(dir, 'bad.gguf');
    writeFileSync(bad, Buffer.from('GGML\x03\x00\x00\x00'));
    assert.throws(() => readGgufHeader(bad), (e: Error) => e.message.startsWith(`${bad}: not a GGUF file`) && !e.message.includes('\n'));
    const model = tinyModel();
    const good = join(dir, 'good.gguf');
    try { const g = gpt2Gguf(model, S); writeGguf(good, g.kv, g.tensors); } finally { model.dispose(); }
    const cut = join(dir, 'cut.gguf');
    writeFileSync(cut, readFileSync(good).subarray(0, readGgufHeader(good).dataOffset >> 1));
    assert.throws(() => readGgufHeader(cut), (e: Error) => e.message.startsWith(`${cut}: truncated GGUF header`) && !e.message.includes('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The safetensors writer's raw forms (quantized weights): U8 / I8 bytes and F16 / BF16 bits are
// written unconverted and read back byte for byte; a raw array of the wrong kind is refused.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors, writeSafetensors, type WriteTensor } from '../../src/io/safetensors.js';

let root: string;
before(() => { root = mkdtempSync(join(tmpdir(), 'icld-st-raw-')); });
after(() => rmSync(root, { recursive: true, force: true }));

describe('writeSafetensors raw data', () => {
  it('U8, I8, F16 bits and BF16 bits round-trip exactly next to F32', () => {
    const u8 = Uint8Array.from({ length: 24 }, (_, i) => (i * 37) & 255);
    const i8 = Int8Array.from({ length: 7 }, (_, i) => i * 40 - 128);
    const f16 = Uint16Array.from([0x3c00, 0x7c00, 0x8000, 0x0001, 0xfbff]); // 1, inf, -0, min subnormal, -65504
    const bf16 = Uint16Array.from([0x3f80, 0x7fc1, 0xff80]); // 1, a NaN payload, -inf: kept as given
    const f32 = Float32Array.from([1.5, -2]);
    const p = join(root, 'raw.safetensors');
    const t: Record<string, WriteTensor> = {
      q: { dtype: 'U8', shape: [4, 6], data: u8 }, i: { dtype: 'I8', shape: [7], data: i8 },
      s: { dtype: 'F16', shape: [5], data: f16 }, b: { dtype: 'BF16', shape: [3], data: bf16 }, f: { dtype: 'F32', shape: [2], data: f32 },
    };
    writeSafetensors(p, t);
    const f = openSafetensors(p);
    try {
      const bytes = (n: string) => [...f.getBytes(n)];
      assert.deepEqual(bytes('q'), [...u8]);
      assert.deepEqual(bytes('i'), [...new Uint8Array(i8.buffer)]);
      assert.deepEqual(bytes('s'), [...new Uint8Array(f16.buffer)]);
      assert.deepEqual(bytes('b'), [...new Uint8Array(bf16.buffer)]);
      assert.deepEqual([...f.get('f')], [1.5, -2]);
      assert.deepEqual([f.tensors.get('q')!.dtype, f.tensors.get('q')!.shape], ['U8', [4, 6]]);
      assert.deepEqual([...f.getTensor('i').data], [...i8]);
    } finally { f.close(); }
  });

  it('refuses raw data of the wrong kind or length, writing nothing', () => {
    const p = join(root, 'bad.safetensors');
    const bad = (t: WriteTensor, re: RegExp) => assert.throws(() => writeSafetensors(p, { w: t }), re);
    bad({ dtype: 'F32', shape: [2], data: new Uint8Array(8) }, /tensor 'w': Uint8Array data cannot be written as F32/);
    bad({ dtype: 'U8', shape: [2], data: new Int8Array(2) }, /tensor 'w': Int8Array data cannot be written as U8/);
    bad({ dtype: 'I32', shape: [2], data: new Uint16Array(2) }, /tensor 'w': Uint16Array data cannot be written as I32/);
    bad({ dtype: 'U8', shape: [2], data: new Float32Array(2) }, /tensor 'w': U8 is written from raw Uint8Array\/Int8Array data only/);
    bad({ dtype: 'U8', shape: [3, 2], data: new Uint8Array(5) }, /tensor 'w': data has 5 elements but shape \[3,2\] needs 6/);
    assert.ok(!existsSync(p));
  });
});

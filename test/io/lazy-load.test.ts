// loadStateDict's tensors are read when needed: readInto decodes a tensor straight into a model's
// parameter (no second copy of the weights), data reads it once on request, and a non-finite
// weight is refused on either path, by file and tensor name.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadStateDict, saveStateDict } from '../../src/io/hf.js';

test('loadStateDict: readInto fills a parameter-sized array with the stored values (F32 and F16)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-lazy-'));
  try {
    const a = Float32Array.from({ length: 37 }, (_, i) => Math.sin(i) * 3);
    const b = Float32Array.from({ length: 12 }, (_, i) => i / 8);
    saveStateDict(dir, new Map([['a', { shape: [37], data: a }], ['b', { shape: [3, 4], data: b }]]));
    const sd = loadStateDict(dir);
    const ta = sd.get('a')!, tb = sd.get('b')!;
    assert.deepEqual(ta.shape, [37]);
    assert.equal(typeof ta.readInto, 'function');
    const dst = new Float32Array(37);
    ta.readInto!(dst);
    assert.deepEqual([...dst], [...a]);
    // a destination inside a larger buffer (an offset view) is written in place
    const big = new Float32Array(20), view = big.subarray(4, 16);
    tb.readInto!(view);
    assert.deepEqual([...view], [...b]);
    assert.equal(big[3], 0); assert.equal(big[16], 0);
    assert.deepEqual([...tb.data], [...b]);
    assert.throws(() => ta.readInto!(new Float32Array(36)), /has 37 elements, the destination 36/);
    const d16 = join(dir, 'f16');
    saveStateDict(d16, new Map([['h', { shape: [37], data: a }]]), { dtype: 'F16' });
    const h = new Float32Array(37);
    loadStateDict(d16).get('h')!.readInto!(h);
    for (let i = 0; i < 37; i++) assert.ok(Math.abs(h[i] - a[i]) <= 2e-3 * Math.abs(a[i]) + 1e-7, `F16 element ${i}`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('loadStateDict: a non-finite weight is refused by name on both paths', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-lazy-'));
  try {
    const bad = Float32Array.of(1, 2, NaN, 4);
    saveStateDict(dir, new Map([['w', { shape: [4], data: bad }]]));
    const t = loadStateDict(dir).get('w')!;
    assert.throws(() => t.readInto!(new Float32Array(4)), /tensor 'w' holds a non-finite value \(NaN\) at index 2/);
    assert.throws(() => t.data, /tensor 'w' holds a non-finite value \(NaN\) at index 2/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

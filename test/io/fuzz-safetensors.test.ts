// Fuzzing the safetensors reader (issue 9): 1,500 seeded corruptions of valid files — header
// length ± k and absurd lengths, truncations and extensions, byte flips, offsets shifted /
// overlapping / gapped / out of range, dtype and shape changes, duplicate keys, non-UTF-8 headers,
// bad __metadata__. Every case must load a file that really is valid (checked independently) or
// fail with a one-line Error naming the file, quickly and without a big allocation.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, parseSafetensors, serializeSafetensors, DTYPE_SIZE, type SafeDtype } from '../../src/io/safetensors.js';
import { Fuzz, runCase, concat, type Tally } from './fuzz.js';

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-fuzz-st-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

function bases(): Uint8Array[] {
  const f = (n: number, k = 1) => Float32Array.from({ length: n }, (_, i) => (i - 3) * 0.25 * k);
  // Plain Uint8Array copies: Buffer#slice would alias and let a mutation leak into the base.
  return [
    serializeSafetensors({ w: { dtype: 'F32', shape: [3, 4], data: f(12) }, b: { dtype: 'F32', shape: [4], data: f(4) } }, { format: 'pt' }),
    serializeSafetensors({ h: { dtype: 'F16', shape: [5], data: f(5) }, g: { dtype: 'BF16', shape: [2, 3], data: f(6, 3) }, i: { dtype: 'I64', shape: [3], data: Int32Array.of(1, -2, 3) } }),
    serializeSafetensors({ e: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }, x: { dtype: 'I32', shape: [2], data: Int32Array.of(7, 8) }, s: { dtype: 'F32', shape: [], data: Float32Array.of(2.5) } }),
  ].map((b) => new Uint8Array(b));
}

/** Header JSON and data of a file (for structured mutations). */
function split(b: Uint8Array): { header: Record<string, any>; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return { header: JSON.parse(Buffer.from(b.subarray(8, 8 + n)).toString('utf8')), data: b.subarray(8 + n) };
}

function join8(headerBytes: Uint8Array, data: Uint8Array, lenDelta = 0n): Uint8Array {
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(headerBytes.length) + lenDelta), true);
  return concat(len, headerBytes, data);
}

function structured(fz: Fuzz, base: Uint8Array): Uint8Array {
  const { header, data } = split(base);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = fz.pick(names), t = header[name];
  let text: string | null = null;
  let tail = data;
  switch (fz.int(12)) {
    case 0: t.data_offsets[fz.int(2)] += fz.pick([-8, -4, -1, 1, 2, 4, 8, 1000, 2 ** 40]); break;
    case 1: t.data_offsets = fz.pick([[0, 0], [-4, 0], [0.5, 4.5], [4, 0], [0], 'x', null, [2 ** 53, 2 ** 53 + 4], [0, data.length + 4]]); break;
    case 2: { const other = header[fz.pick(names)]; t.data_offsets = other.data_offsets.slice(); break; }
    case 3: t.dtype = fz.pick(['F32', 'F16', 'BF16', 'F64', 'I8', 'U8', 'BOOL', 'I64', 'U64', 'F8_E4M3', 'f32', 'Q4', '', 7, null]); break;
    case 4: t.shape = fz.pick([[], [0], [-1], [1.5], [2 ** 53], [2 ** 30, 2 ** 30, 2 ** 30], ['3'], null, 'x', [1, 2, 3, 4, 5, 6, 7, 8]]); break;
    case 5: t.shape = t.shape.length ? [t.shape[0] + 1, ...t.shape.slice(1)] : [2]; break;
    case 6: header.__metadata__ = fz.pick([{ a: 1 }, [], 'x', null, { k: null }, { k: 'v' }, { k: { x: 'y' } }]); break;
    case 7: header[fz.pick(names)] = fz.value(); break;
    case 8: text = JSON.stringify(header).replace(`"${name}":`, `"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"${name}":`); break;
    case 9: tail = fz.chance(0.5) ? data.subarray(0, Math.max(0, data.length - 1 - fz.int(8))) : concat(data, new Uint8Array(1 + fz.int(8))); break;
    case 10: { // shift every tensor by k bytes (a gap at the start), data grown to match
      const k = fz.pick([1, 4, 8]);
      for (const nm of names) header[nm].data_offsets = header[nm].data_offsets.map((o: number) => o + k);
      tail = concat(new Uint8Array(k), data);
      break;
    }
    default: {
      // non-UTF-8 byte inside the header's JSON (in a string), or a NUL / lone surrogate escape
      const s = JSON.stringify(header);
      const raw = Buffer.from(s.replace(`"${name}"`, `"${name}\u00e9"`), 'utf8');
      const at = raw.indexOf(0xc3);
      if (fz.chance(0.5)) raw[at] = 0xff; else raw[at + 1] = 0x41;
      return join8(raw, tail);
    }
  }
  return join8(Buffer.from(text ?? JSON.stringify(header), 'utf8'), tail);
}

/** Independent validity check of a file the reader accepted. */
function checkAccepted(bytes: Uint8Array, tensors: Map<string, { dtype: SafeDtype; shape: number[]; data: ArrayLike<number> }>): void {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'));
  let covered = 0;
  for (const [name, t] of tensors) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    assert.equal(t.data.length, numel, `tensor ${name}: data length`);
    const h = header[name];
    assert.deepEqual(h.shape, t.shape);
    assert.equal(h.data_offsets[1] - h.data_offsets[0], numel * DTYPE_SIZE[t.dtype]);
    covered += numel * DTYPE_SIZE[t.dtype];
  }
  assert.equal(8 + n + covered, bytes.length, 'accepted file: tensors must cover the data section exactly');
  assert.equal(Object.keys(header).filter((k) => k !== '__metadata__').length, tensors.size);
}

describe('safetensors reader fuzz', () => {
  it('1,500 corrupted files: valid → loaded and consistent, else a one-line error naming the file', () => {
    const fz = new Fuzz(9001);
    const bs = bases();
    const tally: Tally = { ok: 0, err: 0, maxMs: 0 };
    const kinds = new Map<string, number>();
    for (let i = 0; i < 1500; i++) {
      const base = fz.pick(bs);
      let bytes: Uint8Array, kind: string;
      const r = fz.int(10);
      if (r < 3) { bytes = fz.mutateBytes(base); kind = 'bytes'; }
      else if (r < 5) { // header length ± k, or absurd
        const { data } = split(base);
        const n = Number(new DataView(base.buffer, base.byteOffset, 8).getBigUint64(0, true));
        const hb = base.subarray(8, 8 + n);
        bytes = join8(hb, data, BigInt(fz.pick([-8, -2, -1, 1, 2, 8, -n, 2 ** 31, 2 ** 53])) * (fz.chance(0.1) ? 1n << 10n : 1n));
        kind = 'length';
      } else { bytes = structured(fz, base); kind = 'header'; }
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      const p = join(tmp, `case-${i}.safetensors`);
      writeFileSync(p, bytes);
      runCase(tally, p, () => readSafetensors(p).tensors, (t) => checkAccepted(bytes, t), `case ${i} (${kind})`);
      runCase(tally, p, () => parseSafetensors(bytes, p).tensors, (t) => checkAccepted(bytes, t), `case ${i} (${kind}, in memory)`);
      rmSync(p);
    }
    // The mix must really exercise both outcomes and every mutation family.
    assert.equal(tally.ok + tally.err, 3000, 'every case ran');
    assert.ok(tally.err > 2000, `errors: ${tally.err}`);
    assert.ok(tally.ok > 20, `accepted: ${tally.ok}`);
    for (const k of ['bytes', 'length', 'header']) assert.ok((kinds.get(k) ?? 0) > 200, `mutation family ${k}`);
  });

  it('the unmutated base files load (so errors above come from the mutations)', () => {
    for (const [i, b] of bases().entries()) {
      const p = join(tmp, `base-${i}.safetensors`);
      writeFileSync(p, b);
      checkAccepted(b, readSafetensors(p).tensors);
      assert.deepEqual(readFileSync(p), Buffer.from(b));
    }
  });
});

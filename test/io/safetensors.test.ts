// safetensors reader/writer and Hugging Face directory helpers: round trips, PyTorch-made golden
// files (tools/gen_safetensors_fixtures.py), header validation, sharding, atomic writes and GPT-2
// name normalisation.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync, unlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { atomicWrite, writeAll } from '../../src/io/atomic.js';
import { normalizeGpt2StateDict, gpt2StateDictForSave } from '../../src/models/gpt2.js';
import {
  readSafetensors, openSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors,
  f16ToNumber, f32BitsToF16Bits, f32BitsToBf16Bits, bf16ToNumber, type WriteTensor,
} from '../../src/io/safetensors.js';
import {
  readConfig, writeJsonAtomic, loadStateDict, saveStateDict,
  type StateTensor,
} from '../../src/io/hf.js';

const FIX = new URL('../../../test/fixtures/io/', import.meta.url);
let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-io-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

const bitsOf = (a: Float32Array): number[] => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
const f32Bits = (x: number): number => new Uint32Array(Float32Array.of(x).buffer)[0];

/** assert two float arrays are bit-identical (NaNs compared by bit pattern too). */
function assertBits(got: Float32Array, want: number[], what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const g = bitsOf(got);
  for (let i = 0; i < want.length; i++) {
    if (g[i] !== want[i]) assert.fail(`${what}[${i}]: bits 0x${g[i].toString(16)} (${got[i]}) vs torch 0x${want[i].toString(16)}`);
  }
}

/** Raw file from a header (object or literal text) and a data section. */
function rawFile(name: string, header: unknown, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): string {
  const hb = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(hb.length));
  const p = join(tmp, name);
  writeFileSync(p, Buffer.concat([len, hb, data]));
  return p;
}

const EDGE = [0, -0, 1, -1, 0.1, 1 / 3, 65504, -65504, 65520, 2 ** -24, 2 ** -14, 1e-7, 1e-40, Infinity, -Infinity, NaN, 3e38, -2.5];

describe('safetensors round trip', () => {
  it('F32/F16/BF16/I32/I64 with edge values, scalars, empty tensors and metadata', () => {
    const f = Float32Array.from(EDGE);
    const ints = Int32Array.from([0, 1, -1, 2147483647, -2147483648, 123456789]);
    const tensors: Record<string, WriteTensor> = {
      f32: { dtype: 'F32', shape: [3, 6], data: f },
      f16: { dtype: 'F16', shape: [18], data: f },
      bf16: { dtype: 'BF16', shape: [2, 9], data: f },
      i32: { dtype: 'I32', shape: [6], data: ints },
      i64: { dtype: 'I64', shape: [2, 3], data: ints },
      i64f: { dtype: 'I64', shape: [2], data: Float32Array.of(7, -3) },
      scalar: { dtype: 'F32', shape: [], data: Float32Array.of(-1.5) },
      empty: { dtype: 'F16', shape: [0], data: new Float32Array(0) },
      empty2: { dtype: 'I64', shape: [2, 0], data: new Int32Array(0) },
      '0': { dtype: 'F32', shape: [1], data: Float32Array.of(9) },
    };
    const p = join(tmp, 'rt.safetensors');
    writeSafetensors(p, tensors, { format: 'pt', 'ünïcode': 'ok ✓' });
    const { tensors: back, metadata } = readSafetensors(p);
    assert.deepEqual(metadata, { format: 'pt', 'ünïcode': 'ok ✓' });
    assert.deepEqual([...back.keys()].sort(), Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const b = back.get(name)!;
      assert.equal(b.dtype, t.dtype, name);
      assert.deepEqual(b.shape, t.shape, name);
    }
    assertBits(back.get('f32')!.data as Float32Array, bitsOf(f), 'f32');
    // F16: each value is torch-style rounded; spot-check the interesting ones.
    const h = back.get('f16')!.data as Float32Array;
    assert.ok(h instanceof Float32Array);
    assert.ok(Object.is(h[0], 0) && Object.is(h[1], -0), '±0 keep their sign');
    assert.equal(h[6], 65504); assert.equal(h[7], -65504);
    assert.equal(h[8], Infinity, '65520 rounds up to inf');
    assert.equal(h[9], 2 ** -24, 'smallest subnormal');
    assert.equal(h[10], 2 ** -14, 'smallest normal');
    assert.equal(h[11], 2 ** -24 * 2, '1e-7 → nearest subnormal 2·2^-24');
    assert.ok(Object.is(h[12], 0), '1e-40 underflows to +0');
    assert.equal(h[13], Infinity); assert.equal(h[14], -Infinity); assert.ok(Number.isNaN(h[15]));
    assert.equal(h[16], Infinity, '3e38 overflows');
    assert.equal(h[4], f16ToNumber(f32BitsToF16Bits(f32Bits(0.1))));
    assert.equal(h[4], 0.0999755859375);
    const bf = back.get('bf16')!.data as Float32Array;
    for (let i = 0; i < EDGE.length; i++) {
      const want = bf16ToNumber(f32BitsToBf16Bits(f32Bits(EDGE[i])));
      assert.ok(Object.is(bf[i], want) || (Number.isNaN(bf[i]) && Number.isNaN(want)), `bf16[${i}]`);
    }
    assert.equal(bf[4], 0.10009765625);
    assert.ok(bf[12] > 0 && bf[12] < 1.2e-38, 'bf16 keeps f32 subnormals');
    assert.deepEqual([...back.get('i32')!.data], [...ints]);
    assert.ok(back.get('i64')!.data instanceof Int32Array);
    assert.deepEqual([...back.get('i64')!.data], [...ints]);
    assert.deepEqual([...back.get('i64f')!.data], [7, -3]);
    assert.deepEqual([...back.get('scalar')!.data], [-1.5]);
    assert.equal(back.get('empty')!.data.length, 0);
    assert.equal(back.get('empty2')!.data.length, 0);
    assert.deepEqual([...back.get('0')!.data], [9]);
  });

  it('writes the reference layout: __metadata__ first, 8-aligned data, offsets in order, largest dtype first', () => {
    const p = join(tmp, 'layout.safetensors');
    writeSafetensors(p, {
      b: { dtype: 'F16', shape: [3], data: Float32Array.of(1, 2, 3) },
      a: { dtype: 'I64', shape: [1], data: Int32Array.of(5) },
      c: { dtype: 'F32', shape: [1], data: Float32Array.of(1) },
    }, { format: 'pt' });
    const buf = readFileSync(p);
    const n = Number(buf.readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0);
    const text = buf.subarray(8, 8 + n).toString('utf8');
    assert.match(text, /^\{"__metadata__":\{"format":"pt"\},"a":/);
    // the JSON ends with '}' and is padded with the fewest spaces (0-7) that make 8 + n a multiple of 8
    const json = text.replace(/ +$/, '');
    assert.ok(json.endsWith('}'), `header ends with ${JSON.stringify(text.slice(-10))}`);
    assert.equal(text.length - json.length, (8 - (Buffer.byteLength(json) % 8)) % 8);
    const hdr = JSON.parse(text) as Record<string, { data_offsets: [number, number] }>;
    assert.deepEqual(hdr.a.data_offsets, [0, 8]);
    assert.deepEqual(hdr.c.data_offsets, [8, 12]);
    assert.deepEqual(hdr.b.data_offsets, [12, 18]);
    assert.equal(buf.length, 8 + n + 18);
    // in-memory serialisation is byte-identical
    assert.deepEqual(Buffer.from(serializeSafetensors({
      b: { dtype: 'F16', shape: [3], data: Float32Array.of(1, 2, 3) },
      a: { dtype: 'I64', shape: [1], data: Int32Array.of(5) },
      c: { dtype: 'F32', shape: [1], data: Float32Array.of(1) },
    }, { format: 'pt' })), buf);
  });

  it('lazy reader reads one tensor at a time; misaligned in-memory buffers are copied', () => {
    const p = join(tmp, 'lazy.safetensors');
    const big = new Float32Array(1000).map((_, i) => i * 0.5);
    writeSafetensors(p, { big: { dtype: 'F32', shape: [10, 100], data: big }, ids: { dtype: 'I64', shape: [2], data: Int32Array.of(3, 4) } });
    const f = openSafetensors(p);
    try {
      assert.deepEqual(f.names(), ['ids', 'big'], 'data-offset order: 8-byte dtypes first');
      assert.equal(f.tensors.get('big')!.numel, 1000);
      assert.deepEqual(f.tensors.get('big')!.shape, [10, 100]);
      assert.deepEqual([...f.get('ids')], [3, 4]);
      assert.ok(f.get('ids') instanceof Float32Array);
      assert.deepEqual(f.get('big'), big);
      assert.throws(() => f.get('nope'), /lazy\.safetensors.*no tensor named 'nope'/);
    } finally { f.close(); }
    assert.throws(() => f.get('big'), /closed/);
    // parse from a buffer at an odd byte offset
    const bytes = readFileSync(p);
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const parsed = parseSafetensors(shifted.subarray(1), 'shifted');
    assert.deepEqual(parsed.tensors.get('big')!.data, big);
    assert.deepEqual([...parsed.tensors.get('ids')!.data], [3, 4]);
  });
});

describe('golden files written with PyTorch', () => {
  interface Golden {
    metadata: Record<string, string>;
    tensors: Record<string, { dtype: string; shape: number[]; bits?: number[]; values?: number[] }>;
    src_f16_bits: number[];
    src_bf16_bits: number[];
  }
  const golden = JSON.parse(readFileSync(new URL('golden.json', FIX), 'utf8')) as Golden;

  for (const file of ['golden.safetensors', 'golden_unaligned.safetensors']) {
    it(`${file}: values are bit-identical to torch's`, () => {
      const { tensors, metadata } = readSafetensors(new URL(file, FIX).pathname);
      assert.deepEqual(metadata, file === 'golden.safetensors' ? golden.metadata : null);
      assert.deepEqual([...tensors.keys()].sort(), Object.keys(golden.tensors).sort());
      for (const [name, want] of Object.entries(golden.tensors)) {
        const t = tensors.get(name)!;
        assert.equal(t.dtype, want.dtype, name);
        assert.deepEqual(t.shape, want.shape, name);
        if (want.bits) {
          assert.ok(t.data instanceof Float32Array, name);
          assertBits(t.data, want.bits, `${file}:${name}`);
        } else {
          assert.ok(t.data instanceof Int32Array, name);
          assert.deepEqual([...t.data], want.values, name);
        }
      }
    });
  }

  it('F16/BF16 encoding rounds exactly like torch .to(float16/bfloat16)', () => {
    const { tensors } = readSafetensors(new URL('golden.safetensors', FIX).pathname);
    const src = tensors.get('src')!.data as Float32Array;
    const p = join(tmp, 'enc.safetensors');
    writeSafetensors(p, { h: { dtype: 'F16', shape: [src.length], data: src }, b: { dtype: 'BF16', shape: [src.length], data: src } });
    const f = openSafetensors(p);
    try {
      const hb = f.getBytes('h'), bb = f.getBytes('b');
      const h = new Uint16Array(hb.buffer, hb.byteOffset, src.length);
      const b = new Uint16Array(bb.buffer, bb.byteOffset, src.length);
      for (let i = 0; i < src.length; i++) {
        assert.equal(h[i], golden.src_f16_bits[i], `f16 of src[${i}]=${src[i]}: 0x${h[i].toString(16)} vs torch 0x${golden.src_f16_bits[i].toString(16)}`);
        if (Number.isNaN(src[i])) {
          // c10's scalar BFloat16 gives 0x7FC0 (what we write); torch 1.13's AVX-512 path gives 0xFFFF.
          assert.ok((b[i] & 0x7f80) === 0x7f80 && (b[i] & 0x7f) !== 0 && (golden.src_bf16_bits[i] & 0x7f80) === 0x7f80, `bf16 NaN at ${i}`);
          continue;
        }
        assert.equal(b[i], golden.src_bf16_bits[i], `bf16 of src[${i}]=${src[i]}: 0x${b[i].toString(16)} vs torch 0x${golden.src_bf16_bits[i].toString(16)}`);
      }
    } finally { f.close(); }
  });
});

describe('header validation errors name the file', () => {
  const f32 = (n: number): Uint8Array => new Uint8Array(new Float32Array(n).buffer);
  const cases: [string, () => string, RegExp][] = [
    ['short file', () => { const p = join(tmp, 'short.safetensors'); writeFileSync(p, Buffer.from([1, 2, 3])); return p; }, /shorter than the 8-byte/],
    ['header length beyond the file', () => rawFile('biglen.safetensors', {}, new Uint8Array(0), 1000n), /header length 1000 exceeds the file size/],
    ['absurd header length', () => rawFile('huge.safetensors', {}, new Uint8Array(0), 2n ** 62n), /header length \d+ exceeds/],
    ['bad JSON', () => rawFile('badjson.safetensors', '{"a": {'), /not valid JSON/],
    ['header not an object', () => rawFile('array.safetensors', '[1, 2]'), /must be a JSON object, got an array/],
    ['unknown dtype', () => rawFile('dtype.safetensors', { a: { dtype: 'F31', shape: [1], data_offsets: [0, 4] } }, f32(1)), /tensor 'a': unknown dtype "F31"/],
    ['negative dim', () => rawFile('shape.safetensors', { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)), /tensor 'a': shape must be an array of non-negative integers/],
    ['fractional dim', () => rawFile('shape2.safetensors', { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32(1)), /shape must be/],
    ['offsets not a pair', () => rawFile('offs.safetensors', { a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, f32(1)), /data_offsets must be \[begin, end\]/],
    ['offsets out of range', () => rawFile('range.safetensors', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32(1)), /data_offsets \[0, 8\] outside the data section of 4 bytes/],
    ['begin after end', () => rawFile('order.safetensors', { a: { dtype: 'F32', shape: [0], data_offsets: [4, 0] } }, f32(1)), /outside the data section/],
    ['wrong byte length', () => rawFile('len.safetensors', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32(2)), /tensor 'a': 8 bytes in data_offsets but shape \[3\] × F32 needs 12/],
    ['overlapping tensors', () => rawFile('overlap.safetensors', {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, f32(3)), /tensors 'a' and 'b' overlap/],
    ['metadata value not a string', () => rawFile('meta.safetensors', { __metadata__: { n: 1 } }), /__metadata__ value for 'n' must be a string/],
    ['I64 value out of int32 range', () => {
      const d = new BigInt64Array([1n, 2n ** 40n]);
      return rawFile('i64.safetensors', { a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(d.buffer));
    }, /tensor 'a': I64 value 1099511627776 at index 1 does not fit in int32/],
    ['missing file', () => join(tmp, 'nonexistent.safetensors'), /no such file/],
  ];
  for (const [what, make, re] of cases) {
    it(what, () => {
      const p = make();
      const base = p.split('/').pop()!;
      assert.throws(() => readSafetensors(p), (e: Error) => {
        assert.ok(e.message.includes(p), `message names the file: ${e.message}`);
        assert.ok(e.message.includes(base));
        assert.match(e.message, re);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    });
  }

  it('gaps between tensors are rejected, as the reference reader does', () => {
    const p = rawFile('gap.safetensors', {
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    }, new Uint8Array(new Float32Array([1, 99, 2]).buffer));
    assert.throws(() => readSafetensors(p), /gap\.safetensors: tensor 'b' starts at data byte 8 but 'a' ends at 4/);
  });

  it('writer rejects bad input naming the file and tensor', () => {
    const p = join(tmp, 'badwrite.safetensors');
    assert.throws(() => writeSafetensors(p, { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }),
      /badwrite\.safetensors: tensor 'w': data has 3 elements but shape \[2,2\] needs 4/);
    assert.throws(() => writeSafetensors(p, { w: { dtype: 'F8' as 'F32', shape: [1], data: new Float32Array(1) } }), /cannot write dtype "F8"/);
    assert.throws(() => writeSafetensors(p, { w: { dtype: 'I64', shape: [1], data: Float32Array.of(0.5) } }), /not an int32/);
    assert.equal(existsSync(p), false);
  });
});

describe('atomic writes', () => {
  it('a process killed after writing part or all of the new bytes leaves the old file intact', () => {
    const dir = mkdtempSync(join(tmp, 'atomic-'));
    const p = join(dir, 'model.safetensors');
    writeSafetensors(p, { w: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } });
    const before = readFileSync(p);
    // A child overwrites it with a 4 MB tensor (several chunks) and is SIGKILLed at a crash point.
    const n = 1 << 20;
    const child = join(dir, 'child.mjs');
    writeFileSync(child, `import { writeSafetensors } from ${JSON.stringify(new URL('../../src/io/safetensors.js', import.meta.url).href)};
writeSafetensors(process.argv[2], { w: { dtype: 'F32', shape: [${n}], data: new Float32Array(${n}).fill(7) } });`);
    const tempSize = (): number => {
      const t = readdirSync(dir).filter((f) => f.startsWith('.model.safetensors.tmp-'));
      assert.equal(t.length, 1, 'the killed writer left its temp file');
      const size = readFileSync(join(dir, t[0])).length;
      unlinkSync(join(dir, t[0]));
      return size;
    };
    const full = 8 + 4 * n; // plus the header's JSON
    for (const [point, whole] of [['atomic:chunk#2', false], ['atomic:before-rename', true]] as const) {
      const r = spawnSync(process.execPath, [child, p], { env: { ...process.env, ICLD_CRASH_AT: point }, encoding: 'utf8' });
      assert.equal(r.signal, 'SIGKILL', `${point}: ${r.stderr}`);
      assert.deepEqual(readFileSync(p), before, `${point}: the old file changed`);
      const size = tempSize(); // bytes of the new version really were written before the kill
      if (whole) assert.ok(size > full, `${point}: temp file ${size} bytes, expected the whole new file`);
      else assert.ok(size > 4 * (1 << 18) && size < full, `${point}: temp file ${size} bytes, expected part of the new file`);
    }
    // In process: a writer that fails after writing its bytes changes nothing and leaves nothing.
    assert.throws(() => atomicWrite(p, (fd) => { writeAll(fd, new Uint8Array(1000).fill(1)); throw new Error('disk full'); }), /disk full/);
    assert.deepEqual(readFileSync(p), before);
    assert.deepEqual(readdirSync(dir).sort(), ['child.mjs', 'model.safetensors']);
    // a successful overwrite replaces it
    writeSafetensors(p, { w: { dtype: 'F32', shape: [2], data: Float32Array.of(3, 4) } });
    assert.deepEqual([...readSafetensors(p).tensors.get('w')!.data], [3, 4]);
    assert.deepEqual(readdirSync(dir).sort(), ['child.mjs', 'model.safetensors']);
  });

  it('writeJsonAtomic / readConfig', () => {
    const dir = mkdtempSync(join(tmp, 'cfg-'));
    writeJsonAtomic(join(dir, 'config.json'), { n_embd: 8, model_type: 'gpt2' });
    assert.deepEqual(readConfig(dir), { n_embd: 8, model_type: 'gpt2' });
    writeFileSync(join(dir, 'config.json'), '{oops');
    assert.throws(() => readConfig(dir), (e: Error) => e.message.includes(join(dir, 'config.json')) && /invalid JSON/.test(e.message));
    assert.throws(() => readConfig(join(dir, 'nope')), /nope\/config\.json: no such file/);
  });
});

describe('HF model directories', () => {
  const sd = (): Map<string, { shape: number[]; data: Float32Array | Int32Array }> => new Map<string, { shape: number[]; data: Float32Array | Int32Array }>([
    ['transformer.wte.weight', { shape: [10, 4], data: new Float32Array(40).map((_, i) => i / 7) }],
    ['transformer.wpe.weight', { shape: [6, 4], data: new Float32Array(24).map((_, i) => -i / 3) }],
    ['transformer.h.0.ln_1.weight', { shape: [4], data: Float32Array.of(1, 1, 1, 1) }],
    ['transformer.h.0.attn.c_attn.weight', { shape: [4, 12], data: new Float32Array(48).map((_, i) => Math.sin(i)) }],
    ['transformer.ln_f.bias', { shape: [4], data: Float32Array.of(0, 0.5, -0.5, 2) }],
    ['position_ids', { shape: [1, 6], data: Int32Array.of(0, 1, 2, 3, 4, 5) }],
  ]);

  it('single-file save/load with format=pt metadata', () => {
    const dir = join(tmp, 'single');
    const files = saveStateDict(dir, sd());
    assert.deepEqual(files, [join(dir, 'model.safetensors')]);
    assert.deepEqual(readSafetensors(files[0]).metadata, { format: 'pt' });
    const back = loadStateDict(dir);
    for (const [k, v] of sd()) {
      assert.deepEqual(back.get(k)!.shape, v.shape, k);
      assert.deepEqual([...back.get(k)!.data], [...v.data], k);
      assert.ok(back.get(k)!.data instanceof Float32Array);
    }
    assert.equal(back.get('position_ids')!.dtype, 'I64');
  });

  it('sharded save/load round trip, index format, and stale-file cleanup', () => {
    const dir = join(tmp, 'sharded');
    const files = saveStateDict(dir, sd(), { maxShardBytes: 200 });
    const shards = files.filter((f) => f.endsWith('.safetensors'));
    assert.ok(shards.length >= 3, `got ${shards.length} shards`);
    assert.ok(shards.every((f, i) => f.endsWith(`model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`)));
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    assert.equal(index.metadata.total_size, (40 + 24 + 4 + 48 + 4) * 4 + 6 * 8);
    assert.deepEqual(Object.keys(index.weight_map), [...sd().keys()].sort(), 'weight_map keys sorted');
    const back = loadStateDict(dir);
    assert.equal(back.size, sd().size);
    for (const [k, v] of sd()) assert.deepEqual([...back.get(k)!.data], [...v.data], k);
    // bf16 sharded save
    const dir2 = join(tmp, 'sharded-bf16');
    saveStateDict(dir2, sd(), { maxShardBytes: 100, dtype: 'BF16' });
    const b2 = loadStateDict(dir2);
    assert.equal(b2.get('transformer.wte.weight')!.dtype, 'BF16');
    assert.equal(b2.get('position_ids')!.dtype, 'I64');
    assert.ok(Math.abs(b2.get('transformer.wte.weight')!.data[5] - 5 / 7) < 5 / 7 / 128);
    // re-saving as one file removes the old shards and index
    saveStateDict(dir, sd());
    assert.deepEqual(readdirSync(dir).sort(), ['model.safetensors']);
    // and sharding again removes the single file
    saveStateDict(dir, sd(), { maxShardBytes: 200 });
    assert.ok(!existsSync(join(dir, 'model.safetensors')));
    assert.equal(loadStateDict(dir).size, sd().size);
  });

  it('index validation: missing shard, tensor not in its shard, no weights at all', () => {
    const dir = join(tmp, 'broken');
    saveStateDict(dir, sd(), { maxShardBytes: 200 });
    const idxPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(idxPath, 'utf8')) as { weight_map: Record<string, string> };
    // claim a tensor lives in a shard that doesn't hold it
    const shardNames = [...new Set(Object.values(index.weight_map))].sort();
    const wrong = structuredClone(index);
    wrong.weight_map['transformer.wte.weight'] = shardNames.find((s) => s !== index.weight_map['transformer.wte.weight'])!;
    writeFileSync(idxPath, JSON.stringify(wrong));
    assert.throws(() => loadStateDict(dir), /weight_map puts 'transformer\.wte\.weight' in model-\d+-of-\d+\.safetensors, but .* has no such tensor/);
    writeFileSync(idxPath, JSON.stringify(index));
    const victim = shardNames[shardNames.length - 1];
    unlinkSync(join(dir, victim));
    assert.throws(() => loadStateDict(dir), (e: Error) => e.message.includes(victim) && e.message.includes('model.safetensors.index.json') && /does not exist/.test(e.message));
    writeFileSync(idxPath, JSON.stringify({ weight_map: { a: '../evil.safetensors' } }));
    assert.throws(() => loadStateDict(dir), /must be a file name in the same directory/);
    const empty = mkdtempSync(join(tmp, 'empty-'));
    assert.throws(() => loadStateDict(empty), /no model\.safetensors or model\.safetensors\.index\.json found/);
  });
});

describe('GPT-2 name normalisation', () => {
  const T = (shape: number[], fill: (i: number) => number): StateTensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    return { shape, data: new Float32Array(n).map((_, i) => fill(i)) };
  };
  const hub = (): Map<string, StateTensor> => {
    const wte = T([8, 4], (i) => i * 0.25);
    return new Map<string, StateTensor>([
      ['wte.weight', wte],
      ['wpe.weight', T([5, 4], (i) => -i)],
      ['h.0.ln_1.weight', T([4], () => 1)],
      ['h.0.attn.bias', T([1, 1, 5, 5], (i) => (i % 6 === 0 ? 1 : 0))],
      ['h.0.attn.masked_bias', T([], () => -1e4)],
      ['h.0.attn.c_attn.weight', T([4, 12], (i) => i)],
      ['h.0.attn.c_attn.bias', T([12], (i) => i)],
      ['h.0.attn.c_proj.bias', T([4], (i) => i)],
      ['h.0.mlp.c_fc.weight', T([4, 16], (i) => i)],
      ['h.1.attn.bias', T([1, 1, 5, 5], () => 1)],
      ['h.1.attn.c_attn.bias', T([12], (i) => -i)],
      ['ln_f.weight', T([4], () => 1)],
      ['lm_head.weight', { shape: [8, 4], data: Float32Array.from(wte.data) }],
    ]);
  };

  it('hub layout → transformer.* names, buffers and tied lm_head dropped', () => {
    const out = normalizeGpt2StateDict(hub());
    assert.deepEqual([...out.keys()], [
      'transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.ln_1.weight',
      'transformer.h.0.attn.c_attn.weight', 'transformer.h.0.attn.c_attn.bias', 'transformer.h.0.attn.c_proj.bias',
      'transformer.h.0.mlp.c_fc.weight', 'transformer.h.1.attn.c_attn.bias', 'transformer.ln_f.weight',
    ]);
    // already-canonical dicts pass through unchanged; buffers with the prefix are dropped too
    const canon = new Map(out);
    canon.set('transformer.h.0.attn.bias', T([1], () => 1));
    canon.set('lm_head.weight', out.get('transformer.wte.weight')!);
    assert.deepEqual([...normalizeGpt2StateDict(canon).keys()], [...out.keys()]);
    // what we save is what GPT2LMHeadModel.save_pretrained writes
    const save = gpt2StateDictForSave(hub());
    assert.ok(!save.has('lm_head.weight'));
    assert.ok([...save.keys()].every((k) => k.startsWith('transformer.') && !/attn\.(bias|masked_bias)$/.test(k.replace('c_attn.bias', ''))));
    // and a saved + reloaded dir normalises to the same tensors
    const dir = join(tmp, 'gpt2');
    saveStateDict(dir, save);
    const back = normalizeGpt2StateDict(loadStateDict(dir));
    assert.deepEqual([...back.keys()].sort(), [...save.keys()].sort());
    for (const [k, v] of save) assert.deepEqual(back.get(k)!.data, v.data, k);
  });

  it('an untied lm_head is rejected; duplicate names are rejected', () => {
    const h = hub();
    h.get('lm_head.weight')!.data[3] += 1;
    assert.throws(() => normalizeGpt2StateDict(h), /lm_head\.weight that differs from transformer\.wte\.weight: untied LM heads are not supported/);
    const d = hub();
    d.set('transformer.wpe.weight', T([5, 4], () => 0));
    assert.throws(() => normalizeGpt2StateDict(d), /both/);
  });
});

// safetensors read/write, written from the format spec (https://github.com/huggingface/safetensors):
//
//   [8 bytes: N, u64 little-endian][N bytes: JSON header, utf-8, may be padded with spaces]
//   [data section: raw little-endian tensor bytes]
//
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
// to the start of the data section) plus an optional "__metadata__" object of string → string.
//
// Reading validates the header thoroughly and fails with one-line errors that name the file.
// Float tensors (F64/F32/F16/BF16) decode to Float32Array (F16/BF16 bit-exactly as PyTorch widens
// them, NaN payloads included); integer/bool tensors decode to Int32Array (I64/U32/U64 range-checked).
// `openSafetensors` reads only the header and then one tensor at a time with positioned reads, so
// big checkpoints never need to be in memory whole. Writing is atomic (`io/atomic.ts`) and follows the reference writer's layout: `__metadata__` first, tensors ordered by
// data offset, largest element size first, header padded with spaces so the data section (and so
// every tensor) starts 8-byte aligned.

import { f16BitsToF32Bits, f16Table, f16ToNumber, bf16ToNumber, f32BitsToF16Bits, f32BitsToBf16Bits } from '../engine/half.js';
export { f16BitsToF32Bits, f16ToNumber, bf16ToNumber, f32BitsToF16Bits, f32BitsToBf16Bits };
import { openSync, closeSync, readSync, fstatSync, existsSync } from 'node:fs';
import { endianness } from 'node:os';
import { atomicWrite, writeAll } from './atomic.js';
import { duplicateJsonKey } from './json.js';

export { atomicWrite, writeAll };

/** Every dtype the safetensors spec defines. */
export type SafeDtype =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL'
  | 'F8_E4M3' | 'F8_E5M2';

/** dtypes `writeSafetensors` can produce. */
export type WriteDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'U8' | 'I8';

export const DTYPE_SIZE: Readonly<Record<SafeDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isFloatDtype(d: SafeDtype): boolean { return FLOAT_DTYPES.has(d); }

/** A decoded tensor: Float32Array for float dtypes, Int32Array for integer and bool dtypes. */
export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

/** What the header says about one tensor. */
export interface TensorInfo {
  dtype: SafeDtype;
  shape: number[];
  /** [begin, end) relative to the data section, as in the header. */
  dataOffsets: [number, number];
  /** absolute byte position of the first byte in the file */
  fileOffset: number;
  byteLength: number;
  numel: number;
}

export interface SafetensorsHeader {
  /** tensors in data-offset order */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string> | null;
  /** 8 + N: where the data section starts */
  dataStart: number;
  /** size of the data section in bytes (file size − dataStart) */
  dataLength: number;
}

/** Largest header we accept (the reference implementation uses 100 MB too). */
export const MAX_HEADER_BYTES = 100_000_000;

const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function fail(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

/** A name quoted for a one-line message (control characters escaped, long names cut). */
function q(name: string): string {
  const cut = name.length > 80 ? name.slice(0, 80) + '…' : name;
  return `'${cut.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}

/** JSON of a value for a message, cut to a readable length. */
function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 100 ? s.slice(0, 100) + '…' : s;
}

function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? `a string` : typeof v;
}

/**
 * Parse and validate a header. `headerBytes` is the N-byte JSON region, `dataLength` the size of
 * the data section. Throws one-line errors that start with `file`.
 */
export function parseHeader(file: string, headerBytes: Uint8Array, dataStart: number, dataLength: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail(file, 'safetensors header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(file, `safetensors header is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  // JSON.parse keeps the last of two equal keys; the reference reader rejects the file.
  const dup = duplicateJsonKey(text);
  if (dup !== null) fail(file, `safetensors header has the key ${q(dup)} twice`);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    fail(file, `safetensors header must be a JSON object, got ${describeJson(json)}`);
  }
  const obj = json as Record<string, unknown>;
  let metadata: Record<string, string> | null = null;
  const entries: [string, TensorInfo][] = [];
  for (const [name, raw] of Object.entries(obj)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        fail(file, `__metadata__ must be an object of strings, got ${describeJson(raw)}`);
      }
      metadata = {};
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(file, `__metadata__ value for ${q(k)} must be a string, got ${describeJson(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      fail(file, `tensor ${q(name)}: entry must be an object, got ${describeJson(raw)}`);
    }
    const e = raw as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_SIZE, dtype)) {
      fail(file, `tensor ${q(name)}: unknown dtype ${short(dtype)}`);
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
      fail(file, `tensor ${q(name)}: shape must be an array of non-negative integers, got ${short(shape)}`);
    }
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
      fail(file, `tensor ${q(name)}: data_offsets must be [begin, end] of non-negative integers, got ${short(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end || end > dataLength) {
      fail(file, `tensor ${q(name)}: data_offsets [${begin}, ${end}] outside the data section of ${dataLength} bytes`);
    }
    let numel = 1;
    for (const d of shape as number[]) numel *= d;
    if (!Number.isSafeInteger(numel)) fail(file, `tensor ${q(name)}: shape ${short(shape)} is too large`);
    const size = DTYPE_SIZE[dtype as SafeDtype];
    if (end - begin !== numel * size) {
      fail(file, `tensor ${q(name)}: ${end - begin} bytes in data_offsets but shape ${short(shape)} × ${dtype} needs ${numel * size}`);
    }
    entries.push([name, {
      dtype: dtype as SafeDtype, shape: (shape as number[]).slice(), dataOffsets: [begin, end],
      fileOffset: dataStart + begin, byteLength: end - begin, numel,
    }]);
  }
  entries.sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  // As the reference reader requires: sorted by offset, the tensors tile the data section exactly
  // (start at 0, no gaps, no overlaps, the last one ends at the end of the file). A header length
  // that is off by a byte or a truncated/extended file therefore fails here.
  let prevEnd = 0, prevName = '';
  for (const [name, info] of entries) {
    const [begin, end] = info.dataOffsets;
    if (begin < prevEnd) fail(file, `tensors ${q(prevName)} and ${q(name)} overlap in the data section (bytes ${begin}..${prevEnd})`);
    if (begin > prevEnd) fail(file, `tensor ${q(name)} starts at data byte ${begin} but ${prevName ? `${q(prevName)} ends` : 'the data section starts'} at ${prevEnd}: a gap of ${begin - prevEnd} bytes (corrupt header or offsets)`);
    prevEnd = end;
    prevName = name;
  }
  if (prevEnd !== dataLength) {
    fail(file, `the tensors cover ${prevEnd} bytes but the data section after the ${dataStart - 8}-byte header is ${dataLength} bytes (truncated file, extra bytes, or a wrong header length)`);
  }
  return { tensors: new Map(entries), metadata, dataStart, dataLength };
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Bytes → aligned view. Copies when `bytes` isn't aligned for `align`-byte elements. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  const c = new Uint8Array(bytes.byteLength);
  c.set(bytes);
  return c;
}

/**
 * Decode raw little-endian bytes of `numel` elements of `dtype`. Float types → Float32Array,
 * integer/bool types → Int32Array. `what` names the tensor in errors (range checks).
 */
export function decodeTensorBytes(bytes: Uint8Array, dtype: SafeDtype, numel: number, what: string): Float32Array | Int32Array {
  const n = numel;
  if (bytes.byteLength !== n * DTYPE_SIZE[dtype]) {
    throw new Error(`${what}: ${bytes.byteLength} bytes for ${n} × ${dtype}`);
  }
  if (!LITTLE_ENDIAN_HOST) return decodeViaDataView(bytes, dtype, n, what);
  switch (dtype) {
    case 'F32': {
      const b = aligned(bytes, 4);
      // Own the memory unless the caller's buffer is exactly ours (fresh read buffers are).
      const v = new Float32Array(b.buffer, b.byteOffset, n);
      return b === bytes && (b.byteOffset !== 0 || b.buffer.byteLength !== b.byteLength) ? v.slice() : v;
    }
    case 'F64': {
      const b = aligned(bytes, 8);
      const src = new Float64Array(b.buffer, b.byteOffset, n);
      return Float32Array.from(src);
    }
    case 'F16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      const o = new Uint32Array(out.buffer);
      const t = f16Table();
      for (let i = 0; i < n; i++) o[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      const b = aligned(bytes, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, n);
      const out = new Float32Array(n);
      const o = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) o[i] = src[i] << 16;
      return out;
    }
    case 'F8_E4M3': case 'F8_E5M2': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dtype === 'F8_E4M3' ? fp8e4m3ToNumber(bytes[i]) : fp8e5m2ToNumber(bytes[i]);
      return out;
    }
    case 'I64': case 'U64': {
      const b = aligned(bytes, 4);
      const src = new Int32Array(b.buffer, b.byteOffset, 2 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const lo = src[2 * i], hi = src[2 * i + 1];
        if (hi !== (lo >> 31) || (dtype === 'U64' && hi !== 0)) {
          const v = dtype === 'U64' ? new BigUint64Array(aligned(bytes, 8).slice(8 * i, 8 * i + 8).buffer)[0]
            : new BigInt64Array(aligned(bytes, 8).slice(8 * i, 8 * i + 8).buffer)[0];
          throw new Error(`${what}: ${dtype} value ${v} at index ${i} does not fit in int32`);
        }
        out[i] = lo;
      }
      return out;
    }
    case 'I32': {
      const b = aligned(bytes, 4);
      return new Int32Array(b.buffer, b.byteOffset, n).slice();
    }
    case 'U32': {
      const b = aligned(bytes, 4);
      const src = new Uint32Array(b.buffer, b.byteOffset, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        if (src[i] > 0x7fffffff) throw new Error(`${what}: U32 value ${src[i]} at index ${i} does not fit in int32`);
        out[i] = src[i];
      }
      return out;
    }
    case 'I16': { const b = aligned(bytes, 2); return Int32Array.from(new Int16Array(b.buffer, b.byteOffset, n)); }
    case 'U16': { const b = aligned(bytes, 2); return Int32Array.from(new Uint16Array(b.buffer, b.byteOffset, n)); }
    case 'I8': return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U8': return Int32Array.from(bytes.subarray(0, n));
    case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] ? 1 : 0;
      return out;
    }
  }
}

function fp8e4m3ToNumber(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >>> 3) & 0xf, m = b & 7;
  if (e === 0xf && m === 7) return NaN;
  if (e === 0) return s * m * 2 ** -9;
  return s * (1 + m / 8) * 2 ** (e - 7);
}

function fp8e5m2ToNumber(b: number): number { return f16ToNumber(b << 8); }

function decodeViaDataView(bytes: Uint8Array, dtype: SafeDtype, n: number, what: string): Float32Array | Int32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const f = new Float32Array(n);
  const i32 = new Int32Array(n);
  const isF = isFloatDtype(dtype);
  for (let i = 0; i < n; i++) {
    switch (dtype) {
      case 'F32': f[i] = dv.getFloat32(4 * i, true); break;
      case 'F64': f[i] = dv.getFloat64(8 * i, true); break;
      case 'F16': f[i] = f16ToNumber(dv.getUint16(2 * i, true)); break;
      case 'BF16': f[i] = bf16ToNumber(dv.getUint16(2 * i, true)); break;
      case 'F8_E4M3': f[i] = fp8e4m3ToNumber(bytes[i]); break;
      case 'F8_E5M2': f[i] = fp8e5m2ToNumber(bytes[i]); break;
      case 'I64': case 'U64': {
        const v = dtype === 'I64' ? dv.getBigInt64(8 * i, true) : dv.getBigUint64(8 * i, true);
        if (v < -2147483648n || v > 2147483647n) throw new Error(`${what}: ${dtype} value ${v} at index ${i} does not fit in int32`);
        i32[i] = Number(v); break;
      }
      case 'I32': i32[i] = dv.getInt32(4 * i, true); break;
      case 'U32': {
        const v = dv.getUint32(4 * i, true);
        if (v > 0x7fffffff) throw new Error(`${what}: U32 value ${v} at index ${i} does not fit in int32`);
        i32[i] = v; break;
      }
      case 'I16': i32[i] = dv.getInt16(2 * i, true); break;
      case 'U16': i32[i] = dv.getUint16(2 * i, true); break;
      case 'I8': i32[i] = dv.getInt8(i); break;
      case 'U8': i32[i] = bytes[i]; break;
      case 'BOOL': i32[i] = bytes[i] ? 1 : 0; break;
    }
  }
  return isF ? f : i32;
}

// ---------------------------------------------------------------------------------------------
// Reading

function readFully(fd: number, buf: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    const chunk = Math.min(buf.byteLength - done, 0x40000000);
    const n = readSync(fd, buf, done, chunk, position + done);
    if (n <= 0) fail(file, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** A safetensors file opened for reading tensors one at a time. Call close() when done. */
export interface SafetensorsFile extends SafetensorsHeader {
  path: string;
  /** tensor names in data-offset order */
  names(): string[];
  has(name: string): boolean;
  /** one tensor's data as Float32Array (integer dtypes are converted to float). */
  get(name: string): Float32Array;
  /** one tensor decoded with its natural type (Float32Array for floats, Int32Array for integers). */
  getTensor(name: string): SafeTensor;
  /** the raw little-endian bytes of one tensor */
  getBytes(name: string): Uint8Array;
  /** Decode one float tensor straight into `dst` (its length must be the tensor's numel); F32 on a little-endian host is read in place, without a temporary. */
  readInto(name: string, dst: Float32Array): void;
  close(): void;
}

/** Open a file and validate its header; tensors are read lazily with positioned reads. */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot open (${(e as Error).message})`);
  }
  let header: SafetensorsHeader;
  try {
    const size = fstatSync(fd).size;
    if (size < 8) fail(path, `file is ${size} bytes, shorter than the 8-byte safetensors header length`);
    const lenBuf = new Uint8Array(8);
    readFully(fd, lenBuf, 0, path);
    const n = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
    if (n > size - 8) fail(path, `safetensors header length ${n} exceeds the file size ${size} (corrupt or not a safetensors file)`);
    if (n > MAX_HEADER_BYTES) fail(path, `safetensors header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    if (n < 2) fail(path, `safetensors header length ${n} is too small to hold a JSON object`);
    const hb = new Uint8Array(n);
    readFully(fd, hb, 8, path);
    header = parseHeader(path, hb, 8 + n, size - 8 - n);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  let open = true;
  const info = (name: string): TensorInfo => {
    if (!open) fail(path, `file already closed (reading '${name}')`);
    const t = header.tensors.get(name);
    if (!t) fail(path, `no tensor named '${name}'`);
    return t;
  };
  const getBytes = (name: string): Uint8Array => {
    const t = info(name);
    const buf = new Uint8Array(t.byteLength); // fresh ArrayBuffer: offset 0, aligned
    readFully(fd, buf, t.fileOffset, path);
    return buf;
  };
  const getTensor = (name: string): SafeTensor => {
    const t = info(name);
    const data = decodeTensorBytes(getBytes(name), t.dtype, t.numel, `${path}: tensor ${q(name)}`);
    return { dtype: t.dtype, shape: t.shape.slice(), data };
  };
  return {
    ...header,
    path,
    names: () => [...header.tensors.keys()],
    has: (name) => header.tensors.has(name),
    getBytes,
    getTensor,
    readInto: (name, dst) => {
      const t = info(name);
      if (dst.length !== t.numel) fail(path, `tensor ${q(name)} has ${t.numel} elements, the destination ${dst.length}`);
      if (t.dtype === 'F32' && LITTLE_ENDIAN_HOST) { readFully(fd, new Uint8Array(dst.buffer, dst.byteOffset, t.byteLength), t.fileOffset, path); return; }
      dst.set(getTensor(name).data);
    },
    get: (name) => {
      const d = getTensor(name).data;
      return d instanceof Float32Array ? d : Float32Array.from(d);
    },
    close: () => { if (open) { open = false; closeSync(fd); } },
  };
}

/** Read every tensor of a file. */
export function readSafetensors(path: string): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> | null } {
  const f = openSafetensors(path);
  try {
    const tensors = new Map<string, SafeTensor>();
    for (const name of f.names()) tensors.set(name, f.getTensor(name));
    return { tensors, metadata: f.metadata };
  } finally {
    f.close();
  }
}

/** Parse a whole safetensors file already in memory (any byteOffset; misaligned data is copied). */
export function parseSafetensors(bytes: Uint8Array, name = '<buffer>'): { tensors: Map<string, SafeTensor>; metadata: Record<string, string> | null } {
  if (bytes.byteLength < 8) fail(name, `file is ${bytes.byteLength} bytes, shorter than the 8-byte safetensors header length`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > bytes.byteLength - 8) fail(name, `safetensors header length ${n} exceeds the file size ${bytes.byteLength} (corrupt or not a safetensors file)`);
  if (n > MAX_HEADER_BYTES) fail(name, `safetensors header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2) fail(name, `safetensors header length ${n} is too small to hold a JSON object`);
  const h = parseHeader(name, bytes.subarray(8, 8 + n), 8 + n, bytes.byteLength - 8 - n);
  const tensors = new Map<string, SafeTensor>();
  for (const [tn, t] of h.tensors) {
    const raw = bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength);
    // decodeTensorBytes copies when it would otherwise alias `bytes`
    tensors.set(tn, { dtype: t.dtype, shape: t.shape.slice(), data: decodeTensorBytes(raw, t.dtype, t.numel, `${name}: tensor ${q(tn)}`) });
  }
  return { tensors, metadata: h.metadata };
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Float32Array/Int32Array values are converted to `dtype`. Raw forms are written as they are:
 * Uint16Array = F16/BF16 bits, Uint8Array = U8 bytes, Int8Array = I8 values (quantized weights).
 */
export interface WriteTensor {
  dtype: WriteDtype;
  shape: number[];
  data: Float32Array | Int32Array | Uint16Array | Uint8Array | Int8Array;
}

export type TensorDict<T> = Record<string, T> | Map<string, T>;

function entriesOf<T>(d: TensorDict<T>): [string, T][] {
  return d instanceof Map ? [...d.entries()] : Object.entries(d);
}


const WRITE_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16', 'I32', 'I64', 'U8', 'I8']);
const CHUNK = 1 << 18; // elements per encode chunk

function encodeChunk(t: WriteTensor, start: number, end: number): Uint8Array {
  const n = end - start;
  if (t.data instanceof Uint8Array || t.data instanceof Int8Array) return new Uint8Array(t.data.buffer, t.data.byteOffset + start, n);
  if (t.data instanceof Uint16Array) return leBytes(t.data.subarray(start, end));
  const src = t.data;
  switch (t.dtype) {
    case 'U8': case 'I8': throw new Error(`unreachable: ${t.dtype} from ${src.constructor.name}`);
    case 'F32': {
      if (src instanceof Float32Array && LITTLE_ENDIAN_HOST) return new Uint8Array(src.buffer, src.byteOffset + 4 * start, 4 * n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[start + i];
      return leBytes(out);
    }
    case 'F16': case 'BF16': {
      const f = src instanceof Float32Array ? src.subarray(start, end) : Float32Array.from(src.subarray(start, end));
      const bits = new Uint32Array(f.buffer, f.byteOffset, n);
      const out = new Uint16Array(n);
      if (t.dtype === 'F16') for (let i = 0; i < n; i++) out[i] = f32BitsToF16Bits(bits[i]);
      else for (let i = 0; i < n; i++) out[i] = f32BitsToBf16Bits(bits[i]);
      return leBytes(out);
    }
    case 'I32': {
      if (src instanceof Int32Array && LITTLE_ENDIAN_HOST) return new Uint8Array(src.buffer, src.byteOffset + 4 * start, 4 * n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[start + i];
      return leBytes(out);
    }
    case 'I64': {
      const out = new Int32Array(2 * n);
      for (let i = 0; i < n; i++) { const v = src[start + i] | 0; out[2 * i] = v; out[2 * i + 1] = v >> 31; }
      return leBytes(out);
    }
  }
}

/** bytes of a typed array in little-endian order (swaps on a big-endian host). */
function leBytes(a: Float32Array | Int32Array | Uint16Array): Uint8Array {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN_HOST) return b;
  const out = new Uint8Array(b.byteLength);
  const w = a.BYTES_PER_ELEMENT;
  for (let i = 0; i < b.byteLength; i += w) for (let j = 0; j < w; j++) out[i + j] = b[i + w - 1 - j];
  return out;
}

/** Check a tensor before writing: dtype, shape, data length, integer values for integer dtypes. */
function validateForWrite(file: string, name: string, t: WriteTensor): number {
  if (name === '__metadata__') fail(file, `'__metadata__' is reserved and cannot be a tensor name`);
  if (!t || typeof t !== 'object') fail(file, `tensor '${name}': not an object`);
  if (!WRITE_DTYPES.has(t.dtype)) fail(file, `tensor '${name}': cannot write dtype ${JSON.stringify(t.dtype)} (supported: F32, F16, BF16, I32, I64, U8, I8)`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(file, `tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`);
  }
  // Raw forms must match their dtype exactly: bytes are written unconverted.
  const rawOk = t.data instanceof Uint8Array ? t.dtype === 'U8' : t.data instanceof Int8Array ? t.dtype === 'I8'
    : t.data instanceof Uint16Array ? t.dtype === 'F16' || t.dtype === 'BF16' : null;
  if (rawOk === false) fail(file, `tensor '${name}': ${t.data.constructor.name} data cannot be written as ${t.dtype} (Uint8Array → U8, Int8Array → I8, Uint16Array bits → F16/BF16)`);
  if (rawOk === null && !(t.data instanceof Float32Array || t.data instanceof Int32Array)) fail(file, `tensor '${name}': data must be a Float32Array, Int32Array, or raw Uint16Array/Uint8Array/Int8Array`);
  if (rawOk === null && (t.dtype === 'U8' || t.dtype === 'I8')) fail(file, `tensor '${name}': ${t.dtype} is written from raw Uint8Array/Int8Array data only`);
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== numel) fail(file, `tensor '${name}': data has ${t.data.length} elements but shape ${JSON.stringify(t.shape)} needs ${numel}`);
  if ((t.dtype === 'I32' || t.dtype === 'I64') && t.data instanceof Float32Array) {
    for (let i = 0; i < numel; i++) {
      const v = t.data[i];
      if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) fail(file, `tensor '${name}': value ${v} at index ${i} is not an int32 (dtype ${t.dtype})`);
    }
  }
  return numel;
}

/** Build the header bytes (padded with spaces to a multiple of 8) and the tensor order. */
export function buildHeader(file: string, tensors: TensorDict<WriteTensor>, metadata?: Record<string, string> | null):
{ header: Uint8Array; order: [string, WriteTensor, number][] } {
  const list = entriesOf(tensors).map(([n, t]) => [n, t, validateForWrite(file, n, t)] as [string, WriteTensor, number]);
  const seen = new Set<string>();
  for (const [n] of list) { if (seen.has(n)) fail(file, `duplicate tensor name '${n}'`); seen.add(n); }
  // Largest element size first, then by name (as the reference writer does): with an 8-aligned
  // data section every tensor then starts aligned to its own element size.
  list.sort((a, b) => DTYPE_SIZE[b[1].dtype] - DTYPE_SIZE[a[1].dtype] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts: string[] = [];
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(file, `metadata value for '${k}' must be a string, got ${describeJson(v)}`);
    }
    // Build by hand so integer-like keys keep their order.
    parts.push(`"__metadata__":{${Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  let off = 0;
  for (const [n, t, numel] of list) {
    const bytes = numel * DTYPE_SIZE[t.dtype];
    parts.push(`${JSON.stringify(n)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${off},${off + bytes}]}`);
    off += bytes;
  }
  let json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const header = new Uint8Array(8 + json.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  header.set(json, 8);
  return { header, order: list };
}

/**
 * Write tensors to `path` atomically. Float data may be written as F32/F16/BF16 (round to nearest
 * even), integer values as I32/I64. Everything is validated before the file is touched.
 */
export function writeSafetensors(path: string, tensors: TensorDict<WriteTensor>, metadata?: Record<string, string> | null): void {
  const { header, order } = buildHeader(path, tensors, metadata);
  atomicWrite(path, (fd) => {
    writeAll(fd, header);
    for (const [, t, numel] of order) {
      for (let s = 0; s < numel; s += CHUNK) writeAll(fd, encodeChunk(t, s, Math.min(numel, s + CHUNK)));
    }
  });
}

/** Serialise to an in-memory buffer (same layout as writeSafetensors). */
export function serializeSafetensors(tensors: TensorDict<WriteTensor>, metadata?: Record<string, string> | null): Uint8Array {
  const { header, order } = buildHeader('<buffer>', tensors, metadata);
  const chunks: Uint8Array[] = [header];
  for (const [, t, numel] of order) {
    for (let s = 0; s < numel; s += CHUNK) chunks.push(encodeChunk(t, s, Math.min(numel, s + CHUNK)).slice());
  }
  return Buffer.concat(chunks);
}

/** True when `path` exists (small helper shared with hf.ts). */
export function fileExists(path: string): boolean { return existsSync(path); }

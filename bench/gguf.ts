// GGUF (v3) writer and header reader for the llama.cpp twin bench (bench/llama.mjs): our random
// GPT-2 written as llama.cpp's `gpt2` architecture, f32, so llama-quantize can derive the other
// formats from the very same weights. Format facts from llama.cpp's docs/gguf-py (no code copied):
// little-endian; "GGUF", u32 version, u64 tensor count, u64 KV count; KV = string key, u32 value
// type, value; tensor info = string name, u32 n_dims, u64 ne[] (ne0 = the contiguous row length),
// u32 ggml type, u64 offset into the data section; the data section starts at the next multiple
// of the alignment (32 unless general.alignment says otherwise), each tensor aligned too.
//
//   node dist/bench/gguf.js write OUT.gguf [--config gpt2-124m|small]   (the bench's model, seed 0)
//   node dist/bench/gguf.js info FILE.gguf                              (header summary as JSON)

import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { atomicWrite, writeAll } from '../src/io/atomic.js';

export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** GGUF metadata value types. */
export const VT = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12 } as const;
/** ggml tensor types this bench meets (ids from ggml.h). */
export const GGML_TYPE_NAMES: Readonly<Record<number, string>> = { 0: 'f32', 1: 'f16', 2: 'q4_0', 3: 'q4_1', 6: 'q5_0', 7: 'q5_1', 8: 'q8_0', 10: 'q2_K', 11: 'q3_K', 12: 'q4_K', 13: 'q5_K', 14: 'q6_K', 30: 'bf16' };
const TOKEN_NORMAL = 1, TOKEN_CONTROL = 3;

export type GgufScalar = { type: 'u32' | 'i32' | 'f32' | 'u64' | 'bool'; value: number | boolean } | { type: 'str'; value: string };
export type GgufValue = GgufScalar | { type: 'arr'; of: 'str'; value: string[] } | { type: 'arr'; of: 'i32' | 'u32' | 'f32'; value: ArrayLike<number> };
export interface GgufTensorIn { name: string; /** ne order: ne[0] is the contiguous row length. */ dims: number[]; data: Float32Array; }
export interface GgufTensorInfo { name: string; dims: number[]; type: number; offset: number; }
export interface GgufHeader { version: number; kv: Map<string, unknown>; tensors: GgufTensorInfo[]; dataOffset: number; alignment: number; fileBytes: number; }

// ---- writer

class Bytes {
  private buf = Buffer.alloc(1 << 16);
  len = 0;
  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }
  u32(x: number): void { this.room(4); this.buf.writeUInt32LE(x >>> 0, this.len); this.len += 4; }
  i32(x: number): void { this.room(4); this.buf.writeInt32LE(x | 0, this.len); this.len += 4; }
  u64(x: number): void { this.room(8); this.buf.writeBigUInt64LE(BigInt(x), this.len); this.len += 8; }
  f32(x: number): void { this.room(4); this.buf.writeFloatLE(x, this.len); this.len += 4; }
  u8(x: number): void { this.room(1); this.buf[this.len++] = x; }
  str(s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.room(b.length); b.copy(this.buf, this.len); this.len += b.length; }
  zeros(n: number): void { this.room(n); this.buf.fill(0, this.len, this.len + n); this.len += n; }
  bytes(): Uint8Array { return this.buf.subarray(0, this.len); }
}

function putValue(b: Bytes, v: GgufValue): void {
  if (v.type === 'arr') {
    b.u32(VT.arr); b.u32(VT[v.of]); b.u64(v.value.length);
    if (v.of === 'str') for (const s of v.value as string[]) b.str(s);
    else for (let i = 0; i < v.value.length; i++) { const x = (v.value as ArrayLike<number>)[i]; if (v.of === 'f32') b.f32(x); else if (v.of === 'i32') b.i32(x); else b.u32(x); }
    return;
  }
  b.u32(VT[v.type]);
  switch (v.type) {
    case 'str': b.str(v.value); break;
    case 'u32': b.u32(v.value as number); break;
    case 'i32': b.i32(v.value as number); break;
    case 'f32': b.f32(v.value as number); break;
    case 'u64': b.u64(v.value as number); break;
    case 'bool': b.u8(v.value ? 1 : 0); break;
  }
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** Write an all-f32 GGUF file atomically (tensors streamed, one at a time). */
export function writeGguf(path: string, kv: [string, GgufValue][], tensors: GgufTensorIn[]): void {
  const h = new Bytes();
  h.u32(GGUF_MAGIC); h.u32(GGUF_VERSION); h.u64(tensors.length); h.u64(kv.length);
  for (const [k, v] of kv) { h.str(k); putValue(h, v); }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const n = t.dims.reduce((a, d) => a * d, 1);
    if (n !== t.data.length) throw new Error(`writeGguf: tensor ${t.name} has ${t.data.length} values for dims [${t.dims.join(', ')}]`);
    h.str(t.name); h.u32(t.dims.length); for (const d of t.dims) h.u64(d); h.u32(0 /* f32 */); h.u64(off);
    offsets.push(off);
    off = alignUp(off + 4 * n, GGUF_ALIGNMENT);
  }
  h.zeros(alignUp(h.len, GGUF_ALIGNMENT) - h.len);
  atomicWrite(path, (fd) => {
    writeAll(fd, h.bytes());
    let pos = 0;
    const pad = new Uint8Array(GGUF_ALIGNMENT);
    tensors.forEach((t, i) => {
      if (offsets[i] > pos) writeAll(fd, pad.subarray(0, offsets[i] - pos));
      const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      writeAll(fd, bytes);
      pos = offsets[i] + bytes.length;
    });
  });
}

// ---- reader (header, metadata, tensor table; not the data)

class Reader {
  private buf: Buffer;
  private base = 0; // file offset of buf[0]
  pos = 0;
  constructor(private fd: number, private size: number, private where: string) { this.buf = Buffer.alloc(0); }
  private need(n: number): void {
    if (this.pos + n <= this.base + this.buf.length) return;
    if (this.pos + n > this.size) throw new Error(`${this.where}: truncated GGUF header (needs byte ${this.pos + n}, file has ${this.size})`);
    const len = Math.min(this.size - this.pos, Math.max(n, 1 << 20));
    this.buf = Buffer.alloc(len);
    readSync(this.fd, this.buf, 0, len, this.pos);
    this.base = this.pos;
  }
  private at(n: number): number { this.need(n); const o = this.pos - this.base; this.pos += n; return o; }
  // at() may refill this.buf, so the offset is taken before the buffer is read.
  u8(): number { const o = this.at(1); return this.buf[o]; }
  i8(): number { const o = this.at(1); return this.buf.readInt8(o); }
  u16(): number { const o = this.at(2); return this.buf.readUInt16LE(o); }
  i16(): number { const o = this.at(2); return this.buf.readInt16LE(o); }
  u32(): number { const o = this.at(4); return this.buf.readUInt32LE(o); }
  i32(): number { const o = this.at(4); return this.buf.readInt32LE(o); }
  f32(): number { const o = this.at(4); return this.buf.readFloatLE(o); }
  f64(): number { const o = this.at(8); return this.buf.readDoubleLE(o); }
  u64(): number { const o = this.at(8); return Number(this.buf.readBigUInt64LE(o)); }
  i64(): number { const o = this.at(8); return Number(this.buf.readBigInt64LE(o)); }
  str(): string { const n = this.u64(); if (n > 1 << 24) throw new Error(`${this.where}: string of ${n} bytes at ${this.pos - 8}`); const o = this.at(n); return this.buf.toString('utf8', o, o + n); }
  value(t: number): unknown {
    switch (t) {
      case VT.u8: return this.u8(); case VT.i8: return this.i8(); case VT.u16: return this.u16(); case VT.i16: return this.i16();
      case VT.u32: return this.u32(); case VT.i32: return this.i32(); case VT.f32: return this.f32(); case VT.bool: return this.u8() !== 0;
      case VT.str: return this.str(); case VT.u64: return this.u64(); case VT.i64: return this.i64(); case VT.f64: return this.f64();
      case VT.arr: {
        const et = this.u32(), n = this.u64();
        if (n > 1 << 26) throw new Error(`${this.where}: array of ${n} elements at ${this.pos - 12}`);
        const out: unknown[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(et);
        return out;
      }
      default: throw new Error(`${this.where}: unknown GGUF value type ${t} at byte ${this.pos - 4}`);
    }
  }
}

/** Parse a GGUF file's header, metadata and tensor table. */
export function readGgufHeader(path: string): GgufHeader {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const r = new Reader(fd, size, path);
    const magic = r.u32();
    if (magic !== GGUF_MAGIC) throw new Error(`${path}: not a GGUF file (magic 0x${magic.toString(16)})`);
    const version = r.u32();
    if (version !== 2 && version !== 3) throw new Error(`${path}: GGUF version ${version} is not supported (2, 3)`);
    const nT = r.u64(), nKV = r.u64();
    const kv = new Map<string, unknown>();
    for (let i = 0; i < nKV; i++) { const k = r.str(); kv.set(k, r.value(r.u32())); }
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < nT; i++) {
      const name = r.str(), nd = r.u32();
      if (nd > 4) throw new Error(`${path}: tensor ${name} has ${nd} dims`);
      const dims: number[] = [];
      for (let d = 0; d < nd; d++) dims.push(r.u64());
      tensors.push({ name, dims, type: r.u32(), offset: r.u64() });
    }
    const alignment = typeof kv.get('general.alignment') === 'number' ? kv.get('general.alignment') as number : GGUF_ALIGNMENT;
    return { version, kv, tensors, dataOffset: alignUp(r.pos, alignment), alignment, fileBytes: size };
  } finally { closeSync(fd); }
}

/** f32 values of an f32 tensor (tests). */
export function readGgufF32(path: string, h: GgufHeader, name: string): Float32Array {
  const t = h.tensors.find((x) => x.name === name);
  if (!t) throw new Error(`${path}: no tensor ${name}`);
  if (t.type !== 0) throw new Error(`${path}: tensor ${name} is ${GGML_TYPE_NAMES[t.type] ?? t.type}, not f32`);
  const n = t.dims.reduce((a, d) => a * d, 1), buf = Buffer.alloc(4 * n);
  const fd = openSync(path, 'r');
  try { readSync(fd, buf, 0, buf.length, h.dataOffset + t.offset); } finally { closeSync(fd); }
  return new Float32Array(buf.buffer, buf.byteOffset, n).slice();
}

// ---- GPT-2 as llama.cpp's `gpt2` architecture

/** GPT-2's byte → printable-char map (its byte-level BPE alphabet). */
function byteChars(): string[] {
  const keep = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + extra++));
  return out;
}

/**
 * A synthetic byte-level BPE vocabulary of `V` entries that llama.cpp loads as a `gpt2` tokenizer:
 * the 256 byte tokens, then two-byte tokens each with its merge rule, then <|endoftext|> (id V-1).
 * llama-bench feeds random ids, so only the size and validity matter.
 */
export function syntheticVocab(V: number): { tokens: string[]; types: number[]; merges: string[] } {
  if (V < 257 || V > 256 + 65536 + 1) throw new Error(`syntheticVocab: vocabulary size ${V} out of range (257..65793)`);
  const bc = byteChars(), tokens = bc.slice(), merges: string[] = [];
  for (let p = 0; tokens.length < V - 1; p++) {
    const a = bc[p >> 8], b = bc[p & 255];
    tokens.push(a + b); merges.push(`${a} ${b}`);
  }
  tokens.push('<|endoftext|>');
  const types = tokens.map((_, i) => (i === V - 1 ? TOKEN_CONTROL : TOKEN_NORMAL));
  return { tokens, types, merges };
}

export interface Gpt2Shape { vocab: number; nPositions: number; d: number; L: number; H: number; eps?: number; }
interface NamedParams { namedParameters(): [string, { f32: Float32Array; shape: readonly number[] }][]; }

/** [rows, cols] row-major → [cols, rows] row-major (Conv1D [in, out] → ggml's [out][in] rows). */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/**
 * Metadata and tensors of a GPT-2 (our parameter names, `transformer.*`) as llama.cpp's gpt2
 * architecture. ggml matrices are ne = [in, out], so Conv1D weights ([in, out]) are transposed;
 * embeddings ([rows, C]) go as they are. llama.cpp's gpt2 requires `output.weight`, so the tied
 * head is written as a copy of token_embd (as its own HF converter does for GPT-2).
 */
export function gpt2Gguf(model: NamedParams, s: Gpt2Shape, name = 'icld random GPT-2'): { kv: [string, GgufValue][]; tensors: GgufTensorIn[] } {
  const p = new Map(model.namedParameters().map(([n, t]) => [n, t]));
  const get = (n: string): Float32Array => { const t = p.get(n); if (!t) throw new Error(`gpt2Gguf: the model has no parameter ${n}`); return t.f32; };
  const C = s.d, F = 4 * C;
  const voc = syntheticVocab(s.vocab);
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const kv: [string, GgufValue][] = [
    ['general.architecture', { type: 'str', value: 'gpt2' }],
    ['general.name', { type: 'str', value: name }],
    ['general.file_type', u32(0)], // ALL_F32
    ['gpt2.context_length', u32(s.nPositions)],
    ['gpt2.embedding_length', u32(C)],
    ['gpt2.feed_forward_length', u32(F)],
    ['gpt2.block_count', u32(s.L)],
    ['gpt2.attention.head_count', u32(s.H)],
    ['gpt2.attention.layer_norm_epsilon', { type: 'f32', value: s.eps ?? 1e-5 }],
    ['tokenizer.ggml.model', { type: 'str', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'str', value: 'gpt-2' }],
    ['tokenizer.ggml.tokens', { type: 'arr', of: 'str', value: voc.tokens }],
    ['tokenizer.ggml.token_type', { type: 'arr', of: 'i32', value: voc.types }],
    ['tokenizer.ggml.merges', { type: 'arr', of: 'str', value: voc.merges }],
    ['tokenizer.ggml.bos_token_id', u32(s.vocab - 1)],
    ['tokenizer.ggml.eos_token_id', u32(s.vocab - 1)],
  ];
  const wte = get('transformer.wte.weight');
  const tensors: GgufTensorIn[] = [
    { name: 'token_embd.weight', dims: [C, s.vocab], data: wte },
    { name: 'position_embd.weight', dims: [C, s.nPositions], data: get('transformer.wpe.weight') },
    { name: 'output_norm.weight', dims: [C], data: get('transformer.ln_f.weight') },
    { name: 'output_norm.bias', dims: [C], data: get('transformer.ln_f.bias') },
    { name: 'output.weight', dims: [C, s.vocab], data: wte },
  ];
  for (let i = 0; i < s.L; i++) {
    const h = `transformer.h.${i}.`, b = `blk.${i}.`;
    tensors.push(
      { name: `${b}attn_norm.weight`, dims: [C], data: get(`${h}ln_1.weight`) },
      { name: `${b}attn_norm.bias`, dims: [C], data: get(`${h}ln_1.bias`) },
      { name: `${b}attn_qkv.weight`, dims: [C, 3 * C], data: transpose(get(`${h}attn.c_attn.weight`), C, 3 * C) },
      { name: `${b}attn_qkv.bias`, dims: [3 * C], data: get(`${h}attn.c_attn.bias`) },
      { name: `${b}attn_output.weight`, dims: [C, C], data: transpose(get(`${h}attn.c_proj.weight`), C, C) },
      { name: `${b}attn_output.bias`, dims: [C], data: get(`${h}attn.c_proj.bias`) },
      { name: `${b}ffn_norm.weight`, dims: [C], data: get(`${h}ln_2.weight`) },
      { name: `${b}ffn_norm.bias`, dims: [C], data: get(`${h}ln_2.bias`) },
      { name: `${b}ffn_up.weight`, dims: [C, F], data: transpose(get(`${h}mlp.c_fc.weight`), C, F) },
      { name: `${b}ffn_up.bias`, dims: [F], data: get(`${h}mlp.c_fc.bias`) },
      { name: `${b}ffn_down.weight`, dims: [F, C], data: transpose(get(`${h}mlp.c_proj.weight`), F, C) },
      { name: `${b}ffn_down.bias`, dims: [C], data: get(`${h}mlp.c_proj.bias`) },
    );
  }
  return { kv, tensors };
}

/** Header summary for the bench (JSON-friendly): tensor count per ggml type, metadata without the vocabulary arrays. */
export function ggufSummary(path: string): { version: number; tensors: number; types: Record<string, number>; bytes: number; meta: Record<string, unknown> } {
  const h = readGgufHeader(path);
  const types: Record<string, number> = {};
  for (const t of h.tensors) { const n = GGML_TYPE_NAMES[t.type] ?? `type${t.type}`; types[n] = (types[n] ?? 0) + 1; }
  const meta: Record<string, unknown> = {};
  for (const [k, v] of h.kv) meta[k] = Array.isArray(v) ? `[${v.length} items]` : v;
  return { version: h.version, tensors: h.tensors.length, types, bytes: h.fileBytes, meta };
}

// CLI: the bench's model written as GGUF, or a file's summary.
if (process.argv[1] && /[\\/]gguf\.js$/.test(process.argv[1])) {
  const [cmd, file, ...rest] = process.argv.slice(2);
  if (cmd === 'info' && file) {
    console.log(JSON.stringify(ggufSummary(file)));
  } else if (cmd === 'write' && file) {
    const ci = rest.indexOf('--config');
    const config = ci >= 0 ? rest[ci + 1] : 'gpt2-124m';
    const { GENERATE_CONFIGS, buildModel } = await import('../src/cli/bench-lm.js');
    const s = (GENERATE_CONFIGS as Record<string, { d: number; L: number; H: number; vocab: number; nPositions: number } | undefined>)[config];
    if (!s) { console.error(`gguf.js: --config '${config}' is not a generate bench config (small, gpt2-124m)`); process.exit(2); }
    const model = buildModel(s as Parameters<typeof buildModel>[0]);
    const { kv, tensors } = gpt2Gguf(model, s, `icld random GPT-2 (${config}, seed 0)`);
    writeGguf(file, kv, tensors);
    console.log(JSON.stringify(ggufSummary(file)));
  } else {
    console.error('usage: node dist/bench/gguf.js write OUT.gguf [--config gpt2-124m|small] | info FILE.gguf');
    process.exit(2);
  }
}

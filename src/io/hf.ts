// Hugging Face model directories: config.json, model.safetensors or the sharded form
// (model-0000X-of-0000N.safetensors + model.safetensors.index.json), and GPT-2 tensor-name
// normalisation between the original hub layout and the names GPT2LMHeadModel uses.
//
// What transformers does that we mirror:
// - save_pretrained(safe_serialization=True) writes metadata {"format": "pt"}, shards named
//   model-00001-of-00003.safetensors when the checkpoint exceeds max_shard_size, and an index
//   {"metadata": {"total_size": N}, "weight_map": {name: shard}} (indent 2, sorted keys).
// - GPT2LMHeadModel writes `transformer.*` names and omits the tied `lm_head.weight`; the causal
//   mask buffers (`attn.bias`, `attn.masked_bias`) are non-persistent in current versions and
//   ignored on load in old ones, so we never write them.
// - from_pretrained prefers model.safetensors over the index, so a sharded save removes a stale
//   single file and vice versa.

import { readFileSync, mkdirSync, readdirSync, unlinkSync, statSync } from 'node:fs';
import { join, basename } from 'node:path';
import { parseJsonStrict, decodeUtf8, printable } from './json.js';
import {
  openSafetensors, writeSafetensors, atomicWrite, writeAll, fileExists, DTYPE_SIZE,
  type SafeDtype, type WriteDtype, type SafetensorsFile,
} from './safetensors.js';

export const CONFIG_NAME = 'config.json';
export const SAFE_WEIGHTS_NAME = 'model.safetensors';
export const SAFE_WEIGHTS_INDEX_NAME = 'model.safetensors.index.json';
const SHARD_RE = /^model-(\d{5})-of-(\d{5})\.safetensors$/;

/** A tensor in a state dict: float32 data (integer tensors are converted) + shape. */
export interface StateTensor {
  shape: number[];
  data: Float32Array;
  /** dtype it had on disk (when loaded) */
  dtype?: SafeDtype;
  /**
   * Loaded tensors: decode straight into a destination of the same size (a model's parameter), so
   * loading holds one copy of the weights instead of two; `data` is read (once) only if asked for.
   */
  readInto?(dst: Float32Array): void;
}

/** What saveStateDict accepts per tensor. Int32Array data is written as I64 (torch's long). */
export interface SaveTensor {
  shape: number[];
  data: Float32Array | Int32Array;
  dtype?: SafeDtype;
}

export type StateDictLike<T> = Map<string, T> | Record<string, T>;

export function entriesOf<T>(d: StateDictLike<T>): [string, T][] {
  return d instanceof Map ? [...d.entries()] : Object.entries(d);
}

// ---------------------------------------------------------------------------------------------
// JSON files

/** Largest JSON file of a model directory we read (configs and shard indexes are kilobytes). */
const MAX_JSON_BYTES = 64 << 20;

/** Read and parse a JSON file; errors (missing, not UTF-8, invalid JSON, a key twice, too big) name the path. */
export function readJson(path: string): unknown {
  let st;
  try { st = statSync(path); } catch { throw new Error(`${path}: no such file`); }
  if (!st.isFile()) throw new Error(`${path}: not a regular file`);
  if (st.size > MAX_JSON_BYTES) throw new Error(`${path}: ${st.size} bytes is larger than the ${MAX_JSON_BYTES}-byte limit for a JSON file`);
  let buf: Uint8Array;
  try { buf = readFileSync(path); } catch (e) { throw new Error(`${path}: cannot read (${(e as Error).message.split('\n')[0]})`); }
  return parseJsonStrict(decodeUtf8(buf, path), path);
}

/** `dir/config.json` as an object. */
export function readConfig(dir: string): Record<string, unknown> {
  const path = join(dir, CONFIG_NAME);
  const v = readJson(path);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** Recursively sort object keys (for transformers-style sort_keys=True output). */
function sortKeysDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeysDeep);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) out[k] = sortKeysDeep((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** Write JSON (indent 2, trailing newline) atomically. `sortKeys` mimics transformers' files. */
export function writeJsonAtomic(path: string, obj: unknown, opts: { sortKeys?: boolean; indent?: number } = {}): void {
  const text = JSON.stringify(opts.sortKeys ? sortKeysDeep(obj) : obj, null, opts.indent ?? 2);
  if (text === undefined) throw new Error(`${path}: value is not JSON-serialisable`);
  const bytes = Buffer.from(text + '\n', 'utf8');
  atomicWrite(path, (fd) => writeAll(fd, bytes));
}

/** Write `dir/config.json` (sorted keys, like transformers). */
export function writeConfig(dir: string, config: Record<string, unknown>): void {
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(join(dir, CONFIG_NAME), config, { sortKeys: true });
}

// ---------------------------------------------------------------------------------------------
// State dicts

interface ShardIndex { metadata?: Record<string, unknown>; weight_map: Record<string, string>; }

function readIndex(path: string): ShardIndex {
  const v = readJson(path);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  const wm = (v as Record<string, unknown>).weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) throw new Error(`${path}: "weight_map" must be an object of tensor name → shard file`);
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    // Plain file names only: no directories, no control characters (they would also break messages).
    if (typeof shard !== 'string' || shard === '' || shard !== basename(shard) || shard === '.' || shard === '..' || /[\u0000-\u001f\u007f\\]/.test(shard) || shard.length > 255) {
      throw new Error(`${path}: weight_map entry for '${printable(name)}' must be a file name in the same directory, got ${printable(JSON.stringify(shard) ?? String(shard))}`);
    }
  }
  return v as ShardIndex;
}

/** The weight files of a model dir: ['model.safetensors'] or the shards listed by the index. */
export function weightFiles(dir: string): { index: string | null; files: string[] } {
  const single = join(dir, SAFE_WEIGHTS_NAME);
  if (fileExists(single)) return { index: null, files: [single] };
  const indexPath = join(dir, SAFE_WEIGHTS_INDEX_NAME);
  if (fileExists(indexPath)) {
    const idx = readIndex(indexPath);
    const files = [...new Set(Object.values(idx.weight_map))].map((s) => join(dir, s));
    for (const p of files) if (!fileExists(p)) throw new Error(`${indexPath}: shard ${basename(p)} is listed in weight_map but ${p} does not exist`);
    return { index: indexPath, files };
  }
  let hint = '';
  if (fileExists(join(dir, 'pytorch_model.bin'))) hint = ' (pytorch_model.bin found: re-save it with save_pretrained(safe_serialization=True))';
  throw new Error(`${dir}: no ${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME} found${hint}`);
}

/** NaN/Inf weights make every later result NaN (printed as null): refuse them by name. */
function checkFinite(path: string, name: string, d: Float32Array): void {
  for (let i = 0; i < d.length; i++) {
    const x = d[i];
    if (x - x !== 0) throw new Error(`${path}: tensor '${printable(name)}' holds a non-finite value (${x}) at index ${i}`);
  }
}

/** A tensor of a weight file, read when first needed (each read reopens the file: the header is small). */
function toStateTensor(f: SafetensorsFile, name: string): StateTensor {
  const path = f.path, h = f.tensors.get(name)!;
  const withFile = <T>(fn: (g: SafetensorsFile) => T): T => { const g = openSafetensors(path); try { return fn(g); } finally { g.close(); } };
  let cached: Float32Array | null = null;
  return {
    shape: h.shape.slice(), dtype: h.dtype,
    get data(): Float32Array {
      if (!cached) {
        const t = withFile((g) => g.getTensor(name));
        cached = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
        if (t.data instanceof Float32Array) checkFinite(path, name, cached);
      }
      return cached;
    },
    readInto(dst: Float32Array): void {
      if (cached) { dst.set(cached); return; }
      withFile((g) => g.readInto(name, dst));
      if (h.dtype.startsWith('F') || h.dtype === 'BF16') checkFinite(path, name, dst);
    },
  };
}

/** What a header says about one tensor, and the file it is in. */
export interface WeightHeader { shape: number[]; dtype: SafeDtype; file: string }

/**
 * Names, shapes and dtypes of every tensor of a model dir, from the safetensors headers only (no
 * tensor data read): `model.safetensors`, or the shards of the index (each must exist and hold the
 * tensors the index puts in it).
 */
export function weightHeaders(dir: string): Map<string, WeightHeader> {
  if (!fileExists(dir)) throw new Error(`${dir}: no such directory`);
  const { index, files } = weightFiles(dir);
  const out = new Map<string, WeightHeader>();
  const names = index ? readIndex(index).weight_map : null;
  for (const p of files) {
    const f = openSafetensors(p);
    try {
      if (!names) { for (const [n, t] of f.tensors) out.set(n, { shape: t.shape, dtype: t.dtype, file: p }); continue; }
      for (const [n, shard] of Object.entries(names)) {
        if (join(dir, shard) !== p) continue;
        const t = f.tensors.get(n);
        if (!t) throw new Error(`${index}: weight_map puts '${printable(n)}' in ${shard}, but ${p} has no such tensor`);
        out.set(n, { shape: t.shape, dtype: t.dtype, file: p });
      }
    } finally { f.close(); }
  }
  return out;
}

/**
 * Load every tensor of a model dir as float32: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (each shard must exist and hold every tensor it is said to).
 */
export function loadStateDict(dir: string): Map<string, StateTensor> {
  if (!fileExists(dir)) throw new Error(`${dir}: no such directory`);
  const single = join(dir, SAFE_WEIGHTS_NAME);
  const out = new Map<string, StateTensor>();
  if (fileExists(single)) {
    const f = openSafetensors(single);
    try {
      for (const name of f.names()) out.set(name, toStateTensor(f, name));
    } finally { f.close(); }
    return out;
  }
  const { index } = weightFiles(dir);
  const idx = readIndex(index!);
  // group names by shard, keeping index order within a shard
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(idx.weight_map)) {
    if (!byShard.has(shard)) byShard.set(shard, []);
    byShard.get(shard)!.push(name);
  }
  for (const shard of byShard.keys()) {
    const p = join(dir, shard);
    if (!fileExists(p)) throw new Error(`${index}: shard ${shard} is listed in weight_map but ${p} does not exist`);
  }
  for (const [shard, names] of byShard) {
    const p = join(dir, shard);
    const f = openSafetensors(p);
    try {
      for (const name of names) {
        if (!f.has(name)) throw new Error(`${index}: weight_map puts '${printable(name)}' in ${shard}, but ${p} has no such tensor`);
        out.set(name, toStateTensor(f, name));
      }
    } finally { f.close(); }
  }
  return out;
}

export interface SaveOptions {
  /** split into shards when the total exceeds this many bytes (transformers default: 5 GB) */
  maxShardBytes?: number;
  /** dtype for floating-point tensors (default F32) */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** extra safetensors metadata (format: 'pt' is always set) */
  metadata?: Record<string, string>;
}

function pad5(n: number): string { return String(n).padStart(5, '0'); }

/**
 * Save a state dict the way transformers' save_pretrained(safe_serialization=True) does: one
 * `model.safetensors`, or shards + `model.safetensors.index.json` when bigger than maxShardBytes.
 * Stale weight files of the other layout are removed afterwards. Returns the files written.
 */
export function saveStateDict(dir: string, tensors: StateDictLike<SaveTensor>, opts: SaveOptions = {}): string[] {
  const maxShard = opts.maxShardBytes ?? 5_000_000_000;
  if (!(maxShard > 0)) throw new Error(`saveStateDict: maxShardBytes must be positive, got ${maxShard}`);
  const floatDtype: WriteDtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(floatDtype)) throw new Error(`saveStateDict: dtype must be F32, F16 or BF16, got ${JSON.stringify(opts.dtype)}`);
  const metadata = { ...(opts.metadata ?? {}), format: 'pt' };
  mkdirSync(dir, { recursive: true });

  const items = entriesOf(tensors).map(([name, t]) => {
    let dtype: WriteDtype;
    if (t.data instanceof Int32Array) dtype = t.dtype === 'I32' ? 'I32' : 'I64';
    else dtype = floatDtype;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    return { name, t: { dtype, shape: t.shape, data: t.data }, bytes: numel * DTYPE_SIZE[dtype] };
  });

  // Greedy sharding in insertion order (transformers' shard_checkpoint): a tensor that would push
  // the current shard past the limit starts a new one; a tensor bigger than the limit gets its own.
  const shards: typeof items[] = [];
  let cur: typeof items = [], curBytes = 0;
  for (const it of items) {
    if (cur.length && curBytes + it.bytes > maxShard) { shards.push(cur); cur = []; curBytes = 0; }
    cur.push(it); curBytes += it.bytes;
  }
  if (cur.length || shards.length === 0) shards.push(cur);

  const written: string[] = [];
  if (shards.length === 1) {
    const p = join(dir, SAFE_WEIGHTS_NAME);
    writeSafetensors(p, new Map(shards[0].map((it) => [it.name, it.t])), metadata);
    written.push(p);
  } else {
    const total = shards.length;
    const weightMap: Record<string, string> = {};
    let totalSize = 0;
    shards.forEach((sh, i) => {
      const fname = `model-${pad5(i + 1)}-of-${pad5(total)}.safetensors`;
      const p = join(dir, fname);
      writeSafetensors(p, new Map(sh.map((it) => [it.name, it.t])), metadata);
      for (const it of sh) { weightMap[it.name] = fname; totalSize += it.bytes; }
      written.push(p);
    });
    const ip = join(dir, SAFE_WEIGHTS_INDEX_NAME);
    writeJsonAtomic(ip, { metadata: { total_size: totalSize }, weight_map: weightMap }, { sortKeys: true });
    written.push(ip);
  }
  // Remove weight files of an earlier save that the new layout does not use.
  const keep = new Set(written.map((p) => basename(p)));
  for (const f of readdirSync(dir)) {
    if (keep.has(f)) continue;
    if (f === SAFE_WEIGHTS_NAME || f === SAFE_WEIGHTS_INDEX_NAME || SHARD_RE.test(f)) {
      const p = join(dir, f);
      if (statSync(p).isFile()) unlinkSync(p);
    }
  }
  return written;
}

/** Same shape and values (NaN equal to NaN): a tied tensor stored twice. */
export function sameTensor(a: { shape: number[]; data: ArrayLike<number> }, b: { shape: number[]; data: ArrayLike<number> }): boolean {
  if (a === b || a.data === b.data) return true;
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return false;
  if (a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) {
    const x = a.data[i], y = b.data[i];
    if (x !== y && !(Number.isNaN(x) && Number.isNaN(y))) return false;
  }
  return true;
}

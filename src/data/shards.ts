// Token shards: text files tokenised once into a flat binary token file (uint16 when the vocab
// fits, else uint32) with a meta.json, cached by a hash of the tokenizer and the inputs. Reads
// go through a file descriptor (pread of just the window needed), so corpora larger than RAM work.

import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, statSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../engine/rng.js';
import { cleanStaleTemps, publishDir, removeDirAtomic, tempSibling, writeAll, writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';

export interface Encoder { encode(text: string): number[]; readonly vocabSize: number; }

export interface ShardMeta {
  version: 1;
  dtype: 'uint16' | 'uint32';
  tokens: number;
  files: { path: string; bytes: number; tokens: number }[];
  key: string;
  eos: number | null;
}

function cacheKey(files: string[], tokenizerJson: string, eos: number | null): string {
  const h = createHash('sha256');
  h.update(tokenizerJson);
  h.update(String(eos));
  for (const f of files) {
    const st = statSync(f);
    h.update(`${f}\0${st.size}\0${st.mtimeMs}\0`);
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Tokenise `files` (documents separated by `eos` when given) into DIR/<key>/tokens.bin, reusing
 * an existing cache with the same key. Returns the shard directory.
 */
export function buildShards(files: string[], tok: Encoder, tokenizerJson: string, cacheDir: string,
  opts: { eos?: number | null; log?: (s: string) => void } = {}): string {
  if (files.length === 0) throw new Error('no data files given');
  for (const f of files) if (!existsSync(f) || !statSync(f).isFile()) throw new Error(`data file not found: ${f}`);
  const eos = opts.eos ?? null;
  const key = cacheKey(files, tokenizerJson, eos);
  const dir = join(cacheDir, key);
  if (existsSync(join(dir, 'meta.json'))) { opts.log?.(`token cache hit: ${dir}`); return dir; }
  mkdirSync(cacheDir, { recursive: true });
  cleanStaleTemps(cacheDir);
  if (existsSync(dir)) removeDirAtomic(dir); // a dir without meta.json is not a finished cache
  const tmp = tempSibling(dir);
  mkdirSync(tmp);
  const wide = tok.vocabSize > 65535;
  const fd = openSync(join(tmp, 'tokens.bin'), 'w');
  const meta: ShardMeta = { version: 1, dtype: wide ? 'uint32' : 'uint16', tokens: 0, files: [], key, eos };
  try {
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      const t0 = performance.now();
      const ids = tok.encode(text);
      if (eos !== null) ids.push(eos);
      const arr = wide ? Uint32Array.from(ids) : Uint16Array.from(ids);
      writeAll(fd, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
      meta.tokens += ids.length;
      meta.files.push({ path: f, bytes: Buffer.byteLength(text), tokens: ids.length });
      opts.log?.(`tokenised ${f}: ${ids.length} tokens (${(Buffer.byteLength(text) / 1e6 / ((performance.now() - t0) / 1000)).toFixed(2)} MB/s)`);
    }
    fsyncSync(fd);
  } finally { closeSync(fd); }
  writeJsonAtomic(join(tmp, 'meta.json'), meta);
  try { publishDir(tmp, dir); } catch (e) { // another process published the same key first
    removeDirAtomic(tmp);
    if (!existsSync(join(dir, 'meta.json'))) throw e;
  }
  return dir;
}

/** Random-access view of a tokens.bin. */
export class TokenFile {
  readonly meta: ShardMeta;
  private fd: number;
  private readonly width: number;
  constructor(readonly dir: string) {
    const mp = join(dir, 'meta.json');
    if (!existsSync(mp)) throw new Error(`token shard ${dir} has no meta.json`);
    this.meta = readJsonFile(mp, 'token shard meta') as ShardMeta;
    if (!this.meta || typeof this.meta !== 'object' || !['uint16', 'uint32'].includes(this.meta.dtype) || !Number.isSafeInteger(this.meta.tokens) || this.meta.tokens < 0) {
      throw new Error(`${mp}: expected {"dtype": "uint16"|"uint32", "tokens": integer ≥ 0, …}`);
    }
    this.width = this.meta.dtype === 'uint32' ? 4 : 2;
    this.fd = openSync(join(dir, 'tokens.bin'), 'r');
    const size = statSync(join(dir, 'tokens.bin')).size;
    if (size !== this.meta.tokens * this.width) throw new Error(`token shard ${dir}: tokens.bin has ${size} bytes, meta says ${this.meta.tokens} tokens of ${this.width} bytes`);
  }
  get length(): number { return this.meta.tokens; }
  /** Tokens [start, start+n) into out (Int32Array) at outOff. */
  read(start: number, n: number, out: Int32Array, outOff = 0): void {
    if (start < 0 || start + n > this.meta.tokens) throw new Error(`token read [${start}, ${start + n}) out of range (${this.meta.tokens} tokens)`);
    const buf = Buffer.allocUnsafe(n * this.width);
    readSync(this.fd, buf, 0, buf.length, start * this.width);
    if (this.width === 2) for (let i = 0; i < n; i++) out[outOff + i] = buf.readUInt16LE(2 * i);
    else for (let i = 0; i < n; i++) out[outOff + i] = buf.readUInt32LE(4 * i);
  }
  close(): void { if (this.fd >= 0) { closeSync(this.fd); this.fd = -1; } }
}

export interface LoaderState { epoch: number; index: number; }

/**
 * A seeded random permutation of n items per epoch, walked in order. Its whole position is
 * {epoch, index}, so saving and restoring `state` resumes exactly.
 */
export class EpochOrder {
  private order: Int32Array = new Int32Array(0);
  private orderEpoch = -1;
  private pos: LoaderState = { epoch: 0, index: 0 };
  constructor(readonly n: number, private readonly seed: number) {}
  get state(): LoaderState { return this.pos; }
  /** Restore a position (from a checkpoint): non-negative integers, index within the epoch. */
  set state(s: LoaderState) {
    const ok = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
    if (!s || typeof s !== 'object' || !ok(s.epoch) || !ok(s.index) || s.index >= this.n) {
      throw new Error(`data position ${JSON.stringify(s)} is invalid: need integers epoch ≥ 0 and 0 ≤ index < ${this.n}`);
    }
    this.pos = { epoch: s.epoch, index: s.index };
  }
  /** The next item; `wrapped` is true when it was the last of its epoch. */
  next(): { item: number; wrapped: boolean } {
    const pos = this.pos;
    if (this.orderEpoch !== pos.epoch) {
      const o = Array.from({ length: this.n }, (_, i) => i);
      new Rng((this.seed * 1000003 + pos.epoch) >>> 0).shuffle(o);
      this.order = Int32Array.from(o);
      this.orderEpoch = pos.epoch;
    }
    const item = this.order[pos.index];
    const wrapped = ++pos.index >= this.n;
    if (wrapped) { pos.epoch++; pos.index = 0; }
    return { item, wrapped };
  }
}

/**
 * Batches of windows of T+1 tokens over a token range, visiting non-overlapping windows in a
 * seeded random order per epoch (EpochOrder), so resume is exact.
 */
export class WindowLoader {
  private readonly order: EpochOrder;
  readonly windows: number;
  constructor(private readonly file: TokenFile, private readonly start: number, private readonly end: number,
    readonly T: number, seed: number) {
    this.windows = Math.floor((end - start - 1) / T);
    if (this.windows < 1) throw new Error(`not enough tokens (${end - start}) for one window of ${T + 1}`);
    this.order = new EpochOrder(this.windows, seed);
  }
  get state(): LoaderState { return this.order.state; }
  set state(s: LoaderState) { this.order.state = s; }
/** Fill ids [B, T] and targets [B, T] (next tokens). */
  next(B: number, ids: Int32Array, targets: Int32Array): void {
    const T = this.T, row = new Int32Array(T + 1);
    for (let b = 0; b < B; b++) {
      const w = this.order.next().item;
      this.file.read(this.start + w * T, T + 1, row);
      ids.set(row.subarray(0, T), b * T);
      targets.set(row.subarray(1), b * T);
    }
  }
}

// Byte-level BPE (GPT-2 / RoBERTa style) with Hugging Face `tokenizers` tokenizer.json load/save
// and a trainer.
//
// Pipeline (encode): added/special tokens are cut out of the text as whole strings first; every
// other segment is pre-tokenised with GPT-2's regex, each piece is turned into UTF-8 bytes, each
// byte into the symbol of the standard 256-entry bytes→unicode table, and the symbols are merged
// by rank (GPT-2's loop: repeatedly merge every occurrence of the lowest-ranked adjacent pair).
// Decode is the exact inverse: token strings → bytes → UTF-8 (invalid sequences become U+FFFD,
// one per maximal invalid subpart, like Rust's `String::from_utf8_lossy` used by HF).
//
// Training follows HF's BpeTrainer so results line up with it: special tokens take the first ids
// (in the order given), then the 256 byte symbols sorted by code point (which is exactly GPT-2's
// encoder.json order for the first 256 entries), then one id per merge. At each step the most
// frequent adjacent pair is merged; ties go to the pair with the smaller (left id, right id) —
// HF's rule. Pair counts are updated incrementally through a pair → words index and a lazy
// max-heap, so each merge only touches the words that contain the pair.

import type { Tokenizer } from './types.js';
import { readFileSync, mkdirSync, existsSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import { parseJsonStrict, decodeUtf8 } from '../io/json.js';

// ---------------------------------------------------------------------------------------------
// Byte ↔ unicode table (GPT-2's bytes_to_unicode): printable bytes map to themselves, the other
// 68 bytes to U+0100.. in byte order, so every byte has a visible, non-whitespace symbol.

function buildByteTables(): { byteToChar: string[]; charToByte: Int16Array } {
  const byteToChar: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let extra = 0;
  for (let b = 0; b < 256; b++) byteToChar[b] = String.fromCharCode(printable(b) ? b : 256 + extra++);
  const charToByte = new Int16Array(256 + 68).fill(-1);
  for (let b = 0; b < 256; b++) charToByte[byteToChar[b].charCodeAt(0)] = b;
  return { byteToChar, charToByte };
}
const { byteToChar: BYTE_TO_CHAR, charToByte: CHAR_TO_BYTE } = buildByteTables();

/** The 256 byte symbols in byte order (index = byte value). */
export function bytesToUnicode(): string[] { return BYTE_TO_CHAR.slice(); }

/** Byte-level symbols of a string: UTF-8 bytes, each mapped through bytes_to_unicode. */
export function toByteLevel(text: string): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += BYTE_TO_CHAR[b];
  return s;
}

// Unicode White_Space, spelled out: this is what `\s` means in Python's `regex` module (the
// reference GPT-2 encoder) and in HF's onig regex. JS's `\s` differs (adds U+FEFF, lacks U+0085).
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
/** GPT-2's pre-tokenisation pattern, with `\s` made exact (see WS). */
export const GPT2_PATTERN =
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`;

function preTokenizeRegex(): RegExp { return new RegExp(GPT2_PATTERN, 'gu'); }

// ---------------------------------------------------------------------------------------------
// Open-addressing hash table keyed by an id pair (packed as two int32 keys): pair → (rank, merged id).

class PairTable {
  private mask: number;
  private ka: Int32Array;
  private kb: Int32Array;
  readonly rank: Int32Array;
  readonly merged: Int32Array;
  size = 0;
  constructor(expected: number) {
    let cap = 16;
    while (cap < expected * 2 + 1) cap <<= 1;
    this.mask = cap - 1;
    this.ka = new Int32Array(cap).fill(-1);
    this.kb = new Int32Array(cap);
    this.rank = new Int32Array(cap);
    this.merged = new Int32Array(cap);
  }
  private slot(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 0x632be5ab, 0x85ebca6b)) >>> 0;
  }
  /** Slot index of the pair, or -1. */
  find(a: number, b: number): number {
    let i = this.slot(a, b) & this.mask;
    const ka = this.ka, kb = this.kb, mask = this.mask;
    for (;;) {
      const x = ka[i];
      if (x === -1) return -1;
      if (x === a && kb[i] === b) return i;
      i = (i + 1) & mask;
    }
  }
  /** Inserts when absent (the first rank given for a pair wins, like HF). */
  insert(a: number, b: number, rank: number, merged: number): void {
    let i = this.slot(a, b) & this.mask;
    for (;;) {
      const x = this.ka[i];
      if (x === -1) break;
      if (x === a && this.kb[i] === b) return;
      i = (i + 1) & this.mask;
    }
    this.ka[i] = a; this.kb[i] = b; this.rank[i] = rank; this.merged[i] = merged;
    this.size++;
  }
}

// ---------------------------------------------------------------------------------------------
// Public types

/** An added token as in tokenizer.json's `added_tokens`. */
export interface AddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** Post-processing applied when `addSpecialTokens` is true (single sequences only). */
export type PostProcessor =
  | { type: 'ByteLevel' }
  | { type: 'Template'; prefix: number[]; suffix: number[]; raw: unknown };

export interface BPETokenizerInit {
  /** Model vocabulary token → id (byte-level strings). */
  vocab: Map<string, number> | Record<string, number>;
  /** Merges in rank order. */
  merges: Array<[string, string]>;
  addedTokens?: AddedToken[];
  /** ByteLevel pre-tokenizer add_prefix_space (default false). */
  addPrefixSpace?: boolean;
  /** ByteLevel pre-tokenizer use_regex (default true). */
  useRegex?: boolean;
  unkToken?: string | null;
  /** BPE ignore_merges: a pre-token that is itself in the vocab maps straight to its id. */
  ignoreMerges?: boolean;
  postProcessor?: PostProcessor;
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
}

export interface EncodeOptions {
  /** Apply the post-processor (HF's add_special_tokens, default true). GPT-2's ByteLevel
   *  post-processor adds nothing; a TemplateProcessing/Roberta/Bert one adds its tokens. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop tokens marked `special` (default false). */
  skipSpecialTokens?: boolean;
}

export interface TrainOptions {
  vocabSize: number;
  /** Stop when the best pair occurs fewer times than this (default 0: merge while any pair exists). */
  minFrequency?: number;
  /** Special tokens, given the first ids in this order (`<|endoftext|>` first → id 0). */
  specialTokens?: string[];
  /** Called every `progressEvery` merges (default 500). */
  onProgress?: (merges: number, vocabSize: number) => void;
  progressEvery?: number;
}

/** tokenizer.json as written by HF `tokenizers` (the parts we read/write). */
export interface TokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: AddedToken[];
  normalizer: null;
  pre_tokenizer: Record<string, unknown> | null;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown> | null;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: string | null;
    continuing_subword_prefix: string;
    end_of_word_suffix: string;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges?: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

const LONG_WORD = 48;

/** Token ids are int32 everywhere downstream: larger values would wrap (2^53 → 0). */
function isTokenId(id: unknown): id is number {
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 && id < 2 ** 31;
}

/** JSON of a value for a one-line message, cut to a readable length. */
function shortJson(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}
const CACHE_LIMIT = 200_000;

function escapeRegex(s: string): string { return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'); }

/** Guess bos/eos/pad from well-known special token spellings. */
function guessRoles(specials: string[]): { bos?: string; eos?: string; pad?: string } {
  const has = (s: string) => specials.includes(s);
  const r: { bos?: string; eos?: string; pad?: string } = {};
  if (has('<|endoftext|>')) { r.bos = '<|endoftext|>'; r.eos = '<|endoftext|>'; }
  if (has('<s>')) r.bos = '<s>';
  if (has('<|begin_of_text|>')) r.bos = '<|begin_of_text|>';
  if (has('</s>')) r.eos = '</s>';
  if (has('<|end_of_text|>')) r.eos = '<|end_of_text|>';
  for (const p of ['<pad>', '<|pad|>', '[PAD]', '<|padding|>']) if (has(p)) { r.pad = p; break; }
  return r;
}

// ---------------------------------------------------------------------------------------------

export class BPETokenizer implements Tokenizer {
  readonly type = 'bpe' as const;
  private vocab: Map<string, number>;
  private idToTok: (string | undefined)[];
  private mergeList: Array<[string, string]>;
  private table: PairTable;
  private byteIds: Int32Array;
  private added: AddedToken[];
  private addedById = new Map<number, AddedToken>();
  private addedByContent = new Map<string, AddedToken>();
  private splitRe: RegExp | null = null;
  private specialIds = new Set<number>();
  private preRe = preTokenizeRegex();
  private cache = new Map<string, number[]>();
  private tokenBytes: (Uint8Array | undefined)[] = [];
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private unkId: number;
  readonly addPrefixSpace: boolean;
  readonly useRegex: boolean;
  readonly ignoreMerges: boolean;
  readonly unkToken: string | null;
  readonly postProcessor: PostProcessor;
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  unkTokenId?: number;
  clsTokenId?: number;
  sepTokenId?: number;
  maskTokenId?: number;
  modelMaxLength?: number;
  chatTemplate?: string;
  /** Internal: words longer than this many bytes use the heap merge loop (tests lower it). */
  longWordThreshold = LONG_WORD;

  constructor(init: BPETokenizerInit) {
    this.vocab = init.vocab instanceof Map ? new Map(init.vocab) : new Map(Object.entries(init.vocab));
    this.idToTok = [];
    for (const [t, id] of this.vocab) {
      if (!isTokenId(id)) throw new Error(`vocab: id of token ${shortJson(t)} must be an integer in [0, 2^31), got ${shortJson(id)}`);
      if (this.idToTok[id] !== undefined) throw new Error(`vocab: id ${id} is used by both ${JSON.stringify(this.idToTok[id])} and ${JSON.stringify(t)}`);
      this.idToTok[id] = t;
    }
    this.addPrefixSpace = init.addPrefixSpace ?? false;
    this.useRegex = init.useRegex ?? true;
    this.ignoreMerges = init.ignoreMerges ?? false;
    this.unkToken = init.unkToken ?? null;
    this.postProcessor = init.postProcessor ?? { type: 'ByteLevel' };
    this.unkId = this.unkToken !== null ? (this.vocab.get(this.unkToken) ?? -1) : -1;
    if (this.unkToken !== null && this.unkId < 0) throw new Error(`unk_token ${JSON.stringify(this.unkToken)} is not in the vocab`);

    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(BYTE_TO_CHAR[b]) ?? -1;

    this.mergeList = init.merges.map(([a, b]) => [a, b]);
    this.table = new PairTable(this.mergeList.length);
    for (let r = 0; r < this.mergeList.length; r++) {
      const [a, b] = this.mergeList[r];
      const ia = this.vocab.get(a), ib = this.vocab.get(b), im = this.vocab.get(a + b);
      const missing = ia === undefined ? a : ib === undefined ? b : im === undefined ? a + b : null;
      if (missing !== null) throw new Error(`merges[${r}] ${JSON.stringify(`${a} ${b}`)}: token ${JSON.stringify(missing)} is not in the vocab`);
      this.table.insert(ia!, ib!, r, im!);
    }

    this.added = [];
    for (const t of init.addedTokens ?? []) this.addToken(t);
    this.rebuildSplit();

    const roles = guessRoles(this.added.filter((t) => t.special).map((t) => t.content));
    const idOf = (s: string | undefined) => (s === undefined ? undefined : this.tokenToId(s));
    this.bosTokenId = idOf(init.bosToken ?? roles.bos);
    this.eosTokenId = idOf(init.eosToken ?? roles.eos);
    this.padTokenId = idOf(init.padToken ?? roles.pad);
  }

  private addToken(t: AddedToken): void {
    if (!isTokenId(t.id)) throw new Error(`added_tokens: id of ${shortJson(t.content)} must be an integer in [0, 2^31), got ${shortJson(t.id)}`);
    if (typeof t.content !== 'string' || t.content.length === 0) throw new Error(`added_tokens: token ${t.id} has no content`);
    const tok: AddedToken = {
      id: t.id, content: t.content, single_word: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
      normalized: t.normalized ?? !t.special, special: !!t.special,
    };
    const prev = this.idToTok[tok.id];
    if (prev !== undefined && prev !== tok.content) throw new Error(`added_tokens: id ${tok.id} is ${JSON.stringify(tok.content)} but the vocab has ${JSON.stringify(prev)} there`);
    this.idToTok[tok.id] = tok.content;
    this.added.push(tok);
    this.addedById.set(tok.id, tok);
    this.addedByContent.set(tok.content, tok);
    if (tok.special) this.specialIds.add(tok.id);
  }

  private rebuildSplit(): void {
    if (this.added.length === 0) { this.splitRe = null; return; }
    const toks = this.added.slice().sort((x, y) => y.content.length - x.content.length || x.id - y.id);
    const ws = `[${WS}]*`, wordCh = '[\\p{L}\\p{N}_]';
    const alts = toks.map((t) => {
      let p = `(${escapeRegex(t.content)})`;
      if (t.lstrip) p = ws + p;
      if (t.rstrip) p = p + ws;
      if (t.single_word) p = `(?<!${wordCh})${p}(?!${wordCh})`;
      return p;
    });
    this.splitRe = new RegExp(alts.join('|'), 'gu');
    this.splitOrder = toks;
  }
  private splitOrder: AddedToken[] = [];

  /** Adds special tokens (HF `add_special_tokens`): existing ones are only marked special. */
  addSpecialTokens(tokens: string[]): number[] {
    const ids: number[] = [];
    for (const content of tokens) {
      const have = this.addedByContent.get(content);
      if (have) { have.special = true; this.specialIds.add(have.id); ids.push(have.id); continue; }
      const id = this.vocab.get(content) ?? this.idToTok.length;
      this.addToken({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
      ids.push(id);
    }
    this.rebuildSplit();
    this.cache.clear();
    return ids;
  }

  // ------------------------------------------------------------------------------- accessors

  get vocabSize(): number {
    let n = this.vocab.size;
    for (const t of this.added) if (this.vocab.get(t.content) !== t.id) n++;
    return n;
  }
  /** Special tokens (content → id). */
  get specialTokens(): Record<string, number> {
    const r: Record<string, number> = {};
    for (const t of this.added) if (t.special) r[t.content] = t.id;
    return r;
  }
  get addedTokens(): AddedToken[] { return this.added.map((t) => ({ ...t })); }
  get merges(): Array<[string, string]> { return this.mergeList.map(([a, b]) => [a, b]); }
  getVocab(): Map<string, number> {
    const m = new Map(this.vocab);
    for (const t of this.added) m.set(t.content, t.id);
    return m;
  }
  idToToken(id: number): string | undefined { return this.idToTok[id]; }
  tokenToId(token: string): number | undefined { return this.addedByContent.get(token)?.id ?? this.vocab.get(token); }
  isSpecialId(id: number): boolean { return this.specialIds.has(id); }

  // ------------------------------------------------------------------------------- encoding

  encode(text: string, opts?: EncodeOptions): number[] {
    const out: number[] = [];
    const re = this.splitRe;
    if (re === null) this.encodeOrdinary(text, out);
    else {
      re.lastIndex = 0;
      let last = 0, m: RegExpExecArray | null;
      while ((m = re.exec(text)) !== null) {
        if (m.index > last) this.encodeOrdinary(text.slice(last, m.index), out);
        let k = 1;
        while (m[k] === undefined) k++;
        out.push(this.splitOrder[k - 1].id);
        last = m.index + m[0].length;
      }
      if (last < text.length) this.encodeOrdinary(text.slice(last), out);
    }
    if ((opts?.addSpecialTokens ?? true) && this.postProcessor.type === 'Template') {
      return [...this.postProcessor.prefix, ...out, ...this.postProcessor.suffix];
    }
    return out;
  }

  /** Token strings for `text` (no post-processing). */
  tokenize(text: string): string[] {
    return this.encode(text, { addSpecialTokens: false }).map((id) => this.idToTok[id]!);
  }

  /** Encodes text that contains no added tokens (one segment). */
  private encodeOrdinary(segment: string, out: number[]): void {
    if (segment.length === 0) return;
    if (this.addPrefixSpace && segment.charCodeAt(0) !== 0x20) segment = ' ' + segment;
    if (!this.useRegex) { this.encodeWord(segment, out); return; }
    const re = this.preRe, cache = this.cache;
    re.lastIndex = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(segment)) !== null) {
      const w = m[0];
      const hit = cache.get(w);
      if (hit !== undefined) {
        for (let i = 0; i < hit.length; i++) out.push(hit[i]);
      } else this.encodeWord(w, out);
    }
  }

  private encodeWord(word: string, out: number[]): void {
    const ids = this.bpe(word);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  /** BPE of one pre-token (raw text) → ids. */
  private bpe(word: string): number[] {
    const syms: number[] = [];
    const byteIds = this.byteIds;
    const pushByte = (b: number) => {
      const id = byteIds[b];
      if (id >= 0) syms.push(id);
      else if (this.unkId >= 0) syms.push(this.unkId);
    };
    for (let i = 0; i < word.length; i++) {
      let c = word.charCodeAt(i);
      if (c < 0x80) { pushByte(c); continue; }
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < word.length) {
        const d = word.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
      }
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate: what UTF-8 encoders write
      if (c < 0x800) { pushByte(0xc0 | (c >> 6)); pushByte(0x80 | (c & 63)); }
      else if (c < 0x10000) { pushByte(0xe0 | (c >> 12)); pushByte(0x80 | ((c >> 6) & 63)); pushByte(0x80 | (c & 63)); }
      else { pushByte(0xf0 | (c >> 18)); pushByte(0x80 | ((c >> 12) & 63)); pushByte(0x80 | ((c >> 6) & 63)); pushByte(0x80 | (c & 63)); }
    }
    if (this.ignoreMerges) {
      const direct = this.vocab.get(toByteLevel(word));
      if (direct !== undefined) return [direct];
    }
    if (syms.length < 2) return syms;
    return syms.length > this.longWordThreshold ? this.mergeLong(syms) : this.mergeShort(syms);
  }

  /** GPT-2's loop: find the lowest-ranked adjacent pair, merge all its occurrences left to right. */
  private mergeShort(syms: number[]): number[] {
    const table = this.table, rank = table.rank, merged = table.merged;
    let n = syms.length;
    while (n > 1) {
      let best = 0x7fffffff, a = -1, b = -1, m = -1;
      for (let i = 0; i < n - 1; i++) {
        const s = table.find(syms[i], syms[i + 1]);
        if (s >= 0 && rank[s] < best) { best = rank[s]; a = syms[i]; b = syms[i + 1]; m = merged[s]; }
      }
      if (a < 0) break;
      let w = 0;
      for (let i = 0; i < n;) {
        if (i < n - 1 && syms[i] === a && syms[i + 1] === b) { syms[w++] = m; i += 2; }
        else syms[w++] = syms[i++];
      }
      n = w;
    }
    syms.length = n;
    return syms;
  }

  /** Same result as mergeShort in O(n log n): a linked list of symbols and a min-heap of
   *  (rank, position); all occurrences of one rank are merged in one round (left to right), and
   *  the pairs that round creates enter the heap only after it, exactly like GPT-2's loop. */
  private mergeLong(syms: number[]): number[] {
    const table = this.table, rank = table.rank, merged = table.merged;
    const n = syms.length;
    const id = Int32Array.from(syms), next = new Int32Array(n), prev = new Int32Array(n);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const SHIFT = 4294967296;
    const heap = new MinHeap();
    const pushPair = (p: number) => {
      const q = next[p];
      if (p < 0 || q < 0) return;
      const s = table.find(id[p], id[q]);
      if (s >= 0) heap.push(rank[s] * SHIFT + p);
    };
    for (let i = 0; i + 1 < n; i++) pushPair(i);
    const touched: number[] = [];
    while (heap.size > 0) {
      const r = Math.floor(heap.peek() / SHIFT);
      touched.length = 0;
      while (heap.size > 0 && Math.floor(heap.peek() / SHIFT) === r) {
        const p = heap.pop() % SHIFT;
        if (id[p] < 0) continue;
        const q = next[p];
        if (q < 0) continue;
        const s = table.find(id[p], id[q]);
        if (s < 0 || rank[s] !== r) continue;
        id[p] = merged[s];
        id[q] = -1;
        const qn = next[q];
        next[p] = qn;
        if (qn >= 0) prev[qn] = p;
        touched.push(p);
      }
      for (const p of touched) {
        if (id[p] < 0) continue;
        if (prev[p] >= 0) pushPair(prev[p]);
        pushPair(p);
      }
    }
    const out: number[] = [];
    for (let p = 0; p >= 0; p = next[p]) out.push(id[p]);
    return out;
  }

  // ------------------------------------------------------------------------------- decoding

  private bytesOf(id: number): Uint8Array | undefined {
    let b = this.tokenBytes[id];
    if (b !== undefined) return b;
    const tok = this.idToTok[id];
    if (tok === undefined) return undefined;
    const arr = new Uint8Array(tok.length);
    let ok = true;
    for (let i = 0; i < tok.length; i++) {
      const c = tok.charCodeAt(i);
      const v = c < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[c] : -1;
      if (v < 0) { ok = false; break; }
      arr[i] = v;
    }
    // HF ByteLevel decoder: a token with any char outside the table is emitted as its own UTF-8.
    b = ok ? arr : new Uint8Array(Buffer.from(tok, 'utf8'));
    this.tokenBytes[id] = b;
    return b;
  }

  /** UTF-8 bytes of the token sequence (before UTF-8 decoding). Unknown ids are skipped. */
  decodeBytes(ids: ArrayLike<number>, opts?: DecodeOptions): Uint8Array {
    const skip = opts?.skipSpecialTokens ?? false;
    let total = 0;
    const parts: Uint8Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (skip && this.specialIds.has(id)) continue;
      const b = this.bytesOf(id);
      if (b === undefined) continue;
      parts.push(b);
      total += b.length;
    }
    const buf = new Uint8Array(total);
    let o = 0;
    for (const p of parts) { buf.set(p, o); o += p.length; }
    return buf;
  }

  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string {
    return this.decoder.decode(this.decodeBytes(ids, opts));
  }

  // ------------------------------------------------------------------------------- files

  toTokenizerJson(): TokenizerJson {
    const vocab: Record<string, number> = {};
    const entries = [...this.vocab].sort((x, y) => x[1] - y[1]);
    for (const [t, id] of entries) vocab[t] = id;
    const byteLevel = { type: 'ByteLevel', add_prefix_space: this.addPrefixSpace, trim_offsets: true, use_regex: this.useRegex };
    const post: Record<string, unknown> = this.postProcessor.type === 'Template'
      ? (this.postProcessor.raw as Record<string, unknown>)
      : { type: 'ByteLevel', add_prefix_space: this.addPrefixSpace, trim_offsets: false, use_regex: this.useRegex };
    const model: TokenizerJson['model'] = {
      type: 'BPE', dropout: null, unk_token: this.unkToken, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false,
      ...(this.ignoreMerges ? { ignore_merges: true } : {}),
      vocab, merges: this.mergeList.map(([a, b]) => `${a} ${b}`),
    };
    return {
      version: '1.0', truncation: null, padding: null,
      added_tokens: this.added.slice().sort((x, y) => x.id - y.id).map((t) => ({ ...t })),
      normalizer: null, pre_tokenizer: byteLevel, post_processor: post, decoder: { ...byteLevel, trim_offsets: true },
      model,
    };
  }

  /**
   * Writes DIR/tokenizer.json atomically (temp file + rename); with a chat template also
   * DIR/tokenizer_config.json (chat_template and role tokens, merged into one already there).
   * Returns tokenizer.json's path.
   */
  save(dir: string): string {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'tokenizer.json');
    if (this.chatTemplate !== undefined) {
      const cfgPath = join(dir, 'tokenizer_config.json');
      let cfg: Record<string, unknown> = {};
      if (existsSync(cfgPath)) {
        const old = readJsonFile(cfgPath);
        if (old === null || typeof old !== 'object' || Array.isArray(old)) throw new Error(`${cfgPath}: expected a JSON object`);
        cfg = old as Record<string, unknown>;
      }
      for (const [k, id] of [['bos_token', this.bosTokenId], ['eos_token', this.eosTokenId], ['pad_token', this.padTokenId]] as const) {
        const t = id === undefined ? undefined : this.idToTok[id];
        if (t !== undefined) cfg[k] = t;
      }
      if (this.modelMaxLength !== undefined) cfg.model_max_length = this.modelMaxLength;
      cfg.chat_template = this.chatTemplate;
      writeFileAtomic(cfgPath, JSON.stringify(cfg, null, 2) + '\n');
    }
    writeFileAtomic(path, JSON.stringify(this.toTokenizerJson(), null, 2) + '\n');
    return path;
  }

  /** Loads a HF tokenizer.json (parsed object or file path). Byte-level BPE only. */
  static fromTokenizerJson(src: unknown, opts?: { bosToken?: string; eosToken?: string; padToken?: string }): BPETokenizer {
    let obj: unknown = src, where = 'tokenizer.json';
    if (typeof src === 'string') {
      where = src;
      obj = readJsonFile(src);
    }
    return fromJsonObject(obj, where, opts ?? {});
  }

  /** Loads OpenAI's original GPT-2 files: encoder.json (token → id) and vocab.bpe (merges). */
  static fromGpt2Files(encoderJsonPath: string, vocabBpePath: string): BPETokenizer {
    const enc = readJsonFile(encoderJsonPath);
    if (typeof enc !== 'object' || enc === null || Array.isArray(enc)) throw new Error(`${encoderJsonPath}: expected a JSON object mapping token → id`);
    const vocab = new Map<string, number>();
    for (const [t, id] of Object.entries(enc as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id)) throw new Error(`${encoderJsonPath}: id of token ${JSON.stringify(t)} is not an integer`);
      vocab.set(t, id);
    }
    const text = readTextFile(vocabBpePath);
    const merges: Array<[string, string]> = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/\r$/, '');
      if (line === '' || (i === 0 && line.startsWith('#version'))) continue;
      const parts = line.split(' ');
      if (parts.length !== 2) throw new Error(`${vocabBpePath}:${i + 1}: expected "left right", got ${JSON.stringify(line)}`);
      merges.push([parts[0], parts[1]]);
    }
    const added: AddedToken[] = [];
    const eot = vocab.get('<|endoftext|>');
    if (eot !== undefined) added.push({ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
    try {
      return new BPETokenizer({ vocab, merges, addedTokens: added });
    } catch (e) {
      throw new Error(`${encoderJsonPath} + ${vocabBpePath}: ${(e as Error).message}`);
    }
  }

  // ------------------------------------------------------------------------------- training

  static train(texts: Iterable<string>, opts: TrainOptions): BPETokenizer {
    const vocabSize = opts.vocabSize;
    const minFreq = opts.minFrequency ?? 0;
    const specials: string[] = [];
    for (const s of opts.specialTokens ?? []) {
      if (typeof s !== 'string' || s.length === 0) throw new Error('train: special tokens must be non-empty strings');
      if (!specials.includes(s)) specials.push(s);
    }
    if (!Number.isInteger(vocabSize) || vocabSize < specials.length + 256) {
      throw new Error(`train: vocabSize must be an integer ≥ ${specials.length + 256} (256 byte symbols + ${specials.length} special tokens), got ${vocabSize}`);
    }

    // 1. Count pre-tokenised words (special tokens are cut out, not counted).
    const counts = new Map<string, number>();
    const re = preTokenizeRegex();
    const splitRe = specials.length
      ? new RegExp(specials.slice().sort((a, b) => b.length - a.length).map(escapeRegex).join('|'), 'gu') : null;
    const countSeg = (seg: string) => {
      re.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = re.exec(seg)) !== null) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    };
    for (const text of texts) {
      if (typeof text !== 'string') throw new Error('train: texts must be strings');
      if (splitRe) { for (const seg of text.split(splitRe)) if (seg) countSeg(seg); } else countSeg(text);
    }

    // 2. Initial vocab: specials, then the 256 byte symbols sorted by code point.
    const tokens: string[] = [];
    const tokId = new Map<string, number>();
    for (const s of specials) { tokId.set(s, tokens.length); tokens.push(s); }
    const alphabet = BYTE_TO_CHAR.slice().sort((x, y) => x.charCodeAt(0) - y.charCodeAt(0));
    for (const c of alphabet) {
      if (tokId.has(c)) throw new Error(`train: special token ${JSON.stringify(c)} collides with a byte symbol`);
      tokId.set(c, tokens.length); tokens.push(c);
    }
    const byteId = new Int32Array(256);
    for (let b = 0; b < 256; b++) byteId[b] = tokId.get(BYTE_TO_CHAR[b])!;

    const words: Int32Array[] = [];
    const freq: number[] = [];
    for (const [w, c] of counts) {
      const bytes = Buffer.from(w, 'utf8');
      const arr = new Int32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) arr[i] = byteId[bytes[i]];
      words.push(arr); freq.push(c);
    }
    counts.clear();

    // 3. Pair counts and pair → words index.
    const M = vocabSize;
    const pairCount = new Map<number, number>();
    const where = new Map<number, number[]>();
    const addWhere = (key: number, w: number) => {
      const l = where.get(key);
      if (l === undefined) where.set(key, [w]);
      else if (l[l.length - 1] !== w) l.push(w);
    };
    for (let w = 0; w < words.length; w++) {
      const s = words[w], c = freq[w];
      for (let i = 0; i + 1 < s.length; i++) {
        const key = s[i] * M + s[i + 1];
        pairCount.set(key, (pairCount.get(key) ?? 0) + c);
        addWhere(key, w);
      }
    }
    const heap = new PairHeap();
    for (const [key, c] of pairCount) heap.push(c, key);

    // 4. Merge loop.
    const merges: Array<[string, string]> = [];
    const seen = new Int32Array(words.length);
    let stamp = 0;
    const every = opts.progressEvery ?? 500;
    while (tokens.length < vocabSize && heap.size > 0) {
      const top = heap.pop();
      const cur = pairCount.get(top.key) ?? 0;
      if (cur !== top.count) {
        if (cur > 0 && cur < top.count) heap.push(cur, top.key);
        continue;
      }
      if (cur < minFreq || cur <= 0) break;
      const a = Math.floor(top.key / M), b = top.key - a * M;
      const str = tokens[a] + tokens[b];
      let nid = tokId.get(str);
      if (nid === undefined) { nid = tokens.length; tokId.set(str, nid); tokens.push(str); }
      merges.push([tokens[a], tokens[b]]);

      stamp++;
      const grown: number[] = [];
      const list = where.get(top.key) ?? [];
      where.delete(top.key);
      for (const w of list) {
        if (seen[w] === stamp) continue;
        seen[w] = stamp;
        const s = words[w];
        let found = false;
        for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) { found = true; break; }
        if (!found) continue;
        const c = freq[w];
        const ns = new Int32Array(s.length);
        let n = 0;
        for (let i = 0; i < s.length;) {
          if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { ns[n++] = nid; i += 2; } else ns[n++] = s[i++];
        }
        for (let i = 0; i + 1 < s.length; i++) {
          const key = s[i] * M + s[i + 1];
          const v = pairCount.get(key)! - c;
          if (v === 0) pairCount.delete(key); else pairCount.set(key, v);
        }
        const nw = ns.subarray(0, n);
        for (let i = 0; i + 1 < n; i++) {
          const key = nw[i] * M + nw[i + 1];
          pairCount.set(key, (pairCount.get(key) ?? 0) + c);
          if (nw[i] === nid || nw[i + 1] === nid) { addWhere(key, w); grown.push(key); }
        }
        words[w] = nw.slice();
      }
      if (grown.length) {
        const uniq = new Set(grown);
        for (const key of uniq) { const v = pairCount.get(key); if (v !== undefined && v > 0) heap.push(v, key); }
      }
      if (opts.onProgress && merges.length % every === 0) opts.onProgress(merges.length, tokens.length);
    }

    const vocab = new Map<string, number>();
    tokens.forEach((t, i) => vocab.set(t, i));
    const added: AddedToken[] = specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
    return new BPETokenizer({ vocab, merges, addedTokens: added });
  }
}

// ---------------------------------------------------------------------------------------------
// Heaps

/** Min-heap of numbers. */
class MinHeap {
  private a: number[] = [];
  get size(): number { return this.a.length; }
  peek(): number { return this.a[0]; }
  push(v: number): void {
    const a = this.a;
    let i = a.length;
    a.push(v);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= v) break;
      a[i] = a[p]; i = p;
    }
    a[i] = v;
  }
  pop(): number {
    const a = this.a, top = a[0], last = a.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1] < a[c]) c++;
        if (a[c] >= last) break;
        a[i] = a[c]; i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

/** Max-heap by count; equal counts: smaller pair key (= smaller (left id, right id)) first. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get size(): number { return this.c.length; }
  private better(c1: number, k1: number, c2: number, k2: number): boolean { return c1 > c2 || (c1 === c2 && k1 < k2); }
  push(count: number, key: number): void {
    const C = this.c, K = this.k;
    let i = C.length;
    C.push(count); K.push(key);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(count, key, C[p], K[p])) break;
      C[i] = C[p]; K[i] = K[p]; i = p;
    }
    C[i] = count; K[i] = key;
  }
  pop(): { count: number; key: number } {
    const C = this.c, K = this.k;
    const top = { count: C[0], key: K[0] };
    const lc = C.pop()!, lk = K.pop()!;
    const n = C.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let ch = 2 * i + 1;
        if (ch >= n) break;
        if (ch + 1 < n && this.better(C[ch + 1], K[ch + 1], C[ch], K[ch])) ch++;
        if (!this.better(C[ch], K[ch], lc, lk)) break;
        C[i] = C[ch]; K[i] = K[ch]; i = ch;
      }
      C[i] = lc; K[i] = lk;
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json parsing

/** Largest tokenizer file we read (GPT-2's tokenizer.json is 1.4 MB; big multilingual ones ~20 MB). */
const MAX_TOKENIZER_FILE_BYTES = 512 << 20;

function readTextFile(path: string): string {
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  const st = statSync(path);
  if (st.isDirectory()) throw new Error(`${path}: is a directory, expected a file`);
  if (st.size > MAX_TOKENIZER_FILE_BYTES) throw new Error(`${path}: ${st.size} bytes is larger than the ${MAX_TOKENIZER_FILE_BYTES}-byte limit for a tokenizer file`);
  return decodeUtf8(readFileSync(path), path);
}

/** Parsed JSON; invalid JSON, invalid UTF-8 and duplicate keys (a token listed twice) name the file. */
function readJsonFile(path: string): unknown {
  return parseJsonStrict(readTextFile(path), path);
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

function fromJsonObject(obj: unknown, where: string, opts: { bosToken?: string; eosToken?: string; padToken?: string }): BPETokenizer {
  const fail = (field: string, msg: string): never => { throw new Error(`${where}: ${field}: ${msg}`); };
  if (!isObj(obj)) fail('(root)', 'expected a JSON object');
  const root = obj as Obj;
  const model = root.model;
  if (!isObj(model)) return fail('model', 'missing or not an object');
  const mtype = model.type ?? (model.merges !== undefined ? 'BPE' : undefined);
  if (mtype !== 'BPE') fail('model.type', `${JSON.stringify(mtype ?? null)} is not supported (only "BPE"; WordPiece/Unigram/WordLevel are not byte-level BPE)`);
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) fail('model.dropout', 'BPE dropout is not supported');
  if (model.byte_fallback === true) fail('model.byte_fallback', 'byte_fallback (SentencePiece-style BPE) is not supported');
  for (const f of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    const v = model[f];
    if (v !== undefined && v !== null && v !== '') fail(`model.${f}`, `${JSON.stringify(v)} is not supported (must be empty for byte-level BPE)`);
  }
  if (!isObj(model.vocab)) fail('model.vocab', 'missing or not an object');
  if (!Array.isArray(model.merges)) fail('model.merges', 'missing or not an array');
  const merges: Array<[string, string]> = (model.merges as unknown[]).map((m, i) => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2) fail(`model.merges[${i}]`, `expected "left right", got ${JSON.stringify(m)}`);
      return [parts[0], parts[1]];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    return fail(`model.merges[${i}]`, `expected "left right" or ["left","right"], got ${JSON.stringify(m)}`);
  });

  if (root.normalizer !== undefined && root.normalizer !== null) {
    const n = root.normalizer as Obj;
    fail('normalizer', `${JSON.stringify(isObj(n) ? n.type : n)} is not supported (only null)`);
  }

  // pre_tokenizer: ByteLevel, or a Sequence holding exactly one ByteLevel.
  let pre = root.pre_tokenizer as unknown;
  if (isObj(pre) && pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) && pre.pretokenizers.length === 1) pre = pre.pretokenizers[0];
  if (!isObj(pre) || pre.type !== 'ByteLevel') {
    fail('pre_tokenizer', `${JSON.stringify(isObj(pre) ? pre.type : pre ?? null)} is not supported (only "ByteLevel")`);
  }
  const preObj = pre as Obj;

  const dec = root.decoder as unknown;
  if (dec !== undefined && dec !== null && !(isObj(dec) && dec.type === 'ByteLevel')) {
    fail('decoder', `${JSON.stringify(isObj(dec) ? dec.type : dec)} is not supported (only "ByteLevel")`);
  }

  const vocab = new Map<string, number>();
  const tokenOfId = new Map<number, string>();
  for (const [t, id] of Object.entries(model.vocab as Obj)) {
    if (!isTokenId(id)) fail('model.vocab', `id of ${shortJson(t)} must be an integer in [0, 2^31), got ${shortJson(id)}`);
    const other = tokenOfId.get(id as number);
    if (other !== undefined) fail('model.vocab', `id ${id} is used by both ${shortJson(other)} and ${shortJson(t)}`);
    tokenOfId.set(id as number, t);
    vocab.set(t, id as number);
  }
  // Byte-level BPE encodes every byte through its symbol: a missing one would silently drop
  // characters (HF does) — refuse the file instead.
  for (let b = 0; b < 256; b++) {
    if (!vocab.has(BYTE_TO_CHAR[b])) fail('model.vocab', `byte-level symbol ${shortJson(BYTE_TO_CHAR[b])} (byte 0x${b.toString(16).padStart(2, '0')}) is missing, so text containing that byte could not be encoded`);
  }

  const added: AddedToken[] = [];
  const addedByContent = new Map<string, { id: number; content: string }>(), addedById = new Map<number, { id: number; content: string }>();
  if (root.added_tokens !== undefined && root.added_tokens !== null) {
    if (!Array.isArray(root.added_tokens)) fail('added_tokens', 'not an array');
    (root.added_tokens as unknown[]).forEach((t, i) => {
      if (!isObj(t) || typeof t.id !== 'number' || typeof t.content !== 'string') return fail(`added_tokens[${i}]`, 'expected {id, content, ...}');
      if (!isTokenId(t.id)) return fail(`added_tokens[${i}]`, `id must be an integer in [0, 2^31), got ${shortJson(t.id)}`);
      if (t.content === '') return fail(`added_tokens[${i}]`, 'content is empty');
      const twin = addedByContent.get(t.content) ?? addedById.get(t.id);
      if (twin) return fail(`added_tokens[${i}]`, `${shortJson(t.content)} (id ${t.id}) repeats added token ${shortJson(twin.content)} (id ${twin.id})`);
      const inVocab = vocab.get(t.content);
      if (inVocab !== undefined && inVocab !== t.id) return fail(`added_tokens[${i}]`, `${shortJson(t.content)} has id ${t.id} but the vocab gives it id ${inVocab}`);
      { const e = { id: t.id, content: t.content }; addedByContent.set(t.content, e); addedById.set(t.id, e); }
      added.push({
        id: t.id, content: t.content, single_word: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
        normalized: t.normalized === undefined ? !t.special : !!t.normalized, special: !!t.special,
      });
    });
  }
  const isKnownId = (id: unknown): boolean => isTokenId(id) && (tokenOfId.has(id) || addedById.has(id));
  const idOfSpecial = (s: string, field: string): number => {
    const id = addedByContent.get(s)?.id ?? vocab.get(s);
    if (id === undefined) return fail(field, `token ${JSON.stringify(s)} is not in the vocab`);
    return id;
  };

  // post_processor: ByteLevel / null (adds nothing), TemplateProcessing / Roberta / Bert (single sequence).
  let post: PostProcessor = { type: 'ByteLevel' };
  const pp = root.post_processor as unknown;
  if (isObj(pp) && pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    const rest = (pp.processors as unknown[]).filter((p) => !(isObj(p) && p.type === 'ByteLevel'));
    if (rest.length > 1) fail('post_processor', 'a Sequence with more than one non-ByteLevel processor is not supported');
    if (rest.length === 1) post = parsePost(rest[0], pp);
  } else if (pp !== undefined && pp !== null && !(isObj(pp) && pp.type === 'ByteLevel')) post = parsePost(pp, pp);
  function parsePost(p: unknown, raw: unknown): PostProcessor {
    if (!isObj(p)) return fail('post_processor', 'expected an object');
    if (p.type === 'TemplateProcessing') {
      if (!Array.isArray(p.single)) return fail('post_processor.single', 'missing');
      const prefix: number[] = [], suffix: number[] = [];
      let seenA = false;
      for (const piece of p.single as unknown[]) {
        if (isObj(piece) && isObj(piece.Sequence)) { seenA = true; continue; }
        if (isObj(piece) && isObj(piece.SpecialToken) && typeof piece.SpecialToken.id === 'string') {
          const name = piece.SpecialToken.id;
          const sp = isObj(p.special_tokens) ? (p.special_tokens as Obj)[name] : undefined;
          const ids = isObj(sp) && Array.isArray(sp.ids) ? (sp.ids as unknown[]) : [idOfSpecial(name, 'post_processor.single')];
          ids.forEach((id) => { if (!isKnownId(id)) fail(`post_processor.special_tokens.${name}`, `id ${shortJson(id)} is not a token id of this tokenizer`); });
          (seenA ? suffix : prefix).push(...(ids as number[]));
          continue;
        }
        return fail('post_processor.single', `unsupported piece ${JSON.stringify(piece)}`);
      }
      return { type: 'Template', prefix, suffix, raw };
    }
    if (p.type === 'RobertaProcessing' || p.type === 'BertProcessing') {
      const cls = p.cls as unknown[], sep = p.sep as unknown[];
      if (!Array.isArray(cls) || !Array.isArray(sep)) return fail('post_processor', 'cls/sep missing');
      if (!isKnownId(cls[1])) fail('post_processor.cls', `id ${shortJson(cls[1])} is not a token id of this tokenizer`);
      if (!isKnownId(sep[1])) fail('post_processor.sep', `id ${shortJson(sep[1])} is not a token id of this tokenizer`);
      return { type: 'Template', prefix: [cls[1] as number], suffix: [sep[1] as number], raw };
    }
    return fail('post_processor', `${JSON.stringify(p.type)} is not supported (ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing)`);
  }

  try {
    return new BPETokenizer({
      vocab, merges, addedTokens: added,
      addPrefixSpace: !!preObj.add_prefix_space,
      useRegex: preObj.use_regex === undefined ? true : !!preObj.use_regex,
      unkToken: typeof model.unk_token === 'string' ? model.unk_token : null,
      ignoreMerges: model.ignore_merges === true,
      postProcessor: post,
      ...opts,
    });
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

// WordPiece (BERT) tokenizer with Hugging Face `tokenizers` tokenizer.json / vocab.txt load+save
// and a trainer.
//
// Encode follows HF's fast BERT tokenizer step by step: added tokens that are not `normalized`
// ([CLS], [MASK]…) are cut out of the raw text first; each other segment goes through
// BertNormalizer (drop NUL/U+FFFD/control chars and map whitespace to ' ', pad CJK ideographs with
// spaces, strip accents = NFD + drop Mn marks, lowercase char by char), normalized added tokens
// are cut out of the result, BertPreTokenizer splits on whitespace and isolates every punctuation
// char (Unicode P* plus ASCII symbols, as BERT does), and each word is split greedily
// longest-match-first with the `##` continuation prefix; a word that cannot be split, or has more
// than max_input_chars_per_word code points, becomes [UNK]. Lengths are counted in code points
// (Rust chars), not UTF-16 units.
//
// Training (`WordPieceTokenizer.train`) works like HF's WordPieceTrainer: a BPE over the
// pre-tokenized words where every non-initial char carries the `##` prefix; the most frequent
// adjacent pair is merged (ties: smaller left id, then smaller right id), the merged token keeps
// the left part's prefix. The vocabulary is the special tokens, the alphabet (plain chars, then
// `##` chars, each by code point) and the merged tokens in merge order; the merges themselves are
// dropped (WordPiece encodes by longest match).

import type { Tokenizer, EncodeOpts, DecodeOpts } from './types.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { readVocabTxt } from './vocab.js';

// ---------------------------------------------------------------------------------------------
// Character classes (HF tokenizers' normalizers/bert.rs and pre_tokenizers/bert.rs).

const OTHER_RE = /\p{C}/u; // Cc Cf Cs Co Cn: Rust's is_other()
const WS_RE = /\p{White_Space}/u;
const MN_RE = /\p{Mn}/gu;
// Unicode punctuation, plus the ASCII ranges 33–47, 58–64, 91–96, 123–126 ($ + < = > ^ ` | ~ are symbols in Unicode).
const PUNCT = '\\p{P}!-\\/:-@\\[-`{-~';
const PRE_TOKEN_RE = new RegExp(`[^\\p{White_Space}${PUNCT}]+|[${PUNCT}]`, 'gu');

function isControl(ch: string): boolean {
  return ch !== '\t' && ch !== '\n' && ch !== '\r' && OTHER_RE.test(ch);
}

function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df)
    || (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf)
    || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

export interface BertNormalizerOptions {
  cleanText: boolean;
  handleChineseChars: boolean;
  /** null: follow `lowercase` (HF's default). */
  stripAccents: boolean | null;
  lowercase: boolean;
}

/** BertNormalizer as HF `tokenizers` applies it. */
export function bertNormalize(text: string, o: BertNormalizerOptions): string {
  let s = text;
  if (o.cleanText || o.handleChineseChars) {
    s = '';
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      if (o.cleanText) {
        if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
        if (ch === '\t' || ch === '\n' || ch === '\r' || WS_RE.test(ch)) { s += ' '; continue; }
      }
      s += o.handleChineseChars && isChineseChar(cp) ? ` ${ch} ` : ch;
    }
  }
  if (o.stripAccents ?? o.lowercase) s = s.normalize('NFD').replace(MN_RE, '');
  if (o.lowercase) {
    // Char by char like Rust's char::to_lowercase (no final-sigma context rule).
    if (/^[\x00-\x7f]*$/.test(s)) s = s.toLowerCase();
    else { let t = ''; for (const ch of s) t += ch.toLowerCase(); s = t; }
  }
  return s;
}

/** BertPreTokenizer: words split on whitespace, each punctuation char its own word. */
export function bertPreTokenize(text: string): string[] {
  return text.match(PRE_TOKEN_RE) ?? [];
}

// ---------------------------------------------------------------------------------------------
// Public types

export interface WordPieceAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** One piece of a post-processing template. */
export type TemplatePiece = { special: string; typeId: number } | { sequence: 'A' | 'B'; typeId: number };

export interface WordPiecePostProcessor {
  single: TemplatePiece[];
  pair: TemplatePiece[];
  /** Template special-token name → ids. */
  specialIds: Record<string, number[]>;
}

export interface WordPieceInit {
  /** token → id (ids 0..n-1) or the tokens in id order. */
  vocab: Map<string, number> | string[];
  unkToken?: string;
  continuingSubwordPrefix?: string;
  maxInputCharsPerWord?: number;
  /** null: no normalizer. */
  normalizer?: BertNormalizerOptions | null;
  addedTokens?: WordPieceAddedToken[];
  /** null: no post-processing; undefined: [CLS] A [SEP] / [CLS] A [SEP] B [SEP] when both are known. */
  postProcessor?: WordPiecePostProcessor | null;
  /** WordPiece decoder cleanup (spaces before . ? ! , dropped); default true. */
  decoderCleanup?: boolean;
  /** Role tokens (default the BERT spellings when present). */
  clsToken?: string; sepToken?: string; padToken?: string; maskToken?: string; bosToken?: string; eosToken?: string;
  modelMaxLength?: number;
}

export interface WordPieceTrainOptions {
  vocabSize: number;
  lowercase?: boolean;
  /** null = follow lowercase. */
  stripAccents?: boolean | null;
  /** Default [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0..4). */
  specialTokens?: string[];
  /** Stop when the best pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  /** Keep only the this many most frequent chars (words with other chars are left out of training). */
  limitAlphabet?: number;
  onProgress?: (merges: number, vocabSize: number) => void;
  progressEvery?: number;
}

/** The parts of HF's tokenizer.json we write for a WordPiece tokenizer. */
export interface WordPieceTokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: WordPieceAddedToken[];
  normalizer: Record<string, unknown> | null;
  pre_tokenizer: Record<string, unknown>;
  post_processor: Record<string, unknown> | null;
  decoder: Record<string, unknown>;
  model: {
    type: 'WordPiece';
    unk_token: string;
    continuing_subword_prefix: string;
    max_input_chars_per_word: number;
    vocab: Record<string, number>;
  };
}

export const BERT_SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const CACHE_LIMIT = 200_000;

function show(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}
function escapeRegex(s: string): string { return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'); }
function isId(v: unknown): v is number { return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v < 2 ** 31; }

// ---------------------------------------------------------------------------------------------

export class WordPieceTokenizer implements Tokenizer {
  readonly type = 'wordpiece' as const;
  private vocab: Map<string, number>;
  private idToTok: (string | undefined)[] = [];
  private added: WordPieceAddedToken[] = [];
  private addedByContent = new Map<string, WordPieceAddedToken>();
  private specialIds = new Set<number>();
  private rawSplit: { re: RegExp; order: WordPieceAddedToken[] } | null = null;
  private normSplit: { re: RegExp; order: WordPieceAddedToken[] } | null = null;
  private cache = new Map<string, number[]>();
  readonly unkToken: string;
  readonly unkId: number;
  readonly prefix: string;
  readonly maxInputCharsPerWord: number;
  readonly normalizer: BertNormalizerOptions | null;
  readonly postProcessor: WordPiecePostProcessor | null;
  readonly decoderCleanup: boolean;
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  unkTokenId?: number;
  clsTokenId?: number;
  sepTokenId?: number;
  maskTokenId?: number;
  modelMaxLength?: number;
  chatTemplate?: string;
  /** Merges made by `train` (undefined for a loaded tokenizer). */
  trainedMerges?: number;

  constructor(init: WordPieceInit) {
    const v = Array.isArray(init.vocab) ? new Map(init.vocab.map((t, i) => [t, i] as [string, number])) : new Map(init.vocab);
    if (Array.isArray(init.vocab) && v.size !== init.vocab.length) throw new Error('vocab: a token appears twice');
    if (v.size === 0) throw new Error('vocab: empty');
    this.vocab = v;
    for (const [t, id] of v) {
      if (!isId(id) || id >= v.size) throw new Error(`vocab: id of token ${show(t)} must be an integer in [0, ${v.size}) (ids 0..n-1), got ${show(id)}`);
      if (this.idToTok[id] !== undefined) throw new Error(`vocab: id ${id} is used by both ${show(this.idToTok[id])} and ${show(t)}`);
      this.idToTok[id] = t;
    }
    this.unkToken = init.unkToken ?? '[UNK]';
    this.prefix = init.continuingSubwordPrefix ?? '##';
    this.maxInputCharsPerWord = init.maxInputCharsPerWord ?? 100;
    if (!Number.isInteger(this.maxInputCharsPerWord) || this.maxInputCharsPerWord < 1) throw new Error(`max_input_chars_per_word must be a positive integer, got ${show(init.maxInputCharsPerWord)}`);
    this.normalizer = init.normalizer === undefined
      ? { cleanText: true, handleChineseChars: true, stripAccents: null, lowercase: false } : init.normalizer;
    this.decoderCleanup = init.decoderCleanup ?? true;
    for (const t of init.addedTokens ?? []) this.addToken(t);
    const unk = this.vocab.get(this.unkToken);
    if (unk === undefined) throw new Error(`unk_token ${show(this.unkToken)} is not in the vocab`);
    this.unkId = unk;
    this.rebuildSplit();

    const idOf = (s: string | undefined, dflt: string | undefined) => {
      const tok = s ?? dflt;
      return tok === undefined ? undefined : this.tokenToId(tok);
    };
    this.unkTokenId = unk;
    this.clsTokenId = idOf(init.clsToken, '[CLS]');
    this.sepTokenId = idOf(init.sepToken, '[SEP]');
    this.padTokenId = idOf(init.padToken, '[PAD]');
    this.maskTokenId = idOf(init.maskToken, '[MASK]');
    this.bosTokenId = idOf(init.bosToken, undefined);
    this.eosTokenId = idOf(init.eosToken, undefined);
    if (init.modelMaxLength !== undefined) this.modelMaxLength = init.modelMaxLength;

    if (init.postProcessor === undefined) {
      const cls = this.clsTokenId, sep = this.sepTokenId;
      this.postProcessor = cls !== undefined && sep !== undefined ? bertTemplate(this.idToTok[cls]!, cls, this.idToTok[sep]!, sep) : null;
    } else this.postProcessor = init.postProcessor;
    if (this.postProcessor) {
      for (const [name, ids] of Object.entries(this.postProcessor.specialIds)) {
        for (const id of ids) if (this.idToToken(id) === undefined) throw new Error(`post_processor: special token ${show(name)} has id ${id}, which is not a token id of this tokenizer`);
      }
      for (const p of [...this.postProcessor.single, ...this.postProcessor.pair]) {
        if ('special' in p && !this.postProcessor.specialIds[p.special]) throw new Error(`post_processor: special token ${show(p.special)} is not defined`);
      }
    }
  }

  private addToken(t: WordPieceAddedToken): void {
    if (!isId(t.id)) throw new Error(`added_tokens: id of ${show(t.content)} must be an integer in [0, 2^31), got ${show(t.id)}`);
    if (typeof t.content !== 'string' || t.content.length === 0) throw new Error(`added_tokens: token ${t.id} has no content`);
    const inVocab = this.vocab.get(t.content);
    if (inVocab !== undefined && inVocab !== t.id) throw new Error(`added_tokens: ${show(t.content)} has id ${t.id} but the vocab gives it id ${inVocab}`);
    const prev = this.idToTok[t.id];
    if (prev !== undefined && prev !== t.content) throw new Error(`added_tokens: id ${t.id} is ${show(t.content)} but the vocab has ${show(prev)} there`);
    if (this.addedByContent.has(t.content)) throw new Error(`added_tokens: ${show(t.content)} appears twice`);
    const tok: WordPieceAddedToken = {
      id: t.id, content: t.content, single_word: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
      normalized: t.normalized ?? !t.special, special: !!t.special,
    };
    this.idToTok[tok.id] = tok.content;
    this.added.push(tok);
    this.addedByContent.set(tok.content, tok);
    if (tok.special) this.specialIds.add(tok.id);
  }

  private rebuildSplit(): void {
    const build = (toks: WordPieceAddedToken[], content: (t: WordPieceAddedToken) => string) => {
      if (toks.length === 0) return null;
      const order = toks.slice().sort((x, y) => content(y).length - content(x).length || x.id - y.id);
      const ws = '\\s*', wordCh = '[\\p{L}\\p{N}_]';
      const alts = order.map((t) => {
        let p = `(${escapeRegex(content(t))})`;
        if (t.lstrip) p = ws + p;
        if (t.rstrip) p = p + ws;
        if (t.single_word) p = `(?<!${wordCh})${p}(?!${wordCh})`;
        return p;
      });
      return { re: new RegExp(alts.join('|'), 'gu'), order };
    };
    this.rawSplit = build(this.added.filter((t) => !t.normalized), (t) => t.content);
    // Normalized added tokens are matched on normalized text, so their content is normalized too.
    const norm = (t: WordPieceAddedToken) => (this.normalizer ? bertNormalize(t.content, this.normalizer) : t.content);
    this.normSplit = build(this.added.filter((t) => t.normalized && norm(t).length > 0), norm);
  }

  /** Adds special tokens (HF add_special_tokens): existing ones are only marked special; new ones get the next ids. */
  addSpecialTokens(tokens: string[]): number[] {
    const ids: number[] = [];
    for (const content of tokens) {
      if (typeof content !== 'string' || content.length === 0) throw new Error('addSpecialTokens: tokens must be non-empty strings');
      const have = this.addedByContent.get(content);
      if (have) { have.special = true; this.specialIds.add(have.id); ids.push(have.id); continue; }
      const id = this.vocab.get(content) ?? this.idToTok.length;
      // Not normalized: matched on the raw text, so casing and accents of the token are kept.
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
  get addedTokens(): WordPieceAddedToken[] { return this.added.map((t) => ({ ...t })); }
  /** Vocabulary tokens in id order (what vocab.txt holds). */
  get vocabList(): string[] {
    const r: string[] = new Array(this.vocab.size);
    for (const [t, id] of this.vocab) r[id] = t;
    return r;
  }
  get lowercase(): boolean { return this.normalizer?.lowercase ?? false; }
  idToToken(id: number): string | undefined { return this.idToTok[id]; }
  tokenToId(token: string): number | undefined { return this.addedByContent.get(token)?.id ?? this.vocab.get(token); }
  isSpecialId(id: number): boolean { return this.specialIds.has(id); }

  // ------------------------------------------------------------------------------- encode

  encode(text: string, opts?: EncodeOpts): number[] {
    const ids = this.encodeRaw(text);
    if ((opts?.addSpecialTokens ?? true) && this.postProcessor) return this.applyTemplate(this.postProcessor.single, ids, []).ids;
    return ids;
  }

  /** A pair of sequences with token type ids ([CLS] A [SEP] B [SEP]: 0 … 0 1 … 1). */
  encodePair(a: string, b: string, opts?: EncodeOpts): { ids: number[]; typeIds: number[] } {
    const ia = this.encodeRaw(a), ib = this.encodeRaw(b);
    if ((opts?.addSpecialTokens ?? true) && this.postProcessor) return this.applyTemplate(this.postProcessor.pair, ia, ib);
    return { ids: [...ia, ...ib], typeIds: [...ia.map(() => 0), ...ib.map(() => 1)] };
  }

  private applyTemplate(tpl: TemplatePiece[], a: number[], b: number[]): { ids: number[]; typeIds: number[] } {
    const ids: number[] = [], typeIds: number[] = [];
    for (const p of tpl) {
      const part = 'special' in p ? this.postProcessor!.specialIds[p.special] : p.sequence === 'A' ? a : b;
      for (const id of part) { ids.push(id); typeIds.push(p.typeId); }
    }
    return { ids, typeIds };
  }

  /** Token strings of `text` (no post-processing). */
  tokenize(text: string): string[] {
    return this.encodeRaw(text).map((id) => this.idToTok[id]!);
  }

  private encodeRaw(text: string): number[] {
    const out: number[] = [];
    splitBy(this.rawSplit, text, (seg) => {
      const norm = this.normalizer ? bertNormalize(seg, this.normalizer) : seg;
      splitBy(this.normSplit, norm, (s) => { for (const w of bertPreTokenize(s)) this.encodeWord(w, out); }, out);
    }, out);
    return out;
  }

  private encodeWord(word: string, out: number[]): void {
    const hit = this.cache.get(word);
    if (hit) { for (const id of hit) out.push(id); return; }
    const ids = this.wordPiece(word);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    for (const id of ids) out.push(id);
  }

  /** Greedy longest-match-first over code points; [UNK] for the whole word when a piece is missing. */
  private wordPiece(word: string): number[] {
    const offs: number[] = [];
    for (let i = 0; i < word.length; i++) {
      offs.push(i);
      const c = word.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < word.length) { const d = word.charCodeAt(i + 1); if (d >= 0xdc00 && d <= 0xdfff) i++; }
    }
    const n = offs.length;
    if (n > this.maxInputCharsPerWord) return [this.unkId];
    offs.push(word.length);
    const ids: number[] = [];
    let start = 0;
    while (start < n) {
      let end = n, found = -1;
      while (start < end) {
        const sub = start > 0 ? this.prefix + word.slice(offs[start], offs[end]) : word.slice(offs[start], offs[end]);
        const id = this.vocab.get(sub);
        if (id !== undefined) { found = id; break; }
        end--;
      }
      if (found < 0) return [this.unkId];
      ids.push(found);
      start = end;
    }
    return ids;
  }

  // ------------------------------------------------------------------------------- decode

  decode(ids: ArrayLike<number>, opts?: DecodeOpts): string {
    const skip = opts?.skipSpecialTokens ?? false;
    let s = '', i = 0;
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k];
      const tok = this.idToTok[id];
      if (tok === undefined || (skip && this.specialIds.has(id))) continue;
      // HF's WordPiece decoder: prefix stripped (or a space added) for all but the first token;
      // cleanup applies to each token on its own.
      let t = tok;
      if (i++ > 0) t = t.startsWith(this.prefix) ? t.slice(this.prefix.length) : ' ' + t;
      if (this.decoderCleanup) t = cleanup(t);
      s += t;
    }
    return s;
  }

  // ------------------------------------------------------------------------------- save

  toTokenizerJson(): WordPieceTokenizerJson {
    const vocab: Record<string, number> = {};
    for (const [t, id] of [...this.vocab].sort((x, y) => x[1] - y[1])) vocab[t] = id;
    let post: Record<string, unknown> | null = null;
    if (this.postProcessor) {
      const piece = (p: TemplatePiece) => ('special' in p ? { SpecialToken: { id: p.special, type_id: p.typeId } } : { Sequence: { id: p.sequence, type_id: p.typeId } });
      const special_tokens: Record<string, unknown> = {};
      for (const [name, ids] of Object.entries(this.postProcessor.specialIds)) special_tokens[name] = { id: name, ids, tokens: ids.map((i) => this.idToTok[i]) };
      post = { type: 'TemplateProcessing', single: this.postProcessor.single.map(piece), pair: this.postProcessor.pair.map(piece), special_tokens };
    }
    const n = this.normalizer;
    return {
      version: '1.0', truncation: null, padding: null,
      added_tokens: this.added.slice().sort((x, y) => x.id - y.id).map((t) => ({ ...t })),
      normalizer: n ? { type: 'BertNormalizer', clean_text: n.cleanText, handle_chinese_chars: n.handleChineseChars, strip_accents: n.stripAccents, lowercase: n.lowercase } : null,
      pre_tokenizer: { type: 'BertPreTokenizer' },
      post_processor: post,
      decoder: { type: 'WordPiece', prefix: this.prefix, cleanup: this.decoderCleanup },
      model: { type: 'WordPiece', unk_token: this.unkToken, continuing_subword_prefix: this.prefix, max_input_chars_per_word: this.maxInputCharsPerWord, vocab },
    };
  }

  /** transformers' tokenizer_config.json for this tokenizer. */
  tokenizerConfig(): Record<string, unknown> {
    const name = (id: number | undefined) => (id === undefined ? undefined : this.idToTok[id]);
    const cfg: Record<string, unknown> = {
      tokenizer_class: 'BertTokenizer',
      do_lower_case: this.lowercase,
      strip_accents: this.normalizer?.stripAccents ?? null,
      tokenize_chinese_chars: this.normalizer?.handleChineseChars ?? false,
      unk_token: this.unkToken,
    };
    for (const [k, id] of [['cls_token', this.clsTokenId], ['sep_token', this.sepTokenId], ['pad_token', this.padTokenId], ['mask_token', this.maskTokenId], ['bos_token', this.bosTokenId], ['eos_token', this.eosTokenId]] as const) {
      const t = name(id);
      if (t !== undefined) cfg[k] = t;
    }
    if (this.modelMaxLength !== undefined) cfg.model_max_length = this.modelMaxLength;
    if (this.chatTemplate !== undefined) cfg.chat_template = this.chatTemplate;
    return cfg;
  }

  /** Writes DIR/tokenizer.json, DIR/vocab.txt and DIR/tokenizer_config.json atomically; returns tokenizer.json's path. */
  save(dir: string): string {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'tokenizer.json');
    writeFileAtomic(join(dir, 'vocab.txt'), this.vocabList.join('\n') + '\n');
    writeFileAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(this.tokenizerConfig(), null, 2) + '\n');
    writeFileAtomic(path, JSON.stringify(this.toTokenizerJson(), null, 2) + '\n');
    return path;
  }

  // ------------------------------------------------------------------------------- load

  /** Loads a HF tokenizer.json (parsed object or file path) whose model is WordPiece. */
  static fromTokenizerJson(src: unknown, roles?: RoleOverrides): WordPieceTokenizer {
    let obj: unknown = src, where = 'tokenizer.json';
    if (typeof src === 'string') { where = src; obj = readJsonFile(src); }
    return fromJsonObject(obj, where, roles ?? {});
  }

  /**
   * Loads BERT's vocab.txt with transformers' BertTokenizer settings (`config`: tokenizer_config.json's
   * do_lower_case — default true as in transformers —, strip_accents, tokenize_chinese_chars, special
   * tokens, model_max_length). Special tokens present in the vocab become special added tokens.
   */
  static fromVocabTxt(path: string, config: Record<string, unknown> = {}, where = path): WordPieceTokenizer {
    const vocab = readVocabTxt(path);
    const fail = (key: string, msg: string): never => { throw new Error(`${where}: ${key} ${msg}`); };
    const bool = (key: string, dflt: boolean): boolean => {
      const v = config[key];
      if (v === undefined || v === null) return dflt;
      if (typeof v !== 'boolean') fail(key, `must be true or false, got ${show(v)}`);
      return v as boolean;
    };
    const str = (key: string, dflt: string): string => {
      const v = tokenName(config[key]);
      if (config[key] !== undefined && config[key] !== null && v === undefined) fail(key, `must be a token string, got ${show(config[key])}`);
      return v ?? dflt;
    };
    const lowercase = bool('do_lower_case', true);
    const sa = config.strip_accents;
    if (sa !== undefined && sa !== null && typeof sa !== 'boolean') fail('strip_accents', `must be true, false or null, got ${show(sa)}`);
    const roles = {
      unk: str('unk_token', '[UNK]'), cls: str('cls_token', '[CLS]'), sep: str('sep_token', '[SEP]'),
      pad: str('pad_token', '[PAD]'), mask: str('mask_token', '[MASK]'),
    };
    if (!vocab.has(roles.unk)) throw new Error(`${path}: unk token ${show(roles.unk)} is not in the vocabulary`);
    const added: WordPieceAddedToken[] = [];
    for (const t of [roles.pad, roles.unk, roles.cls, roles.sep, roles.mask]) {
      const id = vocab.get(t);
      if (id !== undefined && !added.some((a) => a.content === t)) added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    }
    added.sort((x, y) => x.id - y.id);
    const mml = modelMaxLengthOf(config.model_max_length);
    try {
      return new WordPieceTokenizer({
        vocab, unkToken: roles.unk, addedTokens: added,
        normalizer: { cleanText: true, handleChineseChars: bool('tokenize_chinese_chars', true), stripAccents: (sa ?? null) as boolean | null, lowercase },
        clsToken: roles.cls, sepToken: roles.sep, padToken: roles.pad, maskToken: roles.mask,
        ...(mml !== undefined ? { modelMaxLength: mml } : {}),
      });
    } catch (e) {
      throw new Error(`${path}: ${(e as Error).message}`);
    }
  }

  // ------------------------------------------------------------------------------- training

  static train(texts: Iterable<string>, opts: WordPieceTrainOptions): WordPieceTokenizer {
    const prefix = '##';
    const specials: string[] = [];
    for (const s of opts.specialTokens ?? BERT_SPECIAL_TOKENS) {
      if (typeof s !== 'string' || s.length === 0) throw new Error('train: special tokens must be non-empty strings');
      if (!specials.includes(s)) specials.push(s);
    }
    const unkToken = specials.includes('[UNK]') ? '[UNK]' : undefined;
    if (unkToken === undefined) throw new Error('train: the special tokens must include [UNK]');
    if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < 1) throw new Error(`train: vocabSize must be a positive integer, got ${opts.vocabSize}`);
    const minFreq = opts.minFrequency ?? 2;
    const lowercase = opts.lowercase ?? false;
    const normalizer: BertNormalizerOptions = { cleanText: true, handleChineseChars: true, stripAccents: opts.stripAccents ?? null, lowercase };

    // Word counts (insertion order = first occurrence: deterministic).
    const counts = new Map<string, number>();
    const specialSet = new Set(specials);
    for (const text of texts) {
      for (const w of bertPreTokenize(bertNormalize(text, normalizer))) {
        if (specialSet.has(w)) continue;
        counts.set(w, (counts.get(w) ?? 0) + 1);
      }
    }
    // Alphabet: chars by frequency, optionally limited.
    const charFreq = new Map<string, number>();
    for (const [w, c] of counts) for (const ch of w) charFreq.set(ch, (charFreq.get(ch) ?? 0) + c);
    let alphabet = [...charFreq.keys()];
    if (opts.limitAlphabet !== undefined && alphabet.length > opts.limitAlphabet) {
      alphabet.sort((a, b) => charFreq.get(b)! - charFreq.get(a)! || a.codePointAt(0)! - b.codePointAt(0)!);
      alphabet = alphabet.slice(0, Math.max(0, opts.limitAlphabet));
    }
    const alpha = new Set(alphabet);
    const byCp = (a: string, b: string) => a.codePointAt(0)! - b.codePointAt(0)!;

    const tokens: string[] = [...specials];
    const idOf = new Map<string, number>(tokens.map((t, i) => [t, i]));
    const add = (t: string): number => { let id = idOf.get(t); if (id === undefined) { id = tokens.length; tokens.push(t); idOf.set(t, id); } return id; };
    // Initial symbols of each word: first char plain, the rest with the prefix.
    const firsts = new Set<string>(), conts = new Set<string>();
    const wordChars: string[][] = [], wordCounts: number[] = [];
    for (const [w, c] of counts) {
      const chars = Array.from(w);
      if (chars.length > 100 || !chars.every((ch) => alpha.has(ch))) continue;
      wordChars.push(chars); wordCounts.push(c);
      firsts.add(chars[0]);
      for (let i = 1; i < chars.length; i++) conts.add(chars[i]);
    }
    for (const ch of [...firsts].sort(byCp)) add(ch);
    for (const ch of [...conts].sort(byCp)) add(prefix + ch);
    const words: Int32Array[] = wordChars.map((chars) => Int32Array.from(chars, (ch, i) => idOf.get(i === 0 ? ch : prefix + ch)!));

    // Pair statistics: key = a * 2^26 + b; counts and the words holding each pair.
    const K = 2 ** 26;
    const pairCount = new Map<number, number>();
    const pairWords = new Map<number, Set<number>>();
    for (let wi = 0; wi < words.length; wi++) {
      const w = words[wi], c = wordCounts[wi];
      for (let i = 0; i + 1 < w.length; i++) {
        const k = w[i] * K + w[i + 1];
        pairCount.set(k, (pairCount.get(k) ?? 0) + c);
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
    const heap = new PairHeap();
    for (const [k, c] of pairCount) heap.push(c, k);
    const maxTokens = opts.vocabSize;
    let merges = 0;
    const every = opts.progressEvery ?? 500;
    while (tokens.length < maxTokens) {
      let best = -1, bestCount = 0;
      while (heap.size > 0) {
        const [c, k] = heap.pop();
        if (pairCount.get(k) === c && c > 0) { best = k; bestCount = c; break; }
      }
      if (best < 0 || bestCount < Math.max(1, minFreq)) break;
      const a = Math.floor(best / K), b = best % K;
      const ta = tokens[a], tb = tokens[b];
      const merged = ta + (tb.startsWith(prefix) ? tb.slice(prefix.length) : tb);
      const nid = idOf.get(merged) ?? add(merged);
      const touched = new Map<number, number>();
      const bump = (k: number, d: number, wi: number) => {
        const c = (pairCount.get(k) ?? 0) + d;
        pairCount.set(k, c);
        touched.set(k, c);
        if (d > 0) { let s = pairWords.get(k); if (!s) pairWords.set(k, (s = new Set())); s.add(wi); }
      };
      for (const wi of [...(pairWords.get(best) ?? [])].sort((x, y) => x - y)) {
        const w = words[wi], c = wordCounts[wi];
        const out: number[] = [];
        for (let i = 0; i < w.length; i++) {
          if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
            if (out.length > 0) { bump(out[out.length - 1] * K + a, -c, wi); bump(out[out.length - 1] * K + nid, c, wi); }
            if (i + 2 < w.length) { bump(b * K + w[i + 2], -c, wi); bump(nid * K + w[i + 2], c, wi); }
            bump(best, -c, wi);
            out.push(nid); i++;
          } else out.push(w[i]);
        }
        words[wi] = Int32Array.from(out);
      }
      pairWords.delete(best);
      pairCount.delete(best);
      for (const [k, c] of touched) if (k !== best && c > 0) heap.push(c, k);
      merges++;
      if (opts.onProgress && merges % every === 0) opts.onProgress(merges, tokens.length);
    }
    const added: WordPieceAddedToken[] = specials.map((s, i) => ({ id: i, content: s, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
    const tok = new WordPieceTokenizer({ vocab: tokens, unkToken, addedTokens: added, normalizer });
    tok.trainedMerges = merges;
    return tok;
  }
}

/** Removes the space HF's WordPiece decoder drops before punctuation (applied per token, as HF does). */
function cleanup(s: string): string {
  return s.replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',').replace(/ ' /g, "'")
    .replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ do not/g, " don't").replace(/ 's/g, "'s")
    .replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
}

function bertTemplate(cls: string, clsId: number, sep: string, sepId: number): WordPiecePostProcessor {
  return {
    single: [{ special: cls, typeId: 0 }, { sequence: 'A', typeId: 0 }, { special: sep, typeId: 0 }],
    pair: [{ special: cls, typeId: 0 }, { sequence: 'A', typeId: 0 }, { special: sep, typeId: 0 }, { sequence: 'B', typeId: 1 }, { special: sep, typeId: 1 }],
    specialIds: { [cls]: [clsId], [sep]: [sepId] },
  };
}

/** Calls `seg` for each stretch of text between added-token matches, pushing the matches' ids. */
function splitBy(split: { re: RegExp; order: WordPieceAddedToken[] } | null, text: string, seg: (s: string) => void, out: number[]): void {
  if (split === null) { if (text.length > 0) seg(text); return; }
  const re = split.re;
  re.lastIndex = 0;
  let last = 0, m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[0].length === 0) { re.lastIndex++; continue; }
    if (m.index > last) seg(text.slice(last, m.index));
    let k = 1;
    while (m[k] === undefined) k++;
    out.push(split.order[k - 1].id);
    last = m.index + m[0].length;
  }
  if (last < text.length) seg(text.slice(last));
}

/** Max-heap of (count, pair key): larger count first, then the smaller key (smaller left id, then right id). */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get size(): number { return this.c.length; }
  private before(i: number, j: number): boolean { return this.c[i] > this.c[j] || (this.c[i] === this.c[j] && this.k[i] < this.k[j]); }
  private swap(i: number, j: number): void {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.k[i], this.k[j]] = [this.k[j], this.k[i]];
  }
  push(count: number, key: number): void {
    this.c.push(count); this.k.push(key);
    let i = this.c.length - 1;
    while (i > 0) { const p = (i - 1) >> 1; if (!this.before(i, p)) break; this.swap(i, p); i = p; }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.c[0], this.k[0]];
    const lc = this.c.pop()!, lk = this.k.pop()!;
    if (this.c.length > 0) {
      this.c[0] = lc; this.k[0] = lk;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.c.length && this.before(l, m)) m = l;
        if (r < this.c.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m); i = m;
      }
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json (WordPiece) reader

export interface RoleOverrides {
  clsToken?: string; sepToken?: string; padToken?: string; maskToken?: string; bosToken?: string; eosToken?: string;
  modelMaxLength?: number;
}

/** A special-token entry of tokenizer_config.json / special_tokens_map.json (string or {content}). */
export function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** model_max_length when sane: a positive integer below HF's "no limit" sentinel (1e30). */
export function modelMaxLengthOf(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function fromJsonObject(root: unknown, where: string, roles: RoleOverrides): WordPieceTokenizer {
  const fail = (field: string, msg: string): never => { throw new Error(`${where}: ${field}: ${msg}`); };
  if (!isObj(root)) return fail('(root)', 'expected a JSON object');
  const model = root.model;
  if (!isObj(model)) return fail('model', 'missing or not an object');
  if (model.type !== 'WordPiece') return fail('model.type', `${show(model.type)} is not "WordPiece"`);
  if (!isObj(model.vocab)) return fail('model.vocab', 'missing or not an object');
  const entries = Object.entries(model.vocab);
  if (entries.length === 0) fail('model.vocab', 'empty');
  const tokens: (string | undefined)[] = new Array(entries.length);
  for (const [t, id] of entries) {
    if (!isId(id) || id >= entries.length) fail('model.vocab', `id of ${show(t)} must be an integer in [0, ${entries.length}) (ids 0..n-1), got ${show(id)}`);
    if (tokens[id as number] !== undefined) fail('model.vocab', `id ${id} is used by both ${show(tokens[id as number])} and ${show(t)}`);
    tokens[id as number] = t;
  }
  const unk = model.unk_token ?? '[UNK]';
  if (typeof unk !== 'string') return fail('model.unk_token', `expected a string, got ${show(unk)}`);
  if (!(unk in model.vocab)) fail('model.unk_token', `${show(unk)} is not in the vocab`);
  const prefix = model.continuing_subword_prefix ?? '##';
  if (typeof prefix !== 'string') return fail('model.continuing_subword_prefix', `expected a string, got ${show(prefix)}`);
  const maxChars = model.max_input_chars_per_word ?? 100;
  if (!Number.isSafeInteger(maxChars) || (maxChars as number) < 1) fail('model.max_input_chars_per_word', `expected a positive integer, got ${show(maxChars)}`);

  let normalizer: BertNormalizerOptions | null = null;
  const n = root.normalizer;
  if (n !== undefined && n !== null) {
    if (!isObj(n) || n.type !== 'BertNormalizer') return fail('normalizer', `${show(isObj(n) ? n.type : n)} is not supported (only "BertNormalizer" or null)`);
    const flag = (k: string, dflt: boolean): boolean => {
      const v = n[k];
      if (v === undefined) return dflt;
      if (typeof v !== 'boolean') fail(`normalizer.${k}`, `expected true or false, got ${show(v)}`);
      return v as boolean;
    };
    const sa = n.strip_accents;
    if (sa !== undefined && sa !== null && typeof sa !== 'boolean') fail('normalizer.strip_accents', `expected true, false or null, got ${show(sa)}`);
    normalizer = { cleanText: flag('clean_text', true), handleChineseChars: flag('handle_chinese_chars', true), stripAccents: (sa ?? null) as boolean | null, lowercase: flag('lowercase', true) };
  }
  let pre = root.pre_tokenizer;
  if (isObj(pre) && pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) && pre.pretokenizers.length === 1) pre = pre.pretokenizers[0];
  if (!isObj(pre) || pre.type !== 'BertPreTokenizer') fail('pre_tokenizer', `${show(isObj(pre) ? pre.type : pre ?? null)} is not supported (only "BertPreTokenizer")`);
  const dec = root.decoder;
  let cleanupFlag = true;
  if (dec !== undefined && dec !== null) {
    if (!isObj(dec) || dec.type !== 'WordPiece') return fail('decoder', `${show(isObj(dec) ? dec.type : dec)} is not supported (only "WordPiece")`);
    if (dec.prefix !== undefined && dec.prefix !== prefix) fail('decoder.prefix', `${show(dec.prefix)} differs from model.continuing_subword_prefix ${show(prefix)}`);
    if (dec.cleanup !== undefined && typeof dec.cleanup !== 'boolean') fail('decoder.cleanup', `expected true or false, got ${show(dec.cleanup)}`);
    cleanupFlag = dec.cleanup !== false;
  }

  const added: WordPieceAddedToken[] = [];
  const addedIds = new Set<number>(), addedContents = new Set<string>();
  if (root.added_tokens !== undefined && root.added_tokens !== null) {
    if (!Array.isArray(root.added_tokens)) fail('added_tokens', 'not an array');
    (root.added_tokens as unknown[]).forEach((t, i) => {
      if (!isObj(t) || typeof t.content !== 'string') return fail(`added_tokens[${i}]`, 'expected {id, content, ...}');
      if (!isId(t.id)) return fail(`added_tokens[${i}]`, `id must be an integer in [0, 2^31), got ${show(t.id)}`);
      if (t.content === '') return fail(`added_tokens[${i}]`, 'content is empty');
      if (addedIds.has(t.id) || addedContents.has(t.content)) return fail(`added_tokens[${i}]`, `${show(t.content)} (id ${t.id}) repeats an earlier added token`);
      const inVocab = (model.vocab as Obj)[t.content];
      if (inVocab !== undefined && inVocab !== t.id) return fail(`added_tokens[${i}]`, `${show(t.content)} has id ${t.id} but the vocab gives it id ${inVocab}`);
      if (inVocab === undefined && t.id < entries.length) return fail(`added_tokens[${i}]`, `id ${t.id} of ${show(t.content)} is the vocab's ${show(tokens[t.id])}`);
      addedIds.add(t.id); addedContents.add(t.content);
      added.push({ id: t.id, content: t.content, single_word: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
        normalized: t.normalized === undefined ? !t.special : !!t.normalized, special: !!t.special });
    });
  }
  const idOfName = (s: string, field: string): number => {
    const a = added.find((t) => t.content === s);
    const id = a?.id ?? (model.vocab as Obj)[s];
    if (!isId(id)) return fail(field, `token ${show(s)} is not in the vocab`);
    return id;
  };

  let post: WordPiecePostProcessor | null = null;
  const pp = root.post_processor;
  if (pp !== undefined && pp !== null) {
    if (!isObj(pp)) return fail('post_processor', 'expected an object');
    if (pp.type === 'BertProcessing') {
      const cls = pp.cls, sep = pp.sep;
      if (!Array.isArray(cls) || typeof cls[0] !== 'string' || !isId(cls[1])) return fail('post_processor.cls', `expected ["[CLS]", id], got ${show(cls)}`);
      if (!Array.isArray(sep) || typeof sep[0] !== 'string' || !isId(sep[1])) return fail('post_processor.sep', `expected ["[SEP]", id], got ${show(sep)}`);
      post = bertTemplate(cls[0], cls[1], sep[0], sep[1]);
    } else if (pp.type === 'TemplateProcessing') {
      const specialIds: Record<string, number[]> = {};
      if (pp.special_tokens !== undefined && !isObj(pp.special_tokens)) fail('post_processor.special_tokens', 'expected an object');
      for (const [name, sp] of Object.entries((pp.special_tokens ?? {}) as Obj)) {
        if (!isObj(sp) || !Array.isArray(sp.ids) || !sp.ids.every(isId)) return fail(`post_processor.special_tokens.${name}`, 'expected {id, ids: [...], tokens: [...]}');
        specialIds[name] = sp.ids as number[];
      }
      const parse = (key: 'single' | 'pair'): TemplatePiece[] => {
        const arr = pp[key];
        if (arr === undefined && key === 'pair') return [];
        if (!Array.isArray(arr)) return fail(`post_processor.${key}`, 'missing or not an array');
        return arr.map((p): TemplatePiece => {
          if (isObj(p) && isObj(p.Sequence) && (p.Sequence.id === 'A' || p.Sequence.id === 'B')) return { sequence: p.Sequence.id, typeId: Number(p.Sequence.type_id ?? 0) };
          if (isObj(p) && isObj(p.SpecialToken) && typeof p.SpecialToken.id === 'string') {
            const name = p.SpecialToken.id;
            if (!specialIds[name]) specialIds[name] = [idOfName(name, `post_processor.${key}`)];
            return { special: name, typeId: Number(p.SpecialToken.type_id ?? 0) };
          }
          return fail(`post_processor.${key}`, `unsupported piece ${show(p)}`);
        });
      };
      post = { single: parse('single'), pair: parse('pair'), specialIds };
    } else return fail('post_processor', `${show(pp.type)} is not supported (BertProcessing, TemplateProcessing or null)`);
  }

  // Role tokens: overrides (tokenizer_config.json), else the post-processor's [CLS]/[SEP].
  const cls = roles.clsToken ?? (post?.single[0] && 'special' in post.single[0] ? post.single[0].special : undefined);
  const lastSingle = post?.single[post.single.length - 1];
  const sep = roles.sepToken ?? (lastSingle && 'special' in lastSingle ? lastSingle.special : undefined);
  try {
    return new WordPieceTokenizer({
      vocab: tokens as string[], unkToken: unk, continuingSubwordPrefix: prefix, maxInputCharsPerWord: maxChars as number,
      normalizer, addedTokens: added, postProcessor: post, decoderCleanup: cleanupFlag,
      clsToken: cls, sepToken: sep, padToken: roles.padToken, maskToken: roles.maskToken, bosToken: roles.bosToken, eosToken: roles.eosToken,
      ...(roles.modelMaxLength !== undefined ? { modelMaxLength: roles.modelMaxLength } : {}),
    });
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

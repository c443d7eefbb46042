// Masked-LM batches (BERT pretraining), with the rates of Hugging Face's
// DataCollatorForLanguageModeling: each non-special, non-padding position is chosen with
// probability p (default 0.15); of the chosen, 80% become [MASK], 10% a random token, 10% stay.
// Labels hold the original id at chosen positions and -100 elsewhere. With whole-word masking a
// word (a token and its continuation tokens) is chosen or not as one unit. Every draw comes from
// the caller's Rng, so a run that saves the Rng state in its checkpoint resumes bit-exactly.

import type { Rng } from '../engine/rng.js';
import type { Tokenizer } from '../tokenizers/types.js';

export const IGNORE_INDEX = -100;

/** What masking needs of a tokenizer. */
export type MaskingTokenizer = Pick<Tokenizer, 'type' | 'vocabSize' | 'maskTokenId' | 'padTokenId' | 'isSpecialId' | 'idToToken'>;

export interface MlmOptions {
  /** Chance that a (non-special, non-padding) token or word is chosen; HF default 0.15. */
  mlmProbability?: number;
  /** Choose whole words: a WordPiece token with its following '##' tokens; a BPE word starts at a 'Ġ' token. */
  wholeWordMask?: boolean;
  /** Of the chosen: share replaced by [MASK] (0.8) and by a random token (0.1); the rest is kept. */
  maskReplaceProb?: number;
  randomReplaceProb?: number;
}

export class MlmCollator {
  readonly maskId: number;
  readonly p: number;
  readonly wholeWord: boolean;
  private readonly pMask: number;
  private readonly pRandom: number;
  /** 1 for ids that are never chosen (special tokens). */
  private readonly special: Uint8Array;
  /** 1 for ids that continue the previous token's word (whole-word masking). */
  private readonly continuation: Uint8Array;
  /** Ids a chosen token may be replaced by (the non-special vocabulary). */
  private readonly randomPool: Int32Array;

  constructor(tok: MaskingTokenizer, opts: MlmOptions = {}) {
    if (tok.maskTokenId === undefined) throw new Error('masked-LM training needs a tokenizer with a mask token ([MASK]); this one has none');
    this.maskId = tok.maskTokenId;
    this.p = opts.mlmProbability ?? 0.15;
    if (!(this.p > 0 && this.p < 1)) throw new Error(`mlm_probability must be in (0, 1), got ${this.p}`);
    this.pMask = opts.maskReplaceProb ?? 0.8;
    this.pRandom = opts.randomReplaceProb ?? 0.1;
    if (!(this.pMask >= 0 && this.pRandom >= 0 && this.pMask + this.pRandom <= 1)) throw new Error(`mask/random replacement shares must be ≥ 0 and sum to ≤ 1, got ${this.pMask} and ${this.pRandom}`);
    this.wholeWord = !!opts.wholeWordMask;
    const V = tok.vocabSize;
    this.special = new Uint8Array(V);
    this.continuation = new Uint8Array(V);
    const pool: number[] = [];
    for (let id = 0; id < V; id++) {
      if (tok.isSpecialId(id) || id === tok.padTokenId || id === this.maskId) { this.special[id] = 1; continue; }
      pool.push(id);
      if (this.wholeWord) {
        const s = tok.idToToken(id) ?? '';
        // WordPiece marks continuations ('##ing'); byte-level BPE marks word starts ('Ġthe').
        this.continuation[id] = tok.type === 'wordpiece' ? (s.startsWith('##') ? 1 : 0) : (s.startsWith('Ġ') ? 0 : 1);
      }
    }
    if (pool.length === 0) throw new Error('masked-LM training: the tokenizer has no non-special tokens');
    this.randomPool = Int32Array.from(pool);
  }

  /** True when `id` can be chosen (not special, not padding, inside the vocabulary). */
  maskable(id: number): boolean { return id >= 0 && id < this.special.length && this.special[id] === 0; }

  /**
   * Mask `ids` (rows of length T, any number of rows) into `out` (may be `ids` itself) and write
   * `labels`; returns how many positions were chosen. Words never span rows or special tokens.
   */
  apply(ids: Int32Array, T: number, rng: Rng, out: Int32Array, labels: Int32Array): number {
    const n = ids.length;
    if (T < 1 || n % T !== 0) throw new Error(`MlmCollator.apply: ${n} ids are not rows of ${T}`);
    if (out.length !== n || labels.length !== n) throw new Error(`MlmCollator.apply: out and labels need ${n} entries`);
    let chosen = 0;
    let wordChosen = false;
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      let pick = false;
      if (this.maskable(id)) {
        // A word starts at a non-continuation token, at a row start, or after a special token.
        const starts = !this.wholeWord || this.continuation[id] === 0 || i % T === 0 || !this.maskable(ids[i - 1]);
        if (starts) wordChosen = rng.next() < this.p;
        pick = wordChosen;
      }
      if (!pick) { labels[i] = IGNORE_INDEX; out[i] = id; continue; }
      chosen++;
      labels[i] = id;
      const u = rng.next();
      if (u < this.pMask) out[i] = this.maskId;
      else if (u < this.pMask + this.pRandom) out[i] = this.randomPool[rng.int(this.randomPool.length)];
      else out[i] = id;
    }
    return chosen;
  }
}

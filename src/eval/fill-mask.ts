// Fill-mask: the most probable vocabulary entries at each mask token of a text, from a masked LM
// (as transformers' fill-mask pipeline: softmax over the whole vocabulary at the mask position).
// Special tokens are never offered as candidates, but their mass stays in the softmax.

import * as O from '../engine/ops.js';
import { tidy, noGrad } from '../engine/index.js';
import { logitsAt, type LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/types.js';

export interface FillMaskCandidate { token: string; id: number; prob: number }

export interface FillMaskOptions {
  /** Candidates per mask (default 5). */
  topK?: number;
}

/** Spellings of the mask token when the tokenizer's configuration gives no role. */
const MASK_SPELLINGS = ['[MASK]', '<mask>'];

/** The tokenizer's mask id: its role, else a special token spelled [MASK] / <mask>. */
export function maskTokenIdOf(tokenizer: Tokenizer): number | undefined {
  if (tokenizer.maskTokenId !== undefined) return tokenizer.maskTokenId;
  for (const s of MASK_SPELLINGS) {
    const id = tokenizer.tokenToId(s);
    if (id !== undefined && tokenizer.isSpecialId(id)) return id;
  }
  return undefined;
}

/** Requires a masked LM (a causal one has no use for a [MASK] in the middle of the text). */
export function requireMasked(model: LanguageModel, what: string): void {
  if (model.kind !== 'masked') throw new Error(`${what} needs a masked language model (like BERT); this one is a ${model.kind} LM (model_type ${model.modelType})`);
}

/**
 * One candidate list per mask token of `text` (in text order), each sorted by probability, highest
 * first. The text is encoded with the tokenizer's special tokens ([CLS] … [SEP] for BERT).
 */
export function fillMask(model: LanguageModel, tokenizer: Tokenizer, text: string, opts: FillMaskOptions = {}): FillMaskCandidate[][] {
  requireMasked(model, 'fill-mask');
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1) throw new Error(`fill-mask: topK must be a positive integer, got ${topK}`);
  const maskId = maskTokenIdOf(tokenizer);
  if (maskId === undefined) throw new Error('fill-mask: the tokenizer has no mask token (no mask_token role and no special [MASK] or <mask>)');
  const ids = tokenizer.encode(text);
  const positions = ids.flatMap((id, t) => (id === maskId ? [t] : []));
  const maskStr = tokenizer.idToToken(maskId) ?? '[MASK]';
  if (positions.length === 0) throw new Error(`fill-mask: the text has no ${maskStr} token to fill`);
  if (ids.length > model.maxPositions) throw new Error(`fill-mask: the text is ${ids.length} tokens long, more than the model's ${model.maxPositions} positions`);
  for (const id of ids) if (id >= model.vocabSize) throw new Error(`fill-mask: token id ${id} of the text is outside the model's vocabulary (${model.vocabSize}): tokenizer and model do not match`);
  model.eval();
  const probs = tidy(() => noGrad(() => {
    // The LM head only at the mask positions: the rest of the sequence needs no logits.
    return Float32Array.from(O.softmax(logitsAt(model, O.tensor(ids, [1, ids.length], 'int32'), positions)).toArray());
  }));
  const V = model.vocabSize;
  return positions.map((_, m) => topCandidates(probs.subarray(m * V, (m + 1) * V), tokenizer, topK));
}

/** The k most probable non-special ids of a probability row, highest first (ties: lower id first). */
function topCandidates(row: Float32Array, tokenizer: Tokenizer, k: number): FillMaskCandidate[] {
  // One pass keeping a small sorted list: no sort of the whole vocabulary (fill-mask must be fast).
  const best: number[] = [];
  for (let id = 0; id < row.length; id++) {
    const p = row[id];
    if (best.length === k && !(p > row[best[k - 1]])) continue;
    if (tokenizer.isSpecialId(id) || tokenizer.idToToken(id) === undefined) continue;
    let i = best.length < k ? best.length : k - 1;
    while (i > 0 && p > row[best[i - 1]]) i--;
    best.splice(i, 0, id);
    if (best.length > k) best.pop();
  }
  return best.map((id) => ({ token: tokenizer.idToToken(id)!, id, prob: row[id] }));
}

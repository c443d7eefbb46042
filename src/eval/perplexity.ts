// Perplexity as `icld eval-lm` defines it: tokenise the whole text (no special tokens),
// cut into consecutive windows of n_positions tokens (the last may be shorter), score every
// token of a window but the first given its predecessors in that window.

import * as O from '../engine/ops.js';
import { tidy, noGrad } from '../engine/index.js';
import type { LanguageModel } from '../models/index.js';

/** The model produced a NaN/Inf loss: its weights are broken. */
export class NonFiniteLossError extends Error {}

export interface PerplexityResult { tokens: number; nll: number; ppl: number; }

export interface PerplexityOptions {
  window?: number;
  batch?: number;
  /** After each forward pass: windows scored so far, all windows, tokens scored so far. */
  onProgress?: (doneWindows: number, totalWindows: number, tokens: number) => void;
}

export function perplexity(model: LanguageModel, ids: number[], opts: PerplexityOptions = {}): PerplexityResult {
  model.eval();
  const W = opts.window ?? model.maxPositions;
  if (W > model.maxPositions) throw new Error(`eval-lm: window ${W} exceeds the model's n_positions ${model.maxPositions}`);
  const windows: number[][] = [];
  for (let s = 0; s < ids.length; s += W) windows.push(ids.slice(s, s + W));
  let sum = 0, count = 0;
  const full = windows.filter((w) => w.length === W), rest = windows.filter((w) => w.length !== W && w.length > 1);
  const B = opts.batch ?? 8, total = full.length + rest.length;
  let done = 0;
  const score = (group: number[][]): void => {
    const T = group[0].length, n = group.length;
    const ids32 = new Int32Array(n * T), tg = new Int32Array(n * T).fill(-100);
    group.forEach((w, b) => { for (let t = 0; t < T; t++) { ids32[b * T + t] = w[t]; if (t + 1 < T) tg[b * T + t] = w[t + 1]; } });
    const s = tidy(() => noGrad(() => O.crossEntropy(model.forward(O.fromData(ids32, [n, T])), O.fromData(tg, [n, T]), { reduction: 'sum' }).item()));
    // Stop at the first non-finite loss rather than report NaN/Infinity as a perplexity.
    if (!Number.isFinite(s)) throw new NonFiniteLossError(`the loss of windows ${done + 1}–${done + n} of ${total} is ${s} (broken weights: NaN/Inf or overflow)`);
    sum += s;
    count += n * (T - 1);
    done += n;
    opts.onProgress?.(done, total, count);
  };
  for (let i = 0; i < full.length; i += B) score(full.slice(i, i + B));
  for (const w of rest) score([w]);
  if (count === 0) throw new Error('eval-lm: the text has fewer than 2 tokens; nothing to score');
  const nll = sum / count;
  return { tokens: count, nll, ppl: Math.exp(nll) };
}

export interface PseudoPerplexityOptions {
  /** The mask token id (required). */
  maskId: number;
  /** Wrap each window as [CLS] … [SEP] when given (BERT's single-sequence format). */
  clsId?: number;
  sepId?: number;
  /** Tokens of text per window (default: maxPositions minus the [CLS]/[SEP] slots). */
  window?: number;
  /** Masked copies per forward pass (default 16). */
  batch?: number;
  /** After each forward pass: windows finished, all windows, tokens scored so far. */
  onProgress?: (doneWindows: number, totalWindows: number, tokens: number) => void;
}

/**
 * Pseudo-perplexity of a masked LM (Salazar et al. 2020): the text is cut into consecutive
 * windows; within a window every token is masked in turn and scored given all the others, so
 * nll = mean over tokens of −log p(token | rest of its window). Copies are batched.
 */
export function pseudoPerplexity(model: LanguageModel, ids: number[], opts: PseudoPerplexityOptions): PerplexityResult {
  if (model.kind !== 'masked') throw new Error(`eval-lm: pseudo-perplexity needs a masked language model; this one is a ${model.kind} LM (model_type ${model.modelType})`);
  model.eval();
  const extra = (opts.clsId !== undefined ? 1 : 0) + (opts.sepId !== undefined ? 1 : 0);
  const W = opts.window ?? model.maxPositions - extra;
  if (!(Number.isInteger(W) && W >= 1)) throw new Error(`eval-lm: window must be a positive integer, got ${W} (the model has ${model.maxPositions} positions)`);
  if (W + extra > model.maxPositions) throw new Error(`eval-lm: window ${W} plus ${extra} special token(s) exceeds the model's ${model.maxPositions} positions`);
  const B = opts.batch ?? 16;
  const windows: number[][] = [];
  for (let s = 0; s < ids.length; s += W) windows.push(ids.slice(s, s + W));
  if (ids.length === 0) throw new Error('eval-lm: the text has no tokens; nothing to score');
  const lead = opts.clsId !== undefined ? 1 : 0;
  let sum = 0, count = 0, done = 0;
  for (const w of windows) {
    const seq = [...(opts.clsId !== undefined ? [opts.clsId] : []), ...w, ...(opts.sepId !== undefined ? [opts.sepId] : [])];
    const T = seq.length;
    for (let i0 = 0; i0 < w.length; i0 += B) {
      const n = Math.min(B, w.length - i0);
      const x = new Int32Array(n * T), tg = new Int32Array(n);
      for (let r = 0; r < n; r++) {
        x.set(seq, r * T);
        x[r * T + lead + i0 + r] = opts.maskId;
        tg[r] = w[i0 + r];
      }
      const s = tidy(() => noGrad(() => {
        const h = model.hidden(O.fromData(x, [n, T]));
        // Only the masked position of each copy goes through the LM head.
        const rows = O.concat(Array.from({ length: n }, (_, r) => O.narrow(O.narrow(h, 0, r, 1), 1, lead + i0 + r, 1)), 0);
        return O.crossEntropy(model.lmHead(rows), O.fromData(tg, [n, 1]), { reduction: 'sum' }).item();
      }));
      if (!Number.isFinite(s)) throw new NonFiniteLossError(`the loss of window ${done + 1} of ${windows.length} is ${s} (broken weights: NaN/Inf or overflow)`);
      sum += s;
      count += n;
      if (i0 + n >= w.length) done++;
      opts.onProgress?.(done, windows.length, count);
    }
  }
  const nll = sum / count;
  return { tokens: count, nll, ppl: Math.exp(nll) };
}

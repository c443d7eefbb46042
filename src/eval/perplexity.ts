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

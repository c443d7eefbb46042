// Batched continuation scoring with shared-prefix KV caching.
// Items with the same prefix (the demonstrations of one seed) run it once; their suffixes
// (query + continuation) are batched, right-padded (causal attention never lets a real token
// see a later pad, so no mask is needed), on top of a copy of the prefix's keys and values.

import * as O from '../engine/ops.js';
import { tidy, noGrad } from '../engine/index.js';
import { backend } from '../engine/backend/index.js';
import { requireCausal, type LanguageModel, type CausalLanguageModel, type KVCache } from '../models/index.js';

export interface ScoreItem { prefix: number[]; suffix: number[]; contStart: number; }
export interface ScoreResult { logprob: number; tokens: number; }

export interface ScoreOptions {
  /** Max suffix rows per forward pass. */
  batchSize?: number;
}

/** log P(suffix[contStart:] | prefix + suffix[:contStart]) for every item, summed over tokens. */
export function scoreContinuations(lm: LanguageModel, items: ScoreItem[], opts: ScoreOptions = {}): ScoreResult[] {
  const model = requireCausal(lm, 'scoring continuations');
  model.eval();
  const out: ScoreResult[] = new Array(items.length);
  const groups = new Map<string, number[]>();
  items.forEach((it, i) => {
    if (it.contStart < 0 || it.contStart >= it.suffix.length) throw new Error(`score item ${i}: continuation start ${it.contStart} outside suffix of ${it.suffix.length} tokens`);
    if (it.prefix.length === 0 && it.contStart === 0) throw new Error(`score item ${i}: no context before the continuation`);
    if (it.prefix.length + it.suffix.length > model.maxPositions) throw new Error(`score item ${i}: ${it.prefix.length + it.suffix.length} tokens exceed the model's context of ${model.maxPositions}`);
    const key = it.prefix.join(',');
    const g = groups.get(key);
    if (g) g.push(i); else groups.set(key, [i]);
  });
  const B = opts.batchSize ?? 16;
  for (const idx of groups.values()) {
    const prefix = items[idx[0]].prefix;
    // Longest suffixes first so each batch pads little.
    idx.sort((a, b) => items[b].suffix.length - items[a].suffix.length);
    let prefixCache: KVCache | null = null;
    let prefixLast: Float32Array | null = null; // logits after the last prefix token
    if (prefix.length > 0) {
      prefixCache = model.newCache(1, prefix.length);
      prefixLast = tidy(() => noGrad(() => {
        const lg = model.forward(O.tensor(prefix, [1, prefix.length], 'int32'), { cache: prefixCache! });
        const V = lg.shape[2];
        return lg.f32.slice((prefix.length - 1) * V, prefix.length * V);
      }));
    }
    for (let s = 0; s < idx.length; s += B) {
      const rows = idx.slice(s, s + B);
      const L = Math.max(...rows.map((i) => items[i].suffix.length));
      scoreBatch(model, items, rows, L, prefix.length, prefixCache, prefixLast, out);
    }
    prefixCache?.dispose();
  }
  return out;
}

function scoreBatch(model: CausalLanguageModel, items: ScoreItem[], rows: number[], L: number, P: number,
  prefixCache: KVCache | null, prefixLast: Float32Array | null, out: ScoreResult[]): void {
  const nb = rows.length;
  const ids = new Int32Array(nb * L);
  rows.forEach((i, r) => { const s = items[i].suffix; for (let t = 0; t < L; t++) ids[r * L + t] = t < s.length ? s[t] : s[s.length - 1]; });
  let cache: KVCache | undefined;
  if (prefixCache) {
    cache = model.newCache(nb, P + L);
    // Replicate the prefix keys/values into every row.
    const be = backend();
    for (let l = 0; l < cache.k.length; l++) for (const [src, dst] of [[prefixCache.k[l], cache.k[l]], [prefixCache.v[l], cache.v[l]]]) {
      const [, H, , D] = src.shape;
      for (let r = 0; r < nb; r++) {
        be.copy([H, P, D], src.f32, 0, [src.strides[1], src.strides[2], 1], dst.f32, r * dst.strides[0], [dst.strides[1], dst.strides[2], 1]);
      }
    }
    cache.length = P;
  }
  tidy(() => noGrad(() => {
    const logits = model.forward(O.fromData(ids, [nb, L]), { cache });
    const V = logits.shape[2], lg = logits.f32;
    rows.forEach((i, r) => {
      const it = items[i];
      let lp = 0;
      for (let t = it.contStart; t < it.suffix.length; t++) {
        const row = t === 0 ? prefixLast! : lg.subarray((r * L + t - 1) * V, (r * L + t) * V);
        lp += logProbOf(row, it.suffix[t]);
      }
      out[i] = { logprob: lp, tokens: it.suffix.length - it.contStart };
    });
  }));
  cache?.dispose();
}

/** log softmax(row)[id], computed stably in double. */
export function logProbOf(row: Float32Array, id: number): number {
  let mx = -Infinity;
  for (let j = 0; j < row.length; j++) if (row[j] > mx) mx = row[j];
  let s = 0;
  for (let j = 0; j < row.length; j++) s += Math.exp(row[j] - mx);
  return row[id] - mx - Math.log(s);
}

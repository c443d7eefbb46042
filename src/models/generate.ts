// The one generation loop: prefill the prompt into a KV cache, then decode token by token
// with greedy / temperature / top-k / top-p sampling, repetition penalty, stop strings and EOS.
// Used by `icld generate`, the server and the ICL pipelines.

import * as O from '../engine/ops.js';
import { Rng, tidy, noGrad } from '../engine/index.js';
import { requireCausal, type LanguageModel } from './lm.js';

export interface TextCodec {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy (deterministic). */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF semantics: logits of tokens already present are divided (if >0) or multiplied (if <0) by it. */
  repetitionPenalty?: number;
  stop?: string[];
  eosTokenId?: number | null;
  seed?: number;
  /** Called with each new token id (streaming). Return false to stop. */
  onToken?: (id: number) => boolean | void;
}

export interface GenerateResult {
  text: string;
  /** Generated ids (the prompt excluded; a stop string's tokens are included, its text trimmed). */
  tokens: number[];
  tokens_per_s: number;
  finish_reason: 'length' | 'stop' | 'eos' | 'context';
  prompt_tokens: number;
}

/** Choose the next token from one row of logits (modified in place). */
export function sampleNext(logits: Float32Array, history: readonly number[], o: GenerateOptions, rng: Rng): number {
  const V = logits.length;
  const rp = o.repetitionPenalty ?? 1;
  if (rp !== 1) {
    const seen = new Set(history);
    for (const t of seen) if (t >= 0 && t < V) logits[t] = logits[t] > 0 ? logits[t] / rp : logits[t] * rp;
  }
  const temp = o.temperature ?? 1;
  if (temp <= 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  // Candidates sorted by logit (top-k first cuts the sort when set).
  let idx = Array.from({ length: V }, (_, i) => i);
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, V) : V;
  idx.sort((a, b) => logits[b] - logits[a]);
  idx = idx.slice(0, k);
  const mx = logits[idx[0]];
  let probs = idx.map((i) => Math.exp((logits[i] - mx) / temp));
  let s = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / s);
  const topP = o.topP ?? 1;
  if (topP < 1) {
    let c = 0, n = 0;
    while (n < probs.length && c < topP) { c += probs[n]; n++; }
    idx = idx.slice(0, Math.max(1, n)); probs = probs.slice(0, Math.max(1, n));
    s = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / s);
  }
  let u = rng.next();
  for (let i = 0; i < idx.length; i++) { u -= probs[i]; if (u < 0) return idx[i]; }
  return idx[idx.length - 1];
}

export function generate(lm: LanguageModel, codec: TextCodec, prompt: string | number[], o: GenerateOptions): GenerateResult {
  if (!(o.maxNewTokens >= 0)) throw new Error(`generate: maxNewTokens must be ≥ 0, got ${o.maxNewTokens}`);
  const model = requireCausal(lm, 'generate');
  model.eval();
  const promptIds = typeof prompt === 'string' ? codec.encode(prompt) : prompt.slice();
  if (promptIds.length === 0) throw new Error('generate: the prompt is empty (no tokens); give at least one token');
  const maxT = model.maxPositions;
  if (promptIds.length >= maxT) throw new Error(`generate: prompt has ${promptIds.length} tokens, the model's context is ${maxT}`);
  const rng = new Rng(o.seed ?? 0);
  const cache = model.newCache(1, Math.min(maxT, promptIds.length + o.maxNewTokens));
  const out: number[] = [];
  const history = promptIds.slice();
  let finish: GenerateResult['finish_reason'] = 'length';
  let cur = promptIds;
  let text = '';
  const t0 = performance.now();
  try {
    while (out.length < o.maxNewTokens) {
      // Real positions only: a prefix or prompt adapter's virtual ones sit at the cache's front and are not counted in maxPositions.
      if (cache.length - cache.virtual + cur.length > maxT) { finish = 'context'; break; }
      const next = tidy(() => noGrad(() => {
        const logits = model.forward(O.tensor(cur, [1, cur.length], 'int32'), { cache });
        const V = logits.shape[2];
        const row = logits.f32.slice((cur.length - 1) * V, cur.length * V);
        return sampleNext(row, history, o, rng);
      }));
      out.push(next); history.push(next);
      if (o.onToken && o.onToken(next) === false) { finish = 'stop'; break; }
      if (o.eosTokenId !== undefined && o.eosTokenId !== null && next === o.eosTokenId) { finish = 'eos'; break; }
      if (o.stop && o.stop.length) {
        text = codec.decode(out);
        const hit = firstStop(text, o.stop);
        if (hit >= 0) { text = text.slice(0, hit); finish = 'stop'; break; }
      }
      cur = [next];
    }
  } finally {
    cache.dispose();
  }
  const secs = (performance.now() - t0) / 1000;
  if (finish !== 'stop') text = codec.decode(finish === 'eos' ? out.slice(0, -1) : out);
  return { text, tokens: out, tokens_per_s: secs > 0 ? out.length / secs : 0, finish_reason: finish, prompt_tokens: promptIds.length };
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) { if (!s) continue; const i = text.indexOf(s); if (i >= 0 && (best < 0 || i < best)) best = i; }
  return best;
}

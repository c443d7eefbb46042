// The one generation loop: prefill the prompt into a KV cache, then decode token by token
// with greedy / temperature / top-k / top-p sampling, repetition penalty, stop strings and EOS.
// Used by `icld generate`, the server and the ICL pipelines.

import * as O from '../engine/ops.js';
import { Rng, tidy, noGrad } from '../engine/index.js';
import { requireCausal, type KVCache, type LanguageModel } from './lm.js';
import type { InferenceRuntime } from './runtime.js';

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
  /** OpenAI semantics: subtracted once from the logit of every token generated so far. */
  presencePenalty?: number;
  /** OpenAI semantics: subtracted from a token's logit once per time it was generated so far. */
  frequencyPenalty?: number;
  /** Added to the logits of these ids before sampling (OpenAI's logit_bias). */
  logitBias?: ReadonlyMap<number, number>;
  /** Only ids below this are ever chosen (a model whose embedding grew for another adapter's tokens). */
  vocabLimit?: number;
  /** Record each generated token's log-probability (Generation.logprobs) and this many alternatives. */
  logprobs?: boolean;
  topLogprobs?: number;
  /** Cancels the generation before its next token (finish_reason 'abort'). */
  signal?: AbortSignal;
  /**
   * Use the model's fused inference runtime when it offers one (default true); false always runs
   * forward() with a KV cache. Either way the same tokens come out (up to float rounding).
   */
  runtime?: boolean;
}

export interface GenerateResult {
  text: string;
  /** Generated ids (the prompt excluded; a stop string's tokens are included, its text trimmed). */
  tokens: number[];
  tokens_per_s: number;
  /** 'abort': cancelled through signal (or disposed early). */
  finish_reason: 'length' | 'stop' | 'eos' | 'context' | 'abort';
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

/** One generated token's log-probability (log-softmax of the logits after penalties and biases, before temperature) and the best alternatives. */
export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The topLogprobs most likely ids at that step, most likely first. */
  top: { id: number; logprob: number }[];
}

/**
 * One generation, advanced a token at a time with step() (the server interleaves several on the
 * event loop); generate() runs one to the end. Call dispose() (or run to the end) to free the KV cache.
 */
export class Generation {
  readonly promptIds: number[];
  /** Generated ids so far (the prompt excluded). */
  readonly tokens: number[] = [];
  /** Per generated token, when o.logprobs is set. */
  readonly logprobs: TokenLogprob[] = [];
  done = false;
  finishReason: GenerateResult['finish_reason'] = 'length';
  private text = '';
  private readonly model: ReturnType<typeof requireCausal>;
  private readonly rng: Rng;
  /** forward() path: the KV cache; runtime path: the runtime and this generation's slot in it. */
  private readonly cache: KVCache | null = null;
  private readonly rt: InferenceRuntime | null = null;
  private readonly slot: number = -1;
  private readonly history: number[];
  private readonly counts = new Map<number, number>();
  private cur: number[];
  private readonly maxT: number;
  private readonly t0 = performance.now();
  private t1 = 0;
  private disposed = false;

  constructor(lm: LanguageModel, private readonly codec: TextCodec, prompt: string | number[], private readonly o: GenerateOptions) {
    if (!(o.maxNewTokens >= 0)) throw new Error(`generate: maxNewTokens must be ≥ 0, got ${o.maxNewTokens}`);
    this.model = requireCausal(lm, 'generate');
    this.model.eval();
    this.promptIds = typeof prompt === 'string' ? codec.encode(prompt) : prompt.slice();
    if (this.promptIds.length === 0) throw new Error('generate: the prompt is empty (no tokens); give at least one token');
    this.maxT = this.model.maxPositions;
    if (this.promptIds.length >= this.maxT) throw new Error(`generate: prompt has ${this.promptIds.length} tokens, the model's context is ${this.maxT}`);
    this.rng = new Rng(o.seed ?? 0);
    const need = Math.min(this.maxT, this.promptIds.length + o.maxNewTokens);
    if (o.maxNewTokens > 0) {
      const got = o.runtime === false ? null : acquireSlot(this.model, need);
      if (got) { this.rt = got.rt; this.slot = got.slot; } else this.cache = this.model.newCache(1, need);
    }
    this.history = this.promptIds.slice();
    this.cur = this.promptIds;
    if (o.maxNewTokens === 0) this.finish('length');
  }

  /** Its runtime slot (-1 on the forward() path). */
  get slotId(): number { return this.slot; }
  /** Whether this generation decodes through the model's fused runtime. */
  get usesRuntime(): boolean { return this.rt !== null; }
  /** The runtime it decodes on (null on the forward() path). */
  get runtime(): InferenceRuntime | null { return this.rt; }
  /** Ids the next step feeds: the prompt at first, then the last generated token. */
  get pendingIds(): readonly number[] { return this.cur; }

  private finish(reason: GenerateResult['finish_reason']): void {
    this.finishReason = reason;
    this.done = true;
    this.t1 = performance.now();
    this.dispose();
  }

  /** Generate one token (the first call also prefills the prompt). Returns true when the generation has ended. */
  step(): boolean {
    if (!this.ready()) return true;
    let row: Float32Array;
    try {
      if (this.rt) {
        // A view of the runtime's logits (plain JS memory, valid until its next step): no copy per token.
        row = this.rt.step([{ seq: this.slot, ids: this.cur }]).subarray(0, this.rt.vocabSize);
      } else {
        const cur = this.cur, cache = this.cache!, model = this.model;
        row = tidy(() => noGrad(() => {
          const logits = model.forward(O.tensor(cur, [1, cur.length], 'int32'), { cache });
          const V = logits.shape[2];
          return logits.f32.slice((cur.length - 1) * V, cur.length * V);
        }));
      }
    } catch (e) { this.dispose(); throw e; }
    return this.accept(row);
  }

  /**
   * Before a step: false when the generation has ended (already, or now: cancelled, or the
   * context is full). For batched steps (stepMany).
   */
  ready(): boolean {
    if (this.done) return false;
    if (this.o.signal?.aborted) { this.finish('abort'); return false; }
    // Real positions only: a prefix or prompt adapter's virtual ones sit at the cache's front and are not counted in maxPositions.
    const past = this.rt ? this.rt.length(this.slot) : this.cache!.length - this.cache!.virtual;
    if (past + this.cur.length > this.maxT) { this.finish('context'); return false; }
    return true;
  }

  /**
   * Take the logits of the last pending token (a row of V, modified in place: penalties, biases),
   * choose the next token and apply the stop rules. Returns true when the generation has ended.
   */
  accept(row: Float32Array): boolean {
    if (this.done) return true;
    const o = this.o;
    let lp: TokenLogprob | null = null;
    let next: number;
    try {
      this.adjust(row);
      next = sampleNext(row, this.history, o, this.rng);
      // row now holds the penalised logits sampleNext chose from.
      if (o.logprobs) lp = tokenLogprob(row, next, o.topLogprobs ?? 0);
    } catch (e) { this.dispose(); throw e; }
    this.tokens.push(next); this.history.push(next);
    this.counts.set(next, (this.counts.get(next) ?? 0) + 1);
    if (lp) this.logprobs.push(lp);
    if (o.onToken && o.onToken(next) === false) { this.finish('stop'); return true; }
    if (o.eosTokenId !== undefined && o.eosTokenId !== null && next === o.eosTokenId) { this.finish('eos'); return true; }
    if (o.stop && o.stop.length) {
      this.text = this.codec.decode(this.tokens);
      const hit = firstStop(this.text, o.stop);
      if (hit >= 0) { this.text = this.text.slice(0, hit); this.finish('stop'); return true; }
    }
    this.cur = [next];
    if (this.tokens.length >= o.maxNewTokens) { this.finish('length'); return true; }
    return false;
  }

  /** OpenAI's presence/frequency penalties (over generated tokens), logit biases and the vocabulary limit. */
  private adjust(row: Float32Array): void {
    const o = this.o;
    const pp = o.presencePenalty ?? 0, fp = o.frequencyPenalty ?? 0;
    if (pp !== 0 || fp !== 0) for (const [t, c] of this.counts) if (t < row.length) row[t] -= c * fp + pp;
    if (o.logitBias) for (const [t, b] of o.logitBias) if (t >= 0 && t < row.length) row[t] += b;
    if (o.vocabLimit !== undefined && o.vocabLimit < row.length) row.fill(-Infinity, Math.max(1, o.vocabLimit));
  }

  result(): GenerateResult {
    if (!this.done) throw new Error('generate: result() before the generation ended');
    const secs = (this.t1 - this.t0) / 1000;
    const out = this.tokens;
    const text = this.finishReason === 'stop' ? this.text : this.codec.decode(this.finishReason === 'eos' ? out.slice(0, -1) : out);
    return { text, tokens: out.slice(), tokens_per_s: secs > 0 ? out.length / secs : 0, finish_reason: this.finishReason, prompt_tokens: this.promptIds.length };
  }

  /** Free the KV cache or the runtime slot (idempotent); a generation cut short this way stays as it is. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cache?.dispose();
    this.rt?.release(this.slot);
    if (!this.done) { this.done = true; this.finishReason = 'abort'; this.t1 = performance.now(); }
  }
}

/** Log-softmax of `row` at `id`, plus the k best entries. */
export function tokenLogprob(row: Float32Array, id: number, k: number): TokenLogprob {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > mx) mx = row[i];
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - mx);
  const lse = mx + Math.log(s);
  const top: { id: number; logprob: number }[] = [];
  if (k > 0) {
    // Keep a small sorted list instead of sorting the vocabulary.
    for (let i = 0; i < row.length; i++) {
      if (top.length === k && !(row[i] > row[top[k - 1].id])) continue;
      let j = top.length < k ? top.length : k - 1;
      while (j > 0 && row[i] > row[top[j - 1].id]) j--;
      top.splice(j, 0, { id: i, logprob: 0 });
      if (top.length > k) top.pop();
    }
    for (const t of top) t.logprob = row[t.id] - lse;
  }
  return { id, logprob: row[id] - lse, top };
}

export function generate(lm: LanguageModel, codec: TextCodec, prompt: string | number[], o: GenerateOptions): GenerateResult {
  const g = new Generation(lm, codec, prompt, o);
  try {
    while (!g.step());
  } finally {
    g.dispose();
  }
  return g.result();
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) { if (!s) continue; const i = text.indexOf(s); if (i >= 0 && (best < 0 || i < best)) best = i; }
  return best;
}

/**
 * Advance several generations by one token each (ended ones are skipped). Generations that run
 * on the same InferenceRuntime are decoded together in one batched step, sharing each weight
 * read; the others step one by one. Returns how many are still running.
 */
export function stepMany(gens: readonly Generation[]): number {
  let running = 0;
  const groups = new Map<InferenceRuntime, Generation[]>();
  for (const g of gens) {
    const rt = g.runtime;
    if (!rt) { if (!g.done && !g.step()) running++; continue; }
    if (!g.ready()) continue;
    const list = groups.get(rt);
    if (list) list.push(g); else groups.set(rt, [g]);
  }
  for (const [rt, list] of groups) {
    let logits: Float32Array;
    try {
      logits = rt.step(list.map((g) => ({ seq: g.slotId, ids: g.pendingIds })));
    } catch (e) { for (const g of list) g.dispose(); throw e; }
    const V = rt.vocabSize;
    // Views of the runtime's logits (JS memory: they stay valid when a finished generation's release frees the runtime's native side).
    const rows = list.map((_, i) => logits.subarray(i * V, (i + 1) * V));
    list.forEach((g, i) => { if (!g.accept(rows[i])) running++; });
  }
  return running;
}

/**
 * A slot of the model's fused runtime for a sequence of up to `maxT` positions, or null (no
 * runtime for this model now). When the model's runtime has no free slot, a larger one is asked
 * for (the model keeps generations already running on the old one going).
 */
function acquireSlot(model: LanguageModel, maxT: number): { rt: InferenceRuntime; slot: number } | null {
  if (typeof model.runtime !== 'function') return null;
  let rt = model.runtime({ maxSeqs: 1, maxT });
  if (!rt) return null;
  let slot = rt.acquire();
  if (slot === null) {
    rt = model.runtime({ maxSeqs: 2 * rt.maxSeqs, maxT: Math.max(maxT, rt.maxT) });
    slot = rt ? rt.acquire() : null;
  }
  return rt && slot !== null ? { rt, slot } : null;
}

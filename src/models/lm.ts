// The language-model interface every pipeline takes. A family file (gpt2.ts, bert.ts…) implements
// it and registers itself in registry.ts; nothing above src/models/ names a concrete family.

import { Rng, type Tensor } from '../engine/index.js';
import { empty } from '../engine/index.js';
import * as O from '../engine/ops.js';
import type { SaveOptions } from '../io/hf.js';
import type { Schema } from '../io/json.js';
import { Embedding, type Module } from '../nn/module.js';
import type { InferenceRuntime } from './runtime.js';

/** causal: predicts token t+1 from tokens ≤ t (GPT-2). masked: predicts [MASK]ed tokens from both sides (BERT). */
export type LMKind = 'causal' | 'masked';

/** A config.json object: Hugging Face keys, `model_type` naming the family. */
export interface LMConfig {
  model_type: string;
  vocab_size: number;
  [k: string]: unknown;
}

/** Per-layer key/value buffers for incremental decoding: [B, H, maxT, D] each. */
export class KVCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  length = 0;
  /** Virtual positions (prefix / prompt tuning) at the front of the cache, included in `length`. */
  virtual = 0;
  constructor(readonly batch: number, readonly layers: number, readonly heads: number, readonly maxT: number, readonly headDim: number) {
    for (let i = 0; i < layers; i++) {
      this.k.push(empty([batch, heads, maxT, headDim]).keep());
      this.v.push(empty([batch, heads, maxT, headDim]).keep());
    }
  }
  dispose(): void { for (const t of [...this.k, ...this.v]) t.dispose(); }
}

/**
 * P virtual positions placed before the input (PEFT's prompt learning). Real tokens then sit at
 * positions P, P+1, … (as transformers numbers them after P past key/values or P prepended
 * embeddings), every real token attends to all P, and `hidden`/`forward` return the real tokens'
 * rows only. With a KV cache the virtual positions are written into its front at the first call
 * (cache.length 0) and counted in cache.length and cache.virtual; later calls may pass the same
 * option again or none (nothing is re-added).
 * Prompt tuning in a causal loss: as in PEFT, where the virtual rows' logits stay in the output,
 * the last virtual row predicts the first real label (PEFT's -100 labels cover the others).
 */
export interface VirtualTokens {
  /** P. */
  length: number;
  /** Prompt tuning: the virtual tokens' input embeddings [P, C] (position embeddings are added as for real tokens). */
  embeds?: Tensor;
  /** Prefix tuning / P-Tuning v2: each layer's keys and values [H, P, D], used as if cached (the same for every batch row). */
  keys?: Tensor[];
  values?: Tensor[];
}

/**
 * Check `v` against a model's sizes and return P (0 without virtual tokens). Exactly one of
 * `embeds` (prompt tuning) or `keys`+`values` (prefix tuning) must be given; `where` starts messages.
 */
export function checkVirtual(v: VirtualTokens | undefined, dims: ModelDims, where: string): number {
  if (!v) return 0;
  const P = v.length, C = dims.hidden, H = dims.heads, D = C / H;
  if (!Number.isInteger(P) || P < 1) throw new Error(`${where}: virtual.length must be a positive integer, got ${P}`);
  const hasKV = v.keys !== undefined || v.values !== undefined;
  if ((v.embeds !== undefined) === hasKV) throw new Error(`${where}: virtual tokens need either embeds (prompt tuning) or keys and values (prefix tuning), not ${hasKV ? 'both' : 'neither'}`);
  const same = (t: Tensor, s: number[]): boolean => t.ndim === s.length && t.shape.every((d, i) => d === s[i]);
  if (v.embeds) {
    if (!same(v.embeds, [P, C])) throw new Error(`${where}: virtual.embeds must be [${P}, ${C}], got [${v.embeds.shape.join(', ')}]`);
    return P;
  }
  for (const [what, ts] of [['keys', v.keys], ['values', v.values]] as const) {
    if (!ts || ts.length !== dims.layers) throw new Error(`${where}: virtual.${what} must hold one tensor per layer (${dims.layers}), got ${ts ? ts.length : 'none'}`);
    ts.forEach((t, l) => { if (!same(t, [H, P, D])) throw new Error(`${where}: virtual.${what}[${l}] must be [${H}, ${P}, ${D}] (heads, virtual tokens, head size), got [${t.shape.join(', ')}]`); });
  }
  return P;
}

export interface ForwardOptions {
  /**
   * [B, T] with 1 for real tokens and 0 for padding (keys that must not be attended). With a cache:
   * past + new real tokens (virtual positions are never masked and not included).
   */
  attentionMask?: Tensor;
  /**
   * Position ids [B, T] (int32); default past..past+T-1. With virtual tokens they count the real
   * tokens from 0 and the model adds P (as PEFT offsets them for prefix tuning).
   */
  positionIds?: Tensor;
  /** Segment ids [B, T] (int32) for families with token-type embeddings (BERT); default 0. */
  tokenTypeIds?: Tensor;
  /** Incremental decoding state (causal families only). */
  cache?: KVCache;
  /** Virtual tokens before the input (prefix / prompt tuning). */
  virtual?: VirtualTokens;
}

/** Sizes a tuner needs (PEFT's num_layers, num_attention_heads, token_dim). */
export interface ModelDims { layers: number; heads: number; hidden: number }

export interface LanguageModel {
  readonly kind: LMKind;
  /** config.json's model_type ('gpt2', 'bert'). */
  readonly modelType: string;
  readonly config: LMConfig;
  readonly vocabSize: number;
  /** Longest sequence the position embeddings cover (n_positions / max_position_embeddings). */
  readonly maxPositions: number;
  /** End-of-text id inside the vocabulary, or null. */
  readonly eosTokenId: number | null;
  /** Drives every dropout mask (its state is saved in checkpoints for exact resume). */
  readonly rng: Rng;
  training: boolean;
  readonly dims: ModelDims;
  /** The input token embedding matrix [V, C] (tied to the LM head in both families). */
  inputEmbeddings(): Tensor;
  /**
   * Grow (or shrink) the vocabulary to n rows, as transformers' resize_token_embeddings with
   * mean_resizing: new rows are drawn from a normal with the old rows' mean (and a small spread),
   * the tied head and any per-token output bias follow; config.vocab_size is updated.
   */
  resizeTokenEmbeddings(n: number): void;

  /** Logits [B, T, V]. */
  forward(ids: Tensor, opts?: ForwardOptions): Tensor;
  /** Final hidden states [B, T, C] (before the LM head). */
  hidden(ids: Tensor, opts?: ForwardOptions): Tensor;
  /** Hidden states [.., C] → logits [.., V]. */
  lmHead(h: Tensor): Tensor;
  /**
   * Mean cross-entropy with label −100 ignored. causal: logits at t predict labels[t+1] (labels
   * default to ids, as HF); masked: logits at t predict labels[t] (labels required).
   */
  loss(ids: Tensor, labels?: Tensor, opts?: ForwardOptions): { loss: Tensor; logits: Tensor };
  /** A KV cache for incremental decoding; present on causal families only. */
  newCache?(batch: number, maxT?: number): KVCache;
  /**
   * The fused inference runtime (src/models/runtime.ts) for up to `maxSeqs` concurrent sequences
   * of up to `maxT` positions, or null when this model cannot use it right now (not causal,
   * adapters wrapping its layers, …). Callers fall back to forward() with a KVCache.
   */
  runtime?(opts: { maxSeqs: number; maxT: number }): InferenceRuntime | null;

  namedParameters(prefix?: string): [string, Tensor][];
  parameters(): Tensor[];
  numParameters(): number;
  loadStateDict(sd: Map<string, { shape: number[]; data: Float32Array }>, where: string, strict?: boolean): void;
  train(on?: boolean): this;
  eval(): this;
  dispose(): void;
  // The module tree (src/nn/module.ts), for tuners.
  namedModules(prefix?: string): [string, Module][];
  getModule(path: string): Module;
  replaceModule(path: string, m: Module): Module;
  requiresGrad(on: boolean): this;
  namedTrainableParameters(prefix?: string): [string, Tensor][];
  numTrainableParameters(): number;
  /** Write config.json (+ generation_config.json where relevant) and model.safetensors in transformers' layout. */
  savePretrained(dir: string, opts?: SaveOptions): void;
}

/** A model family: how to build, load and describe one `model_type`. */
export interface ModelFamily {
  readonly modelType: string;
  readonly kind: LMKind;
  /** What `transformers` calls the class we save (config.json "architectures"). */
  readonly architecture: string;
  /** Types and ranges of the config keys a user may set for a fresh model (a config file's "model" section). */
  readonly modelKeys: Readonly<Record<string, Schema>>;
  /** Size keys every fresh-model section must give, for messages ("n_embd" / "hidden_size"…). */
  readonly sizeKeys: readonly string[];
  /** Config keys holding dropout probabilities (a study sets them to 0 for deterministic bases). */
  readonly dropoutKeys: readonly string[];
  /** A full config from user keys (family defaults filled in), validated; `where` starts messages, `prefix` ('model.') goes before key names. */
  config(partial: Record<string, unknown> & { vocab_size: number }, where?: string, prefix?: string): LMConfig;
  /** A freshly initialised model (weights drawn from `seed`). */
  create(config: LMConfig, seed: number): LanguageModel;
  /** Load a model directory whose config.json (already parsed) names this family. */
  fromPretrained(dir: string, raw: Record<string, unknown>): LanguageModel;
  /** Does this config.json (without model_type) look like this family? For old hub files. */
  looksLike?(raw: Record<string, unknown>): boolean;
  /** Where tuners attach, by module name (PEFT's per-architecture defaults). */
  readonly tuning: FamilyTuning;
  /** The chat format used when a model dir's tokenizer_config.json has no chat_template. */
  readonly chat: FamilyChat;
}

export interface FamilyTuning {
  /** PEFT task_type for this family's LM head model ('CAUSAL_LM' for GPT-2; null for BERT's MLM: PEFT has no masked-LM task). */
  readonly peftTaskType: string | null;
  /** LoRA target_modules when none are given (PEFT's defaults: GPT-2 c_attn; BERT query, value). */
  readonly loraTargets: readonly string[];
  /** Linear layers whose output a bottleneck adapter follows: after attention and after the MLP (Houlsby), or after the MLP only (Pfeiffer). */
  readonly adapterTargets: { readonly houlsby: readonly string[]; readonly pfeiffer: readonly string[] };
  /** Module path of the input embedding (saved with an adapter when the vocabulary was resized). */
  readonly embeddingModule: string;
}

export interface FamilyChat {
  /** Jinja chat template (the subset src/tokenizers/chat-template.ts renders). */
  readonly template: string;
  /** Special tokens the template needs; added to the tokenizer (and the embeddings resized) when missing. */
  readonly specialTokens: readonly string[];
}

/** A causal LM: has a KV cache. */
export type CausalLanguageModel = LanguageModel & { readonly kind: 'causal'; newCache(batch: number, maxT?: number): KVCache };

/** `model` as a causal LM, or a one-line error saying `what` needs one. */
export function requireCausal(model: LanguageModel, what: string): CausalLanguageModel {
  if (model.kind !== 'causal' || typeof model.newCache !== 'function') {
    throw new Error(`${what} needs a causal language model (left-to-right, like GPT-2); this one is a ${model.kind} LM (model_type ${model.modelType})`);
  }
  return model as CausalLanguageModel;
}

/**
 * Logits [n, V] at n flat positions (b·T + t) of ids [B, T]. The model body runs on every token,
 * the LM head only on the rows asked for: with a large vocabulary the head over every position
 * would cost more than the rest (MLM pretraining, ICT answers, the LAMA probe, fill-mask).
 * Differentiable (the row gather scatters its gradient back into the hidden states).
 */
export function logitsAt(model: Pick<LanguageModel, 'hidden' | 'lmHead'>, ids: Tensor, rows: ArrayLike<number>, opts?: ForwardOptions): Tensor {
  const h = model.hidden(ids, opts);
  const idx = empty([rows.length], 'int32', false);
  idx.i32.set(rows);
  return model.lmHead(O.embedding(O.reshape(h, [ids.size, h.shape[h.ndim - 1]]), idx));
}

/**
 * Replace the Embedding at `path` of `root` by one of `n` rows: the old rows copied, new ones from
 * meanResizedRows; its trainable flag and train/eval mode kept. Returns the old vocabulary size.
 */
export function resizeEmbeddingAt(root: Module, path: string, n: number, rng: Rng, std: number): number {
  const old = root.getModule(path);
  if (!(old instanceof Embedding)) throw new Error(`resizeTokenEmbeddings: '${path}' is not an Embedding`);
  const V = old.num, C = old.dim;
  const emb = new Embedding(n, C, rng, std, false);
  emb.weight.f32.set(meanResizedRows(old.weight.f32, V, C, n, n));
  emb.weight.requiresGrad = old.weight.requiresGrad;
  emb.train(old.training);
  root.replaceModule(path, emb);
  old.weight.dispose();
  return V;
}

/**
 * The [n, C] matrix of a vocabulary resized from [V, C] `old` (transformers' resize_token_embeddings
 * with mean_resizing): the first min(V, n) rows copied, each added row drawn from a normal around
 * the old rows' mean. transformers samples N(mean, 1e-9·Σ) with the full covariance Σ; we use its
 * diagonal (per-dimension variance × 1e-9): the spread is ~3e-5 of the old spread either way, and
 * the V·C² covariance would cost more than the rest of a resize. Seeded by `seed` (deterministic).
 */
export function meanResizedRows(old: Float32Array, V: number, C: number, n: number, seed: number): Float32Array {
  const out = new Float32Array(n * C);
  out.set(old.subarray(0, Math.min(V, n) * C));
  if (n <= V) return out;
  const mean = new Float64Array(C), sd = new Float64Array(C);
  for (let i = 0; i < V; i++) for (let c = 0; c < C; c++) mean[c] += old[i * C + c];
  for (let c = 0; c < C; c++) mean[c] /= V;
  for (let i = 0; i < V; i++) for (let c = 0; c < C; c++) { const d = old[i * C + c] - mean[c]; sd[c] += d * d; }
  for (let c = 0; c < C; c++) sd[c] = Math.sqrt(1e-9 * sd[c] / V);
  const rng = new Rng(seed);
  for (let i = V; i < n; i++) for (let c = 0; c < C; c++) out[i * C + c] = mean[c] + sd[c] * rng.normal();
  return out;
}

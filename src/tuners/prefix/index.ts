// Prefix tuning (Li & Liang) and P-Tuning v2 (ChatGLM's pre_seq_len): PEFT's PREFIX_TUNING. Each
// layer gets P trainable keys and values, used as if they were cached past key/values.
//
// PEFT's PrefixEncoder: one row of L·2·C numbers per virtual token, viewed [2L, H, D] with layer l's
// keys at slice 2l and values at 2l+1 (peft_model.get_prompt: view [B, P, 2L, H, D], permute
// [2, 0, 3, 1, 4], split by 2). With prefix_projection (training only) the rows are computed by
// Embedding(P, C) → Linear(C, E) → tanh → Linear(E, 2LC); saving runs that MLP once and stores its
// output as `prompt_embeddings` [P, 2LC], so a loaded adapter is the plain embedding.

import * as O from '../../engine/ops.js';
import { Rng, noGrad, type Tensor } from '../../engine/index.js';
import type { LanguageModel, VirtualTokens } from '../../models/index.js';
import type { Adapter, AdapterConfig, SavedTensor, Tuner } from '../types.js';
import { embeddingInit, linearInit, nullable, param, promptEmbeddingsFrom, promptLearningConfig, saved } from '../prompt/learning.js';

interface Projection { w1: Tensor; b1: Tensor; w2: Tensor; b2: Tensor }

class PrefixAdapter implements Adapter {
  private embedding: Tensor;
  private mlp: Projection | null = null;
  private on = true;
  private removed = false;
  private readonly P: number;
  private readonly L: number;
  private readonly H: number;
  private readonly C: number;

  constructor(readonly name: string, readonly config: AdapterConfig, seed: number) {
    this.P = config.num_virtual_tokens as number;
    this.L = config.num_layers as number;
    this.H = config.num_attention_heads as number;
    this.C = config.token_dim as number;
    const rng = new Rng(seed);
    const width = this.width, zero = config.init_weights === 'zero';
    // As PEFT: the MLP exists only for training (inference_mode false).
    if (config.prefix_projection === true && !config.inference_mode) {
      const E = config.encoder_hidden_size as number;
      this.embedding = param(embeddingInit(this.P, this.C, rng));
      const l1 = linearInit(this.C, E, rng), l2 = linearInit(E, width, rng);
      if (zero) { l2.weight.f32.fill(0); l2.bias.f32.fill(0); }
      this.mlp = { w1: param(l1.weight), b1: param(l1.bias), w2: param(l2.weight), b2: param(l2.bias) };
    } else {
      this.embedding = param(zero ? O.zeros([this.P, width]) : embeddingInit(this.P, width, rng));
    }
  }

  /** L·2·C numbers per virtual token. */
  private get width(): number { return this.L * 2 * this.C; }

  /** The prefix rows [P, 2LC] (differentiable). */
  private rows(): Tensor {
    const m = this.mlp;
    if (!m) return this.embedding;
    const h = O.tanh(O.add(O.matmul(this.embedding, O.transpose(m.w1)), m.b1));
    return O.add(O.matmul(h, O.transpose(m.w2)), m.b2);
  }

  namedParameters(): [string, Tensor][] {
    if (this.removed) return [];
    const p = `prompt_encoder.${this.name}.`;
    const out: [string, Tensor][] = [[`${p}embedding.weight`, this.embedding]];
    if (this.mlp) out.push([`${p}transform.0.weight`, this.mlp.w1], [`${p}transform.0.bias`, this.mlp.b1], [`${p}transform.2.weight`, this.mlp.w2], [`${p}transform.2.bias`, this.mlp.b2]);
    return out;
  }

  setActive(on: boolean): void { this.on = on; }
  get active(): boolean { return this.on && !this.removed; }

  virtual(): VirtualTokens | null {
    if (!this.active) return null;
    const { P, L, H, C } = this, D = C / H;
    // [P, 2L·H·D] → [2L, H, P, D]: layer l's keys are slice 2l, its values 2l + 1.
    const kv = O.permute(O.reshape(this.rows(), [P, 2 * L, H, D]), [1, 2, 0, 3]);
    const slice = (i: number): Tensor => O.squeeze(O.narrow(kv, 0, i, 1), 0);
    const keys: Tensor[] = [], values: Tensor[] = [];
    for (let l = 0; l < L; l++) { keys.push(slice(2 * l)); values.push(slice(2 * l + 1)); }
    return { length: P, keys, values };
  }

  /** PEFT's get_prompt_embedding_to_save: the projection folded away (run once). */
  stateDict(): Map<string, SavedTensor> {
    return new Map([['prompt_embeddings', noGrad(() => saved(this.rows()))]]);
  }

  /**
   * Load `prompt_embeddings` [P, 2LC]. With a projection MLP (PEFT refuses that load) the adapter
   * becomes the plain embedding of the loaded rows, which give the same prefix.
   */
  loadStateDict(sd: Map<string, SavedTensor>, where: string): void {
    const t = promptEmbeddingsFrom(sd, where, this.P, this.width, 'prefix tuning');
    if (this.mlp) {
      const trainable = this.embedding.requiresGrad;
      for (const x of [this.embedding, this.mlp.w1, this.mlp.b1, this.mlp.w2, this.mlp.b2]) x.dispose();
      this.mlp = null;
      this.embedding = param(O.zeros([this.P, this.width]));
      this.embedding.requiresGrad = trainable;
    }
    this.embedding.f32.set(t.data);
  }

  remove(): void {
    if (this.removed) return;
    for (const [, p] of this.namedParameters()) p.dispose();
    this.removed = true;
  }
}

export const prefixTuner: Tuner = {
  peftType: 'PREFIX_TUNING',
  methods: ['prefix', 'ptuning-v2'],
  config(user, model: LanguageModel, where, method = 'prefix') {
    if (method !== 'prefix' && method !== 'ptuning-v2') throw new Error(`${where}: method '${method}' is not prefix tuning (prefix, ptuning-v2)`);
    // 'prefix': Li & Liang's reparameterisation MLP; 'ptuning-v2': ChatGLM's default, the prefix trained directly.
    const projection = (user.prefix_projection as boolean | undefined) ?? method === 'prefix';
    const cfg = promptLearningConfig('PREFIX_TUNING', user, model, where, {
      encoder_hidden_size: nullable({ t: 'int', min: 1 }, 'a positive integer or null'),
      prefix_projection: { t: 'bool' },
      init_weights: nullable({ t: 'string', enum: ['zero'] }, '"zero" or null'),
    }, { encoder_hidden_size: null, prefix_projection: projection, init_weights: null });
    // PEFT's default encoder_hidden_size is None; a projection needs one: the model's hidden size.
    if (cfg.prefix_projection === true && cfg.encoder_hidden_size === null) cfg.encoder_hidden_size = cfg.token_dim;
    const C = cfg.token_dim as number, H = cfg.num_attention_heads as number;
    if (C % H !== 0) throw new Error(`${where}: token_dim ${C} is not divisible by num_attention_heads ${H}`);
    return cfg;
  },
  attach(_model, cfg, name, seed) { return new PrefixAdapter(name, cfg, seed); },
};

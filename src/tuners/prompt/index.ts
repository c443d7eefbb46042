// Prompt tuning (PEFT's PROMPT_TUNING, Lester et al.): P trainable embeddings placed before the
// input embeddings. Saved as PEFT does: adapter_model.safetensors holds `prompt_embeddings` [P, C].

import * as O from '../../engine/ops.js';
import { Rng, type Tensor } from '../../engine/index.js';
import type { LanguageModel, VirtualTokens } from '../../models/index.js';
import type { Adapter, AdapterConfig, SavedTensor, Tuner } from '../types.js';
import { embeddingInit, nullable, param, promptEmbeddingsFrom, promptLearningConfig, saved } from './learning.js';

export const PROMPT_TUNING_INITS = ['RANDOM', 'TEXT', 'SAMPLE_VOCAB'] as const;

/**
 * The word-embedding rows PEFT's TEXT init copies: the text's token ids cut to P, or repeated
 * until they cover P and then cut.
 */
export function textInitIds(ids: readonly number[], P: number): number[] {
  if (ids.length === 0) throw new Error('prompt tuning TEXT init: the init text has no tokens');
  const reps = Math.ceil(P / ids.length);
  const out: number[] = [];
  for (let r = 0; r < reps; r++) out.push(...ids);
  return out.slice(0, P);
}

class PromptAdapter implements Adapter {
  readonly config: AdapterConfig;
  private weight: Tensor;
  private on = true;
  private removed = false;
  private readonly P: number;
  private readonly C: number;

  constructor(readonly name: string, cfg: AdapterConfig, model: LanguageModel, seed: number) {
    // prompt_tuning_init_ids comes from the pipeline's tokenizer and is not part of the saved file.
    const { prompt_tuning_init_ids: ids, ...rest } = cfg;
    this.config = rest;
    this.P = (cfg.num_virtual_tokens as number) * ((cfg.num_transformer_submodules as number | null) ?? 1);
    this.C = cfg.token_dim as number;
    const rng = new Rng(seed);
    const init = cfg.prompt_tuning_init as string;
    const rowsOf = (tokenIds: number[]): Tensor => {
      const emb = model.inputEmbeddings();
      const out = O.zeros([this.P, this.C]);
      tokenIds.forEach((id, i) => out.f32.set(emb.f32.subarray(id * this.C, (id + 1) * this.C), i * this.C));
      return out;
    };
    // As PEFT: TEXT / SAMPLE_VOCAB copy word embeddings, RANDOM (and any adapter loaded for inference) nn.Embedding's N(0, 1).
    if (init === 'TEXT' && !cfg.inference_mode) {
      if (!Array.isArray(ids)) throw new Error(`prompt tuning adapter '${name}': prompt_tuning_init TEXT needs the token ids of prompt_tuning_init_text (prompt_tuning_init_ids, filled from the tokenizer)`);
      this.weight = rowsOf(textInitIds(ids as number[], this.P));
    } else if (init === 'SAMPLE_VOCAB' && !cfg.inference_mode) {
      this.weight = rowsOf(Array.from({ length: this.P }, () => rng.int(model.vocabSize)));
    } else {
      this.weight = embeddingInit(this.P, this.C, rng);
    }
    param(this.weight);
  }

  namedParameters(): [string, Tensor][] { return this.removed ? [] : [[`prompt_encoder.${this.name}.embedding.weight`, this.weight]]; }
  setActive(on: boolean): void { this.on = on; }
  get active(): boolean { return this.on && !this.removed; }
  virtual(): VirtualTokens | null { return this.active ? { length: this.P, embeds: this.weight } : null; }
  stateDict(): Map<string, SavedTensor> { return new Map([['prompt_embeddings', saved(this.weight)]]); }
  loadStateDict(sd: Map<string, SavedTensor>, where: string): void {
    this.weight.f32.set(promptEmbeddingsFrom(sd, where, this.P, this.C, 'prompt tuning').data);
  }
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    this.weight.dispose();
  }
}

export const promptTuner: Tuner = {
  peftType: 'PROMPT_TUNING',
  methods: ['prompt'],
  config(user, model, where) {
    const cfg = promptLearningConfig('PROMPT_TUNING', user, model, where, {
      prompt_tuning_init: { t: 'string', enum: PROMPT_TUNING_INITS },
      prompt_tuning_init_text: nullable({ t: 'string' }, 'a string or null'),
      tokenizer_name_or_path: nullable({ t: 'string' }, 'a string or null'),
      tokenizer_kwargs: { t: 'oneOf', of: [{ t: 'object', keys: {}, open: true }, { t: 'null' }], what: 'an object or null' },
      prompt_tuning_init_ids: { t: 'array', of: { t: 'int', min: 0, max: model.vocabSize - 1 }, minLen: 1 },
    }, { prompt_tuning_init: 'RANDOM', prompt_tuning_init_text: null, tokenizer_name_or_path: null, tokenizer_kwargs: null });
    // PEFT's PromptTuningConfig checks.
    if (cfg.prompt_tuning_init === 'TEXT') {
      if (typeof cfg.prompt_tuning_init_text !== 'string') throw new Error(`${where}: prompt_tuning_init TEXT needs prompt_tuning_init_text`);
      // PEFT names the tokenizer to load; ours is the base model's.
      if (cfg.tokenizer_name_or_path === null) cfg.tokenizer_name_or_path = cfg.base_model_name_or_path;
    } else {
      if (cfg.tokenizer_kwargs) throw new Error(`${where}: tokenizer_kwargs is only valid with prompt_tuning_init TEXT`);
      if (cfg.prompt_tuning_init_ids !== undefined) throw new Error(`${where}: prompt_tuning_init_ids is only used with prompt_tuning_init TEXT (it is ${String(cfg.prompt_tuning_init)})`);
    }
    return cfg;
  },
  attach(model, cfg, name, seed) { return new PromptAdapter(name, cfg, model, seed); },
};

// What PEFT's prompt-learning methods (prefix tuning / P-Tuning v2, prompt tuning) share: the
// PromptLearningConfig keys filled from the base model (PEFT's _prepare_prompt_learning_config),
// nn.Embedding / nn.Linear default initialisation, and the one-tensor state dict `prompt_embeddings`.

import * as O from '../../engine/ops.js';
import { Rng, type Tensor } from '../../engine/index.js';
import { modelFamily, type LanguageModel } from '../../models/index.js';
import { checkSchema, type Schema } from '../../io/json.js';
import type { AdapterConfig, PeftType, SavedTensor } from '../types.js';

/** PEFT has no default for num_virtual_tokens; ours (PEFT's examples use 20). */
export const DEFAULT_VIRTUAL_TOKENS = 20;

export const nullable = (s: Schema, what: string): Schema => ({ t: 'oneOf', of: [s, { t: 'null' }], what });

/**
 * The keys of PeftConfig + PromptLearningConfig, checked and completed for `model`:
 * num_layers / num_attention_heads / token_dim from the model (given values must agree),
 * num_transformer_submodules 1 (decoder-only or encoder-only), task_type from the family.
 * Keys of `methodKeys` are type-checked; unknown keys are carried through.
 */
export function promptLearningConfig(peftType: PeftType, user: Record<string, unknown>, model: LanguageModel, where: string,
  methodKeys: Record<string, Schema>, methodDefaults: Record<string, unknown>): AdapterConfig {
  const dims = model.dims;
  const keys: Record<string, Schema> = {
    peft_type: { t: 'string', enum: [peftType] },
    task_type: nullable({ t: 'string' }, 'a string or null'),
    base_model_name_or_path: nullable({ t: 'string' }, 'a string or null'),
    revision: nullable({ t: 'string' }, 'a string or null'),
    inference_mode: { t: 'bool' },
    num_virtual_tokens: { t: 'int', min: 1, max: Math.max(1, model.maxPositions - 1) },
    token_dim: nullable({ t: 'int', min: 1 }, 'a positive integer or null'),
    num_transformer_submodules: { t: 'any' },
    num_attention_heads: nullable({ t: 'int', min: 1 }, 'a positive integer or null'),
    num_layers: nullable({ t: 'int', min: 1 }, 'a positive integer or null'),
    modules_to_save: { t: 'null' },
    auto_mapping: { t: 'any' },
    ...methodKeys,
  };
  checkSchema(user, { t: 'object', keys, open: true }, where, '');
  const subs = user.num_transformer_submodules;
  if (subs !== undefined && subs !== null && subs !== 1) throw new Error(`${where}: num_transformer_submodules must be 1 (PEFT uses 2 for encoder-decoder models only), got ${JSON.stringify(subs)}`);
  const given = Object.fromEntries(Object.entries(user).filter(([, v]) => v !== undefined));
  const cfg: AdapterConfig = {
    task_type: modelFamily(model.modelType).tuning.peftTaskType,
    base_model_name_or_path: null,
    revision: null,
    inference_mode: false,
    auto_mapping: null,
    modules_to_save: null,
    num_virtual_tokens: DEFAULT_VIRTUAL_TOKENS,
    ...methodDefaults,
    ...given,
    peft_type: peftType,
    num_transformer_submodules: 1,
  };
  // The model's sizes; a file made for another base names the mismatch.
  for (const [k, want, what] of [['num_layers', dims.layers, 'layers'], ['num_attention_heads', dims.heads, 'attention heads'], ['token_dim', dims.hidden, 'hidden size']] as const) {
    if (cfg[k] === undefined || cfg[k] === null) cfg[k] = want;
    else if (cfg[k] !== want) throw new Error(`${where}: ${k} is ${String(cfg[k])} but the ${model.modelType} model has ${want} ${what}`);
  }
  return cfg;
}

/** torch.nn.Embedding's default init: N(0, 1). */
export function embeddingInit(rows: number, cols: number, rng: Rng): Tensor {
  return O.randn([rows, cols], rng, 1);
}

/** torch.nn.Linear's default init (kaiming_uniform with a = √5): weight and bias U(±1/√in); weight [out, in]. */
export function linearInit(inF: number, outF: number, rng: Rng): { weight: Tensor; bias: Tensor } {
  const b = 1 / Math.sqrt(inF);
  return { weight: O.rand([outF, inF], rng, -b, b), bias: O.rand([outF], rng, -b, b) };
}

/** A parameter: trainable, kept by scopes. */
export function param(t: Tensor): Tensor { t.requiresGrad = true; return t.keep(); }

/** The saved copy of a tensor's values. */
export function saved(t: Tensor): SavedTensor { return { shape: t.shape.slice(), data: Float32Array.from(t.toArray()) }; }

/** The `prompt_embeddings` entry of a loaded adapter state dict, exactly [rows, cols] and alone. */
export function promptEmbeddingsFrom(sd: Map<string, SavedTensor>, where: string, rows: number, cols: number, what: string): SavedTensor {
  const t = sd.get('prompt_embeddings');
  if (!t) throw new Error(`${where}: tensor 'prompt_embeddings' is missing (a PEFT ${what} adapter holds only that)`);
  const extra = [...sd.keys()].filter((k) => k !== 'prompt_embeddings');
  if (extra.length) throw new Error(`${where}: unexpected tensor '${extra[0]}' (a PEFT ${what} adapter holds only 'prompt_embeddings')`);
  if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== cols) {
    throw new Error(`${where}: tensor 'prompt_embeddings' has shape [${t.shape.join(', ')}] but adapter_config.json and the model imply [${rows}, ${cols}]`);
  }
  if (t.data.length !== rows * cols) throw new Error(`${where}: tensor 'prompt_embeddings' holds ${t.data.length} values, not ${rows * cols}`);
  return t;
}

// The contract every tuner (one folder under src/tuners/) implements, and the adapter_config.json
// shape they share. PEFT's file layout is the interchange format: adapter_config.json +
// adapter_model.safetensors with PEFT's key names, so adapters move to and from Hugging Face peft.

import type { Tensor } from '../engine/index.js';
import type { LanguageModel, VirtualTokens } from '../models/index.js';

export type PeftType = 'LORA' | 'PREFIX_TUNING' | 'PROMPT_TUNING' | 'BOTTLENECK';

/** adapter_config.json as PEFT writes it: peft_type, task_type, the method's keys, and any other key carried through. */
export interface AdapterConfig {
  peft_type: PeftType;
  /** 'CAUSAL_LM' for GPT-2; null for BERT's masked LM (PEFT has no masked-LM task type). */
  task_type: string | null;
  base_model_name_or_path: string | null;
  inference_mode: boolean;
  [k: string]: unknown;
}

export interface SavedTensor { shape: number[]; data: Float32Array }

/** One method, registered in registry.ts. */
export interface Tuner {
  readonly peftType: PeftType;
  /** `icld finetune --method` names that select it ('lora'; 'prefix' and 'ptuning-v2' both PREFIX_TUNING). */
  readonly methods: readonly string[];
  /**
   * A complete adapter_config.json object: the user's keys (CLI flags or a loaded file) over
   * PEFT's defaults for this model and method, validated. `where` starts error messages.
   */
  config(user: Record<string, unknown>, model: LanguageModel, where: string, method?: string): AdapterConfig;
  /** Install adapter `name` on `model` with fresh weights drawn from `seed` (LoRA's B starts at zero). */
  attach(model: LanguageModel, cfg: AdapterConfig, name: string, seed: number): Adapter;
}

/** One named adapter installed on a model. */
export interface Adapter {
  readonly name: string;
  readonly config: AdapterConfig;
  /** Its trainable tensors by in-memory name (PEFT's, adapter name included: '…c_attn.lora_A.default.weight'). */
  namedParameters(): [string, Tensor][];
  /** An inactive adapter leaves the model's outputs exactly as without it. */
  setActive(on: boolean): void;
  readonly active: boolean;
  /** Prefix / prompt methods: the virtual tokens for the model's forward; null for module-based methods. */
  virtual(): VirtualTokens | null;
  /** The tensors PEFT saves, under PEFT's key names (adapter name removed). */
  stateDict(): Map<string, SavedTensor>;
  /** Load what stateDict wrote: every key present, shapes checked, nothing extra; `where` names the file. */
  loadStateDict(sd: Map<string, SavedTensor>, where: string): void;
  /** LoRA only: fold the update into the base weights in place, and take it out again. */
  merge?(): void;
  unmerge?(): void;
  readonly merged?: boolean;
  /** Take it off the model; wrapped modules go back to the originals when no adapter uses them. */
  remove(): void;
}

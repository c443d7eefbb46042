// LoRA (peft_type 'LORA'): LoraConfig's adapter_config.json keys and defaults, target matching,
// and the Adapter that installs LoraLinear wrappers. Saved keys follow PEFT:
// 'base_model.model.<module path>.lora_A.weight' (the adapter name removed).

import { Rng, type Tensor } from '../../engine/index.js';
import { modelFamily, type LanguageModel } from '../../models/index.js';
import type { Adapter, AdapterConfig, SavedTensor, Tuner } from '../types.js';
import { baseLayer, checkKeys, layersSchema, matchTargets, rejectUnsupported, targetModulesSchema, unwrapSites, wrapTargets, type TargetSpec, type WrapSite } from '../targets.js';
import { LoraLinear, type LoraInit } from './layer.js';
import { checkStateDict } from '../state.js';

/** LoraConfig keys that change the numbers and that we do not implement (non-default = error). */
const UNSUPPORTED = [
  'use_dora', 'lora_bias', 'layers_pattern', 'rank_pattern', 'alpha_pattern', 'modules_to_save', 'trainable_token_indices',
  'layer_replication', 'target_parameters', 'alora_invocation_tokens', 'use_qalora', 'use_bdlora', 'arrow_config',
  'kasa_config', 'velora_config', 'monteclora_config', 'megatron_config',
] as const;

const KEYS = {
  peft_type: { t: 'string', enum: ['LORA'] },
  task_type: { t: 'oneOf', of: [{ t: 'string' }, { t: 'null' }], what: 'a string or null' },
  base_model_name_or_path: { t: 'oneOf', of: [{ t: 'string' }, { t: 'null' }], what: 'a string or null' },
  revision: { t: 'oneOf', of: [{ t: 'string' }, { t: 'null' }], what: 'a string or null' },
  inference_mode: { t: 'bool' },
  r: { t: 'int', min: 1, max: 65536 },
  lora_alpha: { t: 'number', gt: 0 },
  lora_dropout: { t: 'number', min: 0, lt: 1 },
  target_modules: targetModulesSchema,
  exclude_modules: { t: 'oneOf', of: [{ t: 'null' }, targetModulesSchema], what: 'null, a list of module names or a regex string' },
  fan_in_fan_out: { t: 'bool' },
  bias: { t: 'string', enum: ['none', 'all', 'lora_only'] },
  use_rslora: { t: 'bool' },
  init_lora_weights: { t: 'oneOf', of: [{ t: 'bool' }, { t: 'string' }], what: 'true, false or "gaussian"' },
  layers_to_transform: layersSchema,
} as const;

/** PEFT's LoraConfig defaults (the keys save_pretrained writes that concern plain LoRA). */
function defaults(model: LanguageModel): AdapterConfig {
  const fam = modelFamily(model.modelType);
  return {
    peft_type: 'LORA', task_type: fam.tuning.peftTaskType, base_model_name_or_path: null, revision: null, inference_mode: false,
    r: 8, lora_alpha: 8, lora_dropout: 0, target_modules: [...fam.tuning.loraTargets], exclude_modules: null,
    fan_in_fan_out: false, bias: 'none', use_rslora: false, init_lora_weights: true, layers_to_transform: null, layers_pattern: null,
    rank_pattern: {}, alpha_pattern: {}, modules_to_save: null, use_dora: false, lora_bias: false, megatron_config: null,
    megatron_core: 'megatron.core', loftq_config: {}, layer_replication: null, trainable_token_indices: null, auto_mapping: null,
  };
}

export function loraConfig(user: Record<string, unknown>, model: LanguageModel, where: string): AdapterConfig {
  const cfg = defaults(model);
  for (const [k, v] of Object.entries(user)) {
    // null target_modules means "the architecture's default" in PEFT.
    if (v === undefined || (k === 'target_modules' && v === null)) continue;
    cfg[k] = v;
  }
  checkKeys(cfg, KEYS as unknown as Parameters<typeof checkKeys>[1], where);
  rejectUnsupported(cfg, where, UNSUPPORTED);
  if (cfg.bias !== 'none') throw new Error(`${where}: bias ${JSON.stringify(cfg.bias)} is not supported (only "none": LoRA trains no bias)`);
  const init = cfg.init_lora_weights;
  if (typeof init === 'string' && init !== 'gaussian') throw new Error(`${where}: init_lora_weights ${JSON.stringify(init)} is not supported (true, false or "gaussian")`);
  if (typeof cfg.target_modules === 'string' && cfg.layers_to_transform !== null) throw new Error(`${where}: layers_to_transform cannot be used when target_modules is a regex string (as in PEFT)`);
  const found = matchTargets(model, cfg as unknown as TargetSpec, where);
  // PEFT sets fan_in_fan_out from the layer type (true for GPT-2's Conv1D) and saves it so.
  cfg.fan_in_fan_out = baseLayer(found[0][1]).weightLayout === 'in_out';
  return cfg;
}

export class LoraAdapter implements Adapter {
  private sites: WrapSite<LoraLinear>[] = [];
  private on = true;
  private isMerged = false;

  constructor(private readonly model: LanguageModel, readonly name: string, readonly config: AdapterConfig, seed: number) {
    const where = `adapter '${name}'`;
    const found = matchTargets(model, config as unknown as TargetSpec, where);
    const r = config.r as number, alpha = config.lora_alpha as number;
    const scaling = config.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r;
    const rng = new Rng(seed);
    this.sites = wrapTargets(model, found, name, where, LoraLinear,
      (w) => { w.addAdapter(name, r, scaling, config.lora_dropout as number, config.init_lora_weights as LoraInit, rng); });
  }

  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const { path, wrapper } of this.sites) {
      const e = wrapper.entries.get(this.name)!;
      out.push([`${path}.lora_A.${this.name}.weight`, e.A], [`${path}.lora_B.${this.name}.weight`, e.B]);
    }
    return out;
  }

  get active(): boolean { return this.on; }
  setActive(on: boolean): void {
    // Switched off, a merged adapter must leave the weights too (PEFT unmerges when disabling).
    if (!on && this.isMerged) this.unmerge();
    this.on = on;
    for (const { wrapper } of this.sites) wrapper.entries.get(this.name)!.active = on;
  }

  virtual(): null { return null; }

  stateDict(): Map<string, SavedTensor> {
    const sd = new Map<string, SavedTensor>();
    for (const { path, wrapper } of this.sites) {
      const e = wrapper.entries.get(this.name)!;
      sd.set(`base_model.model.${path}.lora_A.weight`, { shape: e.A.shape.slice(), data: Float32Array.from(e.A.f32) });
      sd.set(`base_model.model.${path}.lora_B.weight`, { shape: e.B.shape.slice(), data: Float32Array.from(e.B.f32) });
    }
    return sd;
  }

  loadStateDict(sd: Map<string, SavedTensor>, where: string): void {
    if (this.isMerged) throw new Error(`${where}: adapter '${this.name}' is merged; unmerge it before loading weights`);
    const mine = new Map<string, Tensor>();
    for (const { path, wrapper } of this.sites) {
      const e = wrapper.entries.get(this.name)!;
      mine.set(`base_model.model.${path}.lora_A.weight`, e.A);
      mine.set(`base_model.model.${path}.lora_B.weight`, e.B);
    }
    checkStateDict(sd, mine, where);
    for (const [k, t] of mine) t.f32.set(sd.get(k)!.data);
  }

  get merged(): boolean { return this.isMerged; }
  merge(): void {
    if (this.isMerged) return;
    if (!this.on) throw new Error(`adapter '${this.name}' is not active; activate it before merging`);
    for (const { wrapper } of this.sites) wrapper.merge(this.name);
    this.isMerged = true;
  }
  unmerge(): void {
    if (!this.isMerged) return;
    for (const { wrapper } of this.sites) wrapper.unmerge(this.name);
    this.isMerged = false;
  }

  /**
   * Take the adapter off; a wrapper left with no adapter gives its place back to the original
   * layer object. keepMerged (merge-and-unload): a merged update stays in the base weights.
   */
  remove(keepMerged = false): void {
    if (this.isMerged && !keepMerged) this.unmerge();
    unwrapSites(this.model, this.sites, this.name);
    this.sites = [];
  }
}

export const loraTuner: Tuner = {
  peftType: 'LORA',
  methods: ['lora'],
  config: (user, model, where) => loraConfig(user, model, where),
  attach: (model, cfg, name, seed) => new LoraAdapter(model, name, cfg, seed),
};

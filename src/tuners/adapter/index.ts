// Bottleneck adapters (peft_type 'BOTTLENECK', the LLM-Adapters fork of peft): after a linear
// layer, y = base(x); y + s·up(act(down(dropout(y)))) (Houlsby: after attention and MLP outputs;
// Pfeiffer, the fork's use_adapterp: after the MLP only). use_parallel_adapter: y + s·up(act(down(dropout(x)))).
// As in the fork, adapter_down [b, n] and adapter_up [out, b] are nn.Linear weights without bias;
// init_weights "mam_adapter" (our default) zero-initialises up, so attaching changes nothing.
// Saved keys: 'base_model.model.<path>.adapter_down.weight', '….adapter_up.weight'
// (+ '….adapter_scaling' when scaling is "learned").

import * as O from '../../engine/ops.js';
import { Rng, type Tensor } from '../../engine/index.js';
import { Module, Dropout, type LinearLayer } from '../../nn/module.js';
import { modelFamily, type LanguageModel } from '../../models/index.js';
import type { Adapter, AdapterConfig, SavedTensor, Tuner } from '../types.js';
import { LinearWrapper, checkKeys, matchTargets, rejectUnsupported, targetModulesSchema, unwrapSites, wrapTargets, type TargetSpec, type WrapSite } from '../targets.js';
import { ModuleDict, WeightHolder, kaimingUniform } from '../lora/layer.js';
import { checkStateDict } from '../state.js';

export const NON_LINEARITIES = ['relu', 'tanh', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'silu'] as const;

function activate(x: Tensor, act: string): Tensor {
  switch (act) {
    case 'relu': return O.relu(x);
    case 'tanh': return O.tanh(x);
    case 'gelu': return O.gelu(x, 'none');
    case 'silu': return O.mul(x, O.sigmoid(x));
    default: return O.gelu(x, 'tanh');
  }
}

/** One scalar parameter per adapter name (scaling "learned"), named '<dict>.<adapter>'. */
class ParamDict extends Module {
  set(name: string, t: Tensor): Tensor { return this.addParam(name, t); }
  delete(name: string): void { this.params.delete(name); }
}

interface Entry { down: Tensor; up: Tensor; learned: Tensor | null; scaling: number; act: string; parallel: boolean; dropout: Dropout; active: boolean }

export class BottleneckLinear extends LinearWrapper {
  readonly entries = new Map<string, Entry>();
  private readonly adapter_down = new ModuleDict();
  private readonly adapter_up = new ModuleDict();
  private readonly adapter_scaling = new ParamDict();
  private readonly adapter_dropout = new ModuleDict();

  constructor(base: LinearLayer, private readonly rng: Rng) {
    super(base);
    this.addModule('adapter_down', this.adapter_down);
    this.addModule('adapter_up', this.adapter_up);
    this.addModule('adapter_scaling', this.adapter_scaling);
    this.addModule('adapter_dropout', this.adapter_dropout);
  }

  addAdapter(name: string, cfg: AdapterConfig, rng: Rng): Entry {
    if (this.entries.has(name)) throw new Error(`adapter '${name}' is already installed on this layer`);
    const b = cfg.bottleneck_size as number, parallel = cfg.use_parallel_adapter === true;
    const n = parallel ? this.inFeatures : this.outFeatures;
    const bert = cfg.init_weights === 'bert';
    const down = bert ? O.randn([b, n], rng, 0.02) : kaimingUniform([b, n], n, rng);
    const up = bert ? O.randn([this.outFeatures, b], rng, 0.02) : O.zeros([this.outFeatures, b]);
    const d = new WeightHolder(down), u = new WeightHolder(up);
    this.adapter_down.set(name, d); this.adapter_up.set(name, u);
    const learned = cfg.scaling === 'learned' ? this.adapter_scaling.set(name, O.ones([1])) : null;
    const drop = new Dropout(cfg.adapter_dropout as number, this.rng);
    drop.train(this.training);
    this.adapter_dropout.set(name, drop);
    const e: Entry = { down: d.weight, up: u.weight, learned, scaling: typeof cfg.scaling === 'number' ? cfg.scaling : 1, act: cfg.non_linearity as string, parallel, dropout: drop, active: true };
    this.entries.set(name, e);
    return e;
  }

  removeAdapter(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    this.entries.delete(name);
    this.adapter_down.delete(name); this.adapter_up.delete(name); this.adapter_dropout.delete(name); this.adapter_scaling.delete(name);
    for (const t of [e.down, e.up, e.learned]) t?.dispose();
  }

  forward(x: Tensor): Tensor {
    const y = this.base.forward(x);
    let out = y;
    for (const e of this.entries.values()) {
      if (!e.active) continue;
      const h = e.dropout.forward(e.parallel ? x : y);
      const z = O.matmul(activate(O.matmul(h, O.transpose(e.down)), e.act), O.transpose(e.up));
      out = O.add(out, e.learned ? O.mul(z, e.learned) : e.scaling === 1 ? z : O.scale(z, e.scaling));
    }
    return out;
  }
}

const KEYS = {
  peft_type: { t: 'string', enum: ['BOTTLENECK'] },
  task_type: { t: 'oneOf', of: [{ t: 'string' }, { t: 'null' }], what: 'a string or null' },
  base_model_name_or_path: { t: 'oneOf', of: [{ t: 'string' }, { t: 'null' }], what: 'a string or null' },
  inference_mode: { t: 'bool' },
  bottleneck_size: { t: 'int', min: 1, max: 65536 },
  non_linearity: { t: 'string', enum: NON_LINEARITIES },
  adapter_dropout: { t: 'number', min: 0, lt: 1 },
  target_modules: targetModulesSchema,
  use_parallel_adapter: { t: 'bool' },
  use_adapterp: { t: 'bool' },
  scaling: { t: 'oneOf', of: [{ t: 'number' }, { t: 'string', enum: ['learned'] }], what: 'a number or "learned"' },
  bias: { t: 'string', enum: ['none', 'all', 'adapter_only'] },
  init_weights: { t: 'string', enum: ['bert', 'mam_adapter'] },
  adapter_type: { t: 'string', enum: ['houlsby', 'pfeiffer'] },
} as const;

export function adapterConfig(user: Record<string, unknown>, model: LanguageModel, where: string): AdapterConfig {
  const fam = modelFamily(model.modelType);
  checkKeys(user, KEYS as unknown as Parameters<typeof checkKeys>[1], where);
  // adapter_type is our spelling of the fork's use_adapterp (not written to the file).
  const pfeiffer = user.adapter_type !== undefined ? user.adapter_type === 'pfeiffer' : user.use_adapterp === true;
  const cfg: AdapterConfig = {
    peft_type: 'BOTTLENECK', task_type: fam.tuning.peftTaskType, base_model_name_or_path: null, inference_mode: false,
    bottleneck_size: 64, non_linearity: 'tanh', adapter_dropout: 0, target_modules: [...(pfeiffer ? fam.tuning.adapterTargets.pfeiffer : fam.tuning.adapterTargets.houlsby)],
    use_parallel_adapter: false, use_adapterp: pfeiffer, scaling: 1.0, bias: 'none', init_weights: 'mam_adapter', modules_to_save: null,
  };
  for (const [k, v] of Object.entries(user)) {
    if (v === undefined || k === 'adapter_type' || (k === 'target_modules' && v === null)) continue;
    cfg[k] = v;
  }
  cfg.use_adapterp = pfeiffer;
  rejectUnsupported(cfg, where, ['modules_to_save']);
  if (cfg.bias !== 'none') throw new Error(`${where}: bias ${JSON.stringify(cfg.bias)} is not supported (only "none": adapters train no base bias)`);
  matchTargets(model, cfg as unknown as TargetSpec, where);
  return cfg;
}

export class BottleneckAdapter implements Adapter {
  private sites: WrapSite<BottleneckLinear>[] = [];
  private on = true;

  constructor(private readonly model: LanguageModel, readonly name: string, readonly config: AdapterConfig, seed: number) {
    const where = `adapter '${name}'`;
    const rng = new Rng(seed);
    const found = matchTargets(model, config as unknown as TargetSpec, where);
    this.sites = wrapTargets(model, found, name, where, BottleneckLinear, (w) => { w.addAdapter(name, config, rng); });
  }

  private tensors(): [string, string, Tensor][] {
    const out: [string, string, Tensor][] = [];
    for (const { path, wrapper } of this.sites) {
      const e = wrapper.entries.get(this.name)!;
      out.push([`${path}.adapter_down.${this.name}.weight`, `base_model.model.${path}.adapter_down.weight`, e.down],
        [`${path}.adapter_up.${this.name}.weight`, `base_model.model.${path}.adapter_up.weight`, e.up]);
      if (e.learned) out.push([`${path}.adapter_scaling.${this.name}`, `base_model.model.${path}.adapter_scaling`, e.learned]);
    }
    return out;
  }

  namedParameters(): [string, Tensor][] { return this.tensors().map(([n, , t]) => [n, t]); }
  get active(): boolean { return this.on; }
  setActive(on: boolean): void {
    this.on = on;
    for (const { wrapper } of this.sites) wrapper.entries.get(this.name)!.active = on;
  }
  virtual(): null { return null; }
  stateDict(): Map<string, SavedTensor> {
    return new Map(this.tensors().map(([, k, t]) => [k, { shape: t.shape.slice(), data: Float32Array.from(t.f32) }]));
  }
  loadStateDict(sd: Map<string, SavedTensor>, where: string): void {
    const mine = new Map(this.tensors().map(([, k, t]) => [k, t]));
    checkStateDict(sd, mine, where);
    for (const [k, t] of mine) t.f32.set(sd.get(k)!.data);
  }
  remove(): void {
    unwrapSites(this.model, this.sites, this.name);
    this.sites = [];
  }
}

export const adapterTuner: Tuner = {
  peftType: 'BOTTLENECK',
  methods: ['adapter'],
  config: (user, model, where) => adapterConfig(user, model, where),
  attach: (model, cfg, name, seed) => new BottleneckAdapter(model, name, cfg, seed),
};

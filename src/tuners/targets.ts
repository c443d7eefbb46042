// Which modules a module-wrapping tuner (LoRA, bottleneck adapters) attaches to, by PEFT's rules
// (peft.tuners.tuners_utils.check_target_module_exists): a string target_modules is a regex
// fullmatched against the module's full path; a list entry matches a path equal to it or ending
// in '.' + entry; layers_to_transform keeps paths whose first numbered segment is listed;
// exclude_modules (same two forms) removes paths.

import type { LanguageModel } from '../models/index.js';
import type { Rng, Tensor } from '../engine/index.js';
import { isLinearLayer, Module, type LinearLayer } from '../nn/module.js';
import { checkSchema, type Schema } from '../io/json.js';

/** Wrappers installed by tuners; their own sub-modules (lora_A, adapter_down…) are never targets. */
export interface TunerWrapper { readonly isTunerWrapper: true; readonly base: LinearLayer }
export function isTunerWrapper(m: Module): m is Module & TunerWrapper {
  return (m as unknown as Partial<TunerWrapper>).isTunerWrapper === true;
}

/**
 * What LoRA and bottleneck layers share: they stand in for a linear layer, and its weight and bias
 * stay registered under their own names (not copies), so the base's save, load and resume see the
 * same parameters as before.
 */
export abstract class LinearWrapper extends Module implements LinearLayer, TunerWrapper {
  readonly isTunerWrapper = true as const;
  constructor(readonly base: LinearLayer) {
    super();
    this.params.set('weight', base.weight);
    if (base.bias) this.params.set('bias', base.bias);
    this.training = base.training;
  }
  get inFeatures(): number { return this.base.inFeatures; }
  get outFeatures(): number { return this.base.outFeatures; }
  get weight(): Tensor { return this.base.weight; }
  get bias(): Tensor | null { return this.base.bias; }
  get weightLayout(): 'in_out' | 'out_in' { return this.base.weightLayout; }
  override train(on = true): this { super.train(on); this.base.train(on); return this; }
  abstract forward(x: Tensor): Tensor;
  /** The adapters installed on this layer, by name. */
  abstract readonly entries: ReadonlyMap<string, unknown>;
  abstract removeAdapter(name: string): void;
}

/** Where a module-wrapping adapter sits: the module path and the wrapper there. */
export interface WrapSite<W extends LinearWrapper> { path: string; wrapper: W }

/**
 * Install adapter `name` at every target: the wrapper of kind `Kind` already there is reused,
 * else the linear layer is wrapped (one carrying another method's wrapper is an error). `add`
 * puts the adapter on each wrapper. A failure takes off whatever was installed and rethrows.
 */
export function wrapTargets<W extends LinearWrapper>(model: LanguageModel, found: [string, Module][], name: string, where: string,
  Kind: new (base: LinearLayer, rng: Rng) => W, add: (w: W) => void): WrapSite<W>[] {
  if (found.some(([, m]) => m instanceof Kind && m.entries.has(name))) throw new Error(`${where}: an adapter named '${name}' is already installed`);
  const sites: WrapSite<W>[] = [];
  try {
    for (const [path, m] of found) {
      if (isTunerWrapper(m) && !(m instanceof Kind)) throw new Error(`${where}: '${path}' already carries an adapter of another method`);
      const w = m instanceof Kind ? m : new Kind(baseLayer(m), model.rng);
      if (w !== m) model.replaceModule(path, w);
      sites.push({ path, wrapper: w });
      add(w);
    }
  } catch (e) { unwrapSites(model, sites, name); throw e; } // nothing half-installed
  return sites;
}

/** Take adapter `name` off its sites; a wrapper left with no adapter gives its place back to the original layer. */
export function unwrapSites(model: LanguageModel, sites: readonly WrapSite<LinearWrapper>[], name: string): void {
  for (const { path, wrapper } of sites) {
    wrapper.removeAdapter(name);
    if (wrapper.entries.size === 0 && model.getModule(path) === wrapper) model.replaceModule(path, wrapper.base);
  }
}

export const targetModulesSchema: Schema = {
  t: 'oneOf', what: 'a list of module names or a regex string',
  of: [{ t: 'array', of: { t: 'string', nonEmpty: true }, minLen: 1 }, { t: 'string', nonEmpty: true }],
};
export const layersSchema: Schema = {
  t: 'oneOf', what: 'null, a layer index or a list of layer indices',
  of: [{ t: 'null' }, { t: 'int', min: 0 }, { t: 'array', of: { t: 'int', min: 0 } }],
};

function compile(re: string, where: string, key: string): RegExp {
  try { return new RegExp(`^(?:${re})$`); } catch (e) { throw new Error(`${where}: ${key} ${JSON.stringify(re)} is not a valid regular expression (${(e as Error).message})`); }
}

function matcher(spec: string | readonly string[], where: string, key: string): (path: string) => boolean {
  if (typeof spec === 'string') { const re = compile(spec, where, key); return (p) => re.test(p); }
  return (p) => spec.some((t) => p === t || p.endsWith('.' + t));
}

/** Module paths of the model, wrappers standing for the layer they wrap (their insides skipped). */
export function modulePaths(model: LanguageModel): [string, Module][] {
  const inside: string[] = [];
  const out: [string, Module][] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === '' || inside.some((w) => path.startsWith(w + '.'))) continue;
    if (isTunerWrapper(m)) inside.push(path);
    out.push([path, m]);
  }
  return out;
}

export interface TargetSpec {
  target_modules: string | readonly string[];
  layers_to_transform?: number | readonly number[] | null;
  exclude_modules?: string | readonly string[] | null;
}

/**
 * The modules `spec` selects, in tree order, each a LinearLayer (or a tuner wrapper around one).
 * A selected module of another kind, or no match at all, is a one-line error starting with `where`.
 */
export function matchTargets(model: LanguageModel, spec: TargetSpec, where: string): [string, Module][] {
  const hit = matcher(spec.target_modules, where, 'target_modules');
  const excluded = spec.exclude_modules ? matcher(spec.exclude_modules, where, 'exclude_modules') : () => false;
  const layers = spec.layers_to_transform;
  const wantLayer = layers === null || layers === undefined ? null
    : typeof layers === 'number' ? (i: number) => i === layers : (i: number) => (layers as readonly number[]).includes(i);
  const paths = modulePaths(model);
  const out: [string, Module][] = [];
  for (const [path, m] of paths) {
    if (excluded(path) || !hit(path)) continue;
    if (wantLayer && typeof spec.target_modules !== 'string') {
      // PEFT: the first numbered path segment is the layer index ('transformer.h.3.attn…' → 3).
      const idx = /^.*?\.[^.]*\.(\d+)\./.exec(path);
      if (!idx || !wantLayer(Number(idx[1]))) continue;
    }
    if (!isLinearLayer(m) && !isTunerWrapper(m)) {
      throw new Error(`${where}: target_modules matches '${path}', which is not a linear layer (LoRA and adapters wrap linear layers only)`);
    }
    out.push([path, m]);
  }
  if (out.length === 0) {
    const names = [...new Set(paths.filter(([, m]) => isLinearLayer(m) || isTunerWrapper(m)).map(([p]) => p.split('.').pop()!))];
    throw new Error(`${where}: target_modules ${JSON.stringify(spec.target_modules)} matches no module of this ${model.modelType} model (its linear layers: ${names.join(', ')})`);
  }
  return out;
}

/** The layer a target path holds (unwrapping a tuner wrapper). */
export function baseLayer(m: Module): LinearLayer {
  return isTunerWrapper(m) ? m.base : (m as LinearLayer);
}

/** checkSchema over the keys that are present, with `where` naming the file or flag source. */
export function checkKeys(cfg: Record<string, unknown>, keys: Record<string, Schema>, where: string): void {
  checkSchema(cfg, { t: 'object', keys, open: true }, where, '');
}

/**
 * PEFT keys that change the numbers but that we do not implement: present with a non-default
 * value, they are a one-line error naming the key (loading would otherwise silently differ).
 */
export function rejectUnsupported(cfg: Record<string, unknown>, where: string, keys: readonly string[]): void {
  for (const k of keys) {
    const v = cfg[k];
    const set = v !== undefined && v !== null && v !== false && !(Array.isArray(v) && v.length === 0) &&
      !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0) && v !== '';
    if (set) throw new Error(`${where}: ${k} ${JSON.stringify(v)} is not supported (only its default, which leaves it off)`);
  }
}

// PeftModel: a base LanguageModel with named adapters, as peft's PeftModel. It is itself a
// LanguageModel (pipelines take it unchanged): module-based adapters live inside the base's
// module tree (wrappers), prompt-learning adapters hand their virtual tokens to every forward.
// The base is frozen; the active adapter is trainable (unless loaded for inference). Unlike
// peft, adapters of different methods may sit side by side (serve's named adapters): only the
// active one acts, and two methods on one layer are refused when attaching.

import type { Tensor, Rng } from '../engine/index.js';
import { modelFamily, type ForwardOptions, type KVCache, type LanguageModel, type LMConfig, type LMKind, type ModelDims } from '../models/index.js';
import { loadNamedParameters, type Module } from '../nn/module.js';
import type { SaveOptions } from '../io/hf.js';
import type { Adapter, AdapterConfig, SavedTensor } from './types.js';
import { tunerForType } from './registry.js';
import { readAdapterConfig, readAdapterWeights, writeAdapterDir, ADAPTER_CONFIG_NAME } from './peft-io.js';
import { join } from 'node:path';

const PROMPT_LEARNING = new Set(['PREFIX_TUNING', 'PROMPT_TUNING']);

/** 1234567 → '1,234,567' (Python's {:,d}, independent of the locale). */
export function thousands(n: number): string { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }

/** peft's print_trainable_parameters line. */
export function trainableLine(trainable: number, all: number): string {
  return `trainable params: ${thousands(trainable)} || all params: ${thousands(all)} || trainable%: ${(all ? (100 * trainable) / all : 0).toFixed(4)}`;
}

export class PeftModel implements LanguageModel {
  private readonly map = new Map<string, Adapter>();
  private readonly trainableOf = new Map<string, boolean>();
  private active: string | null = null;
  /** Set by trainEmbeddings() or by loading an adapter that carries the embedding. */
  private embeddings: { trainable: boolean; original: Float32Array } | null = null;
  readonly newCache?: (batch: number, maxT?: number) => KVCache;

  constructor(readonly base: LanguageModel) {
    if (base instanceof PeftModel) throw new Error('PeftModel: the base is already a PeftModel');
    base.requiresGrad(false);
    if (base.newCache) {
      const nc = base.newCache.bind(base);
      // Room for the virtual positions at the front of the cache.
      this.newCache = (batch, maxT) => (maxT === undefined ? nc(batch) : nc(batch, maxT + this.virtualLength()));
    }
  }

  get adapters(): ReadonlyMap<string, Adapter> { return this.map; }
  get activeAdapter(): string | null { return this.active; }

  // --- adapters -------------------------------------------------------------------------------

  private checkNewName(name: string): void {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`adapter name ${JSON.stringify(name)}: use letters, digits, '_' or '-' (it becomes part of parameter names)`);
    if (this.map.has(name)) throw new Error(`adapter '${name}' already exists (adapters: ${[...this.map.keys()].join(', ')})`);
  }

  private install(name: string, a: Adapter, trainable: boolean): Adapter {
    this.map.set(name, a);
    this.trainableOf.set(name, trainable);
    this.setAdapter(name);
    return a;
  }

  /** A fresh adapter from `cfg` (completed and validated by its tuner); it becomes the active, trainable one. */
  addAdapter(name: string, cfg: AdapterConfig, seed: number): Adapter {
    this.checkNewName(name);
    const where = `adapter '${name}'`;
    const tuner = tunerForType(cfg.peft_type, where);
    const full = tuner.config(cfg, this.base, where);
    return this.install(name, tuner.attach(this.base, full, name, seed), true);
  }

  /**
   * Load a PEFT adapter directory as adapter `name` (made active). Keys and shapes must match
   * exactly; a saved embedding larger than the base's vocabulary resizes the base first.
   */
  loadAdapter(dir: string, name = 'default', opts: { trainable?: boolean } = {}): Adapter {
    this.checkNewName(name);
    const trainable = opts.trainable === true;
    const raw = readAdapterConfig(dir);
    const cfgPath = join(dir, ADAPTER_CONFIG_NAME);
    const tuner = tunerForType(raw.peft_type, cfgPath);
    const cfg = tuner.config(raw, this.base, cfgPath);
    cfg.inference_mode = !trainable;
    const { path, tensors } = readAdapterWeights(dir);
    const embKey = this.embeddingKey();
    const emb = tensors.get(embKey);
    tensors.delete(embKey);
    if (emb && (emb.shape.length !== 2 || emb.shape[1] !== this.base.dims.hidden)) {
      throw new Error(`${path}: tensor '${embKey}' has shape [${emb.shape.join(', ')}], the model expects [vocab, ${this.base.dims.hidden}]`);
    }
    const a = tuner.attach(this.base, cfg, name, 0);
    try {
      a.loadStateDict(tensors, path);
      // The vocabulary grew during fine-tuning (chat tokens): the base follows before taking the rows.
      if (emb && emb.shape[0] !== this.base.vocabSize) { this.base.resizeTokenEmbeddings(emb.shape[0]); this.refreeze(); }
    } catch (e) { a.remove(); throw e; }
    if (emb) {
      const w = this.base.inputEmbeddings();
      const original = this.embeddings?.original ?? Float32Array.from(w.f32);
      w.f32.set(emb.data);
      this.embeddings = { trainable: trainable || (this.embeddings?.trainable ?? false), original };
      w.requiresGrad = this.embeddings.trainable;
    }
    return this.install(name, a, trainable);
  }

  /** Write adapter `name` (default: the active one) in PEFT's layout: inference_mode true, as peft saves. */
  saveAdapter(dir: string, opts: { name?: string } = {}): void {
    const name = opts.name ?? this.active;
    if (name === null) throw new Error(`saveAdapter ${dir}: the model has no adapter`);
    const a = this.get(name);
    const sd = a.stateDict();
    if (this.embeddings) {
      const w = this.base.inputEmbeddings();
      sd.set(this.embeddingKey(), { shape: w.shape.slice(), data: Float32Array.from(w.f32) });
    }
    writeAdapterDir(dir, { ...a.config, inference_mode: true }, sd);
  }

  /** The same as saveAdapter (an adapter directory is what a PeftModel saves, as in peft). */
  savePretrained(dir: string, _opts?: SaveOptions): void { this.saveAdapter(dir); }

  private get(name: string): Adapter {
    const a = this.map.get(name);
    if (!a) throw new Error(`no adapter '${name}' (adapters: ${[...this.map.keys()].join(', ') || 'none'})`);
    return a;
  }

  /** Make `name` the one active adapter; only it is trainable (when it was added or loaded trainable). */
  setAdapter(name: string): void {
    this.get(name);
    for (const [n, a] of this.map) {
      a.setActive(n === name);
      const on = n === name && this.trainableOf.get(n) === true;
      for (const [, p] of a.namedParameters()) p.requiresGrad = on;
    }
    this.active = name;
  }

  /** Run `fn` with every adapter off (and a trained embedding swapped back to the original), then restore. */
  withoutAdapters<T>(fn: () => T): T {
    const state = [...this.map.values()].map((a) => ({ a, on: a.active, merged: a.merged === true }));
    let swapped: Float32Array | null = null;
    for (const { a } of state) a.setActive(false);
    if (this.embeddings) {
      const w = this.base.inputEmbeddings();
      if (w.size === this.embeddings.original.length) { swapped = Float32Array.from(w.f32); w.f32.set(this.embeddings.original); }
    }
    const restore = (): void => {
      if (swapped) this.base.inputEmbeddings().f32.set(swapped);
      for (const { a, on, merged } of state) { a.setActive(on); if (merged) a.merge?.(); }
    };
    let out: T;
    try { out = fn(); } catch (e) { restore(); throw e; }
    if (out instanceof Promise) return out.finally(restore) as T;
    restore();
    return out;
  }

  /**
   * Fold the active LoRA adapter into the base weights, take every adapter off (original modules
   * back in place) and return the base, all parameters trainable again, ready for savePretrained.
   */
  mergeAndUnload(): LanguageModel {
    const other = [...this.map.values()].find((a) => !a.merge);
    if (other) throw new Error(`mergeAndUnload: only LoRA adapters merge into the weights; '${other.name}' is ${other.config.peft_type}`);
    for (const a of this.map.values()) if (a.active) a.merge!();
    for (const a of this.map.values()) (a.remove as (keepMerged?: boolean) => void).call(a, true);
    this.map.clear();
    this.trainableOf.clear();
    this.active = null;
    this.embeddings = null;
    this.base.requiresGrad(true);
    return this.base;
  }

  /**
   * Save the input embedding with the adapter (a resized vocabulary; peft's save_embedding_layers)
   * and, unless `trainable` is false, train it too.
   */
  trainEmbeddings(trainable = true): void {
    const w = this.base.inputEmbeddings();
    if (!this.embeddings) this.embeddings = { trainable, original: Float32Array.from(w.f32) };
    this.embeddings.trainable = trainable;
    w.requiresGrad = trainable;
  }

  private embeddingKey(): string { return `base_model.model.${modelFamily(this.base.modelType).tuning.embeddingModule}.weight`; }

  /** After a resize the base has new tensors: frozen unless they are the trained embedding. */
  private refreeze(): void {
    const adapterParams = new Set<Tensor>();
    for (const a of this.map.values()) for (const [, p] of a.namedParameters()) adapterParams.add(p);
    const emb = this.base.inputEmbeddings();
    for (const [, p] of this.base.namedParameters()) if (!adapterParams.has(p)) p.requiresGrad = p === emb && this.embeddings?.trainable === true;
  }

  trainableSummary(): string {
    let t = 0, all = 0;
    for (const [, p] of this.namedParameters()) { all += p.size; if (p.requiresGrad) t += p.size; }
    return trainableLine(t, all);
  }

  // --- LanguageModel --------------------------------------------------------------------------

  get kind(): LMKind { return this.base.kind; }
  get modelType(): string { return this.base.modelType; }
  get config(): LMConfig { return this.base.config; }
  get vocabSize(): number { return this.base.vocabSize; }
  get eosTokenId(): number | null { return this.base.eosTokenId; }
  get rng(): Rng { return this.base.rng; }
  get dims(): ModelDims { return this.base.dims; }
  get training(): boolean { return this.base.training; }
  set training(on: boolean) { this.base.train(on); }
  /** Real tokens that fit: the virtual ones take positions too. */
  get maxPositions(): number { return this.base.maxPositions - this.virtualLength(); }

  private activeAdapterObj(): Adapter | null {
    const a = this.active === null ? null : this.map.get(this.active)!;
    return a && a.active ? a : null;
  }

  private virtualLength(): number {
    const a = this.activeAdapterObj();
    if (!a || !PROMPT_LEARNING.has(a.config.peft_type)) return 0;
    const n = a.config.num_virtual_tokens;
    return typeof n === 'number' ? n : 0;
  }

  /** The caller's options plus the active adapter's virtual tokens (once per KV cache: they live at its front). */
  private withVirtual(opts: ForwardOptions = {}): ForwardOptions {
    const a = this.activeAdapterObj();
    if (!a || (opts.cache && opts.cache.length > 0)) return opts;
    const v = a.virtual();
    if (!v) return opts;
    if (opts.virtual) throw new Error(`PeftModel: ForwardOptions.virtual is set while adapter '${a.name}' supplies virtual tokens`);
    return { ...opts, virtual: v };
  }

  inputEmbeddings(): Tensor { return this.base.inputEmbeddings(); }
  resizeTokenEmbeddings(n: number): void {
    const trained = this.embeddings !== null;
    this.base.resizeTokenEmbeddings(n);
    // The original copy no longer has the vocabulary's shape: start a new one from the resized matrix.
    if (trained) this.embeddings = { trainable: this.embeddings!.trainable, original: Float32Array.from(this.base.inputEmbeddings().f32) };
    this.refreeze();
  }
  forward(ids: Tensor, opts?: ForwardOptions): Tensor { return this.base.forward(ids, this.withVirtual(opts)); }
  hidden(ids: Tensor, opts?: ForwardOptions): Tensor { return this.base.hidden(ids, this.withVirtual(opts)); }
  lmHead(h: Tensor): Tensor { return this.base.lmHead(h); }
  loss(ids: Tensor, labels?: Tensor, opts?: ForwardOptions): { loss: Tensor; logits: Tensor } { return this.base.loss(ids, labels, this.withVirtual(opts)); }

  /** Base parameters (module adapters included, as they sit in the tree) + prompt-learning adapters' own. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out = this.base.namedParameters(prefix);
    const seen = new Set(out.map(([, p]) => p));
    for (const a of this.map.values()) {
      for (const [n, p] of a.namedParameters()) if (!seen.has(p)) { seen.add(p); out.push([prefix + n, p]); }
    }
    return out;
  }
  parameters(): Tensor[] { return this.namedParameters().map(([, p]) => p); }
  numParameters(): number { return this.parameters().reduce((s, p) => s + p.size, 0); }
  namedTrainableParameters(prefix = ''): [string, Tensor][] { return this.namedParameters(prefix).filter(([, p]) => p.requiresGrad); }
  numTrainableParameters(): number { return this.namedTrainableParameters().reduce((s, [, p]) => s + p.size, 0); }

  /** As Module.loadStateDict, over namedParameters() (base and adapters). */
  loadStateDict(sd: Map<string, { shape: number[]; data: Float32Array }>, where: string, strict = true): void {
    loadNamedParameters(this.namedParameters(), sd, where, strict);
  }

  train(on = true): this { this.base.train(on); return this; }
  eval(): this { return this.train(false); }
  dispose(): void {
    const inTree = new Set(this.base.parameters());
    for (const a of this.map.values()) for (const [, p] of a.namedParameters()) if (!inTree.has(p)) p.dispose();
    this.base.dispose();
  }

  namedModules(prefix?: string): [string, Module][] { return this.base.namedModules(prefix); }
  getModule(path: string): Module { return this.base.getModule(path); }
  replaceModule(path: string, m: Module): Module { return this.base.replaceModule(path, m); }
  requiresGrad(on: boolean): this {
    for (const [, p] of this.namedParameters()) p.requiresGrad = on;
    return this;
  }
}

/**
 * `model` with the adapter in `adapterDir` loaded as 'default' (for inference): names, shapes and
 * the config are checked, a mismatch is a one-line error naming the file.
 */
export function attachAdapterDir(model: LanguageModel, adapterDir: string): PeftModel {
  if (model instanceof PeftModel) {
    model.loadAdapter(adapterDir, model.adapters.has('default') ? `adapter${model.adapters.size}` : 'default');
    return model;
  }
  // A failed load hands the model back as it was: trainable flags included.
  const flags = model.namedParameters().map(([, p]) => [p, p.requiresGrad] as const);
  const pm = new PeftModel(model);
  try { pm.loadAdapter(adapterDir, 'default'); } catch (e) { for (const [p, on] of flags) p.requiresGrad = on; throw e; }
  return pm;
}

export type { SavedTensor };

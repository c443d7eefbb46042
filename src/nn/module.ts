// Module tree with named parameters (names match Hugging Face state-dict keys), plus the
// standard layers. Parameters are kept tensors: scopes never free them.

import * as O from '../engine/ops.js';
import type { QWeight } from '../engine/quant.js';
import { Tensor, type Rng } from '../engine/index.js';
import { clearPool } from '../engine/tensor.js';

export class Module {
  training = true;
  protected readonly params = new Map<string, Tensor>();
  protected readonly children = new Map<string, Module>();

  protected addParam(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    t.keep();
    this.params.set(name, t);
    return t;
  }
  protected addModule<M extends Module>(name: string, m: M): M { this.children.set(name, m); return m; }
  /**
   * Drop parameter `name` (its data freed, not pooled) and return an empty placeholder for the
   * field that held it: a quantized layer keeps only its QWeight.
   */
  protected releaseParam(name: string): Tensor {
    const p = this.params.get(name);
    if (!p) throw new Error(`no parameter '${name}' to release`);
    this.params.delete(name);
    p.dispose();
    // dispose() parks big buffers in the tensor pool; the point here is to give the memory back.
    clearPool();
    const e = O.zeros([0]).keep();
    e.requiresGrad = false;
    return e;
  }

  /** All parameters with dotted names, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    // A loop, not push(...): spreading hundreds of thousands of entries overflows the stack.
    for (const [n, c] of this.children) for (const e of c.namedParameters(`${prefix}${n}.`)) out.push(e);
    return out;
  }
  parameters(): Tensor[] { return this.namedParameters().map(([, p]) => p); }
  numParameters(): number { return this.parameters().reduce((s, p) => s + p.size, 0); }

  train(on = true): this { this.training = on; for (const c of this.children.values()) c.train(on); return this; }
  eval(): this { return this.train(false); }

  /**
   * Copy every parameter's values from a state dict (names as namedParameters), shape-checked.
   * strict: names the model does not use are an error too. `where` prefixes the messages.
   */
  loadStateDict(sd: Map<string, { shape: number[]; data: Float32Array }>, where: string, strict = true): void {
    loadNamedParameters(this.namedParameters(), sd, where, strict);
  }

  dispose(): void { for (const p of this.parameters()) p.dispose(); }

  // Operations the tuners rely on (like torch's named_modules / get_submodule / requires_grad_).

  /** Every module of the tree with its dotted path ('' for this one), parents before children. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.children) for (const e of c.namedModules(prefix ? `${prefix}.${n}` : n)) out.push(e);
    return out;
  }

  /** The sub-module at a dotted path ('transformer.h.0.attn.c_attn'), or an error naming the path. */
  getModule(path: string): Module {
    let m: Module = this;
    if (path === '') return m;
    for (const part of path.split('.')) {
      const c = m.children.get(part);
      if (!c) throw new Error(`no module '${path}' (no child '${part}' under '${path.slice(0, path.indexOf(part) - 1) || '(root)'}')`);
      m = c;
    }
    return m;
  }

  /**
   * Put `m` where the module at `path` was; returns the old one. The parent's field that held the
   * old child (forward code calls it as `this.c_attn`) is pointed at the new one too.
   */
  replaceModule(path: string, m: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = this.getModule(dot < 0 ? '' : path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent.children.get(name);
    if (!old) throw new Error(`no module '${path}' to replace`);
    parent.children.set(name, m);
    const fields = parent as unknown as Record<string, unknown>;
    for (const k of Object.keys(fields)) if (fields[k] === old) fields[k] = m;
    m.train(parent.training);
    return old;
  }

  /** Set requiresGrad on every parameter of this tree (false = frozen: no gradient, not optimised). */
  requiresGrad(on: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = on;
    return this;
  }

  /** The parameters that receive gradients (what an optimizer and an adapter checkpoint hold). */
  namedTrainableParameters(prefix = ''): [string, Tensor][] {
    return this.namedParameters(prefix).filter(([, p]) => p.requiresGrad);
  }
  numTrainableParameters(): number { return this.namedTrainableParameters().reduce((s, [, p]) => s + p.size, 0); }
}

/**
 * What LoRA and bottleneck adapters wrap: an affine map with its weight in one of the two layouts
 * found in checkpoints — [in, out] (GPT-2's Conv1D, PEFT's fan_in_fan_out) or [out, in] (nn.Linear).
 */
export interface LinearLayer extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly weightLayout: 'in_out' | 'out_in';
  forward(x: Tensor): Tensor;
}

/**
 * A layer whose weight can be replaced by an inference-only QWeight (Linear, BERT's [out, in]
 * linear, Embedding). setQuantized frees the f32 parameter: the layer can no longer be trained.
 */
export interface QuantizableLayer extends Module {
  quantized: QWeight | null;
  inferenceWeight(): QWeight;
  setQuantized(q: QWeight): void;
}

export function isQuantizable(m: Module): m is QuantizableLayer {
  const l = m as unknown as Partial<QuantizableLayer>;
  return typeof l.setQuantized === 'function' && typeof l.inferenceWeight === 'function' && 'quantized' in l;
}

/** Check a QWeight's shape against a layer's before installing it. */
export function checkQWeight(q: QWeight, N: number, K: number, what: string): void {
  if (q.N !== N || q.K !== K) throw new Error(`${what}: a ${q.format} weight of ${q.N}×${q.K} does not fit a ${N}×${K} layer`);
}

/** Duck-typed check (tuners see modules only through the tree). */
export function isLinearLayer(m: Module): m is LinearLayer {
  const l = m as unknown as Partial<LinearLayer>;
  return (l.weightLayout === 'in_out' || l.weightLayout === 'out_in') && typeof l.inFeatures === 'number' && typeof l.outFeatures === 'number' && typeof l.forward === 'function';
}

/** Copy a state dict into named parameters (see Module.loadStateDict; also used by models that wrap a module tree). */
export function loadNamedParameters(params: [string, Tensor][], sd: Map<string, { shape: number[]; data: Float32Array; readInto?(dst: Float32Array): void }>, where: string, strict = true): void {
  for (const [name, p] of params) {
    const t = sd.get(name);
    if (!t) throw new Error(`${where}: weight '${name}' is missing from the checkpoint`);
    if (t.shape.join(',') !== p.shape.join(',')) throw new Error(`${where}: weight '${name}' has shape [${t.shape.join(', ')}], the model expects [${p.shape.join(', ')}]`);
    // A loaded file's tensor decodes straight into the parameter (no second copy of the weights).
    if (t.readInto && p.offset === 0 && p.f32.length === p.size) t.readInto(p.f32);
    else p.f32.set(t.data);
  }
  if (!strict) return;
  const expected = new Set(params.map(([n]) => n));
  const extra = [...sd.keys()].filter((k) => !expected.has(k));
  if (extra.length) throw new Error(`${where}: unexpected weights not used by the model: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ' …' : ''}`);
}

/** Numbered children ("h.0", "h.1", …). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];
  add(m: M): M { this.addModule(String(this.items.length), m); this.items.push(m); return m; }
}

/** y = x W + b with W stored [in, out] (the layout of HF's GPT-2 Conv1D). */
export class Linear extends Module implements LinearLayer, QuantizableLayer {
  readonly weightLayout = 'in_out' as const;
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  /** Inference-only weights from a quantized checkpoint; when set, forward() uses them instead of `weight`. */
  quantized: QWeight | null = null;
  /** `init: false`: zero weight, no draw from `rng` (the weights are loaded afterwards). */
  constructor(readonly inFeatures: number, readonly outFeatures: number, rng: Rng, opts: { bias?: boolean; std?: number; init?: boolean } = {}) {
    super();
    this.weight = this.addParam('weight', opts.init === false ? O.zeros([inFeatures, outFeatures]) : O.randn([inFeatures, outFeatures], rng, opts.std ?? 0.02));
    this.bias = opts.bias === false ? null : this.addParam('bias', O.zeros([outFeatures]));
  }
  /** The weight as the inference kernels take it (no copy for f32: Conv1D layout [in, out]). */
  inferenceWeight(): QWeight {
    return this.quantized ?? { format: 'f32', N: this.outFeatures, K: this.inFeatures, layout: 'in_out', data: this.weight.f32, scales: null };
  }
  /** Use `q` for inference from now on and free the f32 weight (`weight` becomes an empty placeholder). */
  setQuantized(q: QWeight): void {
    checkQWeight(q, this.outFeatures, this.inFeatures, 'Linear');
    if (!this.quantized) (this as { weight: Tensor }).weight = this.releaseParam('weight');
    this.quantized = q;
  }
  forward(x: Tensor): Tensor {
    if (this.quantized) return O.qlinear(x, this.quantized, this.bias);
    const y = O.matmul(x, this.weight);
    return this.bias ? O.add(y, this.bias) : y;
  }
}

export class Embedding extends Module implements QuantizableLayer {
  readonly weight: Tensor;
  constructor(readonly num: number, readonly dim: number, rng: Rng, std = 0.02, init = true) {
    super();
    this.weight = this.addParam('weight', init ? O.randn([num, dim], rng, std) : O.zeros([num, dim]));
  }
  /** Inference-only rows from a quantized checkpoint ([num, dim], also a tied LM head's weight); lookups dequantize. */
  quantized: QWeight | null = null;
  /** The table as the inference kernels take it: N = num rows, K = dim (out_in). */
  inferenceWeight(): QWeight {
    return this.quantized ?? { format: 'f32', N: this.num, K: this.dim, layout: 'out_in', data: this.weight.f32, scales: null };
  }
  /** Use `q` ([num, dim]) from now on and free the f32 table (`weight` becomes an empty placeholder). */
  setQuantized(q: QWeight): void {
    checkQWeight(q, this.num, this.dim, 'Embedding');
    if (q.format !== 'f32' && q.layout !== 'out_in') throw new Error(`Embedding: a quantized table must be stored [num, dim]`);
    if (!this.quantized) (this as { weight: Tensor }).weight = this.releaseParam('weight');
    this.quantized = q;
  }
  forward(ids: Tensor): Tensor { return this.quantized ? O.qembedding(this.quantized, ids) : O.embedding(this.weight, ids); }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5) {
    super();
    this.weight = this.addParam('weight', O.ones([dim]));
    this.bias = this.addParam('bias', O.zeros([dim]));
  }
  forward(x: Tensor): Tensor { return O.layerNorm(x, this.weight, this.bias, this.eps); }
}

export class Dropout extends Module {
  constructor(readonly p: number, private readonly rng: Rng) { super(); }
  forward(x: Tensor): Tensor { return O.dropout(x, this.p, this.training && this.p > 0, this.rng); }
}

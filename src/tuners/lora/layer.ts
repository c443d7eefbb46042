// A LoRA wrapper around one linear layer (PEFT's lora.Linear): y = base(x) + Σ_active
// dropout(x) Aᵀ Bᵀ · scaling, with A [r, in] and B [out, r] in nn.Linear layout whatever the base
// layout. The wrapper exposes the base layer's weight and bias under their old names, so base
// state dicts, checkpoints and resume keep working while it is installed.

import * as O from '../../engine/ops.js';
import { Rng, Tensor, noGrad } from '../../engine/index.js';
import { Module, Dropout, type LinearLayer } from '../../nn/module.js';
import { LinearWrapper } from '../targets.js';

/** A named child set (torch's ModuleDict), so parameters are named '<dict>.<adapter>.weight'. */
export class ModuleDict extends Module {
  set(name: string, m: Module): void { this.children.set(name, m); }
  delete(name: string): void { this.children.delete(name); }
  get size(): number { return this.children.size; }
}

/** A module holding one trainable tensor as 'weight' (nn.Linear without bias). */
export class WeightHolder extends Module {
  readonly weight: Tensor;
  constructor(t: Tensor) { super(); this.weight = this.addParam('weight', t); }
}

interface LoraEntry { A: Tensor; B: Tensor; scaling: number; dropout: Dropout; active: boolean; merged: boolean }

export type LoraInit = boolean | 'gaussian';

/** torch's kaiming_uniform_(a=√5) for a weight with `fanIn` inputs: U(−1/√fanIn, 1/√fanIn). */
export function kaimingUniform(shape: number[], fanIn: number, rng: Rng): Tensor {
  const b = 1 / Math.sqrt(fanIn);
  return O.rand(shape, rng, -b, b);
}

export class LoraLinear extends LinearWrapper {
  readonly kindName = 'lora';
  readonly entries = new Map<string, LoraEntry>();
  private readonly lora_A = new ModuleDict();
  private readonly lora_B = new ModuleDict();
  private readonly lora_dropout = new ModuleDict();

  constructor(base: LinearLayer, private readonly rng: Rng) {
    super(base);
    this.addModule('lora_dropout', this.lora_dropout);
    this.addModule('lora_A', this.lora_A);
    this.addModule('lora_B', this.lora_B);
  }

  addAdapter(name: string, r: number, scaling: number, dropout: number, init: LoraInit, rng: Rng): LoraEntry {
    if (this.entries.has(name)) throw new Error(`adapter '${name}' is already installed on this layer`);
    const inF = this.inFeatures, outF = this.outFeatures;
    const A = init === 'gaussian' ? O.randn([r, inF], rng, 1 / r) : kaimingUniform([r, inF], inF, rng);
    // init_lora_weights false keeps nn.Linear's default for B too (the adapter is not a no-op).
    const B = init === false ? kaimingUniform([outF, r], r, rng) : O.zeros([outF, r]);
    const a = new WeightHolder(A), b = new WeightHolder(B);
    const d = new Dropout(dropout, this.rng);
    d.train(this.training);
    this.lora_A.set(name, a); this.lora_B.set(name, b); this.lora_dropout.set(name, d);
    const e: LoraEntry = { A: a.weight, B: b.weight, scaling, dropout: d, active: true, merged: false };
    this.entries.set(name, e);
    return e;
  }

  removeAdapter(name: string): void {
    const e = this.entries.get(name);
    if (!e) return;
    this.entries.delete(name);
    this.lora_A.delete(name); this.lora_B.delete(name); this.lora_dropout.delete(name);
    e.A.dispose(); e.B.dispose();
  }

  /** ΔW = B A · scaling in the base weight's layout (transposed for [in, out], PEFT's fan_in_fan_out). */
  private delta(e: LoraEntry): Float32Array {
    return noGrad(() => {
      const d = this.weightLayout === 'in_out' ? O.matmul(O.transpose(e.A), O.transpose(e.B)) : O.matmul(e.B, e.A);
      const c = O.contiguousCopy(d);
      const out = Float32Array.from(c.f32.subarray(c.offset, c.offset + c.size));
      d.dispose(); c.dispose();
      for (let i = 0; i < out.length; i++) out[i] *= e.scaling;
      return out;
    });
  }

  private addToWeight(delta: Float32Array, sign: 1 | -1): void {
    const w = this.weight;
    if (!w.isContiguous()) throw new Error('LoRA merge: the base weight is not contiguous');
    const d = w.f32, o = w.offset;
    for (let i = 0; i < delta.length; i++) d[o + i] += sign * delta[i];
  }

  merge(name: string): void {
    const e = this.entries.get(name)!;
    if (e.merged) return;
    this.addToWeight(this.delta(e), 1);
    e.merged = true;
  }

  unmerge(name: string): void {
    const e = this.entries.get(name)!;
    if (!e.merged) return;
    this.addToWeight(this.delta(e), -1);
    e.merged = false;
  }

  forward(x: Tensor): Tensor {
    let y = this.base.forward(x);
    for (const e of this.entries.values()) {
      // A merged adapter is already inside the base weight.
      if (!e.active || e.merged) continue;
      const h = O.matmul(O.matmul(e.dropout.forward(x), O.transpose(e.A)), O.transpose(e.B));
      y = O.add(y, e.scaling === 1 ? h : O.scale(h, e.scaling));
    }
    return y;
  }
}

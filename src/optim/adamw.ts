// AdamW (decoupled weight decay, Loshchilov & Hutter) on the fused backend kernel, plus
// global-norm gradient clipping. Matches torch.optim.AdamW's update order.

import { backend } from '../engine/backend/index.js';
import { UnOp } from '../engine/backend/types.js';
import { Tensor, zeros } from '../engine/index.js';

export interface ParamGroup { params: Tensor[]; weightDecay: number; }

export interface AdamWOptions { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number; }

export class AdamW {
  readonly groups: ParamGroup[];
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  step = 0;
  /** First and second moments per parameter, in group order. */
  readonly m: Tensor[] = [];
  readonly v: Tensor[] = [];

  constructor(params: Tensor[] | ParamGroup[], opts: AdamWOptions) {
    const wd = opts.weightDecay ?? 0.01;
    this.groups = params.length > 0 && params[0] instanceof Tensor
      ? [{ params: params as Tensor[], weightDecay: wd }]
      : (params as ParamGroup[]);
    this.lr = opts.lr;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    for (const p of this.params()) {
      if (!p.isWholeBuffer()) throw new Error(`AdamW: parameter ${p} must own a contiguous buffer`);
      this.m.push(zeros(p.shape).keep());
      this.v.push(zeros(p.shape).keep());
    }
  }

  *params(): Generator<Tensor> { for (const g of this.groups) yield* g.params; }

  /** One update with the current lr; parameters without .grad are skipped (moments untouched). */
  update(): void {
    this.step++;
    const bc1 = 1 - Math.pow(this.beta1, this.step), bc2 = 1 - Math.pow(this.beta2, this.step);
    let i = 0;
    for (const g of this.groups) for (const p of g.params) {
      const k = i++;
      if (!p.grad) continue;
      const grad = p.grad;
      if (!grad.isWholeBuffer()) throw new Error(`AdamW: gradient of ${p} is not contiguous`);
      backend().adamw(p.f32, grad.f32, this.m[k].f32, this.v[k].f32, p.size, this.lr, this.beta1, this.beta2,
        this.eps, g.weightDecay, bc1, bc2);
    }
  }

  zeroGrad(): void { for (const p of this.params()) if (p.grad) { p.grad.dispose(); p.grad = null; } }

  dispose(): void { for (const t of [...this.m, ...this.v]) t.dispose(); }
}

/** Scale all gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number): number {
  // Sum of squares in double precision with four independent accumulators (a single running sum
  // is latency-bound: ~3.5x slower, 0.4 s per step at 91M parameters); the rescale runs in the
  // backend's in-place Scale kernel instead of a JS loop.
  let sq = 0;
  const gs: Tensor[] = [];
  for (const p of params) if (p.grad) {
    gs.push(p.grad);
    sq += sumSquares(p.grad.f32, p.grad.offset, p.grad.size);
  }
  const norm = Math.sqrt(sq);
  if (maxNorm > 0 && norm > maxNorm) {
    const s = maxNorm / (norm + 1e-6), be = backend();
    for (const g of gs) {
      if (g.offset === 0 && g.isContiguous()) be.unary(UnOp.Scale, g.f32, 0, g.size, g.f32, s);
      else { const d = g.f32, end = g.offset + g.size; for (let i = g.offset; i < end; i++) d[i] *= s; }
    }
  }
  return norm;
}

function sumSquares(d: Float32Array, off: number, n: number): number {
  let a = 0, b = 0, c = 0, e = 0, i = off;
  const end = off + n, end4 = off + (n & ~3);
  for (; i < end4; i += 4) {
    const x0 = d[i], x1 = d[i + 1], x2 = d[i + 2], x3 = d[i + 3];
    a += x0 * x0; b += x1 * x1; c += x2 * x2; e += x3 * x3;
  }
  for (; i < end; i++) a += d[i] * d[i];
  return (a + b) + (c + e);
}

// Differentiable operations. Each op computes its forward with the current backend's kernels
// and records a tape node whose backward is written with the same ops (so higher layers never
// see raw kernels). Views (reshape, permute, narrow, expand) share storage and never copy
// unless the layout forces it.

import { BinOp, UnOp, type F32, type I32 } from './backend/types.js';
import { backend } from './backend/index.js';
import {
  Tensor, type DType, empty, fromData, viewOf, record, numel, fmtShape, contiguousStrides,
  gradHooks, noGrad, iterOffsets, isGradEnabled,
} from './tensor.js';
import { Rng } from './rng.js';
import { weightAt, quantizeActQ8, f32ToBf16, QK, type QWeight } from './quant.js';
import { f16Table } from './half.js';

export type TensorLike = Tensor | number;

// ---------------------------------------------------------------------------------------------
// Creation

type Nested = number | Nested[];

function flattenNested(v: Nested, shape: number[], out: number[], depth = 0): void {
  if (typeof v === 'number') { out.push(v); return; }
  if (shape.length === depth) shape.push(v.length);
  else if (shape[depth] !== v.length) throw new Error(`tensor(): ragged nested array at depth ${depth}`);
  for (const x of v) flattenNested(x, shape, out, depth + 1);
}

/** Tensor from nested arrays, flat arrays + shape, or typed arrays. Copies the values. */
export function tensor(values: Nested | ArrayLike<number>, shape?: number[], dtype: DType = 'float32'): Tensor {
  let flat: ArrayLike<number>;
  let shp: number[];
  if (typeof values === 'number') { flat = [values]; shp = shape ?? []; }
  else if (Array.isArray(values) && !shape) { const s: number[] = []; const o: number[] = []; flattenNested(values as Nested, s, o); flat = o; shp = s; }
  else { flat = values as ArrayLike<number>; shp = shape ?? [flat.length]; }
  if (values instanceof Int32Array && dtype === 'float32' && !shape) dtype = 'int32';
  if (numel(shp) !== flat.length) throw new Error(`tensor(): ${flat.length} values do not fill shape ${fmtShape(shp)}`);
  const t = empty(shp, dtype, false);
  const d = t.data;
  for (let i = 0; i < flat.length; i++) d[i] = flat[i];
  return t;
}

export function zeros(shape: number[], dtype: DType = 'float32'): Tensor { return empty(shape, dtype, true); }
export function full(shape: number[], value: number, dtype: DType = 'float32'): Tensor {
  const t = empty(shape, dtype, false); t.data.fill(value); return t;
}
export function ones(shape: number[]): Tensor { return full(shape, 1); }
export function scalar(v: number): Tensor { return full([], v); }
export function arange(n: number, dtype: DType = 'int32'): Tensor {
  const t = empty([n], dtype, false); for (let i = 0; i < n; i++) t.data[i] = i; return t;
}
export function randn(shape: number[], rng: Rng, std = 1): Tensor {
  const t = empty(shape, 'float32', false); const d = t.f32;
  for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
  return t;
}
export function rand(shape: number[], rng: Rng, lo = 0, hi = 1): Tensor {
  const t = empty(shape, 'float32', false); const d = t.f32;
  for (let i = 0; i < d.length; i++) d[i] = lo + (hi - lo) * rng.next();
  return t;
}
/** A leaf that requires grad. */
export function param(t: Tensor): Tensor { t.requiresGrad = true; return t; }

function asTensor(x: TensorLike): Tensor { return typeof x === 'number' ? scalar(x) : x; }

// ---------------------------------------------------------------------------------------------
// Views and layout

function normAxis(ax: number, nd: number, op: string): number {
  const a = ax < 0 ? ax + nd : ax;
  if (a < 0 || a >= nd || !Number.isInteger(a)) throw new Error(`${op}: axis ${ax} out of range for ${nd}-d tensor`);
  return a;
}

/** A new handle on the same data (identity, recorded so gradients flow). */
export function alias(t: Tensor): Tensor {
  const out = viewOf(t, t.shape.slice(), t.strides.slice(), t.offset);
  return record(out, 'alias', [t], (g) => [alias(g)]);
}

/** Contiguous copy of any strided view (always a fresh buffer). */
export function contiguousCopy(t: Tensor): Tensor {
  const out = empty(t.shape, t.dtype, false);
  backend().copy(t.shape, t.data, t.offset, t.strides, out.data, 0, out.strides);
  return record(out, 'contiguous', [t], (g) => [alias(g)]);
}

/** Contiguous, offset-0 version of t for kernels; not recorded (the calling op owns the gradient). */
function raw(t: Tensor): Tensor {
  if (t.isContiguous() && t.offset === 0) return t;
  const out = empty(t.shape, t.dtype, false);
  backend().copy(t.shape, t.data, t.offset, t.strides, out.data, 0, out.strides);
  return out;
}

/** t itself (as an alias) when contiguous, else a contiguous copy. */
export function contiguous(t: Tensor): Tensor { return t.isContiguous() ? alias(t) : contiguousCopy(t); }

export function reshape(t: Tensor, shape: number[]): Tensor {
  const s = shape.slice();
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    if (rest === 0 || t.size % rest !== 0) throw new Error(`reshape: cannot infer -1 in ${fmtShape(shape)} for ${t.size} elements ${fmtShape(t.shape)}`);
    s[neg] = t.size / rest;
  }
  if (numel(s) !== t.size) throw new Error(`reshape: cannot view ${fmtShape(t.shape)} (${t.size} elements) as ${fmtShape(shape)}`);
  const src = t.isContiguous() ? t : contiguousCopy(t);
  const out = viewOf(src, s, contiguousStrides(s), src.offset);
  const inShape = t.shape.slice();
  return record(out, 'reshape', [src], (g) => [reshape(g, inShape)]);
}

export function permute(t: Tensor, dims: number[]): Tensor {
  if (dims.length !== t.ndim) throw new Error(`permute: got ${dims.length} dims for ${t.ndim}-d tensor ${fmtShape(t.shape)}`);
  const d = dims.map((x) => normAxis(x, t.ndim, 'permute'));
  if (new Set(d).size !== d.length) throw new Error(`permute: repeated dims ${fmtShape(dims)}`);
  const out = viewOf(t, d.map((i) => t.shape[i]), d.map((i) => t.strides[i]), t.offset);
  const inv = new Array<number>(d.length);
  d.forEach((x, i) => { inv[x] = i; });
  return record(out, 'permute', [t], (g) => [permute(g, inv)]);
}

export function transpose(t: Tensor, a = -2, b = -1): Tensor {
  const d = [...t.shape.keys()];
  const x = normAxis(a, t.ndim, 'transpose'), y = normAxis(b, t.ndim, 'transpose');
  d[x] = y; d[y] = x;
  return permute(t, d);
}

/** Slice `len` entries of axis `dim` starting at `start` (a view). */
export function narrow(t: Tensor, dim: number, start: number, len: number): Tensor {
  const ax = normAxis(dim, t.ndim, 'narrow');
  if (start < 0 || len < 0 || start + len > t.shape[ax]) throw new Error(`narrow: [${start}, ${start + len}) out of range for axis ${ax} of ${fmtShape(t.shape)}`);
  const shape = t.shape.slice(); shape[ax] = len;
  const out = viewOf(t, shape, t.strides.slice(), t.offset + start * t.strides[ax]);
  const inShape = t.shape.slice();
  return record(out, 'narrow', [t], (g) => {
    const gi = zeros(inShape);
    const region = viewOf(gi, shape, gi.strides, start * gi.strides[ax]);
    backend().copy(shape, g.data, g.offset, g.strides, gi.data, region.offset, region.strides);
    region.dispose();
    return [gi];
  });
}

/** Python-like slice on one axis: start/end may be negative. */
export function slice(t: Tensor, dim: number, start: number, end?: number): Tensor {
  const ax = normAxis(dim, t.ndim, 'slice'), n = t.shape[ax];
  let s = start < 0 ? start + n : start, e = end === undefined ? n : end < 0 ? end + n : end;
  s = Math.max(0, Math.min(n, s)); e = Math.max(s, Math.min(n, e));
  return narrow(t, ax, s, e - s);
}

export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together`);
    out[i] = x === 1 ? y : x;
  }
  return out;
}

/** Strides that read `t` as if broadcast to `shape` (0 on broadcast axes). */
function broadcastStrides(t: Tensor, shape: number[]): number[] {
  const n = shape.length, k = t.ndim;
  const st = new Array<number>(n).fill(0);
  for (let i = 0; i < k; i++) {
    const j = n - k + i;
    st[j] = t.shape[i] === 1 && shape[j] !== 1 ? 0 : t.strides[i];
  }
  return st;
}

export function expand(t: Tensor, shape: number[]): Tensor {
  const target = broadcastShapes(t.shape, shape, 'expand');
  if (target.join(',') !== shape.join(',')) throw new Error(`expand: cannot expand ${fmtShape(t.shape)} to ${fmtShape(shape)}`);
  const out = viewOf(t, shape.slice(), broadcastStrides(t, shape), t.offset);
  const inShape = t.shape.slice();
  return record(out, 'expand', [t], (g) => [sumTo(g, inShape)]);
}

export function unsqueeze(t: Tensor, dim: number): Tensor {
  const ax = normAxis(dim, t.ndim + 1, 'unsqueeze');
  const s = t.shape.slice(); s.splice(ax, 0, 1);
  const st = t.strides.slice(); st.splice(ax, 0, ax < t.ndim ? t.strides[ax] * t.shape[ax] : 1);
  const out = viewOf(t, s, st, t.offset);
  const inShape = t.shape.slice();
  return record(out, 'unsqueeze', [t], (g) => [reshapeView(g, inShape)]);
}

export function squeeze(t: Tensor, dim: number): Tensor {
  const ax = normAxis(dim, t.ndim, 'squeeze');
  if (t.shape[ax] !== 1) throw new Error(`squeeze: axis ${ax} of ${fmtShape(t.shape)} is not 1`);
  const s = t.shape.slice(); s.splice(ax, 1);
  const st = t.strides.slice(); st.splice(ax, 1);
  const out = viewOf(t, s, st, t.offset);
  const inShape = t.shape.slice();
  return record(out, 'squeeze', [t], (g) => [reshapeView(g, inShape)]);
}

/** Reshape that only inserts/removes size-1 axes (never copies). */
function reshapeView(g: Tensor, shape: number[]): Tensor {
  const src = g.shape.filter((x) => x !== 1), dst = shape.filter((x) => x !== 1);
  if (src.join(',') !== dst.join(',')) return reshape(g, shape);
  const gs = g.strides.filter((_, i) => g.shape[i] !== 1);
  const st: number[] = []; let k = 0;
  for (const s of shape) st.push(s === 1 ? 0 : gs[k++]);
  return viewOf(g, shape.slice(), st, g.offset);
}

/** Sum g down to `shape` (the inverse of broadcasting). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.join(',') === shape.join(',')) return alias(g);
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
  }
  const s = sum(g, axes, true);
  return reshape(s, shape.slice());
}

/**
 * sumTo for a gradient the caller has just created and owns: returned as is when no reduction
 * is needed (sumTo would wrap it in an alias, a second reference that makes the tape copy it
 * when it reaches a leaf).
 */
function sumToOwned(g: Tensor, shape: readonly number[]): Tensor {
  return g.shape.length === shape.length && g.shape.every((s, i) => s === shape[i]) ? g : sumTo(g, shape);
}

// ---------------------------------------------------------------------------------------------
// Elementwise

function binary(op: BinOp, name: string, a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error(`${name}: float32 tensors required, got ${a.dtype} ${fmtShape(a.shape)} and ${b.dtype} ${fmtShape(b.shape)}`);
  const shape = broadcastShapes(a.shape, b.shape, name);
  const out = empty(shape, 'float32', false);
  backend().binary(op, shape, a.f32, a.offset, broadcastStrides(a, shape), b.f32, b.offset, broadcastStrides(b, shape), out.f32);
  return out;
}

export function add(x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x), b = asTensor(y);
  const out = binary(BinOp.Add, 'add', a, b);
  return record(out, 'add', [a, b], (g) => [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? sumTo(g, b.shape) : null]);
}
export function sub(x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x), b = asTensor(y);
  const out = binary(BinOp.Sub, 'sub', a, b);
  return record(out, 'sub', [a, b], (g) => [a.requiresGrad ? sumTo(g, a.shape) : null, b.requiresGrad ? sumTo(neg(g), b.shape) : null]);
}
export function mul(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return scale(x, y);
  if (typeof x === 'number' && y instanceof Tensor) return scale(y, x);
  const a = asTensor(x), b = asTensor(y);
  const out = binary(BinOp.Mul, 'mul', a, b);
  return record(out, 'mul', [a, b], (g) => [
    a.requiresGrad ? sumTo(mul(g, b), a.shape) : null,
    b.requiresGrad ? sumTo(mul(g, a), b.shape) : null,
  ]);
}
export function div(x: TensorLike, y: TensorLike): Tensor {
  if (typeof y === 'number' && x instanceof Tensor) return scale(x, 1 / y);
  const a = asTensor(x), b = asTensor(y);
  const out = binary(BinOp.Div, 'div', a, b);
  return record(out, 'div', [a, b], (g) => [
    a.requiresGrad ? sumTo(div(g, b), a.shape) : null,
    b.requiresGrad ? sumTo(neg(div(mul(g, out), b)), b.shape) : null,
  ], [out]);
}

function unary(op: UnOp, name: string, x: Tensor, p = 0, saveOut = true): Tensor {
  const xc = raw(x);
  const out = empty(x.shape, 'float32', false);
  backend().unary(op, xc.f32, 0, x.size, out.f32, p);
  return record(out, name, [x], (g) => {
    const gc = raw(g);
    const dx = empty(x.shape, 'float32', false);
    backend().unaryBackward(op, xc.f32, out.f32, gc.f32, x.size, dx.f32, p);
    if (gc !== g) gc.dispose();
    return [dx];
  }, saveOut ? [xc, out] : [xc]);
}

export const exp = (x: Tensor): Tensor => unary(UnOp.Exp, 'exp', x);
export const log = (x: Tensor): Tensor => unary(UnOp.Log, 'log', x);
export const tanh = (x: Tensor): Tensor => unary(UnOp.Tanh, 'tanh', x);
export const sqrt = (x: Tensor): Tensor => unary(UnOp.Sqrt, 'sqrt', x);
export const relu = (x: Tensor): Tensor => unary(UnOp.Relu, 'relu', x);
export const sigmoid = (x: Tensor): Tensor => unary(UnOp.Sigmoid, 'sigmoid', x);
export const neg = (x: Tensor): Tensor => unary(UnOp.Neg, 'neg', x);
export const pow = (x: Tensor, p: number): Tensor => unary(UnOp.Pow, 'pow', x, p);
export const scale = (x: Tensor, s: number): Tensor => unary(UnOp.Scale, 'scale', x, s);
export const addScalar = (x: Tensor, s: number): Tensor => unary(UnOp.AddScalar, 'addScalar', x, s);
/** GELU: 'tanh' is GPT-2's approximation (HF gelu_new), 'none' the exact erf form. */
export function gelu(x: Tensor, approximate: 'tanh' | 'none' = 'tanh'): Tensor {
  return unary(approximate === 'tanh' ? UnOp.GeluTanh : UnOp.GeluErf, 'gelu', x);
}

// ---------------------------------------------------------------------------------------------
// Reductions

/** Sum over axes (all when omitted). */
export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const nd = x.ndim;
  const ax = axes === undefined ? [...Array(nd).keys()] : (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(a, nd, 'sum'));
  const set = new Set(ax);
  const keptShape = x.shape.map((s, i) => (set.has(i) ? 1 : s));
  const outShape = keepdim ? keptShape : x.shape.filter((_, i) => !set.has(i));
  let cur = raw(x);
  let curShape = x.shape.slice();
  const sorted = [...set].sort((a, b) => b - a);
  const be = backend();
  for (const a of sorted) {
    const outer = numel(curShape.slice(0, a)), dim = curShape[a], inner = numel(curShape.slice(a + 1));
    const nextShape = curShape.slice(); nextShape[a] = 1;
    const nxt = empty(nextShape, 'float32', false);
    be.reduceSum(cur.f32, outer, dim, inner, nxt.f32);
    if (cur !== x) cur.dispose();
    cur = nxt; curShape = nextShape;
  }
  const out = cur === x ? empty(outShape, 'float32', false) : viewOf(cur, outShape, contiguousStrides(outShape), 0);
  if (cur === x) be.copy(x.shape, x.f32, x.offset, x.strides, out.f32, 0, contiguousStrides(x.shape));
  else cur.dispose();
  const inShape = x.shape.slice();
  return record(out, 'sum', [x], (g) => [expand(reshapeView(g, keptShape), inShape)]);
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const nd = x.ndim;
  const ax = axes === undefined ? [...Array(nd).keys()] : (Array.isArray(axes) ? axes : [axes]).map((a) => normAxis(a, nd, 'mean'));
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  const s = sum(x, ax, keepdim);
  const out = scale(s, 1 / n);
  return out;
}

/** Max over one axis; returns values (gradient flows to the first maximal entry). */
export function max(x: Tensor, axis: number, keepdim = false): Tensor {
  const a = normAxis(axis, x.ndim, 'max');
  const xc = raw(x);
  const outer = numel(x.shape.slice(0, a)), dim = x.shape[a], inner = numel(x.shape.slice(a + 1));
  if (dim === 0) throw new Error(`max: axis ${a} of ${fmtShape(x.shape)} is empty`);
  const keptShape = x.shape.slice(); keptShape[a] = 1;
  const outShape = keepdim ? keptShape : x.shape.filter((_, i) => i !== a);
  const out = empty(outShape, 'float32', false);
  const arg = empty(outShape, 'int32', false);
  backend().reduceMax(xc.f32, outer, dim, inner, out.f32, arg.i32);
  if (xc !== x) xc.dispose();
  const inShape = x.shape.slice();
  return record(out, 'max', [x], (g) => {
    const gc = raw(g);
    const gx = zeros(inShape); const gd = gx.f32, ad = arg.i32, gg = gc.f32;
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
      const k = o * inner + i;
      gd[(o * dim + ad[k]) * inner + i] = gg[k];
    }
    if (gc !== g) gc.dispose();
    return [gx];
  }, [arg]);
}

/** Argmax over one axis (int32, no gradient). */
export function argmax(x: Tensor, axis = -1): Tensor {
  const a = normAxis(axis, x.ndim, 'argmax');
  return noGrad(() => {
    const xc = raw(x);
    const outer = numel(x.shape.slice(0, a)), dim = x.shape[a], inner = numel(x.shape.slice(a + 1));
    const outShape = x.shape.filter((_, i) => i !== a);
    const vals = empty(outShape, 'float32', false), arg = empty(outShape, 'int32', false);
    backend().reduceMax(xc.f32, outer, dim, inner, vals.f32, arg.i32);
    vals.dispose(); if (xc !== x) xc.dispose();
    return arg;
  });
}

// ---------------------------------------------------------------------------------------------
// Matmul

interface MatLayout { trans: boolean; ld: number; }

/** How the last two dims [R, C] of t are laid out: row-major (C stride 1) or transposed. */
function matLayout(t: Tensor): MatLayout | null {
  const nd = t.ndim, R = t.shape[nd - 2], C = t.shape[nd - 1];
  const sR = t.strides[nd - 2], sC = t.strides[nd - 1];
  if ((sC === 1 || C === 1) && (sR >= Math.max(1, C) || R === 1)) return { trans: false, ld: R === 1 ? Math.max(1, C) : sR };
  if ((sR === 1 || R === 1) && (sC >= Math.max(1, R) || C === 1)) return { trans: true, ld: C === 1 ? Math.max(1, R) : sC };
  return null;
}

/** Single stride that walks the (collapsed) batch dims, or null if they do not collapse. */
function batchStride(t: Tensor, nb: number): number | null {
  let st: number | null = null, span = 0; // stride and extent of the dims collapsed so far
  for (let i = nb - 1; i >= 0; i--) {
    if (t.shape[i] === 1) continue;
    if (st === null) { st = t.strides[i]; span = t.shape[i]; continue; }
    if (t.strides[i] !== st * span) return null;
    span *= t.shape[i];
  }
  return st ?? 0;
}

/** 'f32': fp32 GEMMs; 'bf16': GEMM operands rounded to bf16, fp32 accumulation (backend().gemmBf16). */
export type MatmulPrecision = 'f32' | 'bf16';
let matmulPrec: MatmulPrecision = 'f32';

/**
 * Precision of matmul's GEMMs from now on (mixed-precision training: only matmul and its
 * gradients change; tensors, parameters and every other op stay fp32). A matmul's backward uses
 * the precision its forward ran with.
 */
export function setMatmulPrecision(p: MatmulPrecision): void {
  if (p !== 'f32' && p !== 'bf16') throw new Error(`setMatmulPrecision: expected 'f32' or 'bf16', got ${JSON.stringify(p)}`);
  matmulPrec = p;
}
export function matmulPrecision(): MatmulPrecision { return matmulPrec; }

/**
 * Batched matrix product a[..., M, K] @ b[..., K, N]. Batch dims broadcast; transposed views
 * (e.g. transpose(b)) go to the GEMM as transpose flags without copies.
 */
export function matmul(a: Tensor, b: Tensor): Tensor { return matmulAt(a, b, matmulPrec); }

function matmulAt(a: Tensor, b: Tensor, prec: MatmulPrecision): Tensor {
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`matmul: need ≥2-d tensors, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const M = a.shape[a.ndim - 2], K = a.shape[a.ndim - 1], K2 = b.shape[b.ndim - 2], N = b.shape[b.ndim - 1];
  if (K !== K2) throw new Error(`matmul: inner dimensions differ: ${fmtShape(a.shape)} @ ${fmtShape(b.shape)}`);
  const batchShape = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul (batch dims)');
  const nb = batchShape.length, batch = numel(batchShape);
  // [..., M, K] @ [K, N] with row-major a: one big GEMM over the flattened rows (also makes the
  // weight gradient a single GEMM instead of a batch of partial products).
  if (b.ndim === 2 && a.ndim > 2 && a.isContiguous()) {
    const flat = matmulAt(reshape(a, [a.size / K, K]), b, prec);
    return reshape(flat, [...a.shape.slice(0, -1), N]);
  }
  const prep = (t: Tensor): [Tensor, MatLayout, number] => {
    // Broadcast the batch dims as a view, then check the layout can be fed to the GEMM.
    const full = [...batchShape, t.shape[t.ndim - 2], t.shape[t.ndim - 1]];
    let v = full.join(',') === t.shape.join(',') ? t : viewOf(t, full, broadcastStrides(t, full), t.offset);
    let lay = matLayout(v), bs = batchStride(v, nb);
    if (!lay || bs === null) {
      const c = empty(full, 'float32', false);
      backend().copy(full, v.f32, v.offset, v.strides, c.f32, 0, c.strides);
      if (v !== t) v.dispose();
      v = c; lay = matLayout(v)!; bs = batchStride(v, nb)!;
    }
    return [v, lay, bs];
  };
  const [av, al, as] = prep(a), [bv, bl, bs] = prep(b);
  const out = empty([...batchShape, M, N], 'float32', false);
  if (M > 0 && N > 0) {
    if (K === 0) out.f32.fill(0);
    else {
      const be = backend();
      (prec === 'bf16' ? be.gemmBf16 : be.gemm).call(be, al.trans, bl.trans, M, N, K, 1, av.f32, av.offset, al.ld, as, bv.f32, bv.offset, bl.ld, bs, 0, out.f32, 0, N, M * N, batch);
    }
  }
  if (av !== a) av.dispose();
  if (bv !== b) bv.dispose();
  return record(out, 'matmul', [a, b], (g) => [
    a.requiresGrad ? sumToOwned(matmulAt(g, transpose(b), prec), a.shape) : null,
    b.requiresGrad ? sumToOwned(matmulAt(transpose(a), g, prec), b.shape) : null,
  ]);
}

// ---------------------------------------------------------------------------------------------
// Softmax family and losses

function lastAxisRows(x: Tensor, op: string): [Tensor, number, number] {
  if (x.ndim === 0) throw new Error(`${op}: needs at least 1 dimension`);
  const cols = x.shape[x.ndim - 1];
  const xc = raw(x);
  return [xc, x.size / Math.max(cols, 1), cols];
}

function softmaxImpl(x: Tensor, axis: number, log: boolean): Tensor {
  const a = normAxis(axis, x.ndim, log ? 'logSoftmax' : 'softmax');
  if (a !== x.ndim - 1) return transpose(softmaxImpl(transpose(x, a, -1), -1, log), a, -1);
  const [xc, rows, cols] = lastAxisRows(x, 'softmax');
  const out = empty(x.shape, 'float32', false);
  backend().softmax(xc.f32, rows, cols, out.f32, log);
  if (xc !== x) xc.dispose();
  return record(out, log ? 'logSoftmax' : 'softmax', [x], (g) => {
    const gc = raw(g);
    const dx = empty(x.shape, 'float32', false);
    backend().softmaxBackward(out.f32, gc.f32, rows, cols, dx.f32, log);
    if (gc !== g) gc.dispose();
    return [dx];
  }, [out]);
}
export const softmax = (x: Tensor, axis = -1): Tensor => softmaxImpl(x, axis, false);
export const logSoftmax = (x: Tensor, axis = -1): Tensor => softmaxImpl(x, axis, true);

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  labelSmoothing?: number;
  /** 'mean' averages over non-ignored targets (0 if there are none). */
  reduction?: 'mean' | 'sum' | 'none';
}

/** Cross-entropy of logits [..., V] against int32 targets [...] (PyTorch semantics). */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignore = opts.ignoreIndex ?? -100, eps = opts.labelSmoothing ?? 0, red = opts.reduction ?? 'mean';
  if (targets.dtype !== 'int32') throw new Error(`crossEntropy: targets must be int32, got ${targets.dtype}`);
  const V = logits.shape[logits.ndim - 1];
  const rowShape = logits.shape.slice(0, -1);
  if (rowShape.join(',') !== targets.shape.join(',')) throw new Error(`crossEntropy: logits ${fmtShape(logits.shape)} do not match targets ${fmtShape(targets.shape)}`);
  if (eps < 0 || eps > 1) throw new Error(`crossEntropy: labelSmoothing must be in [0,1], got ${eps}`);
  const [xc, rows] = lastAxisRows(logits, 'crossEntropy');
  const tc = raw(targets);
  const td = tc.i32;
  let count = 0;
  for (let i = 0; i < rows; i++) {
    const t = td[i];
    if (t === ignore) continue;
    if (t < 0 || t >= V || !Number.isInteger(t)) throw new Error(`crossEntropy: target ${t} at row ${i} is outside [0, ${V}) (ignore_index is ${ignore})`);
    count++;
  }
  const loss = empty(rowShape, 'float32', false), lse = empty([rows], 'float32', false);
  backend().crossEntropy(xc.f32, rows, V, td, ignore, eps, loss.f32, lse.f32);
  let out: Tensor;
  if (red === 'none') out = loss;
  else {
    let s = 0; const ld = loss.f32;
    for (let i = 0; i < rows; i++) s += ld[i];
    out = scalar(red === 'mean' ? (count > 0 ? s / count : 0) : s);
    loss.dispose();
  }
  return record(out, 'crossEntropy', [logits], (g) => {
    const dloss = empty([rows], 'float32', false);
    if (red === 'none') { const gc = raw(g); dloss.f32.set(gc.f32.subarray(0, rows)); if (gc !== g) gc.dispose(); }
    else dloss.f32.fill(g.item() * (red === 'mean' ? (count > 0 ? 1 / count : 0) : 1));
    const dx = empty(logits.shape, 'float32', false);
    backend().crossEntropyBackward(xc.f32, lse.f32, td, rows, V, ignore, eps, dloss.f32, dx.f32);
    dloss.dispose();
    return [dx];
  }, [xc, lse, tc]);
}

export interface KLOptions {
  temperature?: number;
  /** Per-row weights (e.g. 1 on answer positions, 0 elsewhere), shape = logits.shape[:-1]. */
  mask?: Tensor;
  /** 'batchmean': Σ KL / (number of rows with mask≠0); 'sum'; 'none' per row. */
  reduction?: 'batchmean' | 'sum' | 'none';
}

/**
 * KL(softmax(teacher/τ) ‖ softmax(student/τ)) over the last axis. The τ² factor of
 * distillation losses is left to the caller. Differentiable in both arguments.
 */
export function klDiv(teacherLogits: Tensor, studentLogits: Tensor, opts: KLOptions = {}): Tensor {
  const T = opts.temperature ?? 1, red = opts.reduction ?? 'batchmean';
  if (teacherLogits.shape.join(',') !== studentLogits.shape.join(',')) {
    throw new Error(`klDiv: teacher ${fmtShape(teacherLogits.shape)} and student ${fmtShape(studentLogits.shape)} shapes differ`);
  }
  if (!(T > 0)) throw new Error(`klDiv: temperature must be > 0, got ${T}`);
  const lt = logSoftmax(T === 1 ? teacherLogits : scale(teacherLogits, 1 / T));
  const ls = logSoftmax(T === 1 ? studentLogits : scale(studentLogits, 1 / T));
  let rowKl = sum(mul(exp(lt), sub(lt, ls)), -1);
  let denom = rowKl.size;
  if (opts.mask) {
    rowKl = mul(rowKl, opts.mask);
    denom = 0; for (const v of opts.mask.toArray()) if (v !== 0) denom++;
  }
  if (red === 'none') return rowKl;
  const s = sum(rowKl);
  return red === 'sum' ? s : scale(s, denom > 0 ? 1 / denom : 0);
}

// ---------------------------------------------------------------------------------------------
// Layer norm, embedding, dropout

export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps = 1e-5): Tensor {
  const C = x.shape[x.ndim - 1];
  if (gamma.size !== C || beta.size !== C) throw new Error(`layerNorm: weight ${fmtShape(gamma.shape)} / bias ${fmtShape(beta.shape)} do not match last dim of ${fmtShape(x.shape)}`);
  const [xc, rows] = lastAxisRows(x, 'layerNorm');
  const gc = raw(gamma), bc = raw(beta);
  const y = empty(x.shape, 'float32', false), mu = empty([rows], 'float32', false), rs = empty([rows], 'float32', false);
  const gd = gc.f32, bd = bc.f32;
  backend().layerNorm(xc.f32, rows, C, gd, bd, eps, y.f32, mu.f32, rs.f32);
  return record(y, 'layerNorm', [x, gamma, beta], (g) => {
    const gg = raw(g);
    const dx = empty(x.shape, 'float32', false), dg = zeros([C]), db = zeros([C]);
    backend().layerNormBackward(xc.f32, gg.f32, gd, mu.f32, rs.f32, rows, C, dx.f32, dg.f32, db.f32);
    if (gg !== g) gg.dispose();
    return [dx, reshape(dg, gamma.shape), reshape(db, beta.shape)];
  }, [xc, gc, bc, mu, rs]);
}

/** Rows of weight [V, D] picked by int32 ids [...] → [..., D]; backward scatter-adds. */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  if (ids.dtype !== 'int32') throw new Error(`embedding: ids must be int32, got ${ids.dtype}`);
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be 2-d [V, D], got ${fmtShape(weight.shape)}`);
  const [V, D] = weight.shape;
  // Own copy of the ids: callers often reuse/dispose their id buffer before backward runs.
  const ic = ids.isContiguous() && ids.offset === 0 ? copyInts(ids) : raw(ids);
  const idd = ic.i32, n = ids.size;
  for (let i = 0; i < n; i++) if (idd[i] < 0 || idd[i] >= V) throw new Error(`embedding: id ${idd[i]} at position ${i} is outside the vocabulary [0, ${V})`);
  const wc = raw(weight);
  const out = empty([...ids.shape, D], 'float32', false);
  backend().embedding(wc.f32, D, idd, n, out.f32);
  if (wc !== weight) wc.dispose();
  return record(out, 'embedding', [weight], (g) => {
    const gg = raw(g);
    const dw = zeros([V, D]);
    backend().embeddingBackward(gg.f32, idd, n, D, dw.f32);
    if (gg !== g) gg.dispose();
    return [dw];
  }, [ic]);
}

function copyInts(t: Tensor): Tensor {
  const c = empty(t.shape, 'int32', false);
  c.i32.set(t.i32.subarray(0, t.size));
  return c;
}

export const globalRng = new Rng(0x1c1d);
export function manualSeed(seed: number): void { globalRng.seed(seed); }

/** Inverted dropout with a hash mask (seeded from rng, regenerated in backward). */
export function dropout(x: Tensor, p: number, training = true, rng: Rng = globalRng): Tensor {
  if (p < 0 || p >= 1) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return alias(x);
  const seed = rng.nextU32();
  const xc = raw(x);
  const out = empty(x.shape, 'float32', false);
  backend().dropout(xc.f32, x.size, p, seed, out.f32);
  if (xc !== x) xc.dispose();
  return record(out, 'dropout', [x], (g) => {
    const gg = raw(g);
    const dx = empty(x.shape, 'float32', false);
    backend().dropout(gg.f32, x.size, p, seed, dx.f32);
    if (gg !== g) gg.dispose();
    return [dx];
  });
}

// ---------------------------------------------------------------------------------------------
// Joining and selecting

export function concat(ts: Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new Error('concat: no tensors');
  const nd = ts[0].ndim, ax = normAxis(axis, nd, 'concat');
  for (const t of ts) {
    if (t.ndim !== nd || t.shape.some((s, i) => i !== ax && s !== ts[0].shape[i])) {
      throw new Error(`concat: shapes ${fmtShape(ts[0].shape)} and ${fmtShape(t.shape)} differ outside axis ${ax}`);
    }
    if (t.dtype !== ts[0].dtype) throw new Error(`concat: mixed dtypes ${ts[0].dtype} and ${t.dtype}`);
  }
  const shape = ts[0].shape.slice(); shape[ax] = ts.reduce((s, t) => s + t.shape[ax], 0);
  const out = empty(shape, ts[0].dtype, false);
  let pos = 0;
  const starts: number[] = [];
  for (const t of ts) {
    starts.push(pos);
    backend().copy(t.shape, t.data, t.offset, t.strides, out.data, pos * out.strides[ax], out.strides);
    pos += t.shape[ax];
  }
  return record(out, 'concat', ts, (g) => ts.map((t, i) => (t.requiresGrad ? narrowNoGrad(g, ax, starts[i], t.shape[ax]) : null)));
}

function narrowNoGrad(t: Tensor, ax: number, start: number, len: number): Tensor {
  const shape = t.shape.slice(); shape[ax] = len;
  return viewOf(t, shape, t.strides.slice(), t.offset + start * t.strides[ax]);
}

export function stack(ts: Tensor[], axis = 0): Tensor {
  if (ts.length === 0) throw new Error('stack: no tensors');
  const ax = normAxis(axis, ts[0].ndim + 1, 'stack');
  for (const t of ts) if (t.shape.join(',') !== ts[0].shape.join(',')) throw new Error(`stack: shapes ${fmtShape(ts[0].shape)} and ${fmtShape(t.shape)} differ`);
  return concat(ts.map((t) => unsqueeze(t, ax)), ax);
}

/** Split along an axis into pieces of the given sizes (or n equal pieces); views. */
export function split(t: Tensor, sizes: number | number[], axis = 0): Tensor[] {
  const ax = normAxis(axis, t.ndim, 'split'), n = t.shape[ax];
  let sz: number[];
  if (typeof sizes === 'number') {
    if (n % sizes !== 0) throw new Error(`split: axis ${ax} of ${fmtShape(t.shape)} does not divide into ${sizes} pieces`);
    sz = new Array(sizes).fill(n / sizes);
  } else sz = sizes;
  if (sz.reduce((a, b) => a + b, 0) !== n) throw new Error(`split: sizes ${fmtShape(sz)} do not add up to ${n} (axis ${ax} of ${fmtShape(t.shape)})`);
  const out: Tensor[] = [];
  let pos = 0;
  for (const s of sz) { out.push(narrow(t, ax, pos, s)); pos += s; }
  return out;
}

/** Elementwise select: cond ≠ 0 ? a : b, with broadcasting over all three. */
export function where(cond: Tensor, x: TensorLike, y: TensorLike): Tensor {
  const a = asTensor(x), b = asTensor(y);
  const shape = broadcastShapes(broadcastShapes(cond.shape, a.shape, 'where'), b.shape, 'where');
  const out = empty(shape, 'float32', false);
  selectInto(shape, cond, a, b, out.f32);
  return record(out, 'where', [a, b], (g) => {
    const z = scalar(0);
    const ga = a.requiresGrad ? sumTo(where(cond, g, z), a.shape) : null;
    const gb = b.requiresGrad ? sumTo(where(cond, z, g), b.shape) : null;
    z.dispose();
    return [ga, gb];
  }, [cond]);
}

function selectInto(shape: number[], cond: Tensor, a: Tensor, b: Tensor, out: F32): void {
  const cs = broadcastStrides(cond, shape), as = broadcastStrides(a, shape), bs = broadcastStrides(b, shape);
  const cd = cond.data, ad = a.f32, bd = b.f32;
  // Walk the three operands in lockstep with an odometer over `shape`.
  const nd = shape.length, n = numel(shape);
  const idx = new Array<number>(nd).fill(0);
  let co = cond.offset, ao = a.offset, bo = b.offset;
  for (let i = 0; i < n; i++) {
    out[i] = cd[co] !== 0 ? ad[ao] : bd[bo];
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++; co += cs[d]; ao += as[d]; bo += bs[d];
      if (idx[d] < shape[d]) break;
      co -= cs[d] * shape[d]; ao -= as[d] * shape[d]; bo -= bs[d] * shape[d]; idx[d] = 0;
    }
  }
}

/** x with `value` wherever mask ≠ 0. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor { return where(mask, value, x); }

// ---------------------------------------------------------------------------------------------
// Fused attention

export interface AttentionOptions {
  causal?: boolean;
  /** [B, Tk]: 1 = attend, 0 = padding. */
  keyMask?: Tensor;
  dropout?: number;
  training?: boolean;
  rng?: Rng;
  /** Defaults to 1/sqrt(D). */
  scale?: number;
}

/** Shared option handling: validated key mask, scale, dropout probability and its seed. */
function attentionSetup(op: string, opts: AttentionOptions, B: number, Tk: number, D: number, causalDefault: boolean):
  { mask: F32 | null; causal: boolean; sc: number; p: number; seed: number } {
  let mask: F32 | null = null;
  if (opts.keyMask) {
    if (opts.keyMask.shape.join(',') !== [B, Tk].join(',')) throw new Error(`${op}: keyMask ${fmtShape(opts.keyMask.shape)} must be [B, Tk] = ${fmtShape([B, Tk])}`);
    mask = Float32Array.from(opts.keyMask.toArray());
  }
  const p = opts.training === false ? 0 : (opts.dropout ?? 0);
  return { mask, causal: opts.causal ?? causalDefault, sc: opts.scale ?? 1 / Math.sqrt(D), p, seed: p > 0 ? (opts.rng ?? globalRng).nextU32() : 0 };
}

function headStrides(t: Tensor): [Tensor, number[]] {
  const v = t.strides[3] === 1 || t.shape[3] === 1 ? t : raw(t);
  return [v, [v.strides[0], v.strides[1], v.strides[2]]];
}

/** Physically [B, T, H, D] (so merging heads is a free reshape), viewed as [B, H, T, D]. */
function emptyBTHD(B: number, H: number, T: number, D: number): Tensor {
  const base = empty([B, T, H, D], 'float32', false);
  const v = viewOf(base, [B, H, T, D], [T * H * D, D, H * D, 1], 0);
  base.dispose();
  return v;
}

/**
 * softmax(q kᵀ·scale + masks) v for q [B,H,Tq,D], k/v [B,H,Tk,D]. Output [B,H,Tq,D] is stored
 * as [B,Tq,H,D] (transpose(1,2) then reshape is free). Backward recomputes probabilities
 * one (b,h) block at a time from the saved log-sum-exp.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) throw new Error(`attention: q/k/v must be [B,H,T,D], got ${fmtShape(q.shape)}, ${fmtShape(k.shape)}, ${fmtShape(v.shape)}`);
  const [B, H, Tq, D] = q.shape, Tk = k.shape[2];
  if (k.shape.join(',') !== [B, H, Tk, D].join(',') || v.shape.join(',') !== k.shape.join(',')) {
    throw new Error(`attention: shapes q ${fmtShape(q.shape)}, k ${fmtShape(k.shape)}, v ${fmtShape(v.shape)} do not agree`);
  }
  const { mask, causal, sc, p, seed } = attentionSetup('attention', opts, B, Tk, D, false);
  const [qv, qs] = headStrides(q), [kv, ks] = headStrides(k), [vv, vs] = headStrides(v);
  const out = emptyBTHD(B, H, Tq, D);
  const os = out.strides.slice(0, 3);
  const lse = empty([B * H * Tq], 'float32', false);
  backend().attention(qv.f32, qv.offset, qs, kv.f32, kv.offset, ks, vv.f32, vv.offset, vs, out.f32, 0, os,
    B, H, Tq, Tk, D, sc, causal, mask, p, seed, lse.f32);
  return record(out, 'attention', [q, k, v], (g) => {
    const [gv, gs] = headStrides(g);
    const dq = emptyBTHD(B, H, Tq, D), dk = emptyBTHD(B, H, Tk, D), dv = emptyBTHD(B, H, Tk, D);
    backend().attentionBackward(qv.f32, qv.offset, qs, kv.f32, kv.offset, ks, vv.f32, vv.offset, vs, out.f32, 0, os,
      gv.f32, gv.offset, gs, lse.f32, dq.f32, 0, dq.strides.slice(0, 3), dk.f32, 0, dk.strides.slice(0, 3),
      dv.f32, 0, dv.strides.slice(0, 3), B, H, Tq, Tk, D, sc, causal, mask, p, seed);
    if (gv !== g) gv.dispose();
    return [dq, dk, dv];
  }, [qv, kv, vv, out, lse]);
}

/**
 * Self-attention straight from a fused projection qkv [B, T, 3C] (q | k | v, heads of size
 * C/H inside each): the kernel reads q/k/v through strides and the backward writes one packed
 * d_qkv, so no head split/merge copies happen in either direction. Returns [B, T, C].
 */
export function attentionPacked(qkv: Tensor, nHead: number, opts: AttentionOptions = {}): Tensor {
  if (qkv.ndim !== 3 || qkv.shape[2] % (3 * nHead) !== 0) throw new Error(`attentionPacked: qkv must be [B, T, 3C] with C divisible by ${nHead} heads, got ${fmtShape(qkv.shape)}`);
  const [B, T, C3] = qkv.shape, C = C3 / 3, H = nHead, D = C / H;
  const { mask, causal, sc, p, seed } = attentionSetup('attentionPacked', opts, B, T, D, true);
  const x = raw(qkv);
  const is = [T * C3, D, C3], os = [T * C, D, C];
  const out = empty([B, T, C], 'float32', false), lse = empty([B * H * T], 'float32', false);
  const be = backend();
  be.attention(x.f32, 0, is, x.f32, C, is, x.f32, 2 * C, is, out.f32, 0, os, B, H, T, T, D, sc, causal, mask, p, seed, lse.f32);
  return record(out, 'attentionPacked', [qkv], (g) => {
    const gg = raw(g);
    const d = empty([B, T, C3], 'float32', false);
    be.attentionBackward(x.f32, 0, is, x.f32, C, is, x.f32, 2 * C, is, out.f32, 0, os, gg.f32, 0, os, lse.f32,
      d.f32, 0, is, d.f32, C, is, d.f32, 2 * C, is, B, H, T, T, D, sc, causal, mask, p, seed);
    if (gg !== g) gg.dispose();
    return [d];
  }, [x, out, lse]);
}

// ---------------------------------------------------------------------------------------------
// Hooks for the autograd engine

gradHooks.onesLike = (t: Tensor) => full(t.shape, 1);
gradHooks.add = (a: Tensor, b: Tensor) => noGrad(() => add(a, b));
gradHooks.contiguousCopy = (t: Tensor) => noGrad(() => contiguousCopy(t));
gradHooks.accumulate = (into: Tensor, g: Tensor) => {
  // into is a contiguous whole buffer; add in place.
  const gs = broadcastStrides(g, into.shape);
  backend().binary(BinOp.Add, into.shape, into.f32, into.offset, into.strides, g.f32, g.offset, gs, into.f32);
};

export { fromData, empty, noGrad, iterOffsets };
export type { I32 };

// ---------------------------------------------------------------------------------------------
// Inference-only weights (engine/quant.ts formats)

function noGradThrough(op: string, w: QWeight, inputs: (Tensor | null)[]): void {
  if (isGradEnabled() && inputs.some((t) => t?.requiresGrad)) {
    throw new Error(`${op}: a ${w.format} ${w.N}×${w.K} weight is inference-only and no gradient can flow through it (run under noGrad, or train the original fp32 model)`);
  }
}

/**
 * From this many rows on, qlinear runs as "quantize the activations exactly as qmatmulRef does,
 * dequantize both operands to f32, one fp32 GEMM": the same sums (every product q_w·d_w · q_x·d_x
 * is formed in f32, so it matches the spec up to f32 rounding and summation order) at GEMM speed.
 * Below it (decoding) the backend's qmatmul kernel runs. Long prompts and perplexity windows pay
 * a transient f32 copy of one weight per call, 1/M of the GEMM's work.
 */
export const QLINEAR_GEMM_MIN_ROWS = 64;

/**
 * x[..., K] · Wᵀ (+ bias) → [..., N] with an inference weight (engine/quant.ts's qmatmulRef is the
 * numerics: q formats quantize the activations to q8_0 blocks, bf16 rounds them). Forward only.
 * `gemmMinRows` overrides QLINEAR_GEMM_MIN_ROWS (tests compare the two paths).
 */
export function qlinear(x: Tensor, w: QWeight, bias: Tensor | null, gemmMinRows = QLINEAR_GEMM_MIN_ROWS): Tensor {
  const K = x.shape[x.ndim - 1];
  if (x.ndim < 1 || K !== w.K) throw new Error(`qlinear: input ${fmtShape(x.shape)} does not end in the weight's input size ${w.K}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== w.N)) throw new Error(`qlinear: bias ${fmtShape(bias.shape)} does not match the weight's output size ${w.N}`);
  noGradThrough('qlinear', w, [x, bias]);
  const xc = raw(x), bc = bias ? raw(bias) : null;
  const M = K === 0 ? 0 : x.size / K, N = w.N;
  const out = empty([...x.shape.slice(0, -1), N], 'float32', false);
  if (M > 0 && N > 0) {
    if (K === 0) out.f32.fill(0);
    else if (M >= gemmMinRows) qlinearGemm(w, M, xc.f32, out.f32, bc ? bc.f32 : null);
    else backend().qmatmul(w, M, xc.f32, 0, K, out.f32, 0, N, bc ? bc.f32 : null, false);
  }
  if (xc !== x) xc.dispose();
  if (bc && bc !== bias) bc.dispose();
  return out;
}

/** The activations as qmatmulRef uses them (rounded to bf16, or q8_0 blocks dequantized), [M, K]. */
function effectiveActivations(w: QWeight, M: number, x: F32): F32 {
  const K = w.K;
  if (w.format === 'f32') return x;
  const xe = new Float32Array(M * K);
  if (w.format === 'bf16') {
    const bits = new Uint32Array(xe.buffer);
    for (let i = 0; i < M * K; i++) bits[i] = f32ToBf16(x[i]) << 16;
    return xe;
  }
  const nb = K / QK, q = new Int8Array(K), d = new Float32Array(nb);
  for (let m = 0; m < M; m++) {
    quantizeActQ8(x, m * K, K, q, d);
    for (let b = 0; b < nb; b++) for (let j = 0; j < QK; j++) xe[m * K + b * QK + j] = q[b * QK + j] * d[b];
  }
  return xe;
}

/** W as f32 [N, K] (out_in) into `out` (not for f32 weights). */
function dequantizeInto(w: QWeight, out: F32): void {
  const { N, K } = w;
  if (w.format === 'bf16') {
    const src = w.data as Uint16Array, bits = new Uint32Array(out.buffer, out.byteOffset, N * K);
    for (let i = 0; i < N * K; i++) bits[i] = src[i] << 16;
    return;
  }
  const t = f16Table(), f = new Float32Array(1), fb = new Uint32Array(f.buffer);
  const nb = K / QK, sc = w.scales!;
  for (let r = 0; r < N * nb; r++) {
    fb[0] = t[sc[r]];
    const d = f[0], o = r * QK;
    if (w.format === 'q8_0') {
      const q = w.data as Int8Array;
      for (let j = 0; j < QK; j++) out[o + j] = q[o + j] * d;
    } else {
      const q = w.data as Uint8Array, bo = r * (QK / 2);
      for (let j = 0; j < QK / 2; j++) {
        const byte = q[bo + j];
        out[o + j] = ((byte & 15) - 8) * d;
        out[o + j + QK / 2] = ((byte >> 4) - 8) * d;
      }
    }
  }
}

function qlinearGemm(w: QWeight, M: number, x: F32, out: F32, bias: F32 | null): void {
  const { N, K } = w;
  const xe = effectiveActivations(w, M, x);
  const be = backend();
  if (w.format === 'f32') {
    const inOut = w.layout === 'in_out';
    be.gemm(false, !inOut, M, N, K, 1, xe, 0, K, 0, w.data as F32, 0, inOut ? N : K, 0, 0, out, 0, N, 0, 1);
  } else {
    const wt = empty([N, K], 'float32', false);
    dequantizeInto(w, wt.f32);
    be.gemm(false, true, M, N, K, 1, xe, 0, K, 0, wt.f32, 0, K, 0, 0, out, 0, N, 0, 1);
    wt.dispose();
  }
  if (bias) for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) out[m * N + n] += bias[n];
}

/** Rows of an inference table w ([V, D] = [N, K]) picked by int32 ids [...] → [..., D], dequantized. Forward only. */
export function qembedding(w: QWeight, ids: Tensor): Tensor {
  if (ids.dtype !== 'int32') throw new Error(`qembedding: ids must be int32, got ${ids.dtype}`);
  const V = w.N, D = w.K;
  const ic = raw(ids), idd = ic.i32, n = ids.size;
  const out = empty([...ids.shape, D], 'float32', false), o = out.f32;
  for (let i = 0; i < n; i++) {
    const id = idd[i];
    if (id < 0 || id >= V) throw new Error(`qembedding: id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    for (let k = 0; k < D; k++) o[i * D + k] = weightAt(w, id, k);
  }
  if (ic !== ids) ic.dispose();
  return out;
}

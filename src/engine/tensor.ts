// Tensor, storage with reference counts, buffer pool, scopes and the autograd tape.
// Buffers are released deterministically (dispose / tidy scopes) back into a pool, so a
// training loop reuses the same memory every step instead of waiting on the GC.

import type { F32, I32 } from './backend/types.js';

export type DType = 'float32' | 'int32';
export type Data = F32 | I32;

// ---------------------------------------------------------------------------------------------
// Buffer pool: free lists keyed by (dtype, exact length). Training steps repeat the same shapes,
// so exact-length reuse hits nearly always; a byte cap keeps odd sizes from piling up.

const POOL_CAP_BYTES = 1 << 30;
const freeF32 = new Map<number, F32[]>();
const freeI32 = new Map<number, I32[]>();
let pooledBytes = 0;
const poolStats = { hits: 0, misses: 0 };

export function allocData(dtype: DType, n: number, zero = true): Data {
  const lists = dtype === 'float32' ? freeF32 : freeI32;
  const list = lists.get(n);
  if (list && list.length > 0) {
    const a = list.pop()!;
    pooledBytes -= n * 4;
    poolStats.hits++;
    if (zero) a.fill(0);
    return a;
  }
  poolStats.misses++;
  return dtype === 'float32' ? new Float32Array(n) : new Int32Array(n);
}

export function releaseData(a: Data): void {
  if (a.length === 0 || pooledBytes + a.length * 4 > POOL_CAP_BYTES) return;
  // Only whole buffers we own go back: subarray views of a bigger buffer would alias.
  if (a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength) return;
  if (a instanceof Float32Array) {
    let l = freeF32.get(a.length); if (!l) { l = []; freeF32.set(a.length, l); } l.push(a);
  } else {
    let l = freeI32.get(a.length); if (!l) { l = []; freeI32.set(a.length, l); } l.push(a as I32);
  }
  pooledBytes += a.length * 4;
}

export function poolInfo(): { pooledBytes: number; hits: number; misses: number; live: number } {
  return { pooledBytes, ...poolStats, live: liveTensors };
}
export function clearPool(): void { freeF32.clear(); freeI32.clear(); pooledBytes = 0; }

// ---------------------------------------------------------------------------------------------

export class Storage {
  refs = 0;
  constructor(public data: Data | null, public readonly pooled: boolean) {}
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) { st[i] = s; s *= shape[i]; }
  return st;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function fmtShape(shape: readonly number[]): string { return `[${shape.join(', ')}]`; }

/** A node of the autograd tape: how to turn the output's gradient into its inputs' gradients. */
export interface GradNode {
  op: string;
  inputs: Tensor[];
  /** Returns one gradient (or null) per input, shaped like that input. */
  backward: (grad: Tensor) => (Tensor | null)[];
  /** Tensors the backward closure reads besides `inputs` (kept alive with the graph). */
  saved: Tensor[];
}

let liveTensors = 0;
let gradEnabled = true;
let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  storage: Storage;
  readonly shape: number[];
  readonly strides: number[];
  readonly offset: number;
  readonly dtype: DType;
  requiresGrad = false;
  grad: Tensor | null = null;
  node: GradNode | null = null;
  /** Kept tensors are never disposed by a scope (parameters, leaf gradients, optimizer state). */
  kept = false;
  private disposedFlag = false;

  constructor(storage: Storage, shape: number[], strides: number[], offset: number, dtype: DType) {
    this.storage = storage;
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.dtype = dtype;
    storage.refs++;
    liveTensors++;
    trackInScope(this);
  }

  get size(): number { return numel(this.shape); }
  get ndim(): number { return this.shape.length; }
  get disposed(): boolean { return this.disposedFlag; }

  /** The underlying buffer (throws if disposed). Index with `offset` and `strides`. */
  get data(): Data {
    const d = this.storage.data;
    if (d === null || this.disposedFlag) throw new Error(`tensor #${this.id} ${fmtShape(this.shape)} was used after dispose()`);
    return d;
  }
  get f32(): F32 {
    if (this.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${this.dtype} ${fmtShape(this.shape)}`);
    return this.data as F32;
  }
  get i32(): I32 {
    if (this.dtype !== 'int32') throw new Error(`expected an int32 tensor, got ${this.dtype} ${fmtShape(this.shape)}`);
    return this.data as I32;
  }

  isContiguous(): boolean {
    let s = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== s) return false;
      s *= this.shape[i];
    }
    return true;
  }

  /** Returns the buffer itself when this tensor covers it exactly from offset 0 contiguously. */
  isWholeBuffer(): boolean {
    return this.offset === 0 && this.isContiguous() && this.size === this.data.length;
  }

  /** Free this tensor's hold on its buffer; the buffer returns to the pool when no view uses it. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    liveTensors--;
    this.node = null;
    const st = this.storage;
    if (--st.refs === 0 && st.data) {
      if (st.pooled) releaseData(st.data);
      st.data = null;
    }
    if (this.grad && !this.grad.disposed) { this.grad.dispose(); this.grad = null; }
  }

  /** Mark as long-lived: scopes will not dispose it. */
  keep(): this { this.kept = true; untrack(this); return this; }

  /** Copy of the values as a plain array (contiguous order). */
  toArray(): number[] {
    const out: number[] = new Array(this.size);
    const data = this.data;
    let i = 0;
    iterOffsets(this.shape, this.strides, this.offset, (o) => { out[i++] = data[o]; });
    return out;
  }
  /** Values as a fresh Float32Array in contiguous order. */
  toFloat32Array(): Float32Array { return Float32Array.from(this.toArray()); }
  item(): number {
    if (this.size !== 1) throw new Error(`item(): tensor has ${this.size} elements ${fmtShape(this.shape)}`);
    return this.data[this.offset];
  }

  /** Backpropagate from this scalar (or with an explicit output gradient). */
  backward(grad?: Tensor): void { runBackward(this, grad); }

  toString(): string { return `Tensor(${this.dtype}, ${fmtShape(this.shape)})`; }
}

export function iterOffsets(shape: readonly number[], strides: readonly number[], offset: number, f: (o: number) => void): void {
  const nd = shape.length, n = numel(shape);
  if (n === 0) return;
  const idx = new Array<number>(nd).fill(0);
  let o = offset;
  for (let i = 0; i < n; i++) {
    f(o);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++; o += strides[d];
      if (idx[d] < shape[d]) break;
      o -= strides[d] * shape[d]; idx[d] = 0;
    }
  }
}

/** New contiguous tensor on a pooled buffer (zero-filled unless zero=false). */
export function empty(shape: number[], dtype: DType = 'float32', zero = true): Tensor {
  for (const s of shape) if (!Number.isInteger(s) || s < 0) throw new Error(`invalid shape ${fmtShape(shape)}`);
  const data = allocData(dtype, numel(shape), zero);
  return new Tensor(new Storage(data, true), shape.slice(), contiguousStrides(shape), 0, dtype);
}

/** Wrap an existing array (not pooled: the caller owns it). */
export function fromData(data: Data, shape: number[]): Tensor {
  if (numel(shape) !== data.length) throw new Error(`fromData: ${data.length} values do not fill shape ${fmtShape(shape)}`);
  const dtype: DType = data instanceof Int32Array ? 'int32' : 'float32';
  return new Tensor(new Storage(data, false), shape.slice(), contiguousStrides(shape), 0, dtype);
}

/** A view sharing `base`'s storage. */
export function viewOf(base: Tensor, shape: number[], strides: number[], offset: number): Tensor {
  return new Tensor(base.storage, shape, strides, offset, base.dtype);
}

// ---------------------------------------------------------------------------------------------
// Scopes: every tensor created inside tidy() is disposed at its end unless returned or kept.

type Scope = Set<Tensor>;
const scopes: Scope[] = [];

function trackInScope(t: Tensor): void {
  if (scopes.length > 0) scopes[scopes.length - 1].add(t);
}
function untrack(t: Tensor): void {
  for (let i = scopes.length - 1; i >= 0; i--) if (scopes[i].delete(t)) return;
}

function collectTensors(v: unknown, out: Set<Tensor>, depth = 0): void {
  if (depth > 4 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) { out.add(v); return; }
  if (Array.isArray(v)) { for (const x of v) collectTensors(x, out, depth + 1); return; }
  if (v instanceof Map) { for (const x of v.values()) collectTensors(x, out, depth + 1); return; }
  if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) collectTensors(x, out, depth + 1);
}

/**
 * Run fn in a scope: tensors it creates are disposed when it returns, except those reachable
 * from its result (Tensor, arrays, plain objects, Maps), what their autograd graph still needs,
 * and kept tensors. A leaf's .grad belongs to the leaf (freed with it).
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = new Set();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keepSet = new Set<Tensor>();
  collectTensors(result, keepSet);
  // A returned tensor's tape must stay usable (backward() after tidy): keep everything its
  // graph still references.
  const work = [...keepSet];
  while (work.length) {
    const t = work.pop()!;
    if (!t.node) continue;
    for (const x of t.node.inputs) if (!keepSet.has(x)) { keepSet.add(x); work.push(x); }
    for (const x of t.node.saved) if (!keepSet.has(x)) { keepSet.add(x); work.push(x); }
  }
  for (const t of scope) {
    if (keepSet.has(t) || t.kept) { if (!t.kept) trackInScope(t); continue; }
    t.dispose();
  }
  return result;
}

/** Number of tensors alive (not disposed). */
export function liveTensorCount(): number { return liveTensors; }

// ---------------------------------------------------------------------------------------------
// Autograd

export function isGradEnabled(): boolean { return gradEnabled; }

/** Run fn without recording the tape. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

/** Attach a tape node to `out` when any input requires grad. Returns out. */
export function record(out: Tensor, op: string, inputs: Tensor[], backward: GradNode['backward'], saved: Tensor[] = []): Tensor {
  if (!gradEnabled) return out;
  let any = false;
  for (const t of inputs) if (t.requiresGrad) { any = true; break; }
  if (!any) return out;
  out.requiresGrad = true;
  out.node = { op, inputs, backward, saved };
  return out;
}

/** Same data, no graph. */
export function detach(t: Tensor): Tensor {
  return viewOf(t, t.shape.slice(), t.strides.slice(), t.offset);
}

/** Hooks installed by ops.ts (avoids an import cycle): gradient accumulation and ones-like. */
export const gradHooks: {
  accumulate: (into: Tensor, g: Tensor) => void;
  onesLike: (t: Tensor) => Tensor;
  add: (a: Tensor, b: Tensor) => Tensor;
  contiguousCopy: (t: Tensor) => Tensor;
} = {
  accumulate: () => { throw new Error('ops not loaded'); },
  onesLike: () => { throw new Error('ops not loaded'); },
  add: () => { throw new Error('ops not loaded'); },
  contiguousCopy: () => { throw new Error('ops not loaded'); },
};

function runBackward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) throw new Error('backward(): tensor does not require grad (no parameter with requiresGrad reached it)');
  if (!grad && root.size !== 1) throw new Error(`backward(): output has shape ${fmtShape(root.shape)}; pass a gradient for non-scalar outputs`);
  if (grad && grad.shape.join(',') !== root.shape.join(',')) {
    throw new Error(`backward(): gradient shape ${fmtShape(grad.shape)} does not match output shape ${fmtShape(root.shape)}`);
  }
  // Topological order by iterative DFS.
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    if (i === 0) { if (seen.has(t)) { stack.pop(); continue; } seen.add(t); }
    const inputs = t.node ? t.node.inputs : [];
    if (i < inputs.length) {
      top[1]++;
      const c = inputs[i];
      if (c.requiresGrad && !seen.has(c)) stack.push([c, 0]);
    } else { stack.pop(); order.push(t); }
  }
  const grads = new Map<Tensor, Tensor>();
  noGrad(() => {
    grads.set(root, grad ?? gradHooks.onesLike(root));
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.node) {
        // Leaf: accumulate into .grad (kept like its owner so scopes do not free it).
        if (t.grad === null) {
          const own = g.isContiguous() && g.offset === 0 && g.storage.refs === 1 && g.size === g.data.length ? g : gradHooks.contiguousCopy(g);
          own.keep(); // owned by the leaf: freed by t.dispose(), not by a scope
          t.grad = own;
          if (own !== g) g.dispose();
        } else {
          gradHooks.accumulate(t.grad, g);
          g.dispose();
        }
        continue;
      }
      const node = t.node;
      const ig = node.backward(g);
      if (g !== grad) g.dispose();
      for (let j = 0; j < node.inputs.length; j++) {
        const x = node.inputs[j], gx = ig[j];
        if (!gx || !x.requiresGrad) { if (gx) gx.dispose(); continue; }
        if (gx.shape.join(',') !== x.shape.join(',')) {
          throw new Error(`internal: ${node.op} backward produced gradient ${fmtShape(gx.shape)} for input ${fmtShape(x.shape)}`);
        }
        const prev = grads.get(x);
        if (prev) { grads.set(x, gradHooks.add(prev, gx)); prev.dispose(); gx.dispose(); } else grads.set(x, gx);
      }
      t.node = null; // free the tape as we go: saved tensors become disposable
    }
  });
}

// The kernel contract shared by the reference (TypeScript) and native (C) backends.
// Every kernel works on raw typed arrays plus explicit offsets/strides so that views
// (transposes, slices, broadcasts) reach the kernels without copies. All float math is
// float32 storage with float32 or wider accumulation; the reference backend is the spec.

import type { QWeight } from '../quant.js';
import type { DecoderHandle, DecoderSpec, DecoderStep } from '../decoder.js';

export type F32 = Float32Array;
export type I32 = Int32Array;

/** Elementwise binary ops, `out = a OP b`. */
export const enum BinOp { Add = 0, Sub = 1, Mul = 2, Div = 3 }

/** Elementwise unary ops. `param` is used by Pow (exponent) and Scale/AddScalar. */
export const enum UnOp {
  Exp = 0, Log = 1, Tanh = 2, Sqrt = 3, Relu = 4,
  GeluTanh = 5, GeluErf = 6, Pow = 7, Neg = 8, Scale = 9, AddScalar = 10, Sigmoid = 11,
}

export interface Backend {
  readonly name: 'reference' | 'native';
  /** 'openblas' | 'builtin' for native, 'typescript' for the reference backend. */
  readonly gemmProvider: string;
  threads(): number;
  setThreads(n: number): void;

  /**
   * Batched GEMM on row-major operands: for b in [0,batch):
   *   C_b = alpha * op(A_b) @ op(B_b) + beta * C_b
   * where op(X) = X^T if trans flag set. op(A_b) is M×K, op(B_b) is K×N, C_b is M×N.
   * A_b starts at aOff + b*strideA and has leading dimension lda (row stride of A as stored:
   * A stored M×K (lda>=K) when !transA, K×M (lda>=M) when transA). Same for B. C has ldc>=N.
   * beta = 0 means C is overwritten (its old contents, even NaN, are ignored).
   */
  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: F32, aOff: number, lda: number, strideA: number,
    B: F32, bOff: number, ldb: number, strideB: number,
    beta: number, C: F32, cOff: number, ldc: number, strideC: number, batch: number): void;

  /**
   * Strided copy of a `shape`-shaped block: dst[dOff + Σ i_k*dStr_k] = src[sOff + Σ i_k*sStr_k].
   * Works for any 4-byte element arrays (Float32Array or Int32Array, both sides the same type).
   */
  copy(shape: number[], src: F32 | I32, sOff: number, sStr: number[],
    dst: F32 | I32, dOff: number, dStr: number[]): void;

  /**
   * Broadcasting binary op: out (contiguous, `shape`) = a[aOff + Σ i_k*aStr_k] OP b[...].
   * Broadcast dimensions have stride 0.
   */
  binary(op: BinOp, shape: number[], a: F32, aOff: number, aStr: number[],
    b: F32, bOff: number, bStr: number[], out: F32): void;

  /** out[i] = f(x[xOff+i]) for i<n (contiguous). */
  unary(op: UnOp, x: F32, xOff: number, n: number, out: F32, param: number): void;
  /** dx[i] = dy[i] * f'(x[i]) using x (input) and y (forward output) as convenient. */
  unaryBackward(op: UnOp, x: F32, y: F32, dy: F32, n: number, dx: F32, param: number): void;

  /** out[o*inner+i] = Σ_d x[(o*dim+d)*inner+i] (x contiguous, viewed as outer×dim×inner). */
  reduceSum(x: F32, outer: number, dim: number, inner: number, out: F32): void;
  /** Max over the middle axis; arg receives the winning d (first on ties). */
  reduceMax(x: F32, outer: number, dim: number, inner: number, out: F32, arg: I32): void;

  /** Row-wise softmax (or log-softmax) over the last axis of a rows×cols contiguous matrix. */
  softmax(x: F32, rows: number, cols: number, out: F32, log: boolean): void;
  /** softmax: dx = y*(dy - Σ dy*y); log-softmax: dx = dy - exp(y)*Σ dy. */
  softmaxBackward(y: F32, dy: F32, rows: number, cols: number, dx: F32, log: boolean): void;

  /**
   * Per-row cross-entropy over logits (rows×V): loss_r = -Σ_j q_j log softmax(z_r)_j with
   * q = (1-ε)·onehot(t_r) + ε/V. Rows whose target == ignoreIndex get loss 0 (lse still written).
   * Targets outside [0,V) other than ignoreIndex are the caller's error (checked in TS).
   */
  crossEntropy(logits: F32, rows: number, V: number, targets: I32, ignoreIndex: number,
    smoothing: number, loss: F32, lse: F32): void;
  /** dlogits[r,j] = dloss[r] * (softmax_j - q_j); zero rows for ignored targets. */
  crossEntropyBackward(logits: F32, lse: F32, targets: I32, rows: number, V: number,
    ignoreIndex: number, smoothing: number, dloss: F32, dlogits: F32): void;

  /** y = (x-mean)*rstd*gamma + beta per row of rows×C; mean/rstd (length rows) are saved. */
  layerNorm(x: F32, rows: number, C: number, gamma: F32, beta: F32, eps: number,
    y: F32, mean: F32, rstd: F32): void;
  /** Writes dx (rows×C) and ADDS into dgamma/dbeta (length C). */
  layerNormBackward(x: F32, dy: F32, gamma: F32, mean: F32, rstd: F32, rows: number, C: number,
    dx: F32, dgamma: F32, dbeta: F32): void;

  /** out[i*D + c] = weight[ids[i]*D + c]; ids already range-checked. */
  embedding(weight: F32, D: number, ids: I32, n: number, out: F32): void;
  /** dweight[ids[i]*D + c] += dy[i*D + c] (scatter-add; duplicates accumulate). */
  embeddingBackward(dy: F32, ids: I32, n: number, D: number, dweight: F32): void;

  /**
   * out[i] = keep(seed,i) ? x[i]/(1-p) : 0, keep(seed,i) = uniform(seed,i) >= p, with the
   * counter-based hash in `rng.ts` (identical in C), so forward and backward regenerate the
   * same mask without storing it.
   */
  dropout(x: F32, n: number, p: number, seed: number, out: F32): void;

  /**
   * Fused scaled-dot-product attention. q/k/v/out are addressed with per-tensor strides
   * [sB, sH, sT] (the head-dim axis is contiguous): element (b,h,t,d) of q is
   * q[qOff + b*qs[0] + h*qs[1] + t*qs[2] + d]. Query i may attend key j when
   * (!causal || j <= i + Tk - Tq) and (keyMask == null || keyMask[b*Tk + j] != 0).
   * P = softmax(scale * q k^T) over allowed keys; dropout on P with (seed, index
   * ((b*H+h)*Tq + i)*Tk + j); out = P_drop @ v. lse[(b*H+h)*Tq+i] = log Σ exp(scale*s) over
   * allowed keys (-Infinity and out row = 0 if none is allowed).
   */
  attention(q: F32, qOff: number, qs: number[], k: F32, kOff: number, ks: number[],
    v: F32, vOff: number, vs: number[], out: F32, oOff: number, os: number[],
    B: number, H: number, Tq: number, Tk: number, D: number, scale: number, causal: boolean,
    keyMask: F32 | null, dropP: number, seed: number, lse: F32): void;
  /**
   * Backward of `attention`, recomputing P one (b,h) T×T block at a time. Writes (overwrites)
   * dq/dk/dv at their strides; `out`/`dout` are read at os/dos.
   */
  attentionBackward(q: F32, qOff: number, qs: number[], k: F32, kOff: number, ks: number[],
    v: F32, vOff: number, vs: number[], out: F32, oOff: number, os: number[],
    dout: F32, doOff: number, dos: number[], lse: F32,
    dq: F32, dqOff: number, dqs: number[], dk: F32, dkOff: number, dks: number[],
    dv: F32, dvOff: number, dvs: number[],
    B: number, H: number, Tq: number, Tk: number, D: number, scale: number, causal: boolean,
    keyMask: F32 | null, dropP: number, seed: number): void;

  /**
   * Fused AdamW step over n elements (decoupled weight decay):
   *   m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g²;
   *   p -= lr * ( (m/bc1) / (sqrt(v/bc2) + eps) + wd * p )
   * where bc1 = 1-b1^t, bc2 = 1-b2^t are passed in.
   */
  adamw(p: F32, g: F32, m: F32, v: F32, n: number, lr: number, b1: number, b2: number,
    eps: number, wd: number, bc1: number, bc2: number): void;

  /**
   * bf16 GEMM (mixed precision training): same contract as `gemm`, but every element of op(A)
   * and op(B) is first rounded to bf16 (ties to even); products and sums in fp32 or wider.
   */
  gemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: F32, aOff: number, lda: number, strideA: number,
    B: F32, bOff: number, ldb: number, strideB: number,
    beta: number, C: F32, cOff: number, ldc: number, strideC: number, batch: number): void;

  /**
   * Inference matmul with a read-only weight in any WeightFormat (src/engine/quant.ts, whose
   * qmatmulRef is the spec): out[outOff + m·ldo + n] (= or += when accumulate) Σ_k x̃[m,k]·W[n,k]
   * + bias[n] for m < M, n < N, x row m at xOff + m·ldx.
   */
  qmatmul(w: QWeight, M: number, x: F32, xOff: number, ldx: number,
    out: F32, outOff: number, ldo: number, bias: F32 | null, accumulate: boolean): void;

  /** The fused inference decoder (src/engine/decoder.ts): create once, step per batch of tokens, free. */
  decoderCreate(spec: DecoderSpec): DecoderHandle;
  decoderStep(h: DecoderHandle, step: DecoderStep): void;
  decoderFree(h: DecoderHandle): void;

  /** CPU features found and the kernel path each format/op uses (e.g. {q4_0: 'avx512-vnni'}). */
  cpu(): CpuInfo;
}

export interface CpuInfo {
  /** e.g. ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_bf16', 'avx512_vnni', 'avx_vnni'] as detected at run time. */
  features: string[];
  /** Chosen kernel path per kernel family: gemm, gemm_bf16, f32, bf16, q8_0, q4_0 → 'scalar' | 'avx2' | 'avx512' | 'avx512-bf16' | 'avx512-vnni' | 'avx-vnni' | 'typescript'. */
  paths: Record<string, string>;
}

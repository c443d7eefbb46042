// Plain-TypeScript kernels: the executable specification every native kernel is tested against.
// Written for clarity first; accumulation in double (JS numbers) keeps them a precise yardstick.

import { BinOp, UnOp, type Backend, type F32, type I32 } from './types.js';
import { hashUniform } from '../rng.js';
import { qmatmulRef, roundBf16, type QWeight } from '../quant.js';
import type { DecoderHandle, DecoderSpec, DecoderStep } from '../decoder.js';
import { refDecoderCreate, refDecoderStep, refDecoderFree } from '../decoder-ref.js';
import type { CpuInfo } from './types.js';

const SQRT_2_OVER_PI = 0.7978845608028654;
const GELU_C = 0.044715;

/** erf with |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

function unaryF(op: UnOp, x: number, p: number): number {
  switch (op) {
    case UnOp.Exp: return Math.exp(x);
    case UnOp.Log: return Math.log(x);
    case UnOp.Tanh: return Math.tanh(x);
    case UnOp.Sqrt: return Math.sqrt(x);
    case UnOp.Relu: return x > 0 ? x : 0;
    case UnOp.GeluTanh: return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
    case UnOp.GeluErf: return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
    case UnOp.Pow: return Math.pow(x, p);
    case UnOp.Neg: return -x;
    case UnOp.Scale: return x * p;
    case UnOp.AddScalar: return x + p;
    case UnOp.Sigmoid: return 1 / (1 + Math.exp(-x));
  }
  throw new Error(`unknown unary op ${op}`);
}

function unaryDF(op: UnOp, x: number, y: number, p: number): number {
  switch (op) {
    case UnOp.Exp: return y;
    case UnOp.Log: return 1 / x;
    case UnOp.Tanh: return 1 - y * y;
    case UnOp.Sqrt: return 0.5 / y;
    case UnOp.Relu: return x > 0 ? 1 : 0;
    case UnOp.GeluTanh: {
      const u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
      const th = Math.tanh(u);
      const du = SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * du;
    }
    case UnOp.GeluErf: {
      const cdf = 0.5 * (1 + erf(x * Math.SQRT1_2));
      const pdf = Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
      return cdf + x * pdf;
    }
    case UnOp.Pow: return p * Math.pow(x, p - 1);
    case UnOp.Neg: return -1;
    case UnOp.Scale: return p;
    case UnOp.AddScalar: return 1;
    case UnOp.Sigmoid: return y * (1 - y);
  }
  throw new Error(`unknown unary op ${op}`);
}

/** Iterate a multi-index over `shape`, calling f with the running offsets of two strided operands. */
function forEachIndex2(shape: number[], aOff: number, aStr: number[], bOff: number, bStr: number[],
  f: (i: number, ao: number, bo: number) => void): void {
  const nd = shape.length;
  let n = 1;
  for (const s of shape) n *= s;
  if (n === 0) return;
  const idx = new Array<number>(nd).fill(0);
  let ao = aOff, bo = bOff;
  for (let i = 0; i < n; i++) {
    f(i, ao, bo);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]++;
      ao += aStr[d]; bo += bStr[d];
      if (idx[d] < shape[d]) break;
      ao -= aStr[d] * shape[d]; bo -= bStr[d] * shape[d];
      idx[d] = 0;
    }
  }
}

function allowed(causal: boolean, keyMask: F32 | null, b: number, i: number, j: number, Tq: number, Tk: number): boolean {
  if (causal && j > i + Tk - Tq) return false;
  if (keyMask && keyMask[b * Tk + j] === 0) return false;
  return true;
}

class ReferenceBackend implements Backend {
  readonly name = 'reference' as const;
  readonly gemmProvider = 'typescript';
  threads(): number { return 1; }
  setThreads(_n: number): void { /* single-threaded by design */ }

  gemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: F32, aOff: number, lda: number, strideA: number, B: F32, bOff: number, ldb: number, strideB: number,
    beta: number, C: F32, cOff: number, ldc: number, strideC: number, batch: number): void {
    const acc = new Float64Array(N);
    for (let b = 0; b < batch; b++) {
      const a0 = aOff + b * strideA, b0 = bOff + b * strideB, c0 = cOff + b * strideC;
      for (let i = 0; i < M; i++) {
        acc.fill(0);
        for (let p = 0; p < K; p++) {
          const av = transA ? A[a0 + p * lda + i] : A[a0 + i * lda + p];
          if (av === 0) continue;
          if (transB) for (let j = 0; j < N; j++) acc[j] += av * B[b0 + j * ldb + p];
          else { const r = b0 + p * ldb; for (let j = 0; j < N; j++) acc[j] += av * B[r + j]; }
        }
        const r = c0 + i * ldc;
        for (let j = 0; j < N; j++) C[r + j] = beta === 0 ? alpha * acc[j] : alpha * acc[j] + beta * C[r + j];
      }
    }
  }

  copy(shape: number[], src: F32 | I32, sOff: number, sStr: number[], dst: F32 | I32, dOff: number, dStr: number[]): void {
    forEachIndex2(shape, sOff, sStr, dOff, dStr, (_i, so, d) => { dst[d] = src[so]; });
  }

  binary(op: BinOp, shape: number[], a: F32, aOff: number, aStr: number[], b: F32, bOff: number, bStr: number[], out: F32): void {
    switch (op) {
      case BinOp.Add: forEachIndex2(shape, aOff, aStr, bOff, bStr, (i, ao, bo) => { out[i] = a[ao] + b[bo]; }); break;
      case BinOp.Sub: forEachIndex2(shape, aOff, aStr, bOff, bStr, (i, ao, bo) => { out[i] = a[ao] - b[bo]; }); break;
      case BinOp.Mul: forEachIndex2(shape, aOff, aStr, bOff, bStr, (i, ao, bo) => { out[i] = a[ao] * b[bo]; }); break;
      case BinOp.Div: forEachIndex2(shape, aOff, aStr, bOff, bStr, (i, ao, bo) => { out[i] = a[ao] / b[bo]; }); break;
      default: throw new Error(`unknown binary op ${op}`);
    }
  }

  unary(op: UnOp, x: F32, xOff: number, n: number, out: F32, param: number): void {
    for (let i = 0; i < n; i++) out[i] = unaryF(op, x[xOff + i], param);
  }
  unaryBackward(op: UnOp, x: F32, y: F32, dy: F32, n: number, dx: F32, param: number): void {
    for (let i = 0; i < n; i++) dx[i] = dy[i] * unaryDF(op, x[i], y[i], param);
  }

  reduceSum(x: F32, outer: number, dim: number, inner: number, out: F32): void {
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += x[(o * dim + d) * inner + i];
      out[o * inner + i] = s;
    }
  }
  reduceMax(x: F32, outer: number, dim: number, inner: number, out: F32, arg: I32): void {
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) {
      let best = -Infinity, bi = 0;
      for (let d = 0; d < dim; d++) {
        const v = x[(o * dim + d) * inner + i];
        if (d === 0 || v > best) { best = v; bi = d; }
      }
      out[o * inner + i] = best; arg[o * inner + i] = bi;
    }
  }

  softmax(x: F32, rows: number, cols: number, out: F32, log: boolean): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let mx = -Infinity;
      for (let j = 0; j < cols; j++) if (x[o + j] > mx) mx = x[o + j];
      let s = 0;
      for (let j = 0; j < cols; j++) s += Math.exp(x[o + j] - mx);
      if (log) { const l = mx + Math.log(s); for (let j = 0; j < cols; j++) out[o + j] = x[o + j] - l; }
      else for (let j = 0; j < cols; j++) out[o + j] = Math.exp(x[o + j] - mx) / s;
    }
  }
  softmaxBackward(y: F32, dy: F32, rows: number, cols: number, dx: F32, log: boolean): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let s = 0;
      if (log) {
        for (let j = 0; j < cols; j++) s += dy[o + j];
        for (let j = 0; j < cols; j++) dx[o + j] = dy[o + j] - Math.exp(y[o + j]) * s;
      } else {
        for (let j = 0; j < cols; j++) s += dy[o + j] * y[o + j];
        for (let j = 0; j < cols; j++) dx[o + j] = y[o + j] * (dy[o + j] - s);
      }
    }
  }

  crossEntropy(logits: F32, rows: number, V: number, targets: I32, ignoreIndex: number, smoothing: number, loss: F32, lse: F32): void {
    for (let r = 0; r < rows; r++) {
      const o = r * V;
      let mx = -Infinity;
      for (let j = 0; j < V; j++) if (logits[o + j] > mx) mx = logits[o + j];
      let s = 0, sumz = 0;
      for (let j = 0; j < V; j++) { s += Math.exp(logits[o + j] - mx); sumz += logits[o + j]; }
      const l = mx + Math.log(s);
      lse[r] = l;
      const t = targets[r];
      if (t === ignoreIndex) { loss[r] = 0; continue; }
      const nllT = l - logits[o + t];
      loss[r] = smoothing > 0 ? (1 - smoothing) * nllT + smoothing * (l - sumz / V) : nllT;
    }
  }
  crossEntropyBackward(logits: F32, lse: F32, targets: I32, rows: number, V: number, ignoreIndex: number, smoothing: number, dloss: F32, dlogits: F32): void {
    for (let r = 0; r < rows; r++) {
      const o = r * V, t = targets[r];
      if (t === ignoreIndex) { for (let j = 0; j < V; j++) dlogits[o + j] = 0; continue; }
      const g = dloss[r], l = lse[r], eps = smoothing / V;
      for (let j = 0; j < V; j++) {
        const q = (j === t ? 1 - smoothing : 0) + eps;
        dlogits[o + j] = g * (Math.exp(logits[o + j] - l) - q);
      }
    }
  }

  layerNorm(x: F32, rows: number, C: number, gamma: F32, beta: F32, eps: number, y: F32, mean: F32, rstd: F32): void {
    for (let r = 0; r < rows; r++) {
      const o = r * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += x[o + c];
      const mu = s / C;
      let v = 0;
      for (let c = 0; c < C; c++) { const d = x[o + c] - mu; v += d * d; }
      const rs = 1 / Math.sqrt(v / C + eps);
      mean[r] = mu; rstd[r] = rs;
      for (let c = 0; c < C; c++) y[o + c] = (x[o + c] - mu) * rs * gamma[c] + beta[c];
    }
  }
  layerNormBackward(x: F32, dy: F32, gamma: F32, mean: F32, rstd: F32, rows: number, C: number, dx: F32, dgamma: F32, dbeta: F32): void {
    for (let r = 0; r < rows; r++) {
      const o = r * C, mu = mean[r], rs = rstd[r];
      let s1 = 0, s2 = 0; // Σ g·γ and Σ g·γ·x̂
      for (let c = 0; c < C; c++) {
        const xh = (x[o + c] - mu) * rs, g = dy[o + c];
        dgamma[c] += g * xh; dbeta[c] += g;
        s1 += g * gamma[c]; s2 += g * gamma[c] * xh;
      }
      for (let c = 0; c < C; c++) {
        const xh = (x[o + c] - mu) * rs;
        dx[o + c] = rs * (dy[o + c] * gamma[c] - s1 / C - xh * s2 / C);
      }
    }
  }

  embedding(weight: F32, D: number, ids: I32, n: number, out: F32): void {
    for (let i = 0; i < n; i++) out.set(weight.subarray(ids[i] * D, ids[i] * D + D), i * D);
  }
  embeddingBackward(dy: F32, ids: I32, n: number, D: number, dweight: F32): void {
    for (let i = 0; i < n; i++) { const o = ids[i] * D; for (let c = 0; c < D; c++) dweight[o + c] += dy[i * D + c]; }
  }

  dropout(x: F32, n: number, p: number, seed: number, out: F32): void {
    const s = 1 / (1 - p);
    for (let i = 0; i < n; i++) out[i] = hashUniform(seed, i) >= p ? x[i] * s : 0;
  }

  attention(q: F32, qOff: number, qs: number[], k: F32, kOff: number, ks: number[], v: F32, vOff: number, vs: number[],
    out: F32, oOff: number, os: number[], B: number, H: number, Tq: number, Tk: number, D: number, scale: number,
    causal: boolean, keyMask: F32 | null, dropP: number, seed: number, lse: F32): void {
    const s = new Float64Array(Tk);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < Tq; i++) {
      const qo = qOff + b * qs[0] + h * qs[1] + i * qs[2];
      let mx = -Infinity;
      for (let j = 0; j < Tk; j++) {
        if (!allowed(causal, keyMask, b, i, j, Tq, Tk)) { s[j] = -Infinity; continue; }
        const ko = kOff + b * ks[0] + h * ks[1] + j * ks[2];
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
        s[j] = dot * scale;
        if (s[j] > mx) mx = s[j];
      }
      const row = (b * H + h) * Tq + i;
      const oo = oOff + b * os[0] + h * os[1] + i * os[2];
      if (mx === -Infinity) { lse[row] = -Infinity; for (let d = 0; d < D; d++) out[oo + d] = 0; continue; }
      let sum = 0;
      for (let j = 0; j < Tk; j++) sum += s[j] === -Infinity ? 0 : Math.exp(s[j] - mx);
      const l = mx + Math.log(sum);
      lse[row] = l;
      const acc = new Float64Array(D);
      for (let j = 0; j < Tk; j++) {
        if (s[j] === -Infinity) continue;
        let pj = Math.exp(s[j] - l);
        if (dropP > 0) pj = hashUniform(seed, row * Tk + j) >= dropP ? pj / (1 - dropP) : 0;
        if (pj === 0) continue;
        const vo = vOff + b * vs[0] + h * vs[1] + j * vs[2];
        for (let d = 0; d < D; d++) acc[d] += pj * v[vo + d];
      }
      for (let d = 0; d < D; d++) out[oo + d] = acc[d];
    }
  }

  attentionBackward(q: F32, qOff: number, qs: number[], k: F32, kOff: number, ks: number[], v: F32, vOff: number, vs: number[],
    out: F32, oOff: number, os: number[], dout: F32, doOff: number, dos: number[], lse: F32,
    dq: F32, dqOff: number, dqs: number[], dk: F32, dkOff: number, dks: number[], dv: F32, dvOff: number, dvs: number[],
    B: number, H: number, Tq: number, Tk: number, D: number, scale: number, causal: boolean,
    keyMask: F32 | null, dropP: number, seed: number): void {
    // One (b,h) block at a time: P (Tq×Tk) is recomputed from the saved log-sum-exp.
    const P = new Float64Array(Tq * Tk);
    const dkAcc = new Float64Array(Tk * D), dvAcc = new Float64Array(Tk * D);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      dkAcc.fill(0); dvAcc.fill(0);
      for (let i = 0; i < Tq; i++) {
        const row = (b * H + h) * Tq + i, l = lse[row];
        const qo = qOff + b * qs[0] + h * qs[1] + i * qs[2];
        for (let j = 0; j < Tk; j++) {
          if (l === -Infinity || !allowed(causal, keyMask, b, i, j, Tq, Tk)) { P[i * Tk + j] = 0; continue; }
          const ko = kOff + b * ks[0] + h * ks[1] + j * ks[2];
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
          P[i * Tk + j] = Math.exp(dot * scale - l);
        }
      }
      for (let i = 0; i < Tq; i++) {
        const row = (b * H + h) * Tq + i;
        const doo = doOff + b * dos[0] + h * dos[1] + i * dos[2];
        const oo = oOff + b * os[0] + h * os[1] + i * os[2];
        // delta = Σ_d dO·O = Σ_j P_drop_ij · dP_ij
        let delta = 0;
        for (let d = 0; d < D; d++) delta += dout[doo + d] * out[oo + d];
        const qo = qOff + b * qs[0] + h * qs[1] + i * qs[2];
        const dqo = dqOff + b * dqs[0] + h * dqs[1] + i * dqs[2];
        const dqAcc = new Float64Array(D);
        for (let j = 0; j < Tk; j++) {
          const p = P[i * Tk + j];
          if (p === 0) continue;
          const keepScale = dropP > 0 ? (hashUniform(seed, row * Tk + j) >= dropP ? 1 / (1 - dropP) : 0) : 1;
          const vo = vOff + b * vs[0] + h * vs[1] + j * vs[2];
          let dpd = 0; // dO · v_j
          for (let d = 0; d < D; d++) dpd += dout[doo + d] * v[vo + d];
          const pd = p * keepScale;
          for (let d = 0; d < D; d++) dvAcc[j * D + d] += pd * dout[doo + d];
          const ds = p * (dpd * keepScale - delta) * scale;
          const ko = kOff + b * ks[0] + h * ks[1] + j * ks[2];
          for (let d = 0; d < D; d++) { dqAcc[d] += ds * k[ko + d]; dkAcc[j * D + d] += ds * q[qo + d]; }
        }
        for (let d = 0; d < D; d++) dq[dqo + d] = dqAcc[d];
      }
      for (let j = 0; j < Tk; j++) {
        const dko = dkOff + b * dks[0] + h * dks[1] + j * dks[2];
        const dvo = dvOff + b * dvs[0] + h * dvs[1] + j * dvs[2];
        for (let d = 0; d < D; d++) { dk[dko + d] = dkAcc[j * D + d]; dv[dvo + d] = dvAcc[j * D + d]; }
      }
    }
  }

  adamw(p: F32, g: F32, m: F32, v: F32, n: number, lr: number, b1: number, b2: number, eps: number, wd: number, bc1: number, bc2: number): void {
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      p[i] -= lr * ((m[i] / bc1) / (Math.sqrt(v[i] / bc2) + eps) + wd * p[i]);
    }
  }
  gemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: F32, aOff: number, lda: number, strideA: number, B: F32, bOff: number, ldb: number, strideB: number,
    beta: number, C: F32, cOff: number, ldc: number, strideC: number, batch: number): void {
    // Round every operand element to bf16 first; the fp64 gemm then sums exact products.
    this.gemm(transA, transB, M, N, K, alpha, A.map(roundBf16), aOff, lda, strideA, B.map(roundBf16), bOff, ldb, strideB,
      beta, C, cOff, ldc, strideC, batch);
  }

  qmatmul(w: QWeight, M: number, x: F32, xOff: number, ldx: number, out: F32, outOff: number, ldo: number, bias: F32 | null, accumulate: boolean): void {
    qmatmulRef(w, M, x, xOff, ldx, out, outOff, ldo, bias, accumulate);
  }

  decoderCreate(spec: DecoderSpec): DecoderHandle { return refDecoderCreate(spec); }
  decoderStep(h: DecoderHandle, step: DecoderStep): void { refDecoderStep(h, step); }
  decoderFree(h: DecoderHandle): void { refDecoderFree(h); }

  cpu(): CpuInfo {
    return { features: [], paths: { gemm: 'typescript', gemm_bf16: 'typescript', f32: 'typescript', bf16: 'typescript', q8_0: 'typescript', q4_0: 'typescript' } };
  }
}

export const reference: Backend = new ReferenceBackend();

// Inference weight formats and their executable specification: bf16, and GGML-compatible
// block formats q8_0 / q4_0 (32 weights share one f16 scale). Weight quantization follows
// ggml's reference rows (quantize_row_q8_0_ref / quantize_row_q4_0_ref) so blocks move into
// GGUF files unchanged. A matmul with a q format first quantizes the activations to q8_0
// blocks (as llama.cpp does) and sums exact int32 dot products; bf16 rounds the activations to
// bf16. Native kernels (native/quant.c) must match `qmatmulRef` up to float summation order.

import { f16BitsToF32Bits, f32BitsToF16Bits, f32BitsToBf16Bits } from './half.js';

export type WeightFormat = 'f32' | 'bf16' | 'q8_0' | 'q4_0';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['f32', 'bf16', 'q8_0', 'q4_0'];
/** Weights per scale in q8_0 / q4_0. K must be a multiple of it. */
export const QK = 32;
/** Native format codes (native/kernels.h ICLD_F32…). */
export const FORMAT_CODE: Readonly<Record<WeightFormat, number>> = { f32: 0, bf16: 1, q8_0: 2, q4_0: 3 };

/**
 * A read-only weight matrix of an inference matmul y = x·Wᵀ (+ bias), W logically [N out, K in].
 * f32 may keep either storage layout ('in_out' = stored [K, N], GPT-2's Conv1D; 'out_in' =
 * stored [N, K]); every other format is stored [N, K] with blocks running along K.
 * - f32:  Float32Array, N·K
 * - bf16: Uint16Array of bf16 bits, N·K
 * - q8_0: Int8Array N·K, value = q · scale
 * - q4_0: Uint8Array N·K/2; in each 32-block of a row, byte j holds element j (low nibble) and
 *   element j+16 (high nibble); value = (nibble − 8) · scale
 * scales (q formats): Uint16Array of f16 bits, one per block, [N, K/32].
 */
export interface QWeight {
  readonly format: WeightFormat;
  readonly N: number;
  readonly K: number;
  readonly layout: 'in_out' | 'out_in';
  readonly data: Float32Array | Uint16Array | Int8Array | Uint8Array;
  readonly scales: Uint16Array | null;
}

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
const f16 = (h: number): number => { u32buf[0] = f16BitsToF32Bits(h); return f32buf[0]; };
const toF16 = (x: number): number => { f32buf[0] = x; return f32BitsToF16Bits(u32buf[0]); };
export const bf16ToF32 = (h: number): number => { u32buf[0] = (h & 0xffff) << 16; return f32buf[0]; };
export const f32ToBf16 = (x: number): number => { f32buf[0] = x; return f32BitsToBf16Bits(u32buf[0]); };
/** x rounded to the nearest bf16 (ties to even), as a number. */
export const roundBf16 = (x: number): number => bf16ToF32(f32ToBf16(x));
const fr = Math.fround;
/** C's roundf: nearest, halves away from zero (ggml's scalar reference). */
const roundAway = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));
/** Round to nearest, ties to even (SIMD rounding mode; used for activations). */
export function roundEven(v: number): number {
  const r = Math.round(v);
  return (r - v === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

/** Bytes one N×K weight takes in a format (scales included). */
export function weightBytes(format: WeightFormat, N: number, K: number): number {
  switch (format) {
    case 'f32': return 4 * N * K;
    case 'bf16': return 2 * N * K;
    case 'q8_0': return N * K + 2 * N * (K / QK);
    case 'q4_0': return N * K / 2 + 2 * N * (K / QK);
  }
}

/**
 * Quantize a float matrix to `format`. `src` holds W in `layout` ('in_out' = [K, N]); the result
 * is [N, K] for every format but f32, which keeps the given layout (and copies).
 */
export function quantizeWeight(src: Float32Array, N: number, K: number, layout: 'in_out' | 'out_in', format: WeightFormat): QWeight {
  if (src.length !== N * K) throw new Error(`quantizeWeight: ${src.length} values for a ${N}×${K} matrix`);
  if (format === 'f32') return { format, N, K, layout, data: src.slice(), scales: null };
  if (format !== 'bf16' && K % QK !== 0) throw new Error(`quantizeWeight: ${format} needs the input size (${K}) to be a multiple of ${QK}`);
  const at = layout === 'out_in' ? (n: number, k: number) => src[n * K + k] : (n: number, k: number) => src[k * N + n];
  if (format === 'bf16') {
    const d = new Uint16Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) d[n * K + k] = f32ToBf16(at(n, k));
    return { format, N, K, layout: 'out_in', data: d, scales: null };
  }
  const nb = K / QK, scales = new Uint16Array(N * nb);
  const blk = new Float32Array(QK);
  if (format === 'q8_0') {
    const q = new Int8Array(N * K);
    for (let n = 0; n < N; n++) for (let b = 0; b < nb; b++) {
      let amax = 0;
      for (let j = 0; j < QK; j++) { blk[j] = at(n, b * QK + j); amax = Math.max(amax, Math.abs(blk[j])); }
      const d = fr(amax / 127), id = d ? fr(1 / d) : 0;
      scales[n * nb + b] = toF16(d);
      for (let j = 0; j < QK; j++) q[n * K + b * QK + j] = roundAway(fr(blk[j] * id));
    }
    return { format, N, K, layout: 'out_in', data: q, scales };
  }
  const q = new Uint8Array(N * K / 2);
  for (let n = 0; n < N; n++) for (let b = 0; b < nb; b++) {
    let amax = 0, max = 0;
    for (let j = 0; j < QK; j++) {
      const v = (blk[j] = at(n, b * QK + j));
      if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
    }
    const d = fr(max / -8), id = d ? fr(1 / d) : 0;
    scales[n * nb + b] = toF16(d);
    const base = (n * K + b * QK) / 2;
    for (let j = 0; j < QK / 2; j++) {
      const lo = Math.min(15, Math.trunc(fr(fr(blk[j] * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(fr(fr(blk[j + QK / 2] * id) + 8.5)));
      q[base + j] = lo | (hi << 4);
    }
  }
  return { format, N, K, layout: 'out_in', data: q, scales };
}

/** Element (n, k) of a weight as the kernels see it. */
export function weightAt(w: QWeight, n: number, k: number): number {
  const { K } = w;
  switch (w.format) {
    case 'f32': return (w.data as Float32Array)[w.layout === 'out_in' ? n * K + k : k * w.N + n];
    case 'bf16': return bf16ToF32((w.data as Uint16Array)[n * K + k]);
    case 'q8_0': return (w.data as Int8Array)[n * K + k] * f16(w.scales![n * (K / QK) + (k / QK | 0)]);
    case 'q4_0': {
      const j = k % QK, byte = (w.data as Uint8Array)[(n * K + k - j) / 2 + (j % 16)];
      return ((j < 16 ? byte & 15 : byte >> 4) - 8) * f16(w.scales![n * (K / QK) + (k / QK | 0)]);
    }
  }
}

/** The float matrix a weight stands for, [N, K] (out_in). */
export function dequantizeWeight(w: QWeight): Float32Array {
  const out = new Float32Array(w.N * w.K);
  for (let n = 0; n < w.N; n++) for (let k = 0; k < w.K; k++) out[n * w.K + k] = weightAt(w, n, k);
  return out;
}

/**
 * Activations as a q-format matmul uses them: each 32-block of a row x[0..K) becomes int8
 * q = roundEven(x · (1/d)) with d = fround(amax / 127) kept in f32 (0 for an all-zero block).
 */
export function quantizeActQ8(x: Float32Array, xOff: number, K: number, q: Int8Array, d: Float32Array): void {
  for (let b = 0; b < K / QK; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[xOff + b * QK + j]));
    const s = fr(amax / 127), id = s ? fr(1 / s) : 0;
    d[b] = s;
    for (let j = 0; j < QK; j++) q[b * QK + j] = roundEven(fr(x[xOff + b * QK + j] * id));
  }
}

/**
 * The reference inference matmul: for m < M, n < N
 *   out[outOff + m·ldo + n] (= or +=, per `accumulate`) Σ_k x̃[m,k] · W[n,k] + bias[n]
 * where x̃ is x for f32, x rounded to bf16 for bf16, and for q8_0/q4_0 the sum runs per block as
 * d_w · d_x · Σ_j q_w·q_x (exact integers) with the activations from quantizeActQ8.
 */
export function qmatmulRef(w: QWeight, M: number, x: Float32Array, xOff: number, ldx: number,
  out: Float32Array, outOff: number, ldo: number, bias: Float32Array | null, accumulate: boolean): void {
  const { N, K } = w;
  const nb = K / QK;
  const xq = new Int8Array(K), xd = new Float32Array(Math.max(1, nb)), xr = new Float64Array(K);
  for (let m = 0; m < M; m++) {
    const xo = xOff + m * ldx;
    if (w.format === 'q8_0' || w.format === 'q4_0') quantizeActQ8(x, xo, K, xq, xd);
    else for (let k = 0; k < K; k++) xr[k] = w.format === 'bf16' ? roundBf16(x[xo + k]) : x[xo + k];
    for (let n = 0; n < N; n++) {
      let s = 0;
      if (w.format === 'f32' || w.format === 'bf16') {
        for (let k = 0; k < K; k++) s += xr[k] * weightAt(w, n, k);
      } else {
        for (let b = 0; b < nb; b++) {
          let isum = 0;
          const sw = f16(w.scales![n * nb + b]);
          for (let j = 0; j < QK; j++) {
            const k = b * QK + j;
            let qw: number;
            if (w.format === 'q8_0') qw = (w.data as Int8Array)[n * K + k];
            else { const byte = (w.data as Uint8Array)[(n * K + b * QK) / 2 + (j % 16)]; qw = (j < 16 ? byte & 15 : byte >> 4) - 8; }
            isum += qw * xq[k];
          }
          s += sw * xd[b] * isum;
        }
      }
      if (bias) s += bias[n];
      const o = outOff + m * ldo + n;
      out[o] = accumulate ? out[o] + s : s;
    }
  }
}

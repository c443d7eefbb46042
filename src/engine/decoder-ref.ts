// Reference twin of the fused inference decoder (src/engine/decoder.ts): plain TypeScript over
// the reference kernels, the specification native/decoder.c is tested against. Every matmul is
// qmatmulRef, so each weight format's numerics (activation rounding / q8_0 blocks) are exactly
// the spec's; the rest (layer norm, GELU, attention) follows src/models/gpt2.ts.

import type { DecoderHandle, DecoderSpec, DecoderStep } from './decoder.js';
import { qmatmulRef, weightAt } from './quant.js';
import { erf, reference } from './backend/reference.js';

interface RefDecoder {
  spec: DecoderSpec;
  /** Per layer: keys / values [maxSeqs, maxT, C] (heads contiguous inside a row, as the qkv output). */
  k: Float32Array[];
  v: Float32Array[];
  freed: boolean;
}

/** Checks shared by both twins' callers: sizes consistent, every weight the right shape. */
export function checkDecoderSpec(s: DecoderSpec): void {
  const C = s.hidden, I = s.inner, bad = (m: string): never => { throw new Error(`decoder spec: ${m}`); };
  if (!(C > 0 && s.heads > 0 && C % s.heads === 0)) bad(`hidden ${C} must be a positive multiple of heads ${s.heads}`);
  if (!(s.maxSeqs >= 1 && s.maxT >= 1)) bad(`maxSeqs ${s.maxSeqs} and maxT ${s.maxT} must be ≥ 1`);
  if (s.maxT > s.positions) bad(`maxT ${s.maxT} exceeds the ${s.positions} learned positions`);
  if (s.attnScale.length !== s.layers.length) bad(`${s.attnScale.length} attention scales for ${s.layers.length} layers`);
  const w = (name: string, q: { N: number; K: number }, N: number, K: number): void => {
    if (q.N !== N || q.K !== K) bad(`${name} is ${q.N}×${q.K}, expected ${N}×${K}`);
  };
  const v = (name: string, a: Float32Array, n: number): void => { if (a.length !== n) bad(`${name} has ${a.length} values, expected ${n}`); };
  w('wte', s.wte, s.vocab, C);
  v('wpe', s.wpe, s.positions * C);
  v('lnfWeight', s.lnfWeight, C); v('lnfBias', s.lnfBias, C);
  s.layers.forEach((l, i) => {
    const p = `layer ${i} `;
    v(p + 'ln1Weight', l.ln1Weight, C); v(p + 'ln1Bias', l.ln1Bias, C);
    v(p + 'ln2Weight', l.ln2Weight, C); v(p + 'ln2Bias', l.ln2Bias, C);
    w(p + 'qkv', l.qkv, 3 * C, C); v(p + 'qkvBias', l.qkvBias, 3 * C);
    w(p + 'proj', l.proj, C, C); v(p + 'projBias', l.projBias, C);
    w(p + 'fc', l.fc, I, C); v(p + 'fcBias', l.fcBias, I);
    w(p + 'fcProj', l.fcProj, C, I); v(p + 'fcProjBias', l.fcProjBias, C);
  });
}

/** Checks a step against the decoder's sizes (one-line errors naming the token). */
export function checkDecoderStep(s: DecoderSpec, st: DecoderStep): void {
  const { n } = st;
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`decoder step: n must be a non-negative integer, got ${n}`);
  if (st.ids.length < n || st.pos.length < n || st.seq.length < n) throw new Error(`decoder step: ids/pos/seq hold fewer than ${n} tokens`);
  for (let i = 0; i < n; i++) {
    if (st.ids[i] < 0 || st.ids[i] >= s.vocab) throw new Error(`decoder step: token ${i} has id ${st.ids[i]} outside the vocabulary (${s.vocab})`);
    if (st.pos[i] < 0 || st.pos[i] >= s.maxT) throw new Error(`decoder step: token ${i} has position ${st.pos[i]} outside [0, ${s.maxT})`);
    if (st.seq[i] < 0 || st.seq[i] >= s.maxSeqs) throw new Error(`decoder step: token ${i} has slot ${st.seq[i]} outside [0, ${s.maxSeqs})`);
  }
  for (let r = 0; r < st.outRows.length; r++) if (st.outRows[r] < 0 || st.outRows[r] >= n) throw new Error(`decoder step: output row ${r} names token ${st.outRows[r]}, not in [0, ${n})`);
  if (st.logits.length < st.outRows.length * s.vocab) throw new Error(`decoder step: logits hold ${st.logits.length} values, ${st.outRows.length} rows need ${st.outRows.length * s.vocab}`);
}

export function refDecoderCreate(spec: DecoderSpec): DecoderHandle {
  checkDecoderSpec(spec);
  const n = spec.maxSeqs * spec.maxT * spec.hidden;
  const h: RefDecoder = { spec, k: spec.layers.map(() => new Float32Array(n)), v: spec.layers.map(() => new Float32Array(n)), freed: false };
  return h;
}

/** The reference backend's layer norm (its saved mean/rstd are not needed here). */
function layerNorm(x: Float32Array, rows: number, C: number, g: Float32Array, b: Float32Array, eps: number, y: Float32Array): void {
  reference.layerNorm(x, rows, C, g, b, eps, y, new Float32Array(rows), new Float32Array(rows));
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
function activate(a: DecoderSpec['activation'], x: number): number {
  if (a === 'relu') return x > 0 ? x : 0;
  if (a === 'gelu_tanh') return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
  return 0.5 * x * (1 + erf(x * Math.SQRT1_2));
}

export function refDecoderStep(handle: DecoderHandle, st: DecoderStep): void {
  const d = handle as RefDecoder;
  if (d.freed) throw new Error('decoder step: the decoder was freed');
  const s = d.spec;
  checkDecoderStep(s, st);
  const { n } = st;
  if (n === 0) return;
  const C = s.hidden, H = s.heads, D = C / H, I = s.inner, T = s.maxT;
  const x = new Float32Array(n * C), h = new Float32Array(n * C), qkv = new Float32Array(n * 3 * C);
  const att = new Float32Array(n * C), f = new Float32Array(n * I), p = new Float32Array(T);
  for (let i = 0; i < n; i++) {
    const id = st.ids[i], pos = st.pos[i];
    for (let c = 0; c < C; c++) x[i * C + c] = weightAt(s.wte, id, c) + s.wpe[pos * C + c];
  }
  s.layers.forEach((L, l) => {
    layerNorm(x, n, C, L.ln1Weight, L.ln1Bias, s.eps, h);
    qmatmulRef(L.qkv, n, h, 0, C, qkv, 0, 3 * C, L.qkvBias, false);
    const K = d.k[l], V = d.v[l];
    for (let i = 0; i < n; i++) {
      const row = (st.seq[i] * T + st.pos[i]) * C;
      K.set(qkv.subarray(i * 3 * C + C, i * 3 * C + 2 * C), row);
      V.set(qkv.subarray(i * 3 * C + 2 * C, i * 3 * C + 3 * C), row);
    }
    const scale = s.attnScale[l];
    for (let i = 0; i < n; i++) {
      const base = st.seq[i] * T * C, last = st.pos[i];
      for (let hd = 0; hd < H; hd++) {
        const q = i * 3 * C + hd * D;
        let mx = -Infinity;
        for (let j = 0; j <= last; j++) {
          let dot = 0;
          for (let e = 0; e < D; e++) dot += qkv[q + e] * K[base + j * C + hd * D + e];
          p[j] = dot * scale;
          if (p[j] > mx) mx = p[j];
        }
        let z = 0;
        for (let j = 0; j <= last; j++) { p[j] = Math.exp(p[j] - mx); z += p[j]; }
        for (let e = 0; e < D; e++) {
          let acc = 0;
          for (let j = 0; j <= last; j++) acc += p[j] * V[base + j * C + hd * D + e];
          att[i * C + hd * D + e] = acc / z;
        }
      }
    }
    qmatmulRef(L.proj, n, att, 0, C, x, 0, C, L.projBias, true);
    layerNorm(x, n, C, L.ln2Weight, L.ln2Bias, s.eps, h);
    qmatmulRef(L.fc, n, h, 0, C, f, 0, I, L.fcBias, false);
    for (let e = 0; e < n * I; e++) f[e] = activate(s.activation, f[e]);
    qmatmulRef(L.fcProj, n, f, 0, I, x, 0, C, L.fcProjBias, true);
  });
  const R = st.outRows.length;
  const xr = new Float32Array(R * C);
  for (let r = 0; r < R; r++) xr.set(x.subarray(st.outRows[r] * C, st.outRows[r] * C + C), r * C);
  layerNorm(xr, R, C, s.lnfWeight, s.lnfBias, s.eps, xr);
  qmatmulRef(s.wte, R, xr, 0, C, st.logits, 0, s.vocab, null, false);
}

export function refDecoderFree(handle: DecoderHandle): void {
  const d = handle as RefDecoder;
  d.freed = true;
  d.k = []; d.v = [];
}

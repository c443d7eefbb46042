// Distillation objective (the paper's, In-context Learning Distillation eq. 3):
//   L = α(t)·(L_ICT^hard + β·L_LM^hard) + (1 − α(t))·τ²·(L_ICT^soft + β·L_LM^soft)
// hard = cross-entropy with the gold tokens, soft = KL(softmax(z_T/τ) ‖ softmax(z_S/τ)); the LM
// terms are on plain-text windows (every position), the ICT terms on the answer positions.
// The teacher side of the KL is a compact target per answer position: the teacher's top-k
// tokens (plus any option tokens) with their raw logits and the log-sum-exp of all logits at
// temperature τ. The probability mass outside the stored tokens is one "rest" bucket, matched
// against the student's mass outside the same tokens; with k = V this is the exact KL.
// The same targets come from a live teacher or from the cache, so both give the same loss.

import * as O from '../engine/ops.js';
import { Tensor } from '../engine/index.js';

export interface TeacherTarget {
  /** Token ids kept for this position (top-k ∪ candidates). */
  ids: Int32Array;
  /** Raw teacher logits at those ids. */
  logits: Float32Array;
  /** log Σ_v exp(z_v / τ) over the full vocabulary. */
  lse: number;
}

/** Top-k (∪ extra ids) of one row of raw logits, with its temperature log-sum-exp. */
export function teacherTarget(row: Float32Array, topK: number, tau: number, extra: readonly number[] = []): TeacherTarget {
  const V = row.length, k = Math.min(topK > 0 ? topK : V, V);
  let mx = -Infinity;
  for (let i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp((row[i] - mx) / tau);
  // float32 like the cache stores it, so live and cached targets are bit-identical
  const lse = Math.fround(mx / tau + Math.log(s));
  const ids = k === V ? Array.from({ length: V }, (_, i) => i) : topKIds(row, k);
  const set = new Set(ids);
  for (const e of extra) if (e >= 0 && e < V && !set.has(e)) { set.add(e); ids.push(e); }
  const idArr = Int32Array.from(ids);
  return { ids: idArr, logits: Float32Array.from(idArr, (i) => row[i]), lse };
}

/**
 * The k ids with the largest values, sorted by value (ties: smaller id first) — what sorting all
 * V ids and keeping k gives, in O(V log k) with a min-heap of the best k (V is ~30k for BERT).
 */
export function topKIds(row: Float32Array, k: number): number[] {
  const heap = new Int32Array(k);
  let n = 0;
  // a ranks below b: smaller value, or equal value and larger id.
  const below = (a: number, b: number): boolean => row[a] < row[b] || (row[a] === row[b] && a > b);
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < n && below(heap[l], heap[m])) m = l;
      if (r < n && below(heap[r], heap[m])) m = r;
      if (m === i) return;
      const t = heap[i]; heap[i] = heap[m]; heap[m] = t; i = m;
    }
  };
  for (let id = 0; id < row.length; id++) {
    if (n < k) {
      let i = n++;
      heap[i] = id;
      while (i > 0) { const p = (i - 1) >> 1; if (!below(heap[i], heap[p])) break; const t = heap[i]; heap[i] = heap[p]; heap[p] = t; i = p; }
    } else if (below(heap[0], id)) { heap[0] = id; down(0); }
  }
  return Array.from(heap.subarray(0, n)).sort((a, b) => row[b] - row[a] || a - b);
}

export type KLMode = 'full' | 'options';

/**
 * Mean over rows of KL(teacher ‖ student) at temperature τ (no τ² factor).
 * student: logits [N, V] for the N answer positions. mode 'options': both distributions are
 * renormalised over `candidates[n]` (the option tokens possible at that position).
 */
export function distillKL(student: Tensor, targets: TeacherTarget[], tau: number, mode: KLMode = 'full', candidates?: readonly (readonly number[])[]): Tensor {
  const [N, V] = student.shape;
  if (targets.length !== N) throw new Error(`distillKL: ${targets.length} teacher targets for ${N} student rows`);
  const W = new Float32Array(N * V), M = new Float32Array(N * V);
  const rest = new Float32Array(N);
  let constant = 0;
  let maskAdd: Float32Array | null = null;
  if (mode === 'options') {
    if (!candidates || candidates.length !== N) throw new Error('distillKL: options mode needs one candidate set per row');
    maskAdd = new Float32Array(N * V).fill(-1e9);
  }
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (mode === 'full') {
      let mass = 0;
      for (let j = 0; j < t.ids.length; j++) {
        const p = Math.exp(t.logits[j] / tau - t.lse);
        W[n * V + t.ids[j]] = p; M[n * V + t.ids[j]] = 1;
        mass += p;
        if (p > 0) constant += p * Math.log(p);
      }
      const r = Math.max(0, 1 - mass);
      rest[n] = r;
      if (r > 1e-12) constant += r * Math.log(r);
    } else {
      // Teacher over the candidates only.
      const pos = new Map<number, number>();
      t.ids.forEach((id, j) => pos.set(id, j));
      const cand = candidates![n];
      const zs = cand.map((c) => {
        const j = pos.get(c);
        if (j === undefined) throw new Error(`distillKL: teacher target lacks option token ${c} (row ${n})`);
        return t.logits[j] / tau;
      });
      const mx = Math.max(...zs);
      const z = zs.reduce((a, v) => a + Math.exp(v - mx), 0);
      cand.forEach((c, j) => {
        const p = Math.exp(zs[j] - mx) / z;
        W[n * V + c] = p;
        maskAdd![n * V + c] = 0;
        if (p > 0) constant += p * Math.log(p);
      });
    }
  }
  let scaled = tau === 1 ? student : O.scale(student, 1 / tau);
  if (maskAdd) scaled = O.add(scaled, O.fromData(maskAdd, [N, V]));
  const ls = O.logSoftmax(scaled);
  // Σ_n [ const_n − Σ_v W·ls − rest_n · log(Σ_{v∉kept} exp(ls) + ε) ]
  let total = O.neg(O.sum(O.mul(O.fromData(W, [N, V]), ls)));
  if (mode === 'full' && rest.some((r) => r > 1e-12)) {
    const outside = O.sum(O.mul(O.fromData(M.map((m) => 1 - m), [N, V]), O.exp(ls)), -1);
    const restTerm = O.sum(O.mul(O.fromData(rest, [N]), O.log(O.addScalar(outside, 1e-12))));
    total = O.sub(total, restTerm);
  }
  return O.scale(O.addScalar(total, constant), 1 / Math.max(1, N));
}

/** α(t) for step t of T: constant α0, or linear from α0 to α1. */
export function alphaAt(step: number, steps: number, a0: number, a1: number, schedule: 'constant' | 'linear'): number {
  if (schedule === 'constant' || steps <= 1) return a0;
  return a0 + (a1 - a0) * Math.min(1, step / (steps - 1));
}

export interface CombinedLossParts {
  /** L_ICT^hard */ ce: Tensor | null;
  /** L_ICT^soft (no τ²) */ kl: Tensor | null;
  /** L_LM^hard */ lm: Tensor | null;
  /** L_LM^soft (no τ²) */ lmKl?: Tensor | null;
}

/**
 * α·(CE + β·LM) + (1−α)·τ²·(KL + β·KL_LM), skipping absent parts. Without any soft part the
 * caller passes α = 1 (no teacher: CE + β·LM).
 */
export function combineLoss(p: CombinedLossParts, alpha: number, tau: number, beta: number): Tensor {
  const terms: Tensor[] = [];
  const t2 = tau * tau;
  if (p.ce && alpha > 0) terms.push(O.scale(p.ce, alpha));
  if (p.lm && beta > 0 && alpha > 0) terms.push(O.scale(p.lm, alpha * beta));
  if (p.kl && alpha < 1) terms.push(O.scale(p.kl, (1 - alpha) * t2));
  if (p.lmKl && beta > 0 && alpha < 1) terms.push(O.scale(p.lmKl, (1 - alpha) * t2 * beta));
  if (terms.length === 0) throw new Error('distillation: every loss term has weight 0');
  return terms.reduce((a, b) => O.add(a, b));
}

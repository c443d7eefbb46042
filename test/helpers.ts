// Shared test utilities: finite-difference gradient checks, backend iteration, a tiny study config.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/engine/rng.js';
import type { StudyConfig } from '../src/distill/study-config.js';
import { Tensor, noGrad, tidy } from '../src/engine/tensor.js';
import { tensor, randn } from '../src/engine/ops.js';
import { setBackend } from '../src/engine/backend/index.js';
import { loadNative, nativeLoadError } from '../src/engine/backend/native.js';
import type { Backend } from '../src/engine/backend/types.js';

/**
 * Backends available in this build: always reference, plus native when the addon loads. Without
 * the addon a skipped test says so in the TAP output, so the missing native half is visible.
 */
export function availableBackends(): ('reference' | 'native')[] {
  if (loadNative()) return ['reference', 'native'];
  test('native backend variants', { skip: `native addon not available: ${nativeLoadError()}` }, () => {});
  return ['reference'];
}

export function withBackend<T>(name: 'reference' | 'native', fn: () => T): T {
  const prev: Backend = setBackend(name);
  void prev;
  try { return fn(); } finally { /* leave selected; callers set explicitly */ }
}

export function leaf(shape: number[], rng: Rng, std = 1): Tensor {
  const t = randn(shape, rng, std);
  t.requiresGrad = true;
  return t;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { abs: number; rel: number; at: number } {
  let abs = 0, rel = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= abs)) { abs = d; at = i; }
    const r = d / Math.max(1e-6, Math.abs(b[i]));
    if (r > rel) rel = r;
  }
  return { abs, rel, at };
}

/** assert |a-b| <= atol + rtol*|b| elementwise, with a useful message. */
export function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    const ok = Math.abs(a[i] - b[i]) <= atol + rtol * Math.abs(b[i]) || (Number.isNaN(a[i]) && Number.isNaN(b[i])) || a[i] === b[i];
    if (!ok) {
      const m = maxAbsDiff(a, b);
      assert.fail(`${what}: element ${i}: ${a[i]} vs ${b[i]} (max abs err ${m.abs.toExponential(3)} at ${m.at}, max rel err ${m.rel.toExponential(3)})`);
    }
  }
}

/**
 * Finite-difference gradient check of f at the given leaf inputs. The scalar checked is
 * Σ f(inputs) ⊙ W for a fixed random W, so every output element's gradient path is exercised.
 */
export function gradcheck(name: string, f: (...xs: Tensor[]) => Tensor, inputs: Tensor[],
  opts: { eps?: number; atol?: number; rtol?: number; maxPerInput?: number; seed?: number } = {}): void {
  const eps = opts.eps ?? 1e-2, atol = opts.atol ?? 2e-3, rtol = opts.rtol ?? 2e-2;
  const rng = new Rng(opts.seed ?? 7);
  let W: number[] | null = null;
  const lossOf = (): number => tidy(() => noGrad(() => {
    const out = f(...inputs).toArray();
    if (!W) W = out.map(() => rng.normal());
    let s = 0;
    for (let i = 0; i < out.length; i++) s += out[i] * W[i];
    return s;
  }));
  lossOf(); // fixes W
  // Analytic gradient.
  for (const x of inputs) x.grad = null;
  tidy(() => {
    const out = f(...inputs);
    const w = tensor(W!, out.shape);
    const g = out.shape.length ? w : w;
    out.backward(g);
  });
  for (let k = 0; k < inputs.length; k++) {
    const x = inputs[k];
    if (!x.requiresGrad) continue;
    assert.ok(x.grad, `${name}: input ${k} got no gradient`);
    const ga = x.grad.toArray();
    const data = x.f32;
    const n = x.size;
    const maxN = opts.maxPerInput ?? 40;
    const idx = n <= maxN ? [...Array(n).keys()] : Array.from({ length: maxN }, () => rng.int(n));
    for (const i of idx) {
      const o = x.offset + i; // leaves are contiguous
      const orig = data[o];
      data[o] = orig + eps; const lp = lossOf();
      data[o] = orig - eps; const lm = lossOf();
      data[o] = orig;
      const num = (lp - lm) / (2 * eps);
      const an = ga[i];
      if (!(Math.abs(num - an) <= atol + rtol * Math.max(Math.abs(num), Math.abs(an)))) {
        assert.fail(`${name}: d/d input${k}[${i}] analytic ${an} vs numeric ${num} (abs err ${Math.abs(num - an).toExponential(3)})`);
      }
    }
    x.grad = null;
  }
}

/** A study on a tiny synthetic suite that runs in seconds (every arm, 2 seeds). */
export function tinyStudy(): StudyConfig {
  return {
    name: 'tiny',
    tasks: { synthetic: { trainTasks: 8, testTasks: 2, testSize: 8, seeds: [100, 13] } },
    setting: 'meta', k: 4, seeds: [100, 13],
    eval: { method: 'direct', batch_size: 16 },
    tokenizer: { vocab_size: 300 },
    lm_data: { synthetic_corpus: true, seq_len: 32, batch_size: 4 },
    teacher: { model: { n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 }, ict: { steps: 20, lr: 3e-3, batch_size: 8 } },
    student: { model: { n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2 } },
    train: { instances: 32, epochs: 2, batch_size: 8, lr: 3e-3 },
    distill: { alpha_start: 0.5, alpha_end: 0.2, alpha_schedule: 'linear', temperature: 2, kl: 'options', top_k: 8, beta: 0.5, lm_kd_steps: 6 },
  };
}

/** tinyStudy cut to Raw, ICT, ICL-D on 6 training tasks with a shorter teacher tuning: the tests of a study as jobs share it. */
export function tinyJobsStudy(name: string): StudyConfig {
  const c = tinyStudy();
  return { ...c, name, arms: ['Raw', 'ICT', 'ICL-D'], tasks: { synthetic: { ...c.tasks.synthetic, trainTasks: 6 } }, teacher: { ...c.teacher, ict: { ...c.teacher.ict!, steps: 10 } } };
}

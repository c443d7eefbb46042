// Distillation objective: KL value and gradient by hand, top-k bucket, options mode, τ²
// scaling, α schedule, and teacher-cache round trip (cached = live, bit for bit).

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../../src/engine/ops.js';
import { Rng } from '../../src/engine/rng.js';
import { distillKL, teacherTarget, combineLoss, alphaAt, topKIds } from '../../src/distill/loss.js';
import { TeacherCache, liveTargets } from '../../src/distill/cache.js';
import { trainDistill } from '../../src/distill/distill.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { writeSyntheticSuite, syntheticCorpus } from '../../src/data/synthetic.js';
import { episodePools, IctSampler } from '../../src/icl/ict.js';
import { gradcheck, leaf } from '../helpers.js';

const softmax = (z: number[], t: number): number[] => { const m = Math.max(...z); const e = z.map((v) => Math.exp((v - m) / t)); const s = e.reduce((a, b) => a + b); return e.map((v) => v / s); };

test('full-vocabulary KL equals the hand computation, and its gradient is (q_S − p_T)/τ', () => {
  const zt = [1, 2, 0], zs = [0.5, -1, 2], tau = 2;
  const p = softmax(zt, tau), q = softmax(zs, tau);
  const want = p.reduce((a, pi, i) => a + pi * Math.log(pi / q[i]), 0);
  const s = O.param(O.tensor([zs]));
  const kl = distillKL(s, [teacherTarget(Float32Array.from(zt), 0, tau)], tau);
  assert.ok(Math.abs(kl.item() - want) < 1e-6, `${kl.item()} vs ${want}`);
  kl.backward();
  s.grad!.toArray().forEach((g, i) => assert.ok(Math.abs(g - (q[i] - p[i]) / tau) < 1e-6, `grad ${i}: ${g}`));
  // and it agrees with the engine's klDiv (checked against PyTorch in the golden tests)
  const ref = O.klDiv(O.tensor([zt]), O.tensor([zs]), { temperature: tau });
  assert.ok(Math.abs(ref.item() - want) < 1e-6);
});

test('top-k keeps the rest of the mass as one bucket (exact formula by hand)', () => {
  const zt = [3, 1, 0.5, -1], zs = [0, 1, 2, -0.5], tau = 1.5;
  const p = softmax(zt, tau), q = softmax(zs, tau);
  // kept: ids 0 and 1 (top-2 of the teacher); rest bucket = ids 2 and 3
  const pr = p[2] + p[3], qr = q[2] + q[3];
  const want = p[0] * Math.log(p[0] / q[0]) + p[1] * Math.log(p[1] / q[1]) + pr * Math.log(pr / qr);
  const got = distillKL(O.tensor([zs]), [teacherTarget(Float32Array.from(zt), 2, tau)], tau).item();
  assert.ok(Math.abs(got - want) < 1e-5, `${got} vs ${want}`);
});

test('options mode renormalises both distributions over the candidate tokens', () => {
  const zt = [3, 1, 0.5, -1], zs = [0, 1, 2, -0.5], tau = 1;
  const cand = [1, 2];
  const p = softmax([zt[1], zt[2]], tau), q = softmax([zs[1], zs[2]], tau);
  const want = p[0] * Math.log(p[0] / q[0]) + p[1] * Math.log(p[1] / q[1]);
  const got = distillKL(O.tensor([zs]), [teacherTarget(Float32Array.from(zt), 1, tau, cand)], tau, 'options', [cand]).item();
  assert.ok(Math.abs(got - want) < 1e-5, `${got} vs ${want}`);
});

test('distillKL gradient passes a finite-difference check (full, top-k, options)', () => {
  const r = new Rng(3);
  const tz = Array.from({ length: 3 }, () => Float32Array.from({ length: 6 }, () => r.normal() * 2));
  gradcheck('kl full', (s) => distillKL(s, tz.map((z) => teacherTarget(z, 0, 2)), 2), [leaf([3, 6], r)]);
  gradcheck('kl topk', (s) => distillKL(s, tz.map((z) => teacherTarget(z, 2, 1.5)), 1.5), [leaf([3, 6], r)]);
  const c = [[0, 3], [1, 2, 5], [4, 0]];
  gradcheck('kl options', (s) => distillKL(s, tz.map((z, i) => teacherTarget(z, 1, 1, c[i])), 1, 'options', c), [leaf([3, 6], r)]);
});

test('combined loss: α·(CE + β·LM) + (1−α)·τ²·KL, and the α schedule', () => {
  const ce = O.scalar(2), kl = O.scalar(0.5), lm = O.scalar(3);
  assert.ok(Math.abs(combineLoss({ ce, kl, lm: null }, 0.3, 2, 0).item() - (0.3 * 2 + 0.7 * 4 * 0.5)) < 1e-6);
  assert.ok(Math.abs(combineLoss({ ce, kl, lm }, 0.3, 3, 0.5).item() - (0.3 * (2 + 0.5 * 3) + 0.7 * 9 * 0.5)) < 1e-6);
  assert.equal(alphaAt(0, 11, 1, 0, 'linear'), 1);
  assert.ok(Math.abs(alphaAt(5, 11, 1, 0, 'linear') - 0.5) < 1e-12);
  assert.equal(alphaAt(10, 11, 1, 0, 'linear'), 0);
  assert.equal(alphaAt(7, 11, 0.4, 0, 'constant'), 0.4);
});

test('teacher cache round trip: cached targets equal live ones, and training from the cache gives the same losses', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-kd-'));
  const split = writeSyntheticSuite(join(dir, 'tasks'), { trainTasks: 6, testTasks: 1, testSize: 4 });
  const tok = BPETokenizer.train([syntheticCorpus(join(dir, 'tasks'), split.train, 100)], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  const mk = (seed: number, d: number): GPT2 => new GPT2(gpt2Config({ vocab_size: tok.vocabSize, n_positions: 64, n_embd: d, n_layer: 1, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), seed);
  const teacher = mk(1, 32);
  const sampler = new IctSampler(tok, { pools: episodePools(join(dir, 'tasks'), split.train, 'meta', 4, [100], false), k: 4, demos: true, method: 'direct', maxLength: 64, seed: 5 });
  const insts = Array.from({ length: 12 }, () => sampler.next());
  const cache = TeacherCache.ensure(join(dir, 'cache'), teacher, insts, { tau: 2, topK: 8, pad: 0 });
  const live = liveTargets(teacher, insts, 0, 2, 8);
  live.forEach((per, i) => assert.deepEqual(cache.targets(i), per));
  // reloading hits the cache
  const again = TeacherCache.ensure(join(dir, 'cache'), teacher, insts, { tau: 2, topK: 8, pad: 0 });
  assert.deepEqual(again.targets(3), cache.targets(3));
  const run = (useCache: boolean): number[] => {
    const st = trainDistill({ student: mk(2, 16), tokenizer: tok, instances: insts, epochs: 2, batchSize: 4, objective: 'ict',
      distill: { alpha: 0.5, temperature: 2, kl: 'full', topK: 8, beta: 0 }, teacher: useCache ? undefined : teacher, cache: useCache ? cache : undefined,
      train: { lr: 1e-3, logEvery: 1, seed: 3 }, out: join(dir, useCache ? 'a' : 'b'), log: () => {} });
    return st.log_history.map((e) => e.loss);
  };
  const a = run(true), b = run(false);
  assert.equal(a.length, 6);
  assert.deepEqual(a, b);
});

test('topKIds equals sorting every id by value (ties: smaller id) and keeping k', () => {
  const rng = new Rng(5);
  for (let t = 0; t < 400; t++) {
    const V = 1 + rng.int(300), k = 1 + rng.int(V);
    // Quarter-steps: many ties.
    const row = Float32Array.from({ length: V }, () => rng.int(40) / 4);
    const ref = Array.from({ length: V }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
    assert.deepEqual(topKIds(row, k), ref, `V ${V} k ${k}`);
  }
});

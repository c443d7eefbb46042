// The paper's objective α(t)·(L_ICT^hard + β·L_LM^hard) + (1 − α(t))·τ²·(L_ICT^soft + β·L_LM^soft):
// the soft LM term by hand (value, gradient, finite differences), α(t) decay, the terms
// trainDistill actually adds at a step (ICL-D (LM), ICT (LM)), and dev-set model selection.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../../src/engine/ops.js';
import { Rng } from '../../src/engine/rng.js';
import { distillKL, teacherTarget, combineLoss, alphaAt } from '../../src/distill/loss.js';
import { liveTargets } from '../../src/distill/cache.js';
import { trainDistill, lmTextTargets } from '../../src/distill/distill.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { writeSyntheticSuite, syntheticCorpus } from '../../src/data/synthetic.js';
import { answerRows, episodePools, IctSampler, makeBatch } from '../../src/icl/ict.js';
import { buildShards, EpochOrder, TokenFile, WindowLoader } from '../../src/data/shards.js';
import { gradcheck, leaf } from '../helpers.js';

const softmax = (z: number[], t: number): number[] => { const m = Math.max(...z); const e = z.map((v) => Math.exp((v - m) / t)); const s = e.reduce((a, b) => a + b); return e.map((v) => v / s); };
const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) < tol, `${what}: ${a} vs ${b}`);

test('soft LM term: value and gradient of α·β·CE_LM + (1−α)·τ²·β·KL_LM by hand, and finite differences', () => {
  // Two LM positions, vocabulary 3: student logits zs, teacher logits zt, gold next tokens.
  const zs = [[0.5, -1, 2], [1, 0, -0.5]], zt = [[1, 2, 0], [-1, 0.5, 1.5]], gold = [2, 0];
  const alpha = 0.25, tau = 2, beta = 0.5, N = 2;
  let ce = 0, kl = 0;
  const grad: number[][] = [];
  for (let n = 0; n < N; n++) {
    const q1 = softmax(zs[n], 1), qt = softmax(zs[n], tau), pt = softmax(zt[n], tau);
    ce += -Math.log(q1[gold[n]]) / N;
    kl += pt.reduce((a, p, i) => a + p * Math.log(p / qt[i]), 0) / N;
    // d/dz of α·β·CE/N + (1−α)·τ²·β·KL/N = α·β·(q − onehot)/N + (1−α)·τ·β·(q_τ − p_τ)/N
    grad.push(zs[n].map((_, i) => (alpha * beta * (q1[i] - (i === gold[n] ? 1 : 0)) + (1 - alpha) * tau * beta * (qt[i] - pt[i])) / N));
  }
  const want = alpha * beta * ce + (1 - alpha) * tau * tau * beta * kl;
  const s = O.param(O.tensor(zs));
  const lm = O.crossEntropy(O.reshape(s, [1, N, 3]), O.tensor(gold, [1, N], 'int32'));
  const lmKl = distillKL(s, zt.map((z) => teacherTarget(Float32Array.from(z), 0, tau)), tau);
  close(lm.item(), ce, 1e-6, 'hard LM');
  close(lmKl.item(), kl, 1e-6, 'soft LM');
  const total = combineLoss({ ce: null, kl: null, lm, lmKl }, alpha, tau, beta);
  close(total.item(), want, 1e-6, 'combined');
  total.backward();
  s.grad!.toArray().forEach((g, i) => close(g, grad[Math.floor(i / 3)][i % 3], 1e-6, `grad ${i}`));
  // the same objective through finite differences, with every term present
  const r = new Rng(5);
  const tz = Array.from({ length: 3 }, () => Float32Array.from({ length: 6 }, () => r.normal() * 2));
  const g = O.tensor([1, 4, 0], [1, 3], 'int32');
  gradcheck('full objective', (a, b) => combineLoss({
    ce: O.crossEntropy(O.reshape(a, [1, 3, 6]), g), kl: distillKL(a, tz.map((z) => teacherTarget(z, 0, 2)), 2),
    lm: O.crossEntropy(O.reshape(b, [1, 3, 6]), g), lmKl: distillKL(b, tz.map((z) => teacherTarget(z, 2, 2)), 2),
  }, 0.4, 2, 0.7), [leaf([3, 6], r), leaf([3, 6], r)]);
});

test('combined loss weights: α on both hard terms, (1−α)·τ² on both soft terms, β on both LM terms', () => {
  const ce = O.scalar(2), kl = O.scalar(0.5), lm = O.scalar(3), lmKl = O.scalar(0.25);
  close(combineLoss({ ce, kl, lm, lmKl }, 0.3, 2, 0.5).item(), 0.3 * (2 + 0.5 * 3) + 0.7 * 4 * (0.5 + 0.5 * 0.25), 1e-6, 'all four');
  close(combineLoss({ ce, kl: null, lm, lmKl: null }, 1, 2, 0.5).item(), 2 + 1.5, 1e-6, 'ICT (LM): no teacher');
  close(combineLoss({ ce, kl, lm: null }, 0.3, 2, 0).item(), 0.3 * 2 + 0.7 * 4 * 0.5, 1e-6, 'no LM');
});

test('α(t) decays linearly from alpha_start to alpha_end; constant stays', () => {
  const T = 5;
  assert.deepEqual(Array.from({ length: T }, (_, t) => +alphaAt(t, T, 0.8, 0, 'linear').toFixed(12)), [0.8, 0.6, 0.4, 0.2, 0]);
  assert.deepEqual(Array.from({ length: T }, (_, t) => +alphaAt(t, T, 1, 0.5, 'linear').toFixed(12)), [1, 0.875, 0.75, 0.625, 0.5]);
  assert.deepEqual(Array.from({ length: T }, (_, t) => alphaAt(t, T, 0.4, 0, 'constant')), [0.4, 0.4, 0.4, 0.4, 0.4]);
});

// A tiny setup: synthetic ICT instances, plain text, a teacher and a student.
function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'icld-obj-'));
  const split = writeSyntheticSuite(join(dir, 'tasks'), { trainTasks: 6, testTasks: 1, testSize: 4 });
  const text = syntheticCorpus(join(dir, 'tasks'), split.train, 100);
  const tok = BPETokenizer.train([text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  writeFileSync(join(dir, 'lm.txt'), text);
  const shard = new TokenFile(buildShards([join(dir, 'lm.txt')], tok, JSON.stringify(tok.toTokenizerJson()), join(dir, 'tok'), { eos: tok.eosTokenId ?? null }));
  const mk = (seed: number, d: number): GPT2 => new GPT2(gpt2Config({ vocab_size: tok.vocabSize, n_positions: 64, n_embd: d, n_layer: 1, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, initializer_range: 0.3 }), seed);
  const sampler = new IctSampler(tok, { pools: episodePools(join(dir, 'tasks'), split.train, 'meta', 4, [100], false), k: 4, demos: true, method: 'direct', maxLength: 64, seed: 5 });
  const insts = Array.from({ length: 8 }, () => sampler.next());
  const lm = (): { loader: WindowLoader; batchSize: number } => ({ loader: new WindowLoader(shard, 0, shard.length, 16, 9), batchSize: 2 });
  return { dir, tok, mk, insts, lm, teacher: mk(1, 32) };
}

test('trainDistill adds the four terms with the paper\'s weights (ICL-D (LM)), and only the hard ones for ICT (LM)', () => {
  const s = setup();
  const B = 4, tau = 2, beta = 0.5, seed = 3, pad = s.tok.eosTokenId ?? 0;
  const firstLoss = (distill: Parameters<typeof trainDistill>[0]['distill'], teacher: GPT2 | undefined, out: string): number =>
    trainDistill({ student: s.mk(2, 16), tokenizer: s.tok, instances: s.insts, epochs: 1, batchSize: B, objective: 'ict', distill, teacher, lm: s.lm(),
      train: { lr: 1e-3, logEvery: 1, seed }, out: join(s.dir, out), log: () => {} }).log_history[0].loss;
  // The same step by hand: the first batch of the seeded epoch order and the first LM windows.
  const order = new EpochOrder(s.insts.length, seed);
  const batch = Array.from({ length: B }, () => s.insts[order.next().item]);
  const ld = s.lm(), ids = new Int32Array(2 * 16), tg = new Int32Array(2 * 16);
  ld.loader.next(2, ids, tg);
  const student = s.mk(2, 16), b = makeBatch(batch, pad);
  const logits = student.forward(O.fromData(b.ids, [b.B, b.L]));
  const ceIct = O.crossEntropy(logits, O.fromData(b.targets, [b.B, b.L])).item();
  const rows = batch.flatMap((inst, i) => answerRows(inst, i, b.L));
  const V = logits.shape[2];
  const klIct = distillKL(O.embedding(O.reshape(logits, [b.B * b.L, V]), O.tensor(rows, [rows.length], 'int32')), liveTargets(s.teacher, batch, pad, tau, 8).flat(), tau).item();
  const lmLogits = student.forward(O.fromData(ids, [2, 16]));
  const ceLm = O.crossEntropy(lmLogits, O.fromData(tg, [2, 16])).item();
  const klLm = distillKL(O.reshape(lmLogits, [32, V]), lmTextTargets(s.teacher, ids, 2, 16, 8, tau), tau).item();
  assert.ok(klLm > 1e-3, 'the student and teacher differ on the LM text');
  const a0 = 0.7;
  const icldLm = firstLoss({ alpha: a0, alphaEnd: 0, temperature: tau, kl: 'full', topK: 8, beta }, s.teacher, 'icld-lm');
  close(icldLm, a0 * (ceIct + beta * ceLm) + (1 - a0) * tau * tau * (klIct + beta * klLm), 1e-4, 'ICL-D (LM) step-0 loss');
  const ictLm = firstLoss({ alpha: 1, alphaEnd: 1, alphaSchedule: 'constant', temperature: tau, kl: 'full', topK: 8, beta }, undefined, 'ict-lm');
  close(ictLm, ceIct + beta * ceLm, 1e-4, 'ICT (LM) step-0 loss');
  // The default schedule is linear, down to 0.
  const cfg = JSON.parse(readFileSync(join(s.dir, 'icld-lm', 'distill_config.json'), 'utf8'));
  assert.equal(cfg.alphaSchedule, 'linear');
  assert.equal(cfg.alphaEnd, 0);
  // The soft LM term needs the live teacher: a cache alone is refused, saying why.
  assert.throws(() => trainDistill({ student: s.mk(2, 16), tokenizer: s.tok, instances: s.insts, epochs: 1, batchSize: B, objective: 'ict', distill: { alpha: 0.5, temperature: tau, kl: 'full', topK: 8, beta },
    cache: {} as never, lm: s.lm(), train: { seed }, out: join(s.dir, 'x'), log: () => {} }), /soft LM term .* needs the live teacher/);
});

test('dev-set model selection keeps the best step\'s weights (Trainer keepBest)', () => {
  const s = setup();
  // Scores at steps 2, 4, 6, 8 (every = 2); the best is the second evaluation.
  const scores = [0.2, 0.9, 0.5, 0.9];
  const snaps: Float32Array[] = [];
  let calls = 0;
  const student = s.mk(2, 16);
  const st = trainDistill({ student, tokenizer: s.tok, instances: s.insts, epochs: 4, batchSize: 4, objective: 'ict', distill: { alpha: 1, alphaEnd: 1, temperature: 1, kl: 'full', topK: 0, beta: 0 },
    train: { lr: 1e-2, seed: 1, logEvery: 1 }, out: join(s.dir, 'sel'), log: () => {},
    select: { every: 2, score: (m) => { snaps.push(Float32Array.from(m.namedParameters()[0][1].f32)); return scores[calls++]; } } });
  assert.equal(calls, 4);
  assert.deepEqual(st.eval_history.map((e) => [e.step, e.dev_score]), [[2, 0.2], [4, 0.9], [6, 0.5], [8, 0.9]]);
  assert.deepEqual(st.best, { step: 4, metric: 'dev_score', value: 0.9 }); // a tie keeps the earlier step
  const w = student.namedParameters()[0][1].f32;
  assert.deepEqual(Float32Array.from(w), snaps[1], 'the student holds the step-4 weights');
  assert.notDeepEqual(snaps[1], snaps[3], 'training moved the weights after step 4');
  // The run's saved model is the selected one too.
  const saved = GPT2.fromPretrained(join(s.dir, 'sel'));
  assert.deepEqual(Float32Array.from(saved.namedParameters()[0][1].f32), snaps[1]);
});

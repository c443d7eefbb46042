// Pretraining end to end on a slice of the embedded corpus: checkpoints, exact resume,
// eval history, report, and the learning-rate schedules.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pretrain, type PretrainConfig } from '../../src/train/pretrain.js';
import { learningRate } from '../../src/optim/schedule.js';
import { GPT2 } from '../../src/models/gpt2.js';

const corpus = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-pt-'));
  const f = join(dir, 'corpus.txt');
  writeFileSync(f, readFileSync(new URL('../../../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 60000));
  return f;
};

const cfg = (steps: number): PretrainConfig => ({
  model: { n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2, resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1 },
  tokenizer: { vocab_size: 300 },
  train: { steps, batch_size: 4, lr: 3e-3, warmup_steps: 3, eval_every: 4, save_every: 4, log_every: 2, eval_batches: 2, save_total_limit: 0, grad_accum: 2 },
});

test('2N steps straight equal N + resume + N, bit for bit, and the resumed run really starts from the checkpoint', () => {
  const data = corpus();
  const quiet = (): void => {};
  const a = mkdtempSync(join(tmpdir(), 'icld-a-')), b = mkdtempSync(join(tmpdir(), 'icld-b-'));
  const ra = pretrain({ config: cfg(8), data: [data], out: a, log: quiet });
  // b: stop after 4 steps, then resume from its own checkpoint and finish
  pretrain({ config: cfg(4), data: [data], out: b, log: quiet });
  const ck = join(b, 'checkpoint-4');
  const ckState = JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8'));
  const logs: string[] = [];
  const rb = pretrain({ config: cfg(8), data: [data], out: b, resume: ck, log: (s) => logs.push(s) });
  assert.deepEqual(readFileSync(join(a, 'model.safetensors')), readFileSync(join(b, 'model.safetensors')));
  assert.deepEqual(readFileSync(join(a, 'checkpoint-8', 'optimizer.safetensors')), readFileSync(join(b, 'checkpoint-8', 'optimizer.safetensors')));
  assert.deepEqual(ra.state.log_history.map((e) => e.loss), rb.state.log_history.map((e) => e.loss));
  assert.deepEqual(ra.state.eval_history, rb.state.eval_history);
  // It continued from step 4: it says so, and its history up to step 4 is the checkpoint's own
  // (elapsed times included, which no fresh run reproduces).
  assert.ok(logs.includes(`resuming from ${ck} at step 4 of 8`), logs.join('\n'));
  assert.deepEqual(rb.state.log_history.slice(0, 2), ckState.log_history);
  assert.deepEqual(rb.state.log_history.map((e) => e.step), [2, 4, 6, 8]);
  // Each part of the checkpoint is used: change one and the result changes.
  const resumeFrom = (edit: (dir: string) => void): Buffer => {
    const d = mkdtempSync(join(tmpdir(), 'icld-e-'));
    cpSync(ck, join(d, 'ck'), { recursive: true });
    edit(join(d, 'ck'));
    pretrain({ config: cfg(8), data: [data], out: join(d, 'out'), resume: join(d, 'ck'), log: quiet });
    return readFileSync(join(d, 'out', 'model.safetensors'));
  };
  const straight = readFileSync(join(a, 'model.safetensors'));
  assert.deepEqual(resumeFrom(() => {}), straight, 'an untouched copy of the checkpoint resumes to the same weights');
  // weights: the remaining 4 steps from the initial (untrained) weights
  const fromScratch = resumeFrom((d) => new GPT2(GPT2.fromPretrained(d).config, 0).savePretrained(d));
  assert.notDeepEqual(fromScratch, straight, 'the checkpoint\'s weights were ignored');
  // optimizer moments zeroed
  assert.notDeepEqual(resumeFrom((d) => {
    const p = join(d, 'optimizer.safetensors');
    const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [n, v] of readSafetensors(p).tensors) t[n] = { dtype: 'F32', shape: v.shape, data: new Float32Array(v.data.length) };
    writeSafetensors(p, t);
  }), straight, 'the optimizer state was ignored');
  // data position moved on
  const editState = (f: (s: Record<string, any>) => void) => (d: string): void => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const p = join(d, 'trainer_state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    f(s);
    writeFileSync(p, JSON.stringify(s));
  };
  assert.notDeepEqual(resumeFrom(editState((s) => { s.user_state.loader.index += 1; })), straight, 'the data position was ignored');
  // step counter (drives the schedule and Adam's bias correction)
  assert.notDeepEqual(resumeFrom(editState((s) => { s.global_step = 3; })), straight, 'the step count was ignored');
  // run directory contents
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'trainer_state.json', 'report.html', 'generation_config.json']) assert.ok(existsSync(join(a, f)), f);
  const st = JSON.parse(readFileSync(join(a, 'trainer_state.json'), 'utf8'));
  assert.equal(st.global_step, 8);
  assert.equal(st.log_history.length, 4);
  assert.ok(readFileSync(join(a, 'report.html'), 'utf8').includes('<svg'));
  assert.ok(!readdirSync(a).some((n) => n.startsWith('.')), 'no temp checkpoint dirs left behind');
  // the final model loads back
  const m = GPT2.fromPretrained(a);
  assert.equal(m.config.n_layer, 2);
});

test('pretrain refuses a non-empty --out unless --resume or --overwrite; --overwrite removes the old checkpoints', () => {
  const data = corpus();
  const out = mkdtempSync(join(tmpdir(), 'icld-o-'));
  const c = cfg(4);
  pretrain({ config: c, data: [data], out, log: () => {} });
  assert.deepEqual(readdirSync(out).filter((n) => n.startsWith('checkpoint-')), ['checkpoint-4']);
  assert.throws(() => pretrain({ config: cfg(2), data: [data], out, log: () => {} }), /--out .* is not empty .*--resume .*--overwrite/);
  const r = pretrain({ config: cfg(2), data: [data], out, overwrite: true, log: () => {} });
  assert.equal(r.state.global_step, 2);
  assert.deepEqual(readdirSync(out).filter((n) => n.startsWith('checkpoint-')), ['checkpoint-2'], 'the old checkpoint-4 was removed');
});

test('training lowers held-out loss', () => {
  const data = corpus();
  const out = mkdtempSync(join(tmpdir(), 'icld-c-'));
  const c = cfg(40);
  c.train.eval_every = 40; c.train.save_every = 0;
  const r = pretrain({ config: c, data: [data], out, log: () => {} });
  const first = r.state.log_history[0].loss, fin = r.final_eval!.loss;
  assert.ok(fin < first - 0.5, `val loss ${fin} should be well below the initial train loss ${first}`);
});

test('schedules: warmup, cosine and linear decay to min ratio', () => {
  const base = { lr: 1, warmupSteps: 10, steps: 110, minLrRatio: 0.1 };
  assert.equal(learningRate(0, { ...base, schedule: 'cosine' }), 0.1);
  assert.equal(learningRate(9, { ...base, schedule: 'cosine' }), 1);
  assert.ok(Math.abs(learningRate(60, { ...base, schedule: 'cosine' }) - 0.55) < 1e-12);
  assert.ok(Math.abs(learningRate(110, { ...base, schedule: 'cosine' }) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(60, { ...base, schedule: 'linear' }) - 0.55) < 1e-12);
  assert.equal(learningRate(80, { ...base, schedule: 'constant' }), 1);
});

test('bad config and data give one-line errors naming the problem', () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-d-'));
  assert.throws(() => pretrain({ config: cfg(2), data: ['/nonexistent/file.txt'], out, log: () => {} }), /\/nonexistent\/file.txt/);
  const bad = cfg(2); bad.model.n_head = 5;
  assert.throws(() => pretrain({ config: bad, data: [corpus()], out, log: () => {} }), /n_embd 32 is not divisible by n_head 5/);
});

// --precision bf16 end to end: `icld pretrain` trains with bf16 GEMMs (loss falls and stays near
// the fp32 run of the same seed, yet the numbers differ, so the flag reaches the kernels), records
// the precision in trainer_state.json, warns when a resume changes it, says once when bf16 is
// emulated, and rejects bad values; train.precision in a config file; `ict train` and `finetune`
// pass it to the trainer.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModelDir, writeTaskDir } from '../icl/task-fixture.js';
import { trainConfigFor } from '../../src/finetune/finetune.js';
import { bf16Hardware, defaultTrainConfig, validateTrainConfig } from '../../src/train/trainer.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'icld-prec-'));
const corpus = join(root, 'corpus.txt');
writeFileSync(corpus, readFileSync(new URL('../../../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 60000));

function config(extra: Record<string, unknown> = {}): string {
  const f = join(root, `cfg-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, JSON.stringify({
    model: { n_positions: 32, n_embd: 48, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 },
    tokenizer: { vocab_size: 300 },
    train: { steps: 30, batch_size: 8, lr: 3e-3, warmup_steps: 4, eval_every: 15, eval_batches: 2, save_every: 15, log_every: 5, seed: 3, ...extra },
  }));
  return f;
}
function icld(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
interface State { config: { precision: string }; log_history: { step: number; loss: number }[]; eval_history: { step: number; loss: number }[] }
const state = (dir: string): State => JSON.parse(readFileSync(join(dir, 'trainer_state.json'), 'utf8')) as State;
const NOTICE = /^note: --precision bf16 is emulated here/;

const cfg = config();
let f32: State, bf16: State, f32Stderr = '';

test('pretrain --precision bf16: loss falls, stays near fp32 of the same seed, numbers differ; recorded in trainer_state.json', () => {
  const a = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', join(root, 'f32')]);
  assert.equal(a.status, 0, a.stderr);
  const b = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', join(root, 'bf16'), '--precision', 'bf16']);
  assert.equal(b.status, 0, b.stderr);
  f32 = state(join(root, 'f32')); bf16 = state(join(root, 'bf16')); f32Stderr = a.stderr;
  if (bf16Hardware()) assert.ok(!b.stderr.includes('note: --precision'), `no emulation notice on AVX-512-BF16: ${b.stderr}`);
  assert.equal(f32.config.precision, 'f32');
  assert.equal(bf16.config.precision, 'bf16');
  const first = bf16.log_history[0].loss, last = bf16.log_history.at(-1)!.loss;
  assert.ok(last < first - 1, `bf16 training loss falls: ${first} → ${last}`);
  const ef = f32.eval_history.at(-1)!.loss, eb = bf16.eval_history.at(-1)!.loss;
  assert.ok(Math.abs(eb - ef) < 0.1, `final eval loss bf16 ${eb} vs fp32 ${ef}`);
  assert.notDeepEqual(bf16.log_history.map((e) => e.loss), f32.log_history.map((e) => e.loss), 'bf16 GEMMs change the numbers');
  // The checkpoint's state says bf16 too (resume reads it from there).
  assert.equal(state(join(root, 'bf16', 'checkpoint-30')).config.precision, 'bf16');
});

test('resuming with another precision continues with a one-line warning', () => {
  const out = join(root, 'switch');
  const a = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', out, '--precision', 'bf16', '--steps', '15']);
  assert.equal(a.status, 0, a.stderr);
  const b = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', out, '--resume', out, '--steps', '20']);
  assert.equal(b.status, 0, b.stderr);
  const warn = b.stderr.split('\n').filter((l) => l.startsWith('warning: --resume:'));
  assert.deepEqual(warn, [`warning: --resume: ${join(out, 'checkpoint-15')} was trained with precision bf16, continuing in f32`]);
  assert.equal(state(out).config.precision, 'f32');
  // Same precision: no warning.
  const c = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', out, '--resume', out, '--steps', '25']);
  assert.equal(c.status, 0, c.stderr);
  assert.ok(!c.stderr.includes('warning: --resume'), c.stderr);
});

test('emulated bf16 (no AVX-512-BF16, forced by ICLD_BF16_EMULATE=1) says so once on stderr and trains the same way', () => {
  const hw = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', join(root, 'hw10'), '--precision', 'bf16', '--steps', '10']);
  assert.equal(hw.status, 0, hw.stderr);
  const out = join(root, 'emul');
  const r = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', out, '--precision', 'bf16', '--steps', '10'], { ICLD_BF16_EMULATE: '1' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.split(/[\n\r]/).filter((l) => NOTICE.test(l)).length, 1, r.stderr);
  // Same rounded operands as the default path, only the summation order may differ.
  const e = state(out).log_history, h = state(join(root, 'hw10')).log_history;
  assert.equal(e.length, h.length);
  e.forEach((x, i) => assert.ok(Math.abs(x.loss - h[i].loss) < 0.01, `step ${x.step}: ${x.loss} vs ${h[i].loss}`));
  // fp32 runs never print it.
  assert.ok(f32Stderr.length > 0 && !f32Stderr.includes('note: --precision'), f32Stderr);
});

test('bad precision values: flag exits 2, config key exits 1 naming the file', () => {
  const r = icld(['pretrain', '--config', cfg, '--data', corpus, '--out', join(root, 'bad'), '--precision', 'fp16']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^icld pretrain: --precision must be f32 or bf16, got 'fp16'/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  const bad = config({ precision: 'bf17' });
  const c = icld(['pretrain', '--config', bad, '--data', corpus, '--out', join(root, 'bad2')]);
  assert.equal(c.status, 1);
  assert.ok(c.stderr.includes(bad) && c.stderr.includes('precision'), c.stderr);
  assert.equal(c.stderr.trim().split('\n').length, 1, c.stderr);
  assert.throws(() => validateTrainConfig({ ...defaultTrainConfig, precision: 'fp8' as 'f32' }), /training config: precision must be f32 or bf16, got "fp8"/);
});

test('train.precision in a config file; --precision overrides it', () => {
  const c = config({ precision: 'bf16', steps: 5 });
  const a = icld(['pretrain', '--config', c, '--data', corpus, '--out', join(root, 'cfgkey')]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(state(join(root, 'cfgkey')).config.precision, 'bf16');
  const b = icld(['pretrain', '--config', c, '--data', corpus, '--out', join(root, 'cfgkey2'), '--precision', 'f32']);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(state(join(root, 'cfgkey2')).config.precision, 'f32');
});

test('ict train --precision bf16 and finetune\'s precision reach the trainer', () => {
  const model = join(root, 'model'), tasks = join(root, 'tasks');
  writeModelDir(model); writeTaskDir(tasks);
  const out = join(root, 'ict');
  const r = icld(['ict', 'train', '--model', model, '--setting', 'meta', '--train-tasks', 'cls', '--task-dir', tasks,
    '--k', '1', '--steps', '2', '--batch-size', '2', '--eval-every', '2', '--out', out, '--precision', 'bf16']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(state(out).config.precision, 'bf16');
  assert.equal(trainConfigFor({ method: 'lora', model, data: 'x', out: 'y', precision: 'bf16' }, 10, 5, false).precision, 'bf16');
  assert.equal(trainConfigFor({ method: 'lora', model, data: 'x', out: 'y' }, 10, 5, false).precision, 'f32');
  const h = icld(['finetune', '--help']);
  assert.match(h.stdout, /--precision/);
});

// A multitask study run as the paper sets it up: per-seed teacher on that seed's few-shot data,
// per-seed student initialisation, dev-set model selection, Multitask-FT evaluated without
// demonstrations, channel-order training for a channel study, and the headline metric.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudy, type StudyConfig } from '../../src/distill/study.js';
import { seedStudent } from '../../src/distill/study-arms.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import type { LanguageModel } from '../../src/models/index.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { evaluateIcl } from '../../src/icl/evaluate.js';
import { withHeadline } from '../../src/distill/study-results.js';

const config = (): StudyConfig => ({
  name: 'tiny-multitask',
  tasks: { synthetic: { trainTasks: 4, testTasks: 2, testSize: 8, seeds: [100, 13] } },
  setting: 'multitask', k: 4, seeds: [100, 13],
  eval: { method: 'channel', batch_size: 16 },
  tokenizer: { vocab_size: 300 },
  lm_data: { synthetic_corpus: true, seq_len: 32, batch_size: 4 },
  teacher: { model: { n_positions: 96, n_embd: 32, n_layer: 2, n_head: 2 }, ict: { steps: 8, lr: 3e-3, batch_size: 8 } },
  student: { model: { n_positions: 96, n_embd: 16, n_layer: 1, n_head: 2 } },
  train: { instances: 16, epochs: 2, batch_size: 8, lr: 3e-3, few_shot_train: 16, few_shot_dev: 8, dev_every: 2 },
  distill: { alpha_start: 0.5, temperature: 2, kl: 'full', top_k: 8, beta: 0.5, lm_kd_steps: 4 },
  arms: ['Multitask-FT', 'ICT', 'ICL-D (LM)'],
});

const w0 = (m: LanguageModel): Float32Array => Float32Array.from(m.namedParameters()[0][1].f32);

test('multitask study: per-seed teachers, dev selection, Multitask-FT at k = 0, channel instances, headline', async () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-mt-'));
  const r = await runStudy(config(), out, () => {}) as { arms: Record<string, { seeds: Record<string, Record<string, unknown>>; mean: Record<string, number> }>; teacher: { seeds: Record<string, Record<string, unknown>> } };
  const tok = BPETokenizer.fromTokenizerJson(join(out, 'tokenizer', 'tokenizer.json'));
  // One teacher per seed, tuned on that seed's few-shot data only (the target tasks), in channel order.
  const teachers = [100, 13].map((s) => join(out, 'teacher-seeds', String(s)));
  for (const t of teachers) {
    const ic = JSON.parse(readFileSync(join(t, 'ict_config.json'), 'utf8'));
    assert.deepEqual(ic.tasks, ['synth-test-004', 'synth-test-005']);
    assert.equal(ic.method, 'channel');
  }
  assert.notDeepEqual(w0(GPT2.fromPretrained(teachers[0])), w0(GPT2.fromPretrained(teachers[1])));
  // The teacher row is each seed's own teacher.
  const te = JSON.parse(readFileSync(join(teachers[1], 'eval.json'), 'utf8'));
  assert.equal(r.teacher.seeds['13'].headline, withHeadline(te).average.headline);
  for (const arm of config().arms!) for (const s of ['100', '13']) {
    const cell = JSON.parse(readFileSync(join(out, 'cells', arm.replace(/[^A-Za-z0-9]+/g, '-').replace(/-+$/, '').toLowerCase(), s, 'result.json'), 'utf8'));
    // Dev selection ran: the kept step is one of the evaluated steps (every 2 steps, 4 steps in all).
    assert.ok([2, 4].includes(cell.best_step), `${arm} seed ${s}: best_step ${cell.best_step}`);
    const hist = JSON.parse(readFileSync(join(out, 'cells', arm.replace(/[^A-Za-z0-9]+/g, '-').replace(/-+$/, '').toLowerCase(), s, 'run', 'trainer_state.json'), 'utf8'));
    const scores = hist.eval_history.map((e: { dev_score: number }) => e.dev_score);
    assert.equal(hist.best.value, Math.max(...scores));
    assert.equal(typeof r.arms[arm].seeds[s].headline, 'number');
    assert.equal(cell.eval_k, arm === 'Multitask-FT' ? 0 : 4, `${arm}: demonstrations at evaluation`);
  }
  assert.equal(typeof r.arms.ICT.mean.headline, 'number');
  // Multitask-FT: its cell is the selected model evaluated with no demonstrations (k = 0).
  const ftDir = join(out, 'cells', 'multitask-ft', '100', 'run');
  const ft = GPT2.fromPretrained(ftDir);
  const cell = JSON.parse(readFileSync(join(out, 'cells', 'multitask-ft', '100', 'result.json'), 'utf8'));
  const e0 = evaluateIcl({ model: ft, tokenizer: tok, taskDir: join(out, 'tasks'), tasks: ['synth-test-004', 'synth-test-005'], k: 0, seeds: [100], method: 'channel', batchSize: 16 });
  assert.deepEqual(cell.tasks['synth-test-004'], e0.tasks['synth-test-004'].mean);
  assert.ok(existsSync(join(out, 'teacher-cache', '100', 'meta.json')));
});

test('each seed starts a fresh student from its own initialisation; a brought student is the same for all', () => {
  const cfg = gpt2Config({ vocab_size: 300, n_positions: 32, n_embd: 16, n_layer: 1, n_head: 2 });
  const c = config();
  const a = seedStudent(c, '', cfg, 100), b = seedStudent(c, '', cfg, 13), a2 = seedStudent(c, '', cfg, 100);
  assert.notDeepEqual(w0(a), w0(b));
  assert.deepEqual(w0(a), w0(a2), 'deterministic per seed');
  const dir = mkdtempSync(join(tmpdir(), 'icld-stu-'));
  new GPT2(cfg, 5).savePretrained(dir);
  const brought = { ...c, student: { path: dir } };
  assert.deepEqual(w0(seedStudent(brought, dir, cfg, 100)), w0(seedStudent(brought, dir, cfg, 13)));
  // A student the study pretrained (student.pretrain) starts every seed from that base, not from a random init.
  const pretrained = { ...c, student: { ...c.student, pretrain: { files: ['x.txt'], steps: 1, batch_size: 1, seq_len: 8, lr: 1e-3 } } };
  assert.deepEqual(w0(seedStudent(pretrained, dir, cfg, 100)), w0(new GPT2(cfg, 5)));
  assert.deepEqual(w0(seedStudent(pretrained, dir, cfg, 13)), w0(new GPT2(cfg, 5)));
});

test('config: distill.alpha is migrated by a one-line error; ICT (LM) is an arm; channel studies refuse KL over options', async () => {
  const { readStudyConfig, ARMS } = await import('../../src/distill/study.js');
  const dir = mkdtempSync(join(tmpdir(), 'icld-cfg-'));
  const c = config() as unknown as Record<string, Record<string, unknown>>;
  const old = { ...c, distill: { ...c.distill, alpha: 0.5 } };
  delete (old.distill as Record<string, unknown>).alpha_start;
  writeFileSync(join(dir, 'old.json'), JSON.stringify(old));
  assert.throws(() => readStudyConfig(join(dir, 'old.json'), true), /old\.json: distill\.alpha is now distill\.alpha_start/);
  assert.ok((ARMS as readonly string[]).includes('ICT (LM)'));
  const ch = { ...config(), distill: { ...config().distill, kl: 'options' as const } };
  await assert.rejects(runStudy(ch, join(dir, 'out'), () => {}), /kl "options" needs direct scoring/);
});

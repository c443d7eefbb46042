// A small end-to-end study: every arm × 2 seeds on a tiny synthetic suite; checks the
// results.json shape, the report, and that a rerun resumes without recomputing finished cells.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudy, ARMS, type StudyConfig } from '../../src/distill/study.js';

const config = (): StudyConfig => ({
  name: 'tiny',
  tasks: { synthetic: { trainTasks: 8, testTasks: 2, testSize: 8, seeds: [100, 13] } },
  setting: 'meta', k: 4, seeds: [100, 13],
  eval: { method: 'direct', batch_size: 16 },
  tokenizer: { vocab_size: 300 },
  lm_data: { synthetic_corpus: true, seq_len: 32, batch_size: 4 },
  teacher: { model: { n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 }, ict: { steps: 20, lr: 3e-3, batch_size: 8 } },
  student: { model: { n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2 } },
  train: { instances: 32, epochs: 2, batch_size: 8, lr: 3e-3 },
  distill: { alpha: 0.5, alpha_end: 0.2, alpha_schedule: 'linear', temperature: 2, kl: 'options', top_k: 8, beta: 0.5, lm_kd_steps: 6 },
});

test('study: every arm × seed, results.json shape, report, resume', async () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-study-'));
  const quiet = (): void => {};
  const r = await runStudy(config(), out, quiet) as Record<string, unknown>;
  const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  assert.deepEqual(Object.keys(res.arms), [...ARMS]);
  for (const arm of ARMS) {
    assert.deepEqual(Object.keys(res.arms[arm].seeds).sort(), ['100', '13']);
    for (const k of ['accuracy', 'macro_f1']) {
      assert.equal(typeof res.arms[arm].mean[k], 'number');
      assert.equal(typeof res.arms[arm].std[k], 'number');
    }
  }
  assert.equal(typeof res.teacher.mean.accuracy, 'number');
  assert.ok(res.teacher_params >= 4 * res.student_params, `teacher ${res.teacher_params} vs student ${res.student_params}`);
  assert.equal(typeof res.speedup, 'number');
  assert.ok(res.speedup > 0);
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  for (const arm of ['ICL-D (LM)', 'LM-KD', 'Teacher']) assert.ok(html.includes(arm), `report mentions ${arm}`);
  assert.ok(html.includes('<svg'));
  assert.equal(r.report, join(out, 'report.html'));
  // Resume: finished cells are kept as they are; a removed one is recomputed.
  const kept = join(out, 'cells', 'ict', '100', 'result.json');
  const removed = join(out, 'cells', 'icl-d', '13', 'result.json');
  const mtime = statSync(kept).mtimeMs;
  rmSync(removed);
  await runStudy(config(), out, quiet);
  assert.equal(statSync(kept).mtimeMs, mtime, 'a finished cell was recomputed');
  assert.ok(existsSync(removed), 'the missing cell was not recomputed');
});

test('the shipped study configs parse (quick and full)', async () => {
  const { readStudyConfig } = await import('../../src/distill/study.js');
  const here = (p: string): string => new URL(`../../../${p}`, import.meta.url).pathname;
  for (const f of ['studies/synthetic.json', 'studies/crossfit-hr_to_lr.json']) {
    const quick = readStudyConfig(here(f), false), full = readStudyConfig(here(f), true);
    assert.ok(full.seeds.length >= quick.seeds.length, f);
    assert.equal(full.k >= 1, true);
  }
  const full = readStudyConfig(here('studies/crossfit-hr_to_lr.json'), true);
  assert.deepEqual(full.seeds, [100, 13, 21, 42, 87]);
  assert.equal(full.k, 16);
  assert.ok(full.tasks.dir!.endsWith('data/tasks/crossfit'));
});

// A small end-to-end study: every arm × 2 seeds on a tiny synthetic suite; checks the
// results.json shape, the report, and that a rerun resumes without recomputing finished cells,
// recomputes missing or torn ones to the same result, and refuses a changed config.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, statSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runStudy, studyConfigChanges, ARMS, type StudyConfig } from '../../src/distill/study.js';
import { tinyStudy } from '../helpers.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';

const config = tinyStudy;

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
  // Resume: finished cells are kept as they are; a removed one is recomputed to the same result;
  // torn JSON files and a cut lm.txt are named in the log and recomputed, never trusted or fatal.
  const kept = join(out, 'cells', 'ict', '100', 'result.json');
  const removed = join(out, 'cells', 'icl-d', '13', 'result.json');
  const torn = join(out, 'cells', 'lm-kd', '100', 'result.json');
  const teacherEval = join(out, 'teacher-eval.json'), lmTxt = join(out, 'lm.txt');
  const original = { removed: readFileSync(removed, 'utf8'), torn: readFileSync(torn, 'utf8'), teacher: readFileSync(teacherEval, 'utf8'), lm: readFileSync(lmTxt), results: readFileSync(join(out, 'results.json'), 'utf8') };
  const mtime = statSync(kept).mtimeMs;
  rmSync(removed);
  writeFileSync(torn, original.torn.slice(0, 40));
  writeFileSync(teacherEval, original.teacher.slice(0, 25));
  writeFileSync(lmTxt, original.lm.subarray(0, 100));
  const logs: string[] = [];
  await runStudy(config(), out, (s) => logs.push(s));
  assert.equal(statSync(kept).mtimeMs, mtime, 'a finished cell was recomputed');
  const noTiming = (t: string): unknown => { const { train_s, epoch_s, ...rest } = JSON.parse(t); void train_s; void epoch_s; return rest; };
  assert.deepEqual(noTiming(readFileSync(removed, 'utf8')), noTiming(original.removed), 'the recomputed cell differs from the original');
  assert.deepEqual(noTiming(readFileSync(torn, 'utf8')), noTiming(original.torn), 'the torn cell was not recomputed to the original');
  assert.ok(logs.some((l) => l.includes(torn) && /invalid JSON/.test(l) && /recomputing/.test(l)), logs.join('\n'));
  assert.ok(logs.some((l) => l.includes(teacherEval) && /recomputing/.test(l)), 'torn teacher-eval.json not named');
  assert.deepEqual(JSON.parse(readFileSync(teacherEval, 'utf8')), JSON.parse(original.teacher));
  assert.ok(logs.some((l) => l.includes(lmTxt) && /rebuilding/.test(l)), 'cut lm.txt not named');
  assert.deepEqual(readFileSync(lmTxt), original.lm, 'lm.txt was not rebuilt');
  const drop = (t: string): unknown => { const { speed, speedup, epoch_cost, ...rest } = JSON.parse(t); void speed; void speedup; void epoch_cost; return rest; };
  assert.deepEqual(drop(readFileSync(join(out, 'results.json'), 'utf8')), drop(original.results));
  // A config change that invalidates finished cells is refused, naming the keys; labels and arms may change.
  const changed = config();
  changed.train.lr = 0.002; changed.distill.temperature = 3;
  await assert.rejects(runStudy(changed, out, quiet), /was made with a different study config: train\.lr 0\.003 → 0\.002, distill\.temperature 2 → 3; use a new --out or delete/);
  const relabelled = { ...config(), name: 'renamed', notes: 'free to change', arms: ['Raw', 'ICT'] as StudyConfig['arms'] };
  const r2 = await runStudy(relabelled, out, quiet) as { arms: Record<string, unknown> };
  assert.deepEqual(Object.keys(r2.arms), ['Raw', 'ICT']);
});

test('a study never writes into a directory the user brought', async () => {
  const user = mkdtempSync(join(tmpdir(), 'icld-user-'));
  const out = mkdtempSync(join(tmpdir(), 'icld-study-u-'));
  // A user model dir without tokenizer.json (the study must train its tokenizer under --out).
  const m = new GPT2(gpt2Config({ n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2, vocab_size: 300 }), 3);
  m.savePretrained(join(user, 'student'));
  const snapshot = (): string[] => readdirSync(join(user, 'student')).map((f) => `${f}:${readFileSync(join(user, 'student', f)).toString('base64')}`);
  const before = snapshot();
  const c = config();
  c.seeds = [100]; c.arms = ['Raw']; c.teacher.ict = null;
  c.student = { path: join(user, 'student') };
  await assert.rejects(runStudy({ ...c, tokenizer: { path: join(user, 'student', 'tokenizer.json') } }, out, () => {}), /tokenizer\.path .*student\/tokenizer\.json not found/);
  assert.deepEqual(readdirSync(out), [], 'a refused study wrote something');
  await runStudy(c, out, () => {});
  assert.deepEqual(snapshot(), before, 'the user\'s model dir changed');
  assert.deepEqual(readdirSync(user), ['student']);
  assert.ok(existsSync(join(out, 'tokenizer', 'tokenizer.json')));
  assert.ok(existsSync(join(out, 'cells', 'raw', '100', 'result.json')));
});

test('study config changes: which keys invalidate finished cells', () => {
  const a = config(), b = config();
  assert.deepEqual(studyConfigChanges(a, b), []);
  b.notes = 'x'; b.expected_minutes = 3; b.name = 'other'; b.arms = ['Raw'];
  assert.deepEqual(studyConfigChanges(a, b), []);
  b.seeds = [100, 13, 21]; // the LM corpus (and so the tokenizer) is built from every seed's data
  assert.deepEqual(studyConfigChanges(a, b), ['seeds [100,13] → [100,13,21]']);
  const c = config(), d = config();
  c.lm_data.synthetic_corpus = false; d.lm_data.synthetic_corpus = false;
  d.seeds = [100, 13, 21]; // nothing shared depends on the seeds: only the new seed's cells run
  assert.deepEqual(studyConfigChanges(c, d), []);
  d.seeds = [100];
  assert.deepEqual(studyConfigChanges(c, d), ['seeds [100,13] → [100]']);
  d.seeds = [100, 13]; d.student.model!.n_embd = 32; delete d.eval.batch_size;
  assert.deepEqual(studyConfigChanges(c, d).sort(), ['eval.batch_size 16 → (unset)', 'student.model.n_embd 16 → 32']);
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

// evaluateIcl over several tasks: test examples whose query + answer cannot fit the context are
// skipped, counted per task and named by line (the other examples score exactly as without them);
// with continueOnError a broken task is recorded in `errors` and the others are still evaluated.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateIcl, fitsContext, type IclEvalOptions, type Prediction } from '../../src/icl/evaluate.js';
import { iclJson } from '../../src/icl/report.js';
import { makeTemplate, PieceEncoder } from '../../src/data/prompts.js';
import type { BPETokenizer } from '../../src/tokenizers/index.js';
import type { GPT2 } from '../../src/models/gpt2.js';
import type { Example } from '../../src/data/tasks.js';
import { SEEDS, clsTrain, clsTest, genTrain, genTest, writeTaskDir, tinyTokenizer, tinyModel } from './task-fixture.js';

const CTX = 48;
let dir: string, tok: BPETokenizer, model: GPT2;
const jsonl = (xs: (Example | '')[]): string => xs.map((x) => (x === '' ? '' : JSON.stringify(x))).join('\n') + '\n';
const long = (n: number): string => Array.from({ length: n }, (_, i) => ['red', 'blue', 'cat', 'dog'][i % 4]).join(' ');

// "long" = clsTest with, at file line 3, a query far longer than the context and, at line 5, an
// option longer than the context; line 2 is blank (line numbers are file lines, not indexes).
// "short" = the same file without them.
const longQuery: Example = { task: 'long', input: long(120), output: 'yes', options: ['yes', 'no', 'maybe'] };
const longOption: Example = { task: 'long', input: 'the cat', output: long(80), options: ['yes', long(80)] };
const genLong: Example = { task: 'glong', input: long(120), output: 'a cat', options: [] };

function writeTask(name: string, train: (s: number) => Example[], test: (Example | '')[]): void {
  mkdirSync(join(dir, name), { recursive: true });
  for (const s of SEEDS) writeFileSync(join(dir, name, `${name}_16_${s}_train.jsonl`), jsonl(train(s)));
  writeFileSync(join(dir, name, `${name}_test.jsonl`), jsonl(test));
}

function run(extra: Partial<IclEvalOptions>): { r: ReturnType<typeof evaluateIcl>; preds: Prediction[]; logs: string[] } {
  const preds: Prediction[] = [], logs: string[] = [];
  const r = evaluateIcl({ model, tokenizer: tok, taskDir: dir, tasks: ['long'], k: 3, seeds: SEEDS, maxNewTokens: 4,
    onPrediction: (p) => preds.push(p), log: (s) => logs.push(s), ...extra });
  return { r, preds, logs };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'icl-sweep-'));
  writeTaskDir(dir);
  tok = tinyTokenizer();
  model = tinyModel(tok.vocabSize, CTX);
  writeTask('long', clsTrain, [clsTest[0], '', longQuery, clsTest[1], longOption, clsTest[2], clsTest[3]]);
  writeTask('short', clsTrain, [clsTest[0], clsTest[1], clsTest[2], clsTest[3]]);
  writeTask('glong', genTrain, [genTest[0], genLong, genTest[1]]);
  writeTask('gshort', genTrain, [genTest[0], genTest[1]]);
  mkdirSync(join(dir, 'broken'), { recursive: true });
  for (const s of SEEDS) writeFileSync(join(dir, 'broken', `broken_16_${s}_train.jsonl`), jsonl(clsTrain(s)));
  writeFileSync(join(dir, 'broken', 'broken_test.jsonl'), '{"task":"broken","input":"a","output":"x","options":["x","y"]}\n{"input": oops\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('evaluateIcl: examples longer than the context', () => {
  it('the fixture really is over-long, and the normal examples fit', () => {
    const enc = new PieceEncoder(tok), tpl = makeTemplate();
    assert.ok(tok.encode(longQuery.input, { addSpecialTokens: false }).length > CTX);
    assert.equal(fitsContext(enc, tpl, longQuery, 'direct', false, CTX), false);
    assert.equal(fitsContext(enc, tpl, longOption, 'direct', false, CTX), false);
    for (const q of clsTest.slice(0, 4)) assert.equal(fitsContext(enc, tpl, q, 'direct', false, CTX), true);
  });

  it('are skipped, counted per task, named by file line, and leave the other examples\' scores unchanged', () => {
    const a = run({}), b = run({ tasks: ['short'] });
    const t = a.r.tasks.long;
    assert.equal(t.skipped, 2);
    assert.deepEqual(t.skipped_lines, [3, 5]);
    assert.equal(t.test_examples, 4);
    assert.equal(t.examples, 4 * SEEDS.length);
    assert.equal(a.preds.length, 4 * SEEDS.length);
    assert.ok(!a.preds.some((p) => p.input === longQuery.input || p.input === longOption.input), 'a skipped example was scored');
    assert.deepEqual(a.preds.map((p) => [p.seed, p.input, p.scores, p.prediction]), b.preds.map((p) => [p.seed, p.input, p.scores, p.prediction]));
    assert.deepEqual(t.seeds, b.r.tasks.short.seeds);
    assert.equal(b.r.tasks.short.skipped, 0);
    const msg = a.logs.filter((l) => l.includes('skipped'));
    assert.equal(msg.length, 1, 'one message per task, not per seed');
    assert.equal(msg[0], `icl eval: long: skipped 2 of 6 test examples longer than the ${CTX}-token context (first: long_test.jsonl line 3)`);
    const j = JSON.parse(JSON.stringify(iclJson(a.r))) as { tasks: Record<string, { skipped: number; skipped_lines: number[]; test_examples: number }> };
    assert.deepEqual([j.tasks.long.skipped, j.tasks.long.skipped_lines, j.tasks.long.test_examples], [2, [3, 5], 4]);
  });

  it('channel and calibrated scoring skip the same examples', () => {
    for (const extra of [{ method: 'channel' as const }, { calibrate: true }]) {
      const a = run(extra), b = run({ ...extra, tasks: ['short'] });
      assert.deepEqual(a.r.tasks.long.skipped_lines, [3, 5]);
      assert.deepEqual(a.preds.map((p) => p.scores), b.preds.map((p) => p.scores));
    }
  });

  it('generation: a query that leaves no room for --max-new-tokens is skipped', () => {
    const a = run({ tasks: ['glong'] }), b = run({ tasks: ['gshort'] });
    assert.deepEqual(a.r.tasks.glong.skipped_lines, [2]);
    assert.deepEqual(a.preds.map((p) => p.prediction), b.preds.map((p) => p.prediction));
    assert.throws(() => run({ tasks: ['gshort'], maxNewTokens: CTX }), /--max-new-tokens 48 leaves no room/);
  });

  it('a task whose every example is too long is an error naming the test file', () => {
    writeTask('allLong', clsTrain, [longQuery, longOption]);
    assert.throws(() => run({ tasks: ['allLong'] }), (e: Error) => e.message.includes(join(dir, 'allLong', 'allLong_test.jsonl')) && /all 2 test examples are longer/.test(e.message));
  });
});

describe('evaluateIcl: a broken task in a sweep', () => {
  it('without continueOnError the first failure throws (library default)', () => {
    assert.throws(() => run({ tasks: ['broken', 'short'] }), /broken_test\.jsonl:2: invalid JSON/);
  });

  it('with continueOnError it is recorded in errors, the other tasks are evaluated exactly as alone', () => {
    const done: [string, string | null, string[]][] = [];
    const a = run({ tasks: ['short', 'broken', 'cls'], continueOnError: true, onTaskDone: (t, e, so) => done.push([t, e ? e.message : null, Object.keys(so.tasks)]) });
    assert.deepEqual(Object.keys(a.r.tasks), ['short', 'cls']);
    assert.equal(a.r.errors.length, 1);
    assert.equal(a.r.errors[0].task, 'broken');
    assert.ok(a.r.errors[0].error.startsWith(`${join(dir, 'broken', 'broken_test.jsonl')}:2:`), a.r.errors[0].error);
    assert.deepEqual(done.map((d) => [d[0], d[1] === null, d[2]]), [['short', true, ['short']], ['broken', false, ['short']], ['cls', true, ['short', 'cls']]]);
    const alone = run({ tasks: ['cls'] });
    assert.deepEqual(a.r.tasks.cls, alone.r.tasks.cls);
    assert.equal(a.r.average.accuracy, (a.r.tasks.short.mean.accuracy + a.r.tasks.cls.mean.accuracy) / 2);
    assert.deepEqual((iclJson(a.r) as { errors: unknown }).errors, a.r.errors);
  });
});

// The synthetic suite cannot be gamed by label statistics: exact label counts per task and file,
// ≥ 4 labels, single-token keys and labels under the compact template, and the majority-label
// baseline at exactly chance on the same prompts the models see.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readStudyConfig } from '../../src/distill/study-config.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSyntheticSuite, syntheticCorpus, COMPACT_TEMPLATE } from '../../src/data/synthetic.js';
import { readExamples, loadTask } from '../../src/data/tasks.js';
import { evaluateBaseline } from '../../src/icl/baselines.js';
import { buildPrompt, makeTemplate, promptString } from '../../src/data/prompts.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';

const opts = { trainTasks: 6, testTasks: 4, testSize: 32, wordsPerTask: 8, labelsPerTask: 4, vocabulary: 26, symbols: true, outputSpace: true, seeds: [100, 13, 21] };

function counts(xs: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

test('synthetic: every label has exactly the same count in each test, train and dev file; ≥ 4 labels', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-'));
  const split = writeSyntheticSuite(dir, opts);
  assert.equal(split.train.length, 6);
  assert.equal(split.test.length, 4);
  for (const t of [...split.train, ...split.test]) {
    const files = [`${t}_test.jsonl`, ...opts.seeds.flatMap((s) => [`${t}_16_${s}_train.jsonl`, `${t}_16_${s}_dev.jsonl`])];
    for (const f of files) {
      const ex = readExamples(join(dir, t, f));
      const c = counts(ex.map((e) => e.output));
      assert.equal(c.size, 4, `${f}: 4 labels`);
      assert.deepEqual([...c.values()], [ex.length / 4, ex.length / 4, ex.length / 4, ex.length / 4], `${f}: balanced`);
      assert.equal(new Set(ex[0].options).size, 4);
      for (const e of ex) assert.ok(e.options.includes(e.output));
      // A key always has the same label within a task (the answer is in the demonstrations).
      const map = new Map<string, string>();
      for (const e of ex) { assert.equal(map.get(e.input) ?? e.output, e.output); map.set(e.input, e.output); }
    }
    // The first 8 demonstrations (k = wordsPerTask) hold every key once: 2 per label.
    const k8 = loadTask(dir, t, 8, 13).train;
    assert.equal(new Set(k8.map((e) => e.input)).size, 8);
    assert.deepEqual([...counts(k8.map((e) => e.output)).values()], [2, 2, 2, 2]);
  }
});

test('synthetic: the majority-label baseline scores exactly chance, copy-nearest 100%', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-'));
  const split = writeSyntheticSuite(dir, opts);
  for (const k of [8, 16]) {
    const maj = evaluateBaseline('majority', { taskDir: dir, tasks: split.test, k, seeds: opts.seeds });
    const cp = evaluateBaseline('copy-nearest', { taskDir: dir, tasks: split.test, k, seeds: opts.seeds });
    for (const s of opts.seeds) {
      assert.equal(maj[String(s)].average.accuracy, 0.25);
      assert.equal(cp[String(s)].average.accuracy, 1);
    }
  }
});

test('synthetic: a test size that is not a multiple of wordsPerTask is balanced to within one', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-'));
  const split = writeSyntheticSuite(dir, { ...opts, testSize: 12 });
  const c = [...counts(readExamples(join(dir, split.test[0], `${split.test[0]}_test.jsonl`)).map((e) => e.output)).values()];
  assert.equal(c.reduce((a, b) => a + b, 0), 12);
  assert.ok(Math.max(...c) - Math.min(...c) <= 2 && Math.min(...c) >= 2, `${c}`); // 8 balanced + 4 of the next shuffle (2 words per label)
});

test('synthetic: unbalanceable options are one-line errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-'));
  assert.throws(() => writeSyntheticSuite(dir, { ...opts, wordsPerTask: 6 }), /wordsPerTask 6 must be a multiple of labelsPerTask 4/);
  assert.throws(() => writeSyntheticSuite(dir, { ...opts, wordsPerTask: 12, labelsPerTask: 4 }), /wordsPerTask 12 must divide 16/);
  assert.throws(() => writeSyntheticSuite(dir, { ...opts, labelsPerTask: 9, wordsPerTask: 9 }), /labelsPerTask must be 2\.\.8/);
});

test('synthetic: with the compact template, keys and labels are single tokens and the prompt is "K red\\nJ lime\\n…Q"', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-'));
  const split = writeSyntheticSuite(dir, opts);
  const ex = readExamples(join(dir, split.test[0], `${split.test[0]}_test.jsonl`));
  const tpl = makeTemplate(COMPACT_TEMPLATE);
  const p = buildPrompt(tpl, ex.slice(0, 2), ex[2], ex[2].output);
  assert.equal(promptString(p), `${ex[0].input}${ex[0].output}\n${ex[1].input}${ex[1].output}\n${ex[2].input}`);
  assert.match(promptString(p), /^[A-Z] [a-z]+\n[A-Z] [a-z]+\n[A-Z]$/);
  // The study's tokenizer: trained on the suite's text in the same template.
  const text = opts.seeds.map((s) => syntheticCorpus(dir, split.train, s, tpl.ioSep, tpl.demoSep)).join('\n\n');
  const tok = BPETokenizer.train([text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  for (const e of ex) {
    assert.equal(tok.encode(e.input, { addSpecialTokens: false }).length, 1, `key ${e.input}`);
    for (const o of e.options) assert.equal(tok.encode(o, { addSpecialTokens: false }).length, 1, `label ${JSON.stringify(o)}`);
  }
});

test('synthetic: a study config with unbalanceable options is refused when read, naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'synth-cfg-'));
  const cfg = JSON.parse(readFileSync(new URL('../../../studies/synthetic.json', import.meta.url), 'utf8'));
  cfg.tasks.synthetic.wordsPerTask = 6;
  const p = join(dir, 'study.json');
  writeFileSync(p, JSON.stringify(cfg));
  assert.throws(() => readStudyConfig(p, false), (e: Error) => e.message === `${p}: tasks.synthetic: wordsPerTask 6 must be a multiple of labelsPerTask 4 (every label gets the same number of words)`);
  // The shipped study itself is valid in both versions, with ≥ 4 labels and ≥ 2-layer models.
  for (const full of [false, true]) {
    const c = readStudyConfig(fileURLToPath(new URL('../../../studies/synthetic.json', import.meta.url)), full);
    assert.ok(c.tasks.synthetic!.labelsPerTask! >= 4);
    assert.ok((c.teacher.model!.n_layer as number) >= 2 && (c.student.model!.n_layer as number) >= 2);
    assert.ok(c.seeds.length >= (full ? 5 : 3));
  }
});

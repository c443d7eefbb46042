// Issue 10, the paper's settings: config keys (arch, task lists, LAMA placeholder, metric,
// teacher/student.pretrain), the user-model check, .jsonl LM text, and the pretraining stage
// of the base models (reuse after it finished, resume after a kill, same weights either way).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { readStudyConfig, runStudy } from '../../src/distill/study.js';
import { ensureBase, checkUserModel, type BaseSpec } from '../../src/distill/bases.js';
import { readLmText } from '../../src/data/text.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIST = fileURLToPath(new URL('../../', import.meta.url));
const STUDIES = join(ROOT, 'studies');
let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-settings-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

let n = 0;
/** A study config written to tmp: the cpu meta config with `edit` applied to a copy. */
function variant(edit: (c: Record<string, any>) => void): string {
  const c = JSON.parse(readFileSync(join(STUDIES, 'cpu-crossfit-meta.json'), 'utf8'));
  c.tasks.dir = join(ROOT, 'data/tasks/crossfit');
  edit(c);
  const p = join(tmp, `c${n++}.json`);
  writeFileSync(p, JSON.stringify(c));
  return p;
}

describe('shipped setting configs', () => {
  for (const name of ['cpu-crossfit-meta', 'cpu-crossfit-multitask', 'paper-crossfit-meta', 'paper-crossfit-multitask']) {
    it(`${name}.json parses (full and quick) with the paper's setting`, () => {
      for (const full of [true, false]) {
        const c = readStudyConfig(join(STUDIES, `${name}.json`), full);
        assert.equal(c.k, 4);
        assert.equal(c.arch ?? 'gpt2', 'gpt2');
        if (name.endsWith('meta')) {
          assert.equal(c.setting, 'meta'); assert.equal(c.tasks.split, 'class_to_class'); assert.equal(c.eval.method, 'channel');
        } else {
          assert.equal(c.setting, 'multitask'); assert.equal(c.tasks.test!.length, 18);
          for (const t of c.tasks.test!) assert.ok(existsSync(join(c.tasks.dir!, t, `${t}_test.jsonl`)), t);
        }
        if (name.startsWith('cpu')) {
          const tp = c.teacher.pretrain!, sp = c.student.pretrain!;
          for (const f of [...tp.files, ...sp.files, ...c.lm_data.files!]) assert.ok(existsSync(f), f);
          const tm = c.teacher.model as Record<string, number>, sm = c.student.model as Record<string, number>;
          // Transformer-block parameters only (12·d²·L): the teacher must be >= 4x the student.
          assert.ok(12 * tm.n_embd ** 2 * tm.n_layer >= 4 * 12 * sm.n_embd ** 2 * sm.n_layer);
        } else {
          assert.match(c.teacher.path!, /models\/gpt2-(large|medium)$/);
          assert.ok(c.expected_minutes! > 0);
        }
      }
    });
  }
});

describe('arch and task source', () => {
  it('arch "bert" needs tasks.lama; tasks.lama excludes the CrossFit keys; the shipped LAMA configs load', () => {
    assert.throws(() => readStudyConfig(variant((c) => { c.arch = 'bert'; }), true), /arch "bert" \(a masked LM\) needs tasks\.lama/);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks.lama = { relations: ['P17'] }; }), true), /tasks has "lama" and "dir", "split"; LAMA studies take their relations/);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks = { lama: { relations: ['P17'] } }; c.eval.method = 'direct'; c.distill.kl = 'options'; }), true), /distill\.kl "options" does not apply to LAMA/);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks = { lama: { vocab: 'big' } }; }), true), /vocab/);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks = { lama: { test_fraction: 1.5 } }; }), true), /test_fraction/);
    for (const f of ['cpu-lama-meta', 'cpu-lama-multitask', 'paper-lama-meta', 'paper-lama-multitask']) {
      const c = readStudyConfig(join(STUDIES, `${f}.json`), true);
      assert.equal(c.arch, 'bert');
      assert.ok(c.tasks.lama && c.tasks.lama.dir!.endsWith(join('data', 'lama')), f);
      if (f.startsWith('cpu')) {
        // Teacher ≥ 4× student in parameters, both pretrained here.
        const size = (m: Record<string, number>): number => 28996 * m.hidden_size + 12 * m.hidden_size ** 2 * m.num_hidden_layers;
        assert.ok(size(c.teacher.model as Record<string, number>) >= 4 * size(c.student.model as Record<string, number>), f);
        assert.ok(c.teacher.pretrain && c.student.pretrain && c.k === 5);
      }
    }
    assert.equal(readStudyConfig(variant((c) => { c.arch = 'gpt2'; c.metric = 'macro_f1'; }), true).metric, 'macro_f1');
    assert.throws(() => readStudyConfig(variant((c) => { c.arch = 'llama'; }), true), /arch/);
    assert.throws(() => readStudyConfig(variant((c) => { c.metric = 'f1'; }), true), /metric/);
  });

  it('task source: split or train/test lists, not both; meta needs a train list', () => {
    const c = readStudyConfig(variant((c) => { delete c.tasks.split; c.tasks.train = ['glue-rte']; c.tasks.test = ['superglue-cb']; }), true);
    assert.deepEqual([c.tasks.train, c.tasks.test], [['glue-rte'], ['superglue-cb']]);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks.test = ['superglue-cb']; }), true), /both "split" and "train"\/"test" lists/);
    assert.throws(() => readStudyConfig(variant((c) => { delete c.tasks.split; c.tasks.test = ['superglue-cb']; }), true), /setting "meta" needs a tasks\.train list/);
    assert.throws(() => readStudyConfig(variant((c) => { delete c.tasks.split; }), true), /tasks needs "split" or a "test" list/);
    assert.throws(() => readStudyConfig(variant((c) => { c.tasks.test = []; }), true), /test/);
  });

  it('an explicit task list naming a missing task, or a test task without a test file, fails naming it', async () => {
    const cfg = (test: string[]) => readStudyConfig(variant((c) => { c.setting = 'multitask'; delete c.tasks.split; c.tasks.test = test; }), true);
    await assert.rejects(runStudy(cfg(['superglue-cb', 'no-such-task']), join(tmp, 'L1'), () => {}), /task 'no-such-task' of tasks\.train\/tasks\.test not found under .*crossfit/);
    await assert.rejects(runStudy(cfg(['glue-qqp']), join(tmp, 'L2'), () => {}), /task 'glue-qqp' of tasks\.test has no test file .*glue-qqp_test\.jsonl/);
  });

  it('pretrain keys are checked, and exclude a model you bring', () => {
    assert.throws(() => readStudyConfig(variant((c) => { c.student.pretrain.stepz = 3; }), true), /stepz/);
    assert.throws(() => readStudyConfig(variant((c) => { delete c.student.pretrain.lr; }), true), /lr/);
    assert.throws(() => readStudyConfig(variant((c) => { c.student = { path: '/x', pretrain: c.student.pretrain }; }), true), /student has both "path" and "pretrain"/);
  });

  it('a missing teacher.path directory is one line naming it and what to put there, before anything is written', async () => {
    const c = readStudyConfig(join(STUDIES, 'paper-crossfit-meta.json'), false);
    const out = join(tmp, 'paper-out');
    await assert.rejects(runStudy(c, out, () => {}), (e: Error) => {
      assert.ok(e.message.includes(`teacher.path ${c.teacher.path} does not exist: put a Hugging Face checkpoint of the study`), e.message);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
    assert.equal(existsSync(out), false);
    writeFileSync(join(tmp, 'afile'), 'x');
    assert.throws(() => checkUserModel('student', tmp), /student\.path .* has no config\.json/);
    assert.throws(() => checkUserModel('student', join(tmp, 'afile')), /is not a directory/);
  });
});

describe('readLmText', () => {
  it('reads .jsonl {"text"} documents joined by a blank line, .txt as is', () => {
    const p = join(tmp, 'docs.jsonl');
    writeFileSync(p, '{"text": "first doc", "url": "x"}\n\n{"text": "second\\nline"}\n');
    assert.equal(readLmText(p), 'first doc\n\nsecond\nline');
    const q = join(tmp, 'plain.txt');
    writeFileSync(q, '{"text": "kept raw"}\n');
    assert.equal(readLmText(q), '{"text": "kept raw"}\n');
    const c4 = readLmText(join(ROOT, 'data/corpus/c4/c4_demo.jsonl'));
    assert.ok(c4.length > 500_000 && !c4.includes('{"text"'));
  });

  it('bad lines are one-line errors naming FILE:LINE', () => {
    const cases: [string, RegExp][] = [
      ['{"text": "a"}\n{"txt": "b"}\n', /:2: expected "text" to be a string/],
      ['{"text": 3}\n', /:1: expected "text" to be a string, got 3/],
      ['{"text": "a"}\n{oops\n', /:2: invalid JSON/],
      ['["a"]\n', /:1: expected a JSON object/],
      ['\n  \n', /has no \{"text"\} documents/],
    ];
    for (const [body, re] of cases) {
      const p = join(tmp, `bad${n++}.jsonl`);
      writeFileSync(p, body);
      assert.throws(() => readLmText(p), re);
    }
    assert.throws(() => readLmText(join(tmp, 'nope.jsonl')), /LM text file not found: .*nope\.jsonl/);
  });
});

describe('base-model pretraining stage', () => {
  const text = 'the cat sat on the mat. the dog ran in the fog. a bird sang on a branch. '.repeat(60);
  const spec = (files: string[]): BaseSpec => ({
    model: { n_embd: 16, n_layer: 1, n_head: 2, n_positions: 32 },
    pretrain: { files, steps: 70, batch_size: 2, seq_len: 16, lr: 0.003, warmup_steps: 5 },
  });

  it('pretrains once, reuses the result, and a killed run resumes to the same weights', () => {
    const txt = join(tmp, 'lm.txt');
    writeFileSync(txt, text);
    const tok = BPETokenizer.train([text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
    const tokDir = join(tmp, 'tok');
    tok.save(tokDir);
    const logs: string[] = [];
    const outA = join(tmp, 'A');
    const a = ensureBase({ who: 'student', spec: spec([txt]), out: outA, tok, arch: 'gpt2', seed: 3, log: (s) => logs.push(s) });
    assert.equal(a, join(outA, 'student-base'));
    const sum = JSON.parse(readFileSync(join(a, 'pretrain.json'), 'utf8'));
    assert.equal(sum.steps, 70);
    assert.ok(sum.final_loss < Math.log(tok.vocabSize) - 1, `final loss ${sum.final_loss} should be well below uniform`);
    assert.equal(existsSync(join(outA, 'student-pretrain')), false); // the run dir is dropped once published
    const weights = readFileSync(join(a, 'model.safetensors'));
    // Not pretrained: a different (fresh) model.
    const fresh = ensureBase({ who: 'student', spec: { model: spec([txt]).model }, out: join(tmp, 'F'), tok, arch: 'gpt2', seed: 3, log: () => {} });
    assert.notDeepEqual(readFileSync(join(fresh, 'model.safetensors')), weights);
    // Reuse: a second call trains nothing.
    logs.length = 0;
    assert.equal(ensureBase({ who: 'student', spec: spec([txt]), out: outA, tok, arch: 'gpt2', seed: 3, log: (s) => logs.push(s) }), a);
    assert.equal(logs.length, 0, logs.join("\n"));
    // Killed right after its first checkpoint (step 50), in a child process; then resumed here.
    const outB = join(tmp, 'B');
    const script = join(tmp, 'child.mjs');
    writeFileSync(script, `import { ensureBase } from ${JSON.stringify(join(DIST, 'src/distill/bases.js'))};
import { BPETokenizer } from ${JSON.stringify(join(DIST, 'src/tokenizers/index.js'))};
const tok = BPETokenizer.fromTokenizerJson(${JSON.stringify(join(tokDir, 'tokenizer.json'))});
ensureBase({ who: 'student', spec: ${JSON.stringify(spec([txt]))}, out: ${JSON.stringify(outB)}, tok, arch: 'gpt2', seed: 3, log: () => {} });`);
    const r = spawnSync(process.execPath, [script], { env: { ...process.env, ICLD_CRASH_AT: 'checkpoint:published' }, encoding: 'utf8' });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    assert.ok(existsSync(join(outB, 'student-pretrain', 'checkpoint-50')));
    assert.equal(existsSync(join(outB, 'student-base')), false);
    logs.length = 0;
    const b = ensureBase({ who: 'student', spec: spec([txt]), out: outB, tok, arch: 'gpt2', seed: 3, log: (s) => logs.push(s) });
    assert.ok(logs.some((l) => l.includes('(resuming)')), logs.join('\n'));
    assert.deepEqual(readFileSync(join(b, 'model.safetensors')), weights);
  });
});

// Instances and data as the paper builds them: channel-order instances (demonstrations and query
// as "label, input", loss on the input tokens), Multitask-ICT's 32 train + 32 dev examples per
// task and seed, Multitask-FT instances and evaluation without demonstrations, and the
// headline metric by task type on a scored split.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IctSampler, makeBatch, multitaskSplits } from '../../src/icl/ict.js';
import { evaluateExamples, evaluateIcl } from '../../src/icl/evaluate.js';
import { sampleInstances } from '../../src/distill/study-arms.js';
import { trainingPool, type Example } from '../../src/data/tasks.js';
import { writeTaskDir, tinyTokenizer, tinyModel, clsTrain, SEEDS } from './task-fixture.js';

const tok = tinyTokenizer();
const key = (e: Example): string => `${e.input}\u0000${e.output}`;

test('channel instances: every block is "label\\ninput", the query\'s input is the continuation and the only supervised tokens', () => {
  const pool = clsTrain(100);
  const pools = new Map([['cls', pool]]);
  const byBlock = (order: 'channel' | 'direct'): Set<string> => new Set(pool.map((e) => (order === 'channel' ? `${e.output}\n${e.input}` : `${e.input}\n${e.output}`)));
  for (const method of ['channel', 'direct'] as const) {
    const insts = sampleInstances(tok, pools, { k: 3, demos: true, method, maxLength: 128, seed: 7, n: 6 });
    const b = makeBatch(insts, tok.eosTokenId ?? 0);
    insts.forEach((inst, i) => {
      const blocks = tok.decode(inst.prefix.concat(inst.suffix)).split('\n\n');
      assert.equal(blocks.length, 4, 'k = 3 demonstrations + the query');
      for (const bl of blocks) assert.ok(byBlock(method).has(bl), `${method}: block ${JSON.stringify(bl)} is not in ${method} order`);
      const answer = tok.decode(inst.suffix.slice(inst.contStart));
      const q = pool.find((e) => (method === 'channel' ? e.input === answer : e.output === answer && blocks[3].startsWith(e.input)))!;
      assert.ok(q, `${method}: continuation ${JSON.stringify(answer)}`);
      assert.equal(answer, method === 'channel' ? q.input : q.output);
      // Supervised tokens = exactly the continuation (the input for channel, the label for direct).
      const sup = Array.from(b.targets.subarray(i * b.L, (i + 1) * b.L)).filter((t) => t !== -100);
      assert.deepEqual(sup, inst.suffix.slice(inst.contStart));
      assert.equal(inst.candidates === undefined, method === 'channel', 'option candidates only in direct order');
    });
  }
});

test('Multitask-FT instances have no demonstrations: the query and its answer only', () => {
  const pool = clsTrain(13);
  const insts = sampleInstances(tok, new Map([['cls', pool]]), { k: 0, demos: false, method: 'direct', maxLength: 128, seed: 3, n: 8 });
  const want = new Set(pool.map((e) => `${e.input}\n${e.output}`));
  for (const inst of insts) {
    assert.equal(inst.prefix.length, 0, 'no demonstration tokens');
    assert.ok(want.has(tok.decode(inst.suffix)), tok.decode(inst.suffix));
  }
});

test('evaluation at k = 0 (Multitask-FT) scores the query alone: the same as scoring with an empty demonstration list', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-ft-'));
  writeTaskDir(dir);
  const model = tinyModel(tok.vocabSize);
  const r = evaluateIcl({ model, tokenizer: tok, taskDir: dir, tasks: ['cls'], k: 0, seeds: [SEEDS[0]] });
  const testSet = readFileSync(join(dir, 'cls', 'cls_test.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Example);
  assert.deepEqual(r.tasks.cls.seeds[String(SEEDS[0])], evaluateExamples({ model, tokenizer: tok }, 'cls', [], testSet, SEEDS[0]));
});

test('Multitask-ICT data: 32 train + 32 dev per task, disjoint, from the train/dev files only, deterministic per seed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-32-'));
  // Two tasks with 4 seeds × (16 train + 16 dev) = 128 distinct examples each, and a test file.
  const ex = (t: string, i: number): Example => ({ task: t, input: `${t} item ${i}`, output: i % 2 ? 'a' : 'b', options: ['a', 'b'] });
  for (const t of ['t1', 't2']) {
    mkdirSync(join(dir, t));
    [1, 2, 3, 4].forEach((s, si) => {
      for (const [kind, off] of [['train', 0], ['dev', 16]] as const) {
        writeFileSync(join(dir, t, `${t}_16_${s}_${kind}.jsonl`), Array.from({ length: 16 }, (_, i) => JSON.stringify(ex(t, si * 32 + off + i))).join('\n') + '\n');
      }
    });
    writeFileSync(join(dir, t, `${t}_test.jsonl`), Array.from({ length: 5 }, (_, i) => JSON.stringify(ex(t, 1000 + i))).join('\n') + '\n');
  }
  const a = multitaskSplits(dir, ['t1', 't2'], 100), again = multitaskSplits(dir, ['t2', 't1'], 100), other = multitaskSplits(dir, ['t1', 't2'], 13);
  for (const t of ['t1', 't2']) {
    const tr = a.train.get(t)!, dv = a.dev.get(t)!;
    assert.equal(tr.length, 32); assert.equal(dv.length, 32);
    const trk = new Set(tr.map(key));
    assert.equal(trk.size, 32, 'no duplicates');
    assert.ok(dv.every((e) => !trk.has(key(e))), 'train and dev are disjoint');
    const pool = new Set(trainingPool(dir, t).map(key));
    assert.ok([...tr, ...dv].every((e) => pool.has(key(e)) && Number(e.input.split(' ')[2]) < 1000), 'drawn from the train/dev files, never the test file');
    // Deterministic per seed, independent of the task list's order; another seed draws other examples.
    assert.deepEqual(again.train.get(t), tr); assert.deepEqual(again.dev.get(t), dv);
    assert.notDeepEqual(other.train.get(t)!.map(key).sort(), tr.map(key).sort());
  }
  // Not from the first lines of one file: the 32 come from several seeds' files.
  assert.ok(new Set(a.train.get('t1')!.map((e) => Math.floor(Number(e.input.split(' ')[2]) / 32))).size > 1);
  // A small task gives half to training.
  const small = multitaskSplits(dir, ['t1'], 100, 100, 100);
  assert.equal(small.train.get('t1')!.length, 64); assert.equal(small.dev.get('t1')!.length, 64);
});

test('headline by task type: macro-F1 for a classification task, accuracy (no macro-F1) for multiple-choice', () => {
  const model = tinyModel(tok.vocabSize);
  const cls: Example[] = clsTrain(100).concat(clsTrain(13));
  const mc: Example[] = [
    { task: 'mc', input: 'the sun is', output: 'hot', options: ['hot', 'cold'] },
    { task: 'mc', input: 'the cat is', output: 'a pet', options: ['a car', 'a pet', 'a tree'] },
    { task: 'mc', input: 'rain is', output: 'wet', options: ['dry', 'wet'] },
  ];
  const mcm = evaluateExamples({ model, tokenizer: tok }, 'mc', [], mc);
  assert.deepEqual(Object.keys(mcm), ['accuracy']);
  const cm = evaluateExamples({ model, tokenizer: tok }, 'cls', [], cls);
  assert.deepEqual(Object.keys(cm).sort(), ['accuracy', 'macro_f1']);
});

test('channel instances skip a query whose input alone exceeds the context (counted), and never emit it', () => {
  const pool = clsTrain(100).slice(0, 6);
  const long: Example = { task: 'cls', input: Array.from({ length: 300 }, (_, i) => `w${i % 7}`).join(' '), output: pool[0].output, options: pool[0].options };
  const pools = new Map([['cls', [...pool, long]]]);
  const s = new IctSampler(tok, { pools, k: 2, demos: true, method: 'channel', maxLength: 96, seed: 3 });
  const insts = Array.from({ length: 40 }, () => s.next());
  for (const inst of insts) assert.notEqual(tok.decode(inst.suffix.slice(inst.contStart)), long.input);
  assert.ok(s.skipped > 0, 'the long query was drawn at least once in 40 draws and skipped');
  // A pool where every query is too long is a clear error, not an endless loop.
  const bad = new IctSampler(tok, { pools: new Map([['cls', [long, { ...long, input: long.input + ' x' }]]]), k: 1, demos: true, method: 'channel', maxLength: 96, seed: 3 });
  assert.throws(() => bad.next(), /1,000 draws in a row had a continuation longer than the 96-token context/);
});

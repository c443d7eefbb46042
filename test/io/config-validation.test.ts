// User JSON configs (issue 9): unknown keys anywhere are errors naming the key and the closest
// valid one ("n_layers": 2 used to train a 12-layer model silently), a missing train section is
// an error (not 1,000 default steps), types and ranges are checked, "quick" overrides included.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readPretrainConfig } from '../../src/train/pretrain.js';
import { readStudyConfig } from '../../src/distill/study.js';
import { checkSchema, duplicateJsonKey, closestMatch } from '../../src/io/json.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PRETRAIN = join(ROOT, 'configs', 'shakespeare-small.json');
const STUDIES = ['synthetic.json', 'crossfit-hr_to_lr.json'].map((f) => join(ROOT, 'studies', f));
let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-cfg-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

function variant(src: string, edit: (c: any) => void): string {
  const c = JSON.parse(readFileSync(src, 'utf8'));
  edit(c);
  const p = join(tmp, `c${n++}.json`);
  writeFileSync(p, JSON.stringify(c));
  return p;
}
const esc = (s: string): string => s.replace(/[.\\/]/g, '\\$&');
function rejects(f: () => unknown, p: string, msg: string | RegExp): void {
  assert.throws(f, (e: Error) => e.constructor === Error && !e.message.includes('\n') &&
    (typeof msg === 'string' ? e.message === `${p}: ${msg}` : new RegExp(`^${esc(p)}: `).test(e.message) && msg.test(e.message)));
}

describe('pretrain config', () => {
  it('the shipped config loads unchanged', () => {
    const c = readPretrainConfig(PRETRAIN);
    assert.equal(c.model.n_layer, 4);
    assert.equal(c.train.steps, 600);
  });

  it('"n_layers": 2 is an unknown key with a suggestion', () => {
    const p = variant(PRETRAIN, (c) => { delete c.model.n_layer; c.model.n_layers = 2; });
    rejects(() => readPretrainConfig(p), p, "unknown key model.n_layers (did you mean 'n_layer'?)");
  });

  it('a missing train section is an error', () => {
    const p = variant(PRETRAIN, (c) => { delete c.train; });
    rejects(() => readPretrainConfig(p), p, 'missing key train');
  });

  it('unknown keys in every section and at the top level', () => {
    const cases: [(c: any) => void, string][] = [
      [(c) => { c.train.warmup_step = 5; }, "unknown key train.warmup_step (did you mean 'warmup_steps'?)"],
      [(c) => { c.tokenizer.vocabsize = 5; }, "unknown key tokenizer.vocabsize (did you mean 'vocab_size'?)"],
      [(c) => { c.trian = {}; }, "unknown key trian (did you mean 'train'?)"],
    ];
    for (const [edit, msg] of cases) { const p = variant(PRETRAIN, edit); rejects(() => readPretrainConfig(p), p, msg); }
  });

  it('types and ranges', () => {
    const cases: [(c: any) => void, RegExp][] = [
      [(c) => { c.train.steps = '600'; }, /train\.steps must be an integer ≥ 1, got "600"/],
      [(c) => { c.train.lr = 0; }, /train\.lr must be a number > 0, got 0/],
      [(c) => { c.train.betas = [0.9]; }, /train\.betas must be \[/],
      [(c) => { c.train.schedule = 'cosin'; }, /train\.schedule must be one of "cosine", "linear", "constant"/],
      [(c) => { c.model.n_layer = 20000; }, /model\.n_layer must be an integer in \[1, 1024\], got 20000/],
      [(c) => { c.model.n_head = 5; }, /model\.n_embd 192 is not divisible by model\.n_head 5/],
      [(c) => { c.model.attn_pdrop = -0.1; }, /model\.attn_pdrop must be a number ≥ 0 and < 1/],
      [(c) => { c.tokenizer.special_tokens = ['<|endoftext|>', '<|endoftext|>']; }, /tokenizer\.special_tokens\[1\] repeats/],
    ];
    for (const [edit, re] of cases) { const p = variant(PRETRAIN, edit); rejects(() => readPretrainConfig(p), p, re); }
  });

  it('a duplicated key and invalid JSON name the file', () => {
    const p = join(tmp, 'dup.json');
    writeFileSync(p, '{"model": {"n_layer": 2, "n_layer": 12}, "train": {}}');
    rejects(() => readPretrainConfig(p), p, 'duplicate key model.n_layer');
    writeFileSync(p, '{"model": ');
    rejects(() => readPretrainConfig(p), p, /invalid JSON/);
  });
});

describe('study config', () => {
  it('the shipped studies load, quick and full', () => {
    for (const s of STUDIES) {
      const q = readStudyConfig(s, false), f = readStudyConfig(s, true);
      assert.ok(q.seeds.length <= f.seeds.length);
    }
  });

  it('unknown keys anywhere, including nested and quick overrides, name the closest key', () => {
    const [syn, cf] = STUDIES;
    const cases: [string, (c: any) => void, string][] = [
      [syn, (c) => { c.distill.temprature = 1; }, "unknown key distill.temprature (did you mean 'temperature'?)"],
      [syn, (c) => { c.teacher.model.n_layers = 2; }, "unknown key teacher.model.n_layers (did you mean 'n_layer'?)"],
      [syn, (c) => { c.tasks.synthetic.trainTask = 2; }, "unknown key tasks.synthetic.trainTask (did you mean 'trainTasks'?)"],
      [cf, (c) => { c.teacher.ict.step = 2; }, "unknown key teacher.ict.step (did you mean 'steps'?)"],
      [cf, (c) => { c.quick.train.instance = 2; }, "unknown key quick.train.instance (did you mean 'instances'?)"],
      [syn, (c) => { c.quick.sedes = [1]; }, "unknown key quick.sedes (did you mean 'seeds'?)"],
      [syn, (c) => { c.quick.quick = {}; }, 'unknown key quick.quick'],
      [syn, (c) => { c.evaluation = {}; }, 'unknown key evaluation'],
    ];
    for (const [src, edit, msg] of cases) { const p = variant(src, edit); rejects(() => readStudyConfig(p, false), p, msg); }
  });

  it('types, ranges, enums and required keys', () => {
    const [syn] = STUDIES;
    const cases: [(c: any) => void, RegExp][] = [
      [(c) => { c.seeds = [1, 2.5]; }, /seeds\[1\] must be an integer ≥ 0, got 2\.5/],
      [(c) => { c.seeds = [1, 1]; }, /seeds\[1\] repeats 1/],
      [(c) => { c.k = '16'; }, /k must be an integer/],
      [(c) => { c.setting = 'meta-learning'; }, /setting must be one of "meta", "multitask"/],
      [(c) => { c.distill.kl = 'partial'; }, /distill\.kl must be one of "full", "options"/],
      [(c) => { c.arms = ['Raw', 'ICL-X']; }, /arms\[1\] must be one of/],
      [(c) => { delete c.distill.temperature; }, /missing key distill\.temperature/],
      [(c) => { delete c.lm_data; }, /missing key lm_data/],
      [(c) => { c.teacher.ict = { steps: 5 }; }, /missing key teacher\.ict\.lr/],
      [(c) => { c.quick.seeds = 'all'; }, /quick\.seeds must be an array/],
      [(c) => { c.quick = { teacher: { ict: { lr: -1 } } }; }, /quick\.teacher\.ict\.lr must be a number > 0/],
      [(c) => { c.tasks = {}; }, /tasks needs "synthetic" or both "dir" and "split"/],
      [(c) => { c.student.path = 'x'; }, /student has both "path" and "model"/],
    ];
    for (const [edit, re] of cases) { const p = variant(syn, edit); rejects(() => readStudyConfig(p, false), p, re); }
  });
});

describe('json helpers', () => {
  it('duplicateJsonKey finds repeats at any depth, not across objects or in strings', () => {
    assert.equal(duplicateJsonKey('{"a":1,"b":{"c":1,"c":2}}'), 'b.c');
    assert.equal(duplicateJsonKey('{"a":[{"x":1},{"x":2}],"b":"\\"a\\":1,"}'), null);
    assert.equal(duplicateJsonKey('{"a\\u0062":1,"ab":2}'), 'ab');
    assert.equal(duplicateJsonKey('[' + '['.repeat(100000) + ']'.repeat(100000) + ']'), null);
  });

  it('checkSchema describes the first problem; closestMatch suggests only near names', () => {
    assert.throws(() => checkSchema({ a: { b: [1, 'x'] } }, { t: 'object', keys: { a: { t: 'object', keys: { b: { t: 'array', of: { t: 'int' } } } } } }, 'F', ''), /^Error: F: a\.b\[1\] must be an integer, got "x"$/);
    assert.equal(closestMatch('n_layers', ['n_layer', 'n_head']), 'n_layer');
    assert.equal(closestMatch('zzzzzz', ['n_layer', 'n_head']), undefined);
  });
});

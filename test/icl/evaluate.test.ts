// evaluateIcl on a tiny CrossFit-layout task folder: metric keys and the --json shape, metrics
// recomputed from the per-example records, option scores reproduced independently (by-hand
// prompt strings → scoreContinuations), demonstrations = the first k lines of the seed file,
// calibration, channel scoring, majority vote over orders, truncation counts and error messages.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateIcl, type IclEvalOptions, type Prediction } from '../../src/icl/evaluate.js';
import { iclJson } from '../../src/icl/report.js';
import { scoreContinuations } from '../../src/icl/scorer.js';
import { accuracy, macroF1, exactMatch, tokenF1, meanStd } from '../../src/eval/metrics.js';
import { buildPrompt, makeTemplate, PieceEncoder, tokenizePrompt } from '../../src/data/prompts.js';
import { Rng } from '../../src/engine/rng.js';
import type { BPETokenizer } from '../../src/tokenizers/index.js';
import type { GPT2 } from '../../src/models/gpt2.js';
import type { Example } from '../../src/data/tasks.js';
import { SEEDS, clsTrain, clsTest, genTest, writeTaskDir, tinyTokenizer, tinyModel } from './task-fixture.js';

let dir: string, tok: BPETokenizer, model: GPT2;
const enc = (s: string): number[] => (s === '' ? [] : tok.encode(s, { addSpecialTokens: false }));

function run(extra: Partial<IclEvalOptions> = {}): { r: ReturnType<typeof evaluateIcl>; preds: Prediction[] } {
  const preds: Prediction[] = [];
  const r = evaluateIcl({ model, tokenizer: tok, taskDir: dir, tasks: ['cls'], k: 2, seeds: SEEDS, maxNewTokens: 4, onPrediction: (p) => preds.push(p), ...extra });
  return { r, preds };
}

/** Direct scores of every option of `q` after `demos`, built from literal strings (not buildPrompt). */
function scoresByHand(demos: Example[], q: Example, input = q.input): number[] {
  const prefix = demos.flatMap((d) => enc(`${d.input}\n${d.output}\n\n`));
  const items = q.options.map((o) => { const query = enc(`${input}\n`); return { prefix, suffix: query.concat(enc(o)), contStart: query.length }; });
  return scoreContinuations(model, items).map((x) => x.logprob);
}

const argmax = (xs: number[]): number => xs.reduce((b, x, i) => (x > xs[b] ? i : b), 0);
const near = (a: number[], b: number[], what: string): void => {
  assert.equal(a.length, b.length, what);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-4, `${what}[${i}]: ${x} vs ${b[i]}`));
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'icl-eval-'));
  writeTaskDir(dir);
  tok = tinyTokenizer();
  model = tinyModel(tok.vocabSize);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('evaluateIcl: classification and generation', () => {
  it('metric keys, mean ± std over seeds, average over tasks, and the --json shape', () => {
    const { r } = run({ tasks: ['cls', 'gen'] });
    const j = JSON.parse(JSON.stringify(iclJson(r))) as {
      tasks: Record<string, { seeds: Record<string, Record<string, number>>; mean: Record<string, number>; std: Record<string, number> }>;
      average: Record<string, number>;
    };
    assert.deepEqual(Object.keys(j.tasks), ['cls', 'gen']);
    // (Integer-like keys: JS orders them numerically, whatever the --seeds order.)
    assert.deepEqual(Object.keys(j.tasks.cls.seeds).sort(), ['100', '13']);
    for (const s of ['100', '13']) {
      assert.deepEqual(Object.keys(j.tasks.cls.seeds[s]).sort(), ['accuracy', 'macro_f1']);
      assert.deepEqual(Object.keys(j.tasks.gen.seeds[s]).sort(), ['em', 'f1']);
    }
    for (const t of ['cls', 'gen']) {
      const keys = Object.keys(j.tasks[t].seeds['100']);
      assert.deepEqual(Object.keys(j.tasks[t].mean).sort(), keys.slice().sort());
      assert.deepEqual(Object.keys(j.tasks[t].std).sort(), keys.slice().sort());
      for (const m of keys) {
        const ms = meanStd(SEEDS.map((s) => j.tasks[t].seeds[String(s)][m]));
        assert.ok(Math.abs(j.tasks[t].mean[m] - ms.mean) < 1e-12);
        assert.ok(Math.abs(j.tasks[t].std[m] - ms.std) < 1e-12);
        for (const s of SEEDS) { const v = j.tasks[t].seeds[String(s)][m]; assert.ok(v >= 0 && v <= 1, `${t} ${m} ${v}`); }
      }
    }
    // Each metric is averaged over the tasks that report it (here one task each).
    assert.deepEqual(Object.keys(j.average).sort(), ['accuracy', 'em', 'f1', 'macro_f1']);
    assert.equal(j.average.accuracy, j.tasks.cls.mean.accuracy);
    assert.equal(j.average.em, j.tasks.gen.mean.em);
    assert.equal(r.tasks.cls.examples, clsTest.length * SEEDS.length);
    assert.equal(r.tasks.cls.truncated, 0);
  });

  it('accuracy / macro-F1 equal what the per-example records give; scores per option, prediction = argmax', () => {
    const { r, preds } = run();
    assert.equal(preds.length, clsTest.length * SEEDS.length);
    for (const s of SEEDS) {
      const ps = preds.filter((p) => p.seed === s);
      assert.deepEqual(ps.map((p) => p.input), clsTest.map((e) => e.input));
      assert.deepEqual(ps.map((p) => p.gold), clsTest.map((e) => e.output));
      for (const [i, p] of ps.entries()) {
        assert.equal(p.task, 'cls');
        assert.equal(p.scores.length, clsTest[i].options.length);
        assert.equal(p.prediction, clsTest[i].options[argmax(p.scores)]);
      }
      const acc = ps.filter((p) => p.prediction === p.gold).length / ps.length;
      assert.equal(r.tasks.cls.seeds[String(s)].accuracy, acc);
      assert.equal(r.tasks.cls.seeds[String(s)].macro_f1, macroF1(ps.map((p) => p.gold), ps.map((p) => p.prediction), ['yes', 'no', 'maybe']));
    }
    // The random model does not predict one label everywhere (otherwise this test would be weak).
    assert.ok(new Set(preds.map((p) => p.prediction)).size > 1, 'predictions are all the same label');
  });

  it('the k demonstrations are the first k lines of the seed\'s train file, in file order (scores reproduced by hand)', () => {
    const { preds } = run({ k: 3 });
    for (const s of SEEDS) {
      const demos = clsTrain(s).slice(0, 3);
      preds.filter((p) => p.seed === s).forEach((p, i) => near(p.scores, scoresByHand(demos, clsTest[i]), `seed ${s} ex ${i}`));
    }
    // And via a spy tokenizer: exactly those demo strings are encoded, no later line.
    const seen: string[] = [];
    const spy = { encode: (t: string, o?: { addSpecialTokens?: boolean }) => { seen.push(t); return tok.encode(t, o); }, decode: (ids: number[]) => tok.decode(ids) };
    evaluateIcl({ model, tokenizer: spy, taskDir: dir, tasks: ['cls'], k: 3, seeds: [100] });
    const train = clsTrain(100);
    for (const d of train.slice(0, 3)) assert.ok(seen.includes(`${d.input}\n${d.output}\n\n`), `demo ${d.input} not used`);
    for (const d of train.slice(3)) assert.ok(!seen.some((t) => t.includes(d.input)), `line beyond k used: ${d.input}`);
  });

  it('k = 0 scores the bare query', () => {
    const { preds } = run({ k: 0, seeds: [13] });
    preds.forEach((p, i) => near(p.scores, scoresByHand([], clsTest[i]), `ex ${i}`));
  });

  it('mean-per-token divides each option score by its token count', () => {
    const a = run({ seeds: [100] }).preds, b = run({ seeds: [100], meanPerToken: true }).preds;
    a.forEach((p, i) => near(b[i].scores, p.scores.map((s, j) => s / enc(clsTest[i].options[j]).length), `ex ${i}`));
  });

  it('calibration subtracts exactly the content-free ("N/A") score of each option', () => {
    const raw = run().preds, cal = run({ calibrate: true }).preds;
    for (const s of SEEDS) {
      const cf = scoresByHand(clsTrain(s).slice(0, 2), clsTest[0], 'N/A');
      const rs = raw.filter((p) => p.seed === s), cs = cal.filter((p) => p.seed === s);
      rs.forEach((p, i) => {
        near(p.scores.map((x, j) => x - cs[i].scores[j]), cf, `seed ${s} ex ${i}`);
        assert.equal(cs[i].prediction, clsTest[i].options[argmax(cs[i].scores)]);
      });
    }
    assert.throws(() => run({ calibrate: true, method: 'channel' }), /--calibrate applies to direct scoring only/);
  });

  it('channel: scores P(input | option) after output-then-input demonstrations', () => {
    const { preds } = run({ method: 'channel', seeds: [13] });
    const demos = clsTrain(13).slice(0, 2);
    const prefix = demos.flatMap((d) => enc(`${d.output}\n${d.input}\n\n`));
    preds.forEach((p, i) => {
      const q = clsTest[i];
      const items = q.options.map((o) => { const query = enc(`${o}\n`); return { prefix, suffix: query.concat(enc(q.input)), contStart: query.length }; });
      near(p.scores, scoreContinuations(model, items).map((x) => x.logprob), `ex ${i}`);
      assert.equal(p.prediction, q.options[argmax(p.scores)]);
    });
  });

  it('majority vote over demonstration orders (file order + seeded shuffles), deterministic', () => {
    const k = 4, orders = 3;
    const a = run({ k, orders }), b = run({ k, orders });
    assert.deepEqual(a.preds, b.preds);
    assert.deepEqual(a.r.tasks, b.r.tasks);
    for (const s of SEEDS) {
      const demos = clsTrain(s).slice(0, k);
      const rng = new Rng(s ^ 0x5bd1e995);
      const ords = [demos, rng.shuffle(demos.slice()), rng.shuffle(demos.slice())];
      assert.notDeepEqual(ords[1], ords[0], 'the shuffled order equals the file order; pick other fixtures');
      a.preds.filter((p) => p.seed === s).forEach((p, i) => {
        const q = clsTest[i];
        const per = ords.map((o) => scoresByHand(o, q));
        const mean = q.options.map((_, j) => per.reduce((t, sc) => t + sc[j], 0) / orders);
        near(p.scores, mean, `seed ${s} ex ${i}`);
        // Votes: most frequent; ties broken by the higher mean score.
        const votes = per.map((sc) => q.options[argmax(sc)]);
        const count = new Map<string, number>();
        for (const v of votes) count.set(v, (count.get(v) ?? 0) + 1);
        const best = Math.max(...count.values());
        const cands = [...count.keys()].filter((v) => count.get(v) === best);
        const expect = cands.reduce((x, y) => (mean[q.options.indexOf(y)] > mean[q.options.indexOf(x)] ? y : x));
        assert.equal(p.prediction, expect, `seed ${s} ex ${i}: votes ${votes.join(',')}`);
      });
    }
    const acc = SEEDS.map((s) => { const ps = a.preds.filter((p) => p.seed === s); return accuracy(ps.map((p) => p.gold), ps.map((p) => p.prediction)); });
    assert.deepEqual(SEEDS.map((s) => a.r.tasks.cls.seeds[String(s)].accuracy), acc);
  });

  it('generation: EM / F1 from the greedy answers; records have no scores', () => {
    const { r, preds } = run({ tasks: ['gen'] });
    assert.equal(preds.length, genTest.length * SEEDS.length);
    for (const s of SEEDS) {
      const ps = preds.filter((p) => p.seed === s);
      assert.deepEqual(ps.map((p) => p.gold), genTest.map((e) => e.output));
      for (const p of ps) { assert.deepEqual(p.scores, []); assert.equal(typeof p.prediction, 'string'); assert.ok(!p.prediction.includes('\n')); }
      const em = ps.reduce((t, p) => t + exactMatch(p.prediction, p.gold), 0) / ps.length;
      const f1 = ps.reduce((t, p) => t + tokenF1(p.prediction, p.gold), 0) / ps.length;
      assert.equal(r.tasks.gen.seeds[String(s)].em, em);
      assert.ok(Math.abs(r.tasks.gen.seeds[String(s)].f1 - f1) < 1e-12);
    }
  });

  it('counts truncated test examples when the context is short', () => {
    const small = tinyModel(tok.vocabSize, 40);
    const preds: Prediction[] = [];
    const r = evaluateIcl({ model: small, tokenizer: tok, taskDir: dir, tasks: ['cls'], k: 5, seeds: [100], onPrediction: (p) => preds.push(p) });
    // Expected count from tokenizePrompt directly: an example counts once if any option's prompt was cut.
    const pe = new PieceEncoder(tok), demos = clsTrain(100);
    const expected = clsTest.filter((q) => q.options.some((o) => tokenizePrompt(pe, buildPrompt(makeTemplate(), demos, q, o), { maxLength: 40 }).truncated)).length;
    assert.ok(expected > 0, 'fixture does not truncate; lower n_positions');
    assert.equal(r.tasks.cls.truncated, expected);
    assert.equal(preds.length, clsTest.length);
    for (const p of preds) assert.ok(p.scores.every(Number.isFinite));
  });
});

describe('evaluateIcl: errors', () => {
  it('a missing task names the task and the directory', () => {
    assert.throws(() => run({ tasks: ['nope'] }), (e: Error) => e.message.includes("'nope'") && e.message.includes(dir));
  });

  it('a bad jsonl line names file:line', () => {
    mkdirSync(join(dir, 'bad'), { recursive: true });
    const f = join(dir, 'bad', 'bad_16_100_train.jsonl');
    writeFileSync(f, '{"task":"bad","input":"a","output":"x","options":["x","y"]}\n\n{"task": "bad", "input": oops}\n');
    writeFileSync(join(dir, 'bad', 'bad_test.jsonl'), '{"task":"bad","input":"a","output":"x","options":["x","y"]}\n');
    assert.throws(() => run({ tasks: ['bad'], seeds: [100] }), (e: Error) => e.message.startsWith(`${f}:3: invalid JSON`));
    writeFileSync(f, '{"task":"bad","input":"a","output":"z","options":["x","y"]}\n');
    assert.throws(() => run({ tasks: ['bad'], seeds: [100], k: 1 }), (e: Error) => e.message.startsWith(`${f}:1: output "z" is not one of the options`));
    writeFileSync(f, '{"task":"bad","input":3,"output":"x"}\n');
    assert.throws(() => run({ tasks: ['bad'], seeds: [100], k: 1 }), (e: Error) => e.message.startsWith(`${f}:1: expected`));
  });

  it('k larger than the train file is a clear error', () => {
    assert.throws(() => run({ k: 6 }), (e: Error) => /cls_16_100_train\.jsonl: has 5 examples, --k 6 needs at least 6/.test(e.message));
  });

  it('a seed without a train file names the missing file', () => {
    assert.throws(() => run({ seeds: [7] }), /task file not found: .*cls_16_7_train\.jsonl/);
  });
});

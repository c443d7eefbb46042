// LAMA distillation (the paper's settings 1 and 3 with a masked LM): ICT instances built by the
// probe's own prompt builder, the distillation objective over [MASK] positions with an MLM LM
// term that resumes exactly, and the study runner end to end (results, report, resume, and as
// stage + shard + lease worker + merge jobs).

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel, loadModel, type LanguageModel } from '../../src/models/index.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import { trexRelations, loadLamaRelation, drawDemonstrations } from '../../src/data/lama.js';
import { lamaPrompt, singleTokenId } from '../../src/eval/lama.js';
import { lamaInstances } from '../../src/icl/lama-ict.js';
import { makeBatch } from '../../src/icl/ict.js';
import { trainDistill } from '../../src/distill/distill.js';
import { MlmCollator } from '../../src/data/mlm.js';
import { buildShards, TokenFile, WindowLoader } from '../../src/data/shards.js';
import { runStudy, runStudyPart, type StudyConfig } from '../../src/distill/study.js';
import { Rng } from '../../src/engine/rng.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const tok = loadTokenizer(join(repo, 'data', 'models', 'bert-base-cased'));
const rels = trexRelations().filter((r) => ['P19', 'P37', 'P103', 'P1412', 'P36'].includes(r.id)).map((r) => loadLamaRelation(r));
const pools = rels.map((r) => ({ relation: r.relation, facts: r.train.slice(0, 60) }));
const bert = (d: number, seed: number): LanguageModel => createModel('bert', { vocab_size: tok.vocabSize, hidden_size: d, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 2 * d, max_position_embeddings: 96, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed);
const weights = (m: LanguageModel): number[][] => m.namedParameters().map(([, p]) => Array.from(p.f32));

test('LAMA instances are the probe prompt with the object to predict: masked in place, or as the next token', () => {
  const spec = { kind: 'masked' as const, maxPositions: 96, eosTokenId: null };
  const insts = lamaInstances(tok, spec, pools, { k: 3, demos: true, seed: 4, n: 20 });
  assert.equal(insts.length, 20);
  assert.deepEqual(lamaInstances(tok, spec, pools, { k: 3, demos: true, seed: 4, n: 20 }), insts, 'seeded');
  const b = makeBatch(insts, tok.padTokenId!);
  insts.forEach((it, i) => {
    const rel = rels.find((r) => r.relation.id === it.task)!;
    const fact = rel.train.find((f) => f.obj === it.gold)!;
    assert.ok(fact, `${it.task}: gold ${it.gold} is a train fact`);
    assert.equal(it.suffix[it.contStart], singleTokenId(tok, it.gold));
    assert.equal(it.contEnd, it.contStart + 1);
    assert.equal(b.ids[i * b.L + it.contStart], tok.maskTokenId, 'the object is [MASK] in the input');
    assert.equal(b.targets[i * b.L + it.contStart], singleTokenId(tok, it.gold), 'and the target at the same position');
    assert.equal(b.ids[i * b.L], tok.clsTokenId);
    // Every demonstration is a filled-in sentence before the query: the prompt has k + 1 periods.
    const text = tok.decode(it.suffix, { skipSpecialTokens: true });
    assert.ok((text.match(/\./g) ?? []).length >= 3, text);
  });
  // The same prompt as the probe builds, object masked.
  const r0 = rels[0], q = r0.train[0];
  const demos = drawDemonstrations(r0.train, 2, new Rng(1), q);
  const p = lamaPrompt(spec, tok, r0.relation, q, demos)!;
  assert.equal(p.ids[p.pos], tok.maskTokenId);
  // Without demonstrations (Multitask-FT): just [CLS] query [SEP].
  const ft = lamaInstances(tok, spec, pools, { k: 3, demos: false, seed: 4, n: 5 });
  for (const it of ft) assert.ok(it.suffix.length < 20, `a query alone is short, got ${it.suffix.length}`);
  // A causal model predicts the object after the prompt's prefix.
  const causal = lamaInstances(tok, { kind: 'causal', maxPositions: 96, eosTokenId: 0 }, pools, { k: 2, demos: true, seed: 4, n: 5 });
  for (const it of causal) { assert.equal(it.mask, undefined); assert.deepEqual(it.suffix, [singleTokenId(tok, it.gold)]); assert.equal(it.contStart, 0); }
});

test('ICL-D on a masked LM with the MLM term: KL at [MASK], trains, and resumes bit-exactly', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-lamad-'));
  try {
    const text = join(dir, 'lm.txt');
    writeFileSync(text, readFileSync(join(repo, 'data', 'corpus', 'wikitext-2', 'wiki.valid.raw'), 'utf8').slice(0, 40_000));
    const enc = { vocabSize: tok.vocabSize, encode: (s: string) => tok.encode(s, { addSpecialTokens: false }) };
    const shard = new TokenFile(buildShards([text], enc, 'bert-base-cased', join(dir, 'tok'), { eos: null }));
    const spec = { kind: 'masked' as const, maxPositions: 96, eosTokenId: null };
    const instances = lamaInstances(tok, spec, pools, { k: 2, demos: true, seed: 1, n: 16 });
    const teacher = bert(24, 7);
    const run = (out: string, resume?: string): LanguageModel => {
      const student = bert(16, 3);
      trainDistill({ student, tokenizer: tok, instances, epochs: 2, batchSize: 4, objective: 'ict', teacher, out, resume, log: () => {},
        lm: { loader: new WindowLoader(shard, 0, shard.length, 14, 5), batchSize: 2, mlm: { collator: new MlmCollator(tok), cls: tok.clsTokenId, sep: tok.sepTokenId } },
        distill: { alpha: 0.9, alphaEnd: 0.1, alphaSchedule: 'linear', temperature: 2, kl: 'full', topK: 16, beta: 0.5 },
        train: { lr: 3e-3, seed: 2, saveEvery: 4 } });
      return student;
    };
    const a = run(join(dir, 'a'));
    const st = JSON.parse(readFileSync(join(dir, 'a', 'trainer_state.json'), 'utf8'));
    assert.equal(st.global_step, 8);
    assert.ok(st.log_history.every((e: { loss: number }) => Number.isFinite(e.loss)));
    assert.notDeepEqual(weights(a), weights(bert(16, 3)), 'the student trained');
    const b = run(join(dir, 'b'), join(dir, 'a', 'checkpoint-4'));
    assert.deepEqual(weights(b), weights(a), 'resumed from step 4: same weights (instance order, dropout and MLM masks restored)');
    assert.deepEqual(weights(loadModel(join(dir, 'a'))), weights(a));
    shard.close();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a LAMA study (setting 1, masked LMs pretrained here): every arm, results, report, resume', async () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-lamastudy-'));
  const wiki = join(repo, 'data', 'corpus', 'wikitext-2', 'wiki.valid.raw');
  const model = (d: number): Record<string, unknown> => ({ hidden_size: d, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 2 * d, max_position_embeddings: 96 });
  const pre = { files: [wiki], max_bytes: 30_000, steps: 3, batch_size: 4, seq_len: 24, lr: 1e-3 };
  const c: StudyConfig = {
    name: 'lama-test', arch: 'bert', setting: 'meta', k: 2, seeds: [1],
    tasks: { lama: { relations: ['P19', 'P37', 'P103', 'P1412', 'P36'], meta_split: [2, 1, 2], test_limit: 12, dev_limit: 6, train_limit: 40 } },
    eval: { batch_size: 8 }, tokenizer: { path: join(repo, 'data', 'models', 'bert-base-cased') },
    lm_data: { files: [wiki], max_bytes: 30_000, seq_len: 16, batch_size: 2 },
    teacher: { model: model(24), pretrain: pre, ict: { steps: 3, lr: 1e-3, batch_size: 4 } },
    student: { model: model(16), pretrain: pre },
    train: { instances: 8, epochs: 1, batch_size: 4, lr: 1e-3 },
    distill: { alpha_start: 1, temperature: 2, kl: 'full', top_k: 8, beta: 0.5, lm_kd_steps: 2 },
    threads: 1,
  };
  try {
    const logs: string[] = [];
    const r = await runStudy(c, out, (s) => logs.push(s)) as Record<string, any>;
    assert.deepEqual(Object.keys(r.arms).sort(), ['ICL-D', 'ICL-D (LM)', 'ICT', 'ICT (LM)', 'LM-KD', 'Multitask-FT', 'Raw']);
    assert.equal(r.lama.split.train.length + r.lama.split.dev.length + r.lama.split.test.length, 5);
    for (const a of Object.values(r.arms) as { mean: Record<string, number> }[]) for (const k of ['p1', 'p10', 'headline']) assert.ok(a.mean[k] >= 0 && a.mean[k] <= 1, `${k} ${a.mean[k]}`);
    assert.ok(r.arms.ICT.mean.p10 >= r.arms.ICT.mean.p1);
    assert.equal(r.arms.ICT.mean.headline, r.arms.ICT.mean.p1, 'P@1 is the headline');
    const cell = JSON.parse(readFileSync(join(out, 'cells', 'icl-d-lm', '1', 'result.json'), 'utf8'));
    assert.deepEqual(Object.keys(cell.tasks).sort(), [...r.lama.split.test].filter((id: string) => cell.tasks[id]).sort());
    assert.equal(cell.eval_k, 2);
    assert.equal(JSON.parse(readFileSync(join(out, 'cells', 'multitask-ft', '1', 'result.json'), 'utf8')).eval_k, 0);
    assert.ok(r.teacher_params > r.student_params && r.compression > 1);
    assert.ok(Object.keys(r.baselines).length === 1);
    assert.ok(existsSync(join(out, 'report.html')) && existsSync(join(out, 'teacher-cache', '1', 'meta.json')));
    assert.ok(logs.some((s) => /LAMA setting 1 \(Meta-ICT\): 5 relations/.test(s)));
    // A rerun keeps every finished cell and gives the same results.
    const logs2: string[] = [];
    const r2 = await runStudy(c, out, (s) => logs2.push(s)) as Record<string, any>;
    assert.equal(logs2.filter((s) => /done earlier \(kept\)/.test(s)).length, 7);
    assert.deepEqual(r2.arms, r.arms);
    // As jobs: the stage, shard 0/2, then a lease worker for the rest, then the merge: the same cells.
    const jobs = mkdtempSync(join(tmpdir(), 'icld-lamajobs-'));
    try {
      const quiet = (): void => {};
      await assert.rejects(runStudyPart(c, jobs, { part: 'merge' }, quiet), /the teacher stage has not been run there/);
      assert.equal((await runStudyPart(c, jobs, { part: 'stage' }, quiet) as { cells: number }).cells, 7);
      assert.ok(existsSync(join(jobs, 'teacher-cache', '1', 'meta.json')) && !existsSync(join(jobs, 'cells')), 'the stage builds the teacher cache and runs no cell');
      assert.equal((await runStudyPart(c, jobs, { part: 'worker', shard: { i: 0, n: 2 } }, quiet) as { ran: number }).ran, 4);
      assert.deepEqual((await runStudyPart(c, jobs, { part: 'merge' }, quiet) as { missing_cells: string[] }).missing_cells, ['Multitask-FT seed 1', 'ICT (LM) seed 1', 'ICL-D (LM) seed 1']);
      assert.equal((await runStudyPart(c, jobs, { part: 'worker' }, quiet) as { ran: number }).ran, 3);
      const m = await runStudyPart(c, jobs, { part: 'merge' }, quiet) as Record<string, any>;
      assert.deepEqual(m.missing_cells, []);
      assert.deepEqual(m.arms, r.arms);
      assert.deepEqual(m.teacher, r.teacher);
      const cell = (dir: string, a: string): unknown => { const { train_s, epoch_s, ...x } = JSON.parse(readFileSync(join(dir, 'cells', a, '1', 'result.json'), 'utf8')); void train_s; void epoch_s; return x; };
      for (const a of ['raw', 'ict', 'icl-d-lm', 'lm-kd']) assert.deepEqual(cell(jobs, a), cell(out, a), a);
    } finally { rmSync(jobs, { recursive: true, force: true }); }
  } finally { rmSync(out, { recursive: true, force: true }); }
});

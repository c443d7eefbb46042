// `icld study` with tasks.lama: the paper's LAMA settings (1: Meta-ICT over relations, 3:
// Multitask-ICT within every relation) with the same arms, distillation objective, teacher cache,
// results and report as the CrossFit-style study (study.ts). Instances are K filled-in sentences
// of a relation + the query with its object masked (masked LMs) or as the next token (causal);
// evaluation is the LAMA probe (P@1 / P@10 over the candidate vocabulary, macro-averaged over
// the test relations), with K demonstrations drawn from the relation's train facts.

import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadModel, modelFamily, type LanguageModel } from '../models/index.js';
import { BPETokenizer, WordPieceTokenizer, loadTokenizer } from '../tokenizers/index.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { allRelations, defaultLamaDir, demoSeed, lamaMetaSplit, lamaMultitaskSplit, loadCommonVocab, loadLamaRelation, trexRelations, type LamaFact, type LamaRelation, type LamaRelationData } from '../data/lama.js';
import { MlmCollator } from '../data/mlm.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { readLmText } from '../data/text.js';
import { lamaCandidates, macroAverage, probeRelation, singleTokenId, type LamaCandidates, type LamaModelSpec } from '../eval/lama.js';
import { lamaInstances, type LamaPool } from '../icl/lama-ict.js';
import { makeBatch, forwardBatch, type Instance } from '../icl/ict.js';
import { tokenizerKey } from '../train/pretrain.js';
import { tidy, noGrad } from '../engine/index.js';
import { cleanStaleTemps, writeJsonAtomic } from '../io/atomic.js';
import { closestMatch } from '../io/json.js';
import type { Metrics } from '../icl/evaluate.js';
import { trainDistill } from './distill.js';
import { TeacherCache } from './cache.js';
import { ensureBase } from './bases.js';
import { seedStudent, trainArm, usesTeacherCache } from './study-arms.js';
import { ARMS, studyCells, type StudyConfig } from './study-config.js';
import { assemble, fmtAvg, type CellResult } from './study-results.js';
import { writeStudyReport } from './study-report.js';
import { cached, checkSameStudy, requireStage, saveCell, lmTextIntact, readCachedJson, rmCheckpoints, writeLmText, type PreparedStudy } from './study-io.js';

/** One relation as evaluated: the facts probed and the pool its demonstrations come from. */
export interface LamaEvalSet { relation: LamaRelation; test: LamaFact[]; demos: LamaFact[] }

/** What a seed trains and tests on. */
export interface LamaSeedData { pools: LamaPool[]; dev: LamaEvalSet[]; test: LamaEvalSet[] }

const cap = <T>(xs: T[], n: number | undefined): T[] => (n === undefined ? xs : xs.slice(0, n));

/** The relations a LAMA study uses (default: the 41 T-REx ones), with their facts. */
export function lamaStudyRelations(c: StudyConfig): LamaRelationData[] {
  const L = c.tasks.lama!, dir = L.dir ?? defaultLamaDir();
  const known = allRelations(dir), byId = new Map(known.map((r) => [r.id, r]));
  const ids = L.relations ?? trexRelations(dir).map((r) => r.id);
  for (const id of ids) {
    if (!byId.has(id)) {
      const near = closestMatch(id, [...byId.keys()]);
      throw new Error(`study config: tasks.lama.relations: unknown relation '${id}'${near ? ` (did you mean '${near}'?)` : ''}; known: ${[...byId.keys()].join(', ')}`);
    }
  }
  return ids.map((id) => loadLamaRelation(byId.get(id)!, dir));
}

/**
 * Setting 1 (meta): the same for every seed — pools are the meta-train relations' train facts,
 * dev the validation relations' dev facts, test the test relations' LAMA facts (demonstrations
 * from each relation's train facts). Setting 3 (multitask): per seed and relation, the held-out
 * test share of its LAMA facts, and train/dev facts drawn from the rest.
 */
export function lamaSeedData(c: StudyConfig, rels: LamaRelationData[], seed: number): LamaSeedData & { split?: { train: string[]; dev: string[]; test: string[] } } {
  const L = c.tasks.lama!, byId = new Map(rels.map((r) => [r.relation.id, r]));
  const devLimit = L.dev_limit ?? 50;
  if (c.setting === 'meta') {
    const sizes = L.meta_split ? { train: L.meta_split[0], dev: L.meta_split[1], test: L.meta_split[2] } : { train: 30, dev: 5, test: 6 };
    if (sizes.train + sizes.dev + sizes.test > rels.length) {
      throw new Error(`study config: tasks.lama: the meta split needs ${sizes.train} + ${sizes.dev} + ${sizes.test} relations, the study has ${rels.length}${L.meta_split ? '' : ' (set tasks.lama.meta_split for fewer relations)'}`);
    }
    const split = lamaMetaSplit(rels.map((r) => r.relation.id), L.split_seed ?? 0, sizes);
    const at = (id: string): LamaRelationData => byId.get(id)!;
    return {
      split,
      pools: split.train.map((id) => ({ relation: at(id).relation, facts: cap(at(id).train, L.train_limit) })),
      dev: split.dev.map((id) => ({ relation: at(id).relation, test: cap(at(id).dev, devLimit), demos: at(id).train })),
      test: split.test.map((id) => ({ relation: at(id).relation, test: cap(at(id).test, L.test_limit), demos: at(id).train })),
    };
  }
  const out: LamaSeedData = { pools: [], dev: [], test: [] };
  for (const r of rels) {
    const fs = lamaMultitaskSplit(r.test, demoSeed(seed, r.relation.id, 1 << 20), { testFraction: L.test_fraction ?? 0.6, train: c.train.few_shot_train ?? 32, dev: c.train.few_shot_dev ?? 32 });
    out.pools.push({ relation: r.relation, facts: fs.train });
    out.dev.push({ relation: r.relation, test: cap(fs.dev, devLimit), demos: fs.train });
    out.test.push({ relation: r.relation, test: cap(fs.test, L.test_limit), demos: fs.train });
  }
  return out;
}

export interface LamaScores { tasks: Record<string, Metrics>; average: Metrics; facts: Record<string, { n: number; skipped: number }> }

/** The LAMA probe over a set of relations: P@1 / P@10 per relation and their macro average. */
export function evalLama(model: LanguageModel, tok: Tokenizer, sets: readonly LamaEvalSet[], cands: LamaCandidates, k: number, seed: number, batchSize?: number): LamaScores {
  const tasks: Record<string, Metrics> = {}, facts: LamaScores['facts'] = {}, res: Record<string, { p1: number; p10: number; n: number; skipped: number }> = {};
  for (const s of sets) {
    const r = probeRelation(model, tok, s.relation, s.test, s.demos, cands, { kShot: k, seed, batchSize });
    res[s.relation.id] = r;
    facts[s.relation.id] = { n: r.n, skipped: r.skipped };
    if (r.n > 0) tasks[s.relation.id] = { p1: r.p1, p10: r.p10 };
  }
  const avg = macroAverage(res);
  return { tasks, average: { p1: avg.p1, p10: avg.p10 }, facts };
}

/**
 * Model-free baseline: rank a relation's objects by how often they are the object of its
 * demonstration pool (its train facts) and always answer that ranking. LAMA relations such as
 * "official language" have strong priors; this shows how much of a score a prior alone gives.
 */
export function majorityObjectBaseline(tok: Tokenizer, sets: readonly LamaEvalSet[], cands: LamaCandidates): { tasks: Record<string, Metrics>; average: Metrics } {
  const tasks: Record<string, Metrics> = {};
  for (const s of sets) {
    const count = new Map<number, number>();
    for (const f of s.demos) { const id = singleTokenId(tok, f.obj); if (id !== undefined && cands.has(id)) count.set(id, (count.get(id) ?? 0) + 1); }
    const ranking = [...count.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([id]) => id);
    let n = 0, h1 = 0, h10 = 0;
    for (const f of s.test) {
      const id = singleTokenId(tok, f.obj);
      if (id === undefined || !cands.has(id)) continue;
      n++;
      const r = ranking.indexOf(id);
      if (r === 0) h1++;
      if (r >= 0 && r < 10) h10++;
    }
    if (n > 0) tasks[s.relation.id] = { p1: h1 / n, p10: h10 / n };
  }
  const ms = Object.values(tasks);
  return { tasks, average: { p1: ms.reduce((a, m) => a + m.p1, 0) / Math.max(1, ms.length), p10: ms.reduce((a, m) => a + m.p10, 0) / Math.max(1, ms.length) } };
}

/**
 * A LAMA study prepared for its parts (study.ts runs them): the text, tokenizer, bases and the
 * meta teacher are made here (by the stage; a worker or merge only reads them); per-seed
 * teachers and caches come from stageSeeds, each arm × seed cell from runCell.
 */
export async function prepareLama(c: StudyConfig, out: string, log: (s: string) => void, stage: boolean): Promise<PreparedStudy> {
  const t0 = performance.now();
  const L = c.tasks.lama!;
  const arch = c.arch ?? 'gpt2', fam = modelFamily(arch), masked = fam.kind === 'masked';
  if (c.tokenizer.path && !existsSync(c.tokenizer.path)) throw new Error(`study config: tokenizer.path ${c.tokenizer.path} not found (leave it out to train one under --out)`);
  const rels = lamaStudyRelations(c);
  if (stage) {
    mkdirSync(out, { recursive: true });
    cleanStaleTemps(out);
  } else requireStage(out);
  checkSameStudy(c, out, log);
  if (stage) writeJsonAtomic(join(out, 'study_config.json'), c);
  // 1. Plain text (WikiText for the paper's LAMA students) for pretraining, β·L_LM and LM-KD.
  const lmFile = join(out, 'lm.txt');
  if (!lmTextIntact(lmFile, log)) {
    if (c.lm_data.synthetic_corpus) throw new Error('study config: lm_data.synthetic_corpus does not apply to LAMA studies; give lm_data.files (e.g. WikiText)');
    let text = '';
    for (const f of c.lm_data.files ?? []) text += readLmText(f) + '\n\n';
    if (c.lm_data.max_bytes) text = text.slice(0, c.lm_data.max_bytes);
    if (!text.trim()) throw new Error('study config: lm_data.files give no text');
    writeLmText(lmFile, text);
  }
  // 2. Tokenizer: the one named (a directory, tokenizer.json or vocab.txt), else one trained on the LM text.
  let tok: Tokenizer;
  if (c.tokenizer.path) tok = loadTokenizer(statSync(c.tokenizer.path).isDirectory() ? c.tokenizer.path : dirname(c.tokenizer.path));
  else {
    const tdir = join(out, 'tokenizer');
    if (existsSync(tdir)) tok = loadTokenizer(tdir);
    else {
      const text = readFileSync(lmFile, 'utf8'), vs = c.tokenizer.vocab_size ?? 8000;
      tok = masked ? WordPieceTokenizer.train([text], { vocabSize: vs }) : BPETokenizer.train([text], { vocabSize: vs, specialTokens: ['<|endoftext|>'] });
      tok.save(tdir);
      log(`tokenizer: ${tok.vocabSize} tokens (${tok.type}) → ${tdir}`);
    }
  }
  const enc = { vocabSize: tok.vocabSize, encode: (s: string) => tok.encode(s, { addSpecialTokens: false }) };
  const shard = new TokenFile(buildShards([lmFile], enc, tokenizerKey(tok), join(out, 'lm-tokens'), { eos: masked ? null : tok.eosTokenId ?? null }));
  try {
    return prepareInner(c, out, log, { rels, tok, shard, masked, t0, L });
  } catch (e) { shard.close(); throw e; }
}

function prepareInner(c: StudyConfig, out: string, log: (s: string) => void,
  x: { rels: LamaRelationData[]; tok: Tokenizer; shard: TokenFile; masked: boolean; t0: number; L: NonNullable<StudyConfig['tasks']['lama']> }): PreparedStudy {
  const { rels, tok, shard, masked, L } = x;
  const arch = c.arch ?? 'gpt2';
  // 3. Bases (given, fresh, or pretrained here: MLM for a masked family).
  const studentBase = ensureBase({ who: 'student', spec: c.student, out, tok, arch, seed: 11, log });
  const teacherBase = ensureBase({ who: 'teacher', spec: c.teacher, out, tok, arch, seed: 7, log });
  const teacher0 = loadModel(teacherBase), studentProbe = loadModel(studentBase);
  for (const [who, m, dir] of [['teacher', teacher0, teacherBase], ['student', studentProbe, studentBase]] as const) {
    if (m.vocabSize < tok.vocabSize) throw new Error(`${dir}: the ${who}'s vocab_size ${m.vocabSize} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
  }
  if (teacher0.kind !== studentProbe.kind) throw new Error(`teacher ${teacherBase} is a ${teacher0.kind} LM and student ${studentBase} a ${studentProbe.kind} one: LAMA distillation matches them at the same positions`);
  if (teacher0.vocabSize !== studentProbe.vocabSize) throw new Error(`teacher ${teacherBase} has vocab_size ${teacher0.vocabSize}, student ${studentBase} has ${studentProbe.vocabSize}: distillation matches them token by token`);
  const spec: LamaModelSpec = { kind: studentProbe.kind, maxPositions: Math.min(teacher0.maxPositions, studentProbe.maxPositions), eosTokenId: studentProbe.eosTokenId };
  const vocab = L.vocab ?? 'common';
  const cands = lamaCandidates(tok, studentProbe, vocab, vocab === 'common' ? loadCommonVocab(L.dir ?? defaultLamaDir()) : undefined);
  log(`LAMA ${c.setting === 'meta' ? 'setting 1 (Meta-ICT)' : 'setting 3 (Multitask-ICT)'}: ${rels.length} relations, ${cands.size} candidates (${vocab} vocabulary), k = ${c.k}`);
  const evalBatch = c.eval.batch_size;
  // 4. Teacher: in-context tuned on the meta-train relations (meta, one teacher) or on each seed's train facts (multitask).
  const tuneTeacher = (pools: LamaPool[], dir: string): void => {
    const ti = c.teacher.ict!;
    if (existsSync(join(dir, 'trainer_state.json'))) return;
    const tm = loadModel(teacherBase);
    log(`teacher: ${(tm.numParameters() / 1e6).toFixed(2)}M parameters, in-context tuning for ${ti.steps} steps`);
    const instances = lamaInstances(tok, spec, pools, { k: c.k, demos: true, seed: 1, n: ti.steps * ti.batch_size });
    trainDistill({ student: tm, tokenizer: tok, instances, epochs: 1, batchSize: ti.batch_size, objective: 'ict', out: dir, log,
      distill: { alpha: 1, alphaEnd: 1, alphaSchedule: 'constant', temperature: 1, kl: 'full', topK: 0, beta: 0 },
      train: { lr: ti.lr, warmupSteps: ti.warmup_steps ?? 50, seed: 1, logEvery: 50 } });
    rmCheckpoints(dir);
    tm.dispose();
  };
  const metaData = c.setting === 'meta' ? lamaSeedData(c, rels, 0) : null;
  // Each seed's splits, drawn once (the teacher row, the baseline, the arms and the speed test share them).
  const bySeed = new Map<number, LamaSeedData>();
  const seedData = (s: number): LamaSeedData => {
    if (metaData) return metaData;
    let d = bySeed.get(s);
    if (!d) bySeed.set(s, (d = lamaSeedData(c, rels, s)));
    return d;
  };
  if (metaData?.split) log(`relations: meta-train ${metaData.split.train.join(' ')} | validation ${metaData.split.dev.join(' ')} | test ${metaData.split.test.join(' ')}`);
  let teacherDir = teacherBase;
  if (c.teacher.ict && metaData) { teacherDir = join(out, 'teacher'); tuneTeacher(metaData.pools, teacherDir); }
  const teacher = teacherDir === teacherBase ? teacher0 : loadModel(teacherDir);
  if (teacher !== teacher0) teacher0.dispose();
  // 5. Teacher row (per seed: the demonstrations are drawn by seed) and the prior baseline.
  type SeedEval = Record<string, { tasks: Record<string, Metrics>; average: Metrics }>;
  const tePath = join(out, 'teacher-eval.json');
  const teacherRes: SeedEval = readCachedJson<SeedEval>(tePath, (v) => !!v && typeof v === 'object' && !Array.isArray(v), log) ?? {};
  const perSeedTeachers = c.setting === 'multitask' && !!c.teacher.ict;
  if (!perSeedTeachers) {
    const missing = c.seeds.filter((s) => !teacherRes[String(s)]);
    for (const s of missing) { const e = evalLama(teacher, tok, seedData(s).test, cands, c.k, s, evalBatch); teacherRes[String(s)] = { tasks: e.tasks, average: e.average }; }
    if (missing.length) writeJsonAtomic(tePath, teacherRes);
    for (const k of Object.keys(teacherRes)) if (!c.seeds.map(String).includes(k)) delete teacherRes[k];
    log(`teacher: ${fmtAvg(Object.values(teacherRes).map((r) => r.average))}`);
  }
  const baseline: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
  for (const s of c.seeds) baseline[String(s)] = majorityObjectBaseline(tok, seedData(s).test, cands);
  log(`Most frequent object of the relation's train facts: ${fmtAvg(Object.values(baseline).map((b) => b.average))}`);
  // 6. Arms × seeds: per seed its instances, its teacher (tuned on the seed's facts in the
  // multitask setting) and its teacher cache, made once and shared by the seed's cells.
  const arms = c.arms ?? [...ARMS];
  const d = c.distill;
  const collator = masked ? new MlmCollator(tok) : undefined;
  const wrap = masked && tok.clsTokenId !== undefined && tok.sepTokenId !== undefined;
  type SeedCtx = { sd: LamaSeedData; instances: Instance[]; teacher: LanguageModel; cache: () => TeacherCache };
  const seedCtx = new Map<number, SeedCtx>();
  const forSeed = (seed: number): SeedCtx => {
    const had = seedCtx.get(seed);
    if (had) return had;
    const sd = seedData(seed);
    const instances = lamaInstances(tok, spec, sd.pools, { k: c.k, demos: true, seed, n: c.train.instances });
    let seedTeacher = teacher;
    if (perSeedTeachers) {
      const tdir = join(out, 'teacher-seeds', String(seed));
      tuneTeacher(sd.pools, tdir);
      seedTeacher = loadModel(tdir);
      const te = cached(join(tdir, 'eval.json'), (v) => !!v && typeof v === 'object' && !!(v as { average?: unknown }).average, () => {
        const e = evalLama(seedTeacher, tok, sd.test, cands, c.k, seed, evalBatch);
        return { tasks: e.tasks, average: e.average };
      }, log);
      teacherRes[String(seed)] = te;
      log(`teacher seed ${seed}: ${fmtAvg([te.average])}`);
    }
    let cache: TeacherCache | null = null;
    const t = seedTeacher;
    const ctx: SeedCtx = { sd, instances, teacher: t, cache: () => (cache ??= TeacherCache.ensure(join(out, 'teacher-cache', String(seed)), t, instances, { tau: d.temperature, topK: d.top_k, pad: tok.padTokenId ?? 0, log })) };
    seedCtx.set(seed, ctx);
    return ctx;
  };
  const runCell = (arm: string, seed: number, cellDir: string, resPath: string): CellResult => {
    log(`— ${arm}, seed ${seed}`);
    const sc = forSeed(seed), sd = sc.sd;
    const student = seedStudent(c, studentBase, studentProbe.config, seed);
    const tc = performance.now();
    const W = Math.min(c.lm_data.seq_len, student.maxPositions) - (wrap ? 2 : 0);
    const lm = { loader: new WindowLoader(shard, 0, shard.length, W, seed), batchSize: c.lm_data.batch_size, ...(collator ? { mlm: { collator, cls: tok.clsTokenId, sep: tok.sepTokenId } } : {}) };
    const ft = arm === 'Multitask-FT';
    const stepsPerEpoch = Math.ceil(c.train.instances / c.train.batch_size);
    const run = trainArm(arm, c, {
      common: { student, tokenizer: tok, batchSize: c.train.batch_size, out: join(cellDir, 'run'), log,
        train: { lr: c.train.lr, warmupSteps: c.train.warmup_steps ?? 20, seed, logEvery: 10 },
        select: (c.train.dev_every ?? 1) > 0 ? { every: c.train.dev_every || stepsPerEpoch, score: (m: LanguageModel) => evalLama(m, tok, sd.dev, cands, ft ? 0 : c.k, seed, evalBatch).average.p1 } : undefined },
      instances: sc.instances, lm, teacher: sc.teacher, kl: 'full',
      ftInstances: () => lamaInstances(tok, spec, sd.pools, { k: 0, demos: false, seed, n: c.train.instances }),
      cache: sc.cache,
    });
    const trainS = (performance.now() - tc) / 1000;
    // Multitask-FT is evaluated as it was trained: without demonstrations.
    const e = evalLama(student, tok, sd.test, cands, ft ? 0 : c.k, seed, evalBatch);
    const cell = saveCell(cellDir, resPath, { arm, seed, run, trainS, evalK: ft ? 0 : c.k, tasks: e.tasks, average: e.average }, log);
    student.dispose();
    return cell;
  };
  return {
    cellList: studyCells(c),
    stageSeeds() {
      const cachedArms = arms.some(usesTeacherCache);
      for (const seed of c.seeds) { const sc = forSeed(seed); if (cachedArms) sc.cache(); }
    },
    runCell,
    merge(cells, missingCells) {
      if (perSeedTeachers) for (const seed of c.seeds) forSeed(seed); // each seed's teacher row
      // 7. Results.
      const probeSets = seedData(c.seeds[0]).test;
      const speed = cached(join(out, 'speed.json'), (v) => !!v && typeof (v as { speedup?: unknown }).speedup === 'number', () => measureLamaSpeed(teacher, studentProbe, tok, spec, probeSets, c.k), log);
      const groups: Record<string, string[]> = {};
      for (const s of probeSets) (groups[s.relation.source === 'google_re' ? 'Google-RE' : `T-REx ${s.relation.type}`] ??= []).push(s.relation.id);
      const results = assemble(c, cells, teacherRes, groups, teacher.numParameters(), studentProbe.numParameters(), speed, { "Most frequent object of the relation's train facts": baseline });
      const full = { ...results, lama: { setting: c.setting, relations: rels.map((r) => r.relation.id), ...(metaData?.split ? { split: metaData.split } : {}), vocab, candidates: cands.size, metric: 'P@1 (headline) and P@10, macro-averaged over the test relations' }, missing_cells: missingCells };
      writeJsonAtomic(join(out, 'results.json'), full);
      const report = writeStudyReport(join(out, 'report.html'), c, results, cells);
      log(`study merged in ${((performance.now() - x.t0) / 1000).toFixed(0)} s`);
      return { ...full, report, out };
    },
    dispose() {
      for (const sc of seedCtx.values()) if (sc.teacher !== teacher) sc.teacher.dispose();
      teacher.dispose(); studentProbe.dispose(); shard.close();
    },
  };
}

/** Teacher/student forward throughput on the same LAMA prompts (tokens/s, and the ratio). */
function measureLamaSpeed(teacher: LanguageModel, student: LanguageModel, tok: Tokenizer, spec: LamaModelSpec, sets: readonly LamaEvalSet[], k: number): { teacher_tokens_per_s: number; student_tokens_per_s: number; speedup: number } {
  const pools = sets.map((s) => ({ relation: s.relation, facts: s.demos.length ? s.demos : s.test }));
  const insts: Instance[] = lamaInstances(tok, spec, pools, { k, demos: true, seed: 0, n: 16 });
  const b = makeBatch(insts, tok.padTokenId ?? 0);
  const time = (m: LanguageModel): number => {
    m.eval();
    const run = (): void => { tidy(() => noGrad(() => { forwardBatch(m, b); })); };
    run();
    const t0 = performance.now();
    let reps = 0;
    while (performance.now() - t0 < 1500 || reps < 2) { run(); reps++; }
    return (b.B * b.L * reps) / ((performance.now() - t0) / 1000);
  };
  const ts = time(teacher), ss = time(student);
  return { teacher_tokens_per_s: Math.round(ts), student_tokens_per_s: Math.round(ss), speedup: +(ss / ts).toFixed(2) };
}

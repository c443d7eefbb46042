// `icld study`: every arm × seed of the ICL-distillation comparison, resumable (each finished
// cell's result.json is kept and not recomputed), ending with results.json and report.html.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { loadModel, type LanguageModel } from '../models/index.js';
import { BPETokenizer } from '../tokenizers/index.js';
import { writeSyntheticSuite, syntheticCorpus } from '../data/synthetic.js';
import { loadSplit, availableTasks, readExamples, trainingPool } from '../data/tasks.js';
import { makeTemplate } from '../data/prompts.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { episodePools, trainIct } from '../icl/ict.js';
import { devScorer, sampleInstances, seedData, seedStudent, trainArm, usesTeacherCache } from './study-arms.js';
import { copyPretrain, suiteTokens, trainIctWithCopy } from '../icl/copy-pretrain.js';
import { majorityBaseline, copyNearestBaseline } from '../icl/baselines.js';
import { evaluateIcl, type Metrics } from '../icl/evaluate.js';
import { scoreContinuations } from '../icl/scorer.js';
import { TeacherCache } from './cache.js';
import { writeStudyReport } from './study-report.js';
import { backend } from '../engine/backend/index.js';
import { ARMS, studyCells, type Arm, type CopyPretrainConfig, type StudyConfig } from './study-config.js';
import { tryClaim, workerId, type Lease } from './study-lease.js';
import { assemble, fmtAvg, mapTasks, taskGroups, type CellResult } from './study-results.js';

export { ARMS, readStudyConfig, studyConfigChanges, type Arm, type StudyConfig } from './study-config.js';
export { taskGroups, type CellResult, type SeedRow, type StudyResults } from './study-results.js';
import { ensureBase, checkUserModel } from './bases.js';
import { prepareLama } from './lama-study.js';
import { readLmText } from '../data/text.js';
import { cleanStaleTemps, writeJsonAtomic } from '../io/atomic.js';
import { cached, cellSlot, checkSameStudy, requireStage, saveCell, STAGE, lmTextIntact, readCachedJson, rmCheckpoints, writeLmText, type PreparedStudy } from './study-io.js';


/** What `icld study` runs: everything (default), or one of its parts (--stage teacher, --worker, --merge). */
export type StudyPart = { part: 'all' } | { part: 'stage' } | { part: 'worker'; leaseSeconds?: number; shard?: { i: number; n: number } } | { part: 'merge' };

/** The whole study in one process: the teacher stage, one worker over every cell, then the merge. */
export async function runStudy(c: StudyConfig, out: string, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<object> {
  await runStudyPart(c, out, { part: 'stage' }, log);
  await runStudyPart(c, out, { part: 'worker' }, log);
  return runStudyPart(c, out, { part: 'merge' }, log);
}

/** One part of a study (see StudyPart); workers and merges need the teacher stage to have run. */
export async function runStudyPart(c: StudyConfig, out: string, p: StudyPart, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<object> {
  if (p.part === 'all') return runStudy(c, out, log);
  if (p.part === 'worker') return workStudies([{ c, out, log }], p.leaseSeconds ?? 60, p.shard);
  return withThreads(c, async () => {
    const x = await prepare(c, out, log, p.part === 'stage');
    try {
      if (p.part === 'stage') {
        x.stageSeeds();
        writeJsonAtomic(join(out, STAGE), { finished: new Date().toISOString(), cells: x.cellList.length });
        log(`teacher stage done: ${x.cellList.length} cells to run (icld study --worker / --shard i/N, then --merge)`);
        return { stage: 'teacher', out, cells: x.cellList.length };
      }
      // --merge: the finished cells; the missing ones are listed, not fatal.
      const cells: CellResult[] = [], missing: string[] = [];
      for (const { arm, seed } of x.cellList) {
        const done = cellSlot(out, arm, seed, log).done;
        if (done) cells.push(done); else missing.push(`${arm} seed ${seed}`);
      }
      if (missing.length) log(`merge: ${missing.length} of ${x.cellList.length} cells not finished (left out): ${missing.join(', ')}`);
      const envs = new Map<string, number>();
      for (const cell of cells) { const k = `${cell.threads ?? '?'} thread(s), kernels ${Object.entries(cell.kernels ?? {}).map(([f, v]) => `${f} ${v}`).join(' ') || '?'}`; envs.set(k, (envs.get(k) ?? 0) + 1); }
      if (envs.size > 1) log(`merge: the cells ran in ${envs.size} settings (${[...envs].map(([k, n]) => `${n} with ${k}`).join('; ')}); their numbers may differ in the last bits from one machine's run`);
      return x.merge(cells, missing);
    } finally { x.dispose(); }
  });
}

/** A study a worker serves: its config, --out and log. */
export interface StudyJob { c: StudyConfig; out: string; log: (s: string) => void }

/**
 * --worker over one or more studies (a study and its analyses' sub-studies): claims unfinished
 * cells one at a time under a lease and runs them, until every cell is finished; while other
 * workers hold the last ones it waits, taking over any lease that expires. With a shard (index
 * % n == i over all the studies' cells in order) it runs its cells without leases. A study is
 * loaded only when one of its cells is claimed.
 */
export async function workStudies(jobs: StudyJob[], leaseSeconds: number, shard?: { i: number; n: number }): Promise<object> {
  for (const j of jobs) { requireStage(j.out); checkSameStudy(j.c, j.out, j.log); }
  const mine = jobs.flatMap((j) => studyCells(j.c).map((cell) => ({ j, ...cell }))).filter((_, k) => !shard || k % shard.n === shard.i);
  let ran = 0, first = true;
  for (;;) {
    let held = 0;
    for (const j of jobs) {
      const cells = mine.filter((m) => m.j === j);
      if (!cells.length) continue;
      await withThreads(j.c, async () => {
        let x: PreparedStudy | null = null;
        try {
          for (const { arm, seed } of cells) {
            const { cellDir, resPath, done } = cellSlot(j.out, arm, seed, j.log);
            if (done) { if (first) j.log(`${arm} seed ${seed}: done earlier (kept)`); continue; }
            let lease: Lease | null = null;
            if (!shard) {
              mkdirSync(cellDir, { recursive: true });
              if (!(lease = tryClaim(join(cellDir, 'lease.json'), leaseSeconds))) { held++; continue; }
            }
            try {
              if (lease && cellSlot(j.out, arm, seed, j.log).done) continue; // finished by another worker meanwhile
              x ??= await prepare(j.c, j.out, j.log, false);
              x.runCell(arm, seed, cellDir, resPath); ran++;
            } finally { await lease?.release(); }
          }
        } finally { x?.dispose(); }
      });
    }
    if (!held) break;
    first = false;
    // Held cells: look again every 5 s (lease/3 when shorter): a finished one lets this worker exit.
    await new Promise((r) => setTimeout(r, Math.min(5000, Math.max(100, (leaseSeconds * 1000) / 3))));
  }
  jobs[0].log(`worker ${workerId()}: ran ${ran} cell(s)${shard ? ` of shard ${shard.i}/${shard.n}` : ''}`);
  return { worker: workerId(), ran };
}

async function withThreads<T>(c: StudyConfig, f: () => Promise<T>): Promise<T> {
  const be = backend(), threadsBefore = be.threads();
  if (c.threads) be.setThreads(c.threads);
  try { return await f(); } finally { be.setThreads(threadsBefore); }
}

/** A task or LAMA study prepared for its parts. */
function prepare(c: StudyConfig, out: string, log: (s: string) => void, stage: boolean): Promise<PreparedStudy> {
  return c.tasks.lama ? prepareLama(c, out, log, stage) : prepareTasks(c, out, log, stage);
}

async function prepareTasks(c: StudyConfig, out: string, log: (s: string) => void, stage: boolean): Promise<PreparedStudy> {
  const t0 = performance.now();
  // Inputs are read-only: a tokenizer the config names must exist; one trained here lives under --out.
  for (const who of ['teacher', 'student'] as const) { const p = c[who].path; if (p) checkUserModel(who, p); }
  if (c.tokenizer.path && !existsSync(c.tokenizer.path)) throw new Error(`study config: tokenizer.path ${c.tokenizer.path} not found (leave it out to train one under --out)`);
  if (stage) {
    mkdirSync(out, { recursive: true });
    cleanStaleTemps(out);
  } else requireStage(out);
  checkSameStudy(c, out, log);
  if (stage) writeJsonAtomic(join(out, 'study_config.json'), c);
  // 1. Tasks.
  let taskDir: string, trainTasks: string[], testTasks: string[];
  if (c.tasks.synthetic) {
    taskDir = join(out, 'tasks');
    const sp = writeSyntheticSuite(taskDir, c.tasks.synthetic);
    trainTasks = sp.train; testTasks = sp.test;
  } else ({ dir: taskDir, train: trainTasks, test: testTasks } = folderTasks(c, log));
  const fitTasks = c.setting === 'meta' ? trainTasks : testTasks;
  const dedupe = !c.tasks.synthetic;
  // The one template every prompt of the study is built with (evaluation, tuning, distillation, LM text).
  const template = c.tasks.template ?? {};
  const tpl = makeTemplate(template);
  // 2. Plain text for L_LM / LM-KD, and the tokenizer.
  const lmFile = join(out, 'lm.txt');
  if (!lmTextIntact(lmFile, log)) {
    let text = '';
    if (c.lm_data.synthetic_corpus) for (const s of c.seeds) text += syntheticCorpus(taskDir, trainTasks, s, tpl.ioSep, tpl.demoSep) + '\n\n';
    for (const f of c.lm_data.files ?? []) text += readLmText(f) + '\n\n'; // .txt, or .jsonl of {"text"} documents
    if (c.lm_data.max_bytes) text = text.slice(0, c.lm_data.max_bytes);
    if (!text.trim()) throw new Error('study config: lm_data gives no text (set synthetic_corpus or files)');
    writeLmText(lmFile, text);
  }
  let tok: BPETokenizer;
  const tokPath = c.tokenizer.path ?? join(out, 'tokenizer', 'tokenizer.json');
  if (existsSync(tokPath)) tok = BPETokenizer.fromTokenizerJson(tokPath);
  else {
    const corpus = [readFileSync(lmFile, 'utf8'), ...fitTasks.slice(0, 200).map((t) => syntheticOrTaskText(taskDir, t, tpl.ioSep, tpl.demoSep))];
    tok = BPETokenizer.train(corpus, { vocabSize: c.tokenizer.vocab_size ?? 1000, specialTokens: ['<|endoftext|>'] });
    tok.save(dirname(tokPath));
    log(`tokenizer: ${tok.vocabSize} tokens → ${tokPath}`);
  }
  const shard = new TokenFile(buildShards([lmFile], tok, JSON.stringify(tok.toTokenizerJson()), join(out, 'lm-tokens'), { eos: tok.eosTokenId ?? null }));
  // 3. Base models.
  // A user's model is only read; otherwise OUT/<who>-base, fresh or pretrained here (bases.ts).
  const base = (who: 'teacher' | 'student', spec: StudyConfig['student'], seed: number): string => ensureBase({ who, spec, out, tok, arch: c.arch ?? 'gpt2', seed, log });
  // Optional LM training of a base on copy text (a teacher/student-training option, not the
  // paper's method: see src/icl/copy-pretrain.ts), published as <who>-copy[/<seed>] when finished.
  const copyVocab = (): number[] => suiteTokens(tok, fitTasks.flatMap((t) => trainingPool(taskDir, t)), template);
  const copyStage = (who: string, from: () => LanguageModel, cp: CopyPretrainConfig | undefined, seed: number, dir: string): string | null => {
    if (!cp) return null;
    if (!existsSync(join(dir, 'trainer_state.json'))) {
      const m = from();
      const vocab = copyVocab();
      log(`${who}: copy pretraining for ${cp.steps} steps on strings of ${cp.length} tokens over the suite's ${vocab.length} tokens`);
      copyPretrain({ model: m, tokenizer: tok, vocab, pad: tok.eosTokenId ?? 0, length: cp.length, maxGap: cp.max_gap, batchSize: cp.batch_size, out: dir, log,
        train: { steps: cp.steps, lr: cp.lr, warmupSteps: cp.warmup_steps ?? 50, logEvery: 100, seed } });
      rmCheckpoints(dir);
      m.dispose();
    }
    return dir;
  };
  const studentBase = base('student', c.student, 11);
  // 4. Teacher: its base (given or fresh), optionally copy-pretrained, then in-context tuned on the
  // fitting tasks when "ict" is set.
  const cp = c.teacher.copy_pretrain;
  const teacherPlain = base('teacher', c.teacher, 7);
  const teacherBase = copyStage('teacher', () => loadModel(teacherPlain), cp, 3, join(out, 'teacher-copy')) ?? teacherPlain;
  let teacherDir = teacherBase;
  // In the multitask setting each seed tunes its own teacher (below); a shared one would see every seed's data.
  if (c.teacher.ict && c.setting === 'meta') {
    teacherDir = join(out, 'teacher');
    if (!existsSync(join(teacherDir, 'trainer_state.json'))) {
      const tm = loadModel(teacherBase);
      log(`teacher: ${(tm.numParameters() / 1e6).toFixed(2)}M parameters, in-context tuning for ${c.teacher.ict.steps} steps`);
      const pools = episodePools(taskDir, fitTasks, c.setting, c.k, c.seeds, dedupe);
      const train = { steps: c.teacher.ict.steps, lr: c.teacher.ict.lr, warmupSteps: c.teacher.ict.warmup_steps ?? 50, logEvery: 50, seed: 1, evalEvery: 0 };
      const method = c.eval.method ?? 'direct'; // trained in the order it is evaluated
      if (cp?.mix) {
        if (method !== 'direct') throw new Error('study config: teacher.copy_pretrain.mix needs direct scoring');
        log(`teacher: the copy loss (weight ${cp.mix}) is mixed into in-context tuning`);
        trainIctWithCopy({ model: tm, tokenizer: tok, pools, setting: c.setting, k: c.k, template, batchSize: c.teacher.ict.batch_size, out: teacherDir, log, train,
          copy: { vocab: copyVocab(), length: cp.length, maxGap: cp.max_gap, batchSize: cp.batch_size, weight: cp.mix } });
      } else {
        trainIct({ model: tm, tokenizer: tok, pools, setting: c.setting, k: c.k, demos: true, method, template, batchSize: c.teacher.ict.batch_size, out: teacherDir, log, train });
      }
      rmCheckpoints(teacherDir);
    }
  }
  const teacher = loadModel(teacherDir);
  const studentProbe = loadModel(studentBase);
  // 5. Teacher row.
  for (const [who, dir] of [['teacher', teacherBase], ['student', studentBase]]) {
    const m = who === 'teacher' ? teacher : studentProbe;
    if (m.vocabSize < tok.vocabSize) throw new Error(`${dir}: model vocab_size ${m.vocabSize} is smaller than the tokenizer's ${tok.vocabSize} tokens (${tokPath})`);
  }
  const evalOpts = { taskDir, tasks: testTasks, k: c.k, method: c.eval.method ?? 'direct', template, testLimit: c.eval.test_limit, batchSize: c.eval.batch_size };
  // 5. Teacher row: one entry per seed; seeds added since the last run are evaluated and added.
  type SeedEval = Record<string, { tasks: Record<string, Metrics>; average: Metrics }>;
  const tePath = join(out, 'teacher-eval.json');
  const teacherRes: SeedEval = readCachedJson<SeedEval>(tePath, (v) => !!v && typeof v === 'object' && !Array.isArray(v), log) ?? {};
  const missing = c.seeds.filter((s) => !teacherRes[String(s)]);
  const perSeedTeachers = c.setting === 'multitask' && !!c.teacher.ict; // their rows come from the seed loop
  if (missing.length && !perSeedTeachers) {
    for (const s of missing) { const e = evaluateIcl({ ...evalOpts, model: teacher, tokenizer: tok, seeds: [s] }); teacherRes[String(s)] = { tasks: mapTasks(e.tasks), average: e.average }; }
    writeJsonAtomic(tePath, teacherRes);
  }
  for (const k of Object.keys(teacherRes)) if (!c.seeds.map(String).includes(k)) delete teacherRes[k];
  if (!perSeedTeachers) log(`teacher: ${fmtAvg(Object.values(teacherRes).map((x) => x.average))}`);
  // Model-free baselines on the same test prompts (cheap: recomputed every run).
  const bOpts = { taskDir, tasks: testTasks, k: c.k, seeds: c.seeds, testLimit: c.eval.test_limit };
  const baselines = { 'Majority label of the demonstrations': majorityBaseline(bOpts), 'Copy the nearest demonstration': copyNearestBaseline(bOpts) };
  for (const [name, b] of Object.entries(baselines)) log(`${name}: ${fmtAvg(Object.values(b).map((x) => x.average))}`);
  // 6. Arms × seeds (see study-arms.ts for what each arm trains on). Every seed starts a fresh
  // student from its own random initialisation; a student the user brings (student.path) is the
  // same for every seed. In the multitask setting each seed has its own teacher, in-context tuned
  // on that seed's few-shot data only, so the teacher never sees data its student does not.
  const arms = c.arms ?? [...ARMS];
  const d = c.distill;
  const method = c.eval.method ?? 'direct';
  if (method === 'channel' && d.kl === 'options') throw new Error('study config: distill.kl "options" needs direct scoring (in channel order the answer is the input text); use "full"');
  const maxLength = Math.min(teacher.maxPositions, studentProbe.maxPositions);
  const scp = c.student.path ? undefined : c.student.copy_pretrain;
  // Per-seed inputs shared by the seed's cells (made by the stage; a worker only loads them).
  type SeedCtx = { sd: ReturnType<typeof seedData>; instances: ReturnType<typeof sampleInstances>; teacher: LanguageModel; cache: () => TeacherCache };
  const seedCtx = new Map<number, SeedCtx>();
  const forSeed = (seed: number): SeedCtx => {
    const had = seedCtx.get(seed);
    if (had) return had;
    const sd = seedData(c, taskDir, trainTasks, testTasks, seed, dedupe, arms);
    const instances = sampleInstances(tok, sd.pools, { k: c.k, demos: true, method, template, maxLength, seed, n: c.train.instances });
    let seedTeacher = teacher;
    if (c.setting === 'multitask' && c.teacher.ict) {
      const ti = c.teacher.ict, tdir = join(out, 'teacher-seeds', String(seed));
      if (!existsSync(join(tdir, 'trainer_state.json'))) {
        log(`teacher for seed ${seed}: in-context tuning on this seed's few-shot data for ${ti.steps} steps`);
        trainIct({ model: loadModel(teacherBase), tokenizer: tok, pools: sd.fewShot.train, setting: 'multitask', k: c.k, demos: true, method, template, batchSize: ti.batch_size, out: tdir, log,
          train: { steps: ti.steps, lr: ti.lr, warmupSteps: ti.warmup_steps ?? 50, logEvery: 50, seed: 1, evalEvery: 0 } });
        rmCheckpoints(tdir);
      }
      seedTeacher = loadModel(tdir);
      const te = cached(join(tdir, 'eval.json'), (v) => !!v && typeof v === 'object' && !!(v as { average?: unknown }).average, () => {
        const e = evaluateIcl({ ...evalOpts, method, model: seedTeacher, tokenizer: tok, seeds: [seed] });
        return { tasks: mapTasks(e.tasks), average: e.average };
      }, log);
      teacherRes[String(seed)] = te;
      log(`teacher seed ${seed}: ${fmtAvg([te.average])}`);
    }
    let cache: TeacherCache | null = null;
    const t = seedTeacher;
    const ctx: SeedCtx = { sd, instances, teacher: t, cache: () => (cache ??= TeacherCache.ensure(join(out, 'teacher-cache', String(seed)), t, instances, { tau: d.temperature, topK: d.top_k, pad: tok.eosTokenId ?? 0, log })) };
    seedCtx.set(seed, ctx);
    return ctx;
  };
  // A student of this seed, copy-pretrained first when the config asks (once per seed, kept).
  const studentCopy = (seed: number): string | null => copyStage(`student (seed ${seed})`, () => seedStudent(c, studentBase, studentProbe.config, seed), scp, 1000 + seed, join(out, 'student-copy', String(seed)));
  const runCell = (arm: string, seed: number, cellDir: string, resPath: string): CellResult => {
    log(`— ${arm}, seed ${seed}`);
    const sc = forSeed(seed);
    const copied = studentCopy(seed);
    const student = copied ? loadModel(copied) : seedStudent(c, studentBase, studentProbe.config, seed);
    const select = c.setting === 'multitask' && (c.train.dev_every ?? 1) > 0;
    const tc = performance.now();
    const lm = { loader: new WindowLoader(shard, 0, shard.length, Math.min(c.lm_data.seq_len, student.maxPositions), seed), batchSize: c.lm_data.batch_size };
    const ft = arm === 'Multitask-FT';
    const stepsPerEpoch = Math.ceil(c.train.instances / c.train.batch_size);
    const run = trainArm(arm as Arm, c, {
      common: { student, tokenizer: tok, batchSize: c.train.batch_size, out: join(cellDir, 'run'), log,
        train: { lr: c.train.lr, warmupSteps: c.train.warmup_steps ?? 20, seed, logEvery: 10 },
        select: (select || ft) && (c.train.dev_every ?? 1) > 0 ? { every: c.train.dev_every || stepsPerEpoch, score: devScorer(tok, sc.sd.fewShot, ft ? 0 : c.k, method, c.eval.batch_size, seed, template) } : undefined },
      instances: sc.instances, lm, teacher: sc.teacher, kl: d.kl,
      ftInstances: () => sampleInstances(tok, sc.sd.fewShot.train, { k: 0, demos: false, method, template, maxLength, seed, n: c.train.instances }),
      cache: sc.cache,
    });
    const trainS = (performance.now() - tc) / 1000;
    // Multitask-FT is evaluated as it was trained: without demonstrations.
    const e = evaluateIcl({ ...evalOpts, method, k: ft ? 0 : c.k, model: student, tokenizer: tok, seeds: [seed] });
    const cell = saveCell(cellDir, resPath, { arm, seed, run, trainS, evalK: e.config.k as number, tasks: mapTasks(e.tasks), average: e.average, threads: backend().threads() }, log);
    student.dispose();
    return cell;
  };
  return {
    cellList: studyCells(c),
    stageSeeds() {
      const cachedArms = arms.some(usesTeacherCache);
      for (const seed of c.seeds) {
        const sc = forSeed(seed);
        if (cachedArms) sc.cache();
        studentCopy(seed);
      }
    },
    runCell,
    merge(cells, missing) {
      if (perSeedTeachers) for (const seed of c.seeds) forSeed(seed); // each seed's teacher row
      // 7. Results. (Speed is measured after the cells, so a killed study has its cells saved first.)
      const speed = cached(join(out, 'speed.json'), (v) => !!v && typeof (v as { speedup?: unknown }).speedup === 'number', () => measureSpeedup(teacher, studentProbe, tok, taskDir, testTasks[0], c.k), log);
      const groups = taskGroups(taskDir, testTasks);
      const results = { ...assemble(c, cells, teacherRes, groups, teacher.numParameters(), studentProbe.numParameters(), speed, baselines), missing_cells: missing };
      writeJsonAtomic(join(out, 'results.json'), results);
      const report = writeStudyReport(join(out, 'report.html'), c, results, cells);
      log(`study merged in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      return { ...results, report, out };
    },
    dispose() {
      for (const sc of seedCtx.values()) if (sc.teacher !== teacher) sc.teacher.dispose();
      teacher.dispose(); studentProbe.dispose();
    },
  };
}

/**
 * The training and test tasks of a task-folder study (tasks.dir with a split or explicit lists),
 * as the study runs them: split tasks missing from the folder are skipped (logged), test tasks
 * need a test file. The teacher-data export and the analyses list them the same way.
 */
export function folderTasks(c: StudyConfig, log: (s: string) => void): { dir: string; train: string[]; test: string[] } {
  if (!c.tasks.dir || !(c.tasks.split || c.tasks.test)) throw new Error('study config: tasks needs "synthetic" or "dir" + "split" (or "test" lists)');
  const dir = c.tasks.dir;
  const sp = c.tasks.split ? loadSplit(dir, c.tasks.split) : listedTasks(dir, c.tasks.train ?? [], c.tasks.test ?? []);
  const tr = availableTasks(dir, sp.train), te = availableTasks(dir, sp.test);
  if (tr.missing.length + te.missing.length) log(`split ${c.tasks.split}: skipping tasks not present in ${dir}: ${[...tr.missing, ...te.missing].join(', ')}`);
  return { dir, train: tr.present, test: te.present.filter((t) => existsSync(join(dir, t, `${t}_test.jsonl`))) };
}

/** Explicit task lists (tasks.train / tasks.test): every task named must be there. */
function listedTasks(dir: string, train: string[], test: string[]): { train: string[]; test: string[] } {
  for (const t of [...train, ...test]) if (!existsSync(join(dir, t))) throw new Error(`study config: task '${t}' of tasks.train/tasks.test not found under ${dir}`);
  for (const t of test) if (!existsSync(join(dir, t, `${t}_test.jsonl`))) throw new Error(`study config: task '${t}' of tasks.test has no test file ${join(dir, t, `${t}_test.jsonl`)}`);
  return { train, test };
}

function syntheticOrTaskText(dir: string, task: string, ioSep: string, demoSep: string): string {
  const f = join(dir, task, `${task}_16_100_train.jsonl`);
  if (!existsSync(f)) return '';
  return readExamples(f).map((e) => `${e.input}${ioSep}${e.output}`).join(demoSep);
}

/** Teacher/student inference speed on the same scoring workload (tokens/s ratio). */
function measureSpeedup(teacher: LanguageModel, student: LanguageModel, tok: BPETokenizer, taskDir: string, task: string, k: number): { teacher_tokens_per_s: number; student_tokens_per_s: number; speedup: number } {
  const lines = readExamples(join(taskDir, task, `${task}_test.jsonl`)).slice(0, 8);
  const items = lines.map((e) => {
    const ids = tok.encode(`${e.input}\n`.repeat(Math.max(1, k / 2)));
    const cont = tok.encode(e.output);
    const n = Math.min(teacher.maxPositions, student.maxPositions) - cont.length;
    return { prefix: [], suffix: ids.slice(-n).concat(cont), contStart: Math.min(ids.length, n) };
  });
  const time = (m: LanguageModel): number => {
    scoreContinuations(m, items);
    const t0 = performance.now();
    let reps = 0;
    while (performance.now() - t0 < 1500 || reps < 2) { scoreContinuations(m, items); reps++; }
    const toks = items.reduce((s, it) => s + it.suffix.length, 0) * reps;
    return toks / ((performance.now() - t0) / 1000);
  };
  const ts = time(teacher), ss = time(student);
  return { teacher_tokens_per_s: Math.round(ts), student_tokens_per_s: Math.round(ss), speedup: +(ss / ts).toFixed(2) };
}

// `icld study`: every arm × seed of the ICL-distillation comparison, resumable (each finished
// cell's result.json is kept and not recomputed), ending with results.json and report.html.

import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { GPT2, gpt2Config, type GPT2Config } from '../models/gpt2.js';
import { BPETokenizer } from '../tokenizers/index.js';
import { writeSyntheticSuite, syntheticCorpus, type SyntheticOptions } from '../data/synthetic.js';
import { loadSplit, availableTasks, readExamples } from '../data/tasks.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { episodePools, IctSampler, trainIct, type Setting } from '../icl/ict.js';
import { evaluateIcl, aggregate, type Metrics } from '../icl/evaluate.js';
import { scoreContinuations } from '../icl/scorer.js';
import { trainDistill, type DistillConfig } from './distill.js';
import { TeacherCache } from './cache.js';
import { writeStudyReport } from './study-report.js';
import type { Method } from '../data/prompts.js';
import { backend } from '../engine/backend/index.js';
// Config validation (readStudyConfig).
import { GPT2_MODEL_KEYS, GPT2_LIMITS } from '../models/gpt2.js';
import { readJsonStrict, checkSchema, type Schema } from '../io/json.js';

export const ARMS = ['Raw', 'Multitask-FT', 'ICT', 'ICL-D', 'ICL-D (LM)', 'LM-KD'] as const;
export type Arm = (typeof ARMS)[number];

export interface StudyConfig {
  name: string;
  tasks: { synthetic?: Partial<SyntheticOptions>; dir?: string; split?: string };
  setting: Setting;
  k: number;
  seeds: number[];
  eval: { method?: Method; test_limit?: number; batch_size?: number };
  tokenizer: { path?: string; vocab_size?: number };
  lm_data: { synthetic_corpus?: boolean; files?: string[]; max_bytes?: number; seq_len: number; batch_size: number };
  teacher: { path?: string; model?: Partial<GPT2Config>; ict: { steps: number; lr: number; batch_size: number; warmup_steps?: number } | null };
  student: { path?: string; model?: Partial<GPT2Config> };
  train: { instances: number; epochs: number; batch_size: number; lr: number; warmup_steps?: number };
  distill: { alpha: number; alpha_end?: number; alpha_schedule?: 'constant' | 'linear'; temperature: number; kl: 'full' | 'options'; top_k: number; beta: number; lm_kd_steps: number };
  arms?: Arm[];
  /** Overrides applied unless --full (a quick version of the study). */
  quick?: Partial<StudyConfig>;
  notes?: string;
  /** Kernel threads for this study (tiny models run faster, and reproducibly, on 1). */
  threads?: number;
  /** Expected run time in minutes (documentation). */
  expected_minutes?: number;
}

const sInt = (min: number, max?: number): Schema => ({ t: 'int', min, max });
const sNum = (o: { min?: number; max?: number; gt?: number; lt?: number }): Schema => ({ t: 'number', ...o });
const sPath: Schema = { t: 'string', nonEmpty: true };
const sModel: Schema = { t: 'object', keys: { ...GPT2_MODEL_KEYS } };

/** Every key of a study config (StudyConfig above), with types and ranges; `required` lists apply to the full config, not to "quick". */
const STUDY_SCHEMA: Schema = {
  t: 'object', required: ['name', 'tasks', 'setting', 'k', 'seeds', 'teacher', 'student', 'train', 'distill', 'lm_data'],
  keys: {
    name: { t: 'string', nonEmpty: true },
    tasks: {
      t: 'object', keys: {
        synthetic: {
          t: 'object', keys: {
            trainTasks: sInt(1), testTasks: sInt(1), wordsPerTask: sInt(1), labelsPerTask: sInt(2), testSize: sInt(1),
            seeds: { t: 'array', of: sInt(0), minLen: 1, unique: true }, seed: sInt(0), context: sInt(0), vocabulary: sInt(1),
            symbols: { t: 'bool' }, outputSpace: { t: 'bool' },
          },
        },
        dir: sPath, split: sPath,
      },
    },
    setting: { t: 'string', enum: ['meta', 'multitask'] },
    k: sInt(0, 100_000),
    seeds: { t: 'array', of: sInt(0), minLen: 1, unique: true },
    eval: { t: 'object', keys: { method: { t: 'string', enum: ['direct', 'channel'] }, test_limit: sInt(1), batch_size: sInt(1) } },
    tokenizer: { t: 'object', keys: { path: sPath, vocab_size: sInt(257, GPT2_LIMITS.vocab_size) } },
    lm_data: {
      t: 'object', required: ['seq_len', 'batch_size'], keys: {
        synthetic_corpus: { t: 'bool' }, files: { t: 'array', of: sPath }, max_bytes: sInt(1), seq_len: sInt(1), batch_size: sInt(1),
      },
    },
    teacher: {
      t: 'object', keys: {
        path: sPath, model: sModel,
        ict: {
          t: 'oneOf', what: 'null or an object {steps, lr, batch_size, warmup_steps}', of: [{ t: 'null' }, {
            t: 'object', required: ['steps', 'lr', 'batch_size'],
            keys: { steps: sInt(1), lr: sNum({ gt: 0 }), batch_size: sInt(1), warmup_steps: sInt(0) },
          }],
        },
      },
    },
    student: { t: 'object', keys: { path: sPath, model: sModel } },
    train: {
      t: 'object', required: ['instances', 'epochs', 'batch_size', 'lr'],
      keys: { instances: sInt(1), epochs: sInt(1), batch_size: sInt(1), lr: sNum({ gt: 0 }), warmup_steps: sInt(0) },
    },
    distill: {
      t: 'object', required: ['alpha', 'temperature', 'kl', 'top_k', 'beta', 'lm_kd_steps'],
      keys: {
        alpha: sNum({ min: 0, max: 1 }), alpha_end: sNum({ min: 0, max: 1 }), alpha_schedule: { t: 'string', enum: ['constant', 'linear'] },
        temperature: sNum({ gt: 0 }), kl: { t: 'string', enum: ['full', 'options'] }, top_k: sInt(0), beta: sNum({ min: 0 }), lm_kd_steps: sInt(0),
      },
    },
    arms: { t: 'array', of: { t: 'string', enum: ARMS }, minLen: 1, unique: true },
    quick: { t: 'any' }, // checked below against this schema without its required keys
    notes: { t: 'string' },
    threads: sInt(1, 1024),
    expected_minutes: sNum({ min: 0 }),
  },
};

/** The schema with no required keys at any depth (what a "quick" override may hold), and no nested "quick". */
function partialSchema(s: Schema): Schema {
  if (s.t === 'object') {
    const keys: Record<string, Schema> = {};
    for (const [k, v] of Object.entries(s.keys)) if (k !== 'quick') keys[k] = partialSchema(v);
    return { ...s, keys, required: [] };
  }
  if (s.t === 'oneOf') return { ...s, of: s.of.map(partialSchema) };
  return s;
}

/**
 * Read and check a study config: unknown keys anywhere (a typo names the closest valid key), wrong
 * types or ranges, and missing sections are one-line errors naming the file. Unless `full`, the
 * "quick" overrides (checked the same way) are merged in and the result checked again.
 */
export function readStudyConfig(path: string, full: boolean): StudyConfig {
  const raw = readJsonStrict(path, 'study config', 16 << 20);
  checkSchema(raw, STUDY_SCHEMA, path, '');
  let c = raw as StudyConfig;
  if (c.quick !== undefined) checkSchema(c.quick, partialSchema(STUDY_SCHEMA), path, 'quick');
  if (!full && c.quick) {
    c = deepMerge(c, c.quick) as StudyConfig;
    checkSchema(c, STUDY_SCHEMA, `${path} (with its "quick" overrides)`, '');
  }
  const t = c.tasks;
  if (!t.synthetic && !(t.dir && t.split)) throw new Error(`${path}: tasks needs "synthetic" or both "dir" and "split"`);
  if (t.synthetic && (t.dir || t.split)) throw new Error(`${path}: tasks has both "synthetic" and "dir"/"split"; give one`);
  for (const who of ['teacher', 'student'] as const) {
    if (c[who].path && c[who].model) throw new Error(`${path}: ${who} has both "path" and "model"; give one`);
    const m = c[who].model;
    if (m && m.n_embd !== undefined && m.n_head !== undefined && m.n_embd % m.n_head !== 0) throw new Error(`${path}: ${who}.model.n_embd ${m.n_embd} is not divisible by ${who}.model.n_head ${m.n_head}`);
  }
  // Relative paths in the config are relative to the config file.
  const base = dirname(resolve(path));
  const abs = (p: string | undefined): string | undefined => (p ? resolve(base, p) : p);
  c.tasks.dir = abs(c.tasks.dir); c.tokenizer ??= {}; c.tokenizer.path = abs(c.tokenizer.path); c.teacher.path = abs(c.teacher.path); c.student.path = abs(c.student.path);
  c.eval ??= {};
  if (c.lm_data.files) c.lm_data.files = c.lm_data.files.map((f) => abs(f)!);
  return c;
}

/** b over a: objects merge key by key (recursively), anything else in b replaces a. */
function deepMerge(a: unknown, b: unknown): unknown {
  if (b === undefined) return a;
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
    for (const [k, v] of Object.entries(b as Record<string, unknown>)) out[k] = deepMerge(out[k], v);
    return out;
  }
  return b;
}

export interface CellResult { arm: string; seed: number; tasks: Record<string, Metrics>; average: Metrics; train_s: number; steps: number; epoch_s: number | null; curve: [number, number][]; }

const slug = (s: string): string => s.replace(/[^A-Za-z0-9]+/g, '-').replace(/-+$/, '').toLowerCase();

export async function runStudy(c: StudyConfig, out: string, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<object> {
  const be = backend(), threadsBefore = be.threads();
  if (c.threads) be.setThreads(c.threads);
  try { return await runStudyInner(c, out, log); } finally { be.setThreads(threadsBefore); }
}

async function runStudyInner(c: StudyConfig, out: string, log: (s: string) => void): Promise<object> {
  const t0 = performance.now();
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'study_config.json'), JSON.stringify(c, null, 2));
  // 1. Tasks.
  let taskDir: string, trainTasks: string[], testTasks: string[];
  if (c.tasks.synthetic) {
    taskDir = join(out, 'tasks');
    const sp = writeSyntheticSuite(taskDir, c.tasks.synthetic);
    trainTasks = sp.train; testTasks = sp.test;
  } else {
    if (!c.tasks.dir || !c.tasks.split) throw new Error('study config: tasks needs "synthetic" or "dir" + "split"');
    taskDir = c.tasks.dir;
    const sp = loadSplit(taskDir, c.tasks.split);
    const tr = availableTasks(taskDir, sp.train), te = availableTasks(taskDir, sp.test);
    if (tr.missing.length + te.missing.length) log(`split ${c.tasks.split}: skipping tasks not present in ${taskDir}: ${[...tr.missing, ...te.missing].join(', ')}`);
    trainTasks = tr.present;
    testTasks = te.present.filter((t) => existsSync(join(taskDir, t, `${t}_test.jsonl`)));
  }
  const fitTasks = c.setting === 'meta' ? trainTasks : testTasks;
  const dedupe = !c.tasks.synthetic;
  // 2. Plain text for L_LM / LM-KD, and the tokenizer.
  const lmFile = join(out, 'lm.txt');
  if (!existsSync(lmFile)) {
    let text = '';
    if (c.lm_data.synthetic_corpus) for (const s of c.seeds) text += syntheticCorpus(taskDir, trainTasks, s) + '\n\n';
    for (const f of c.lm_data.files ?? []) text += readFileSync(f, 'utf8') + '\n\n';
    if (c.lm_data.max_bytes) text = text.slice(0, c.lm_data.max_bytes);
    if (!text.trim()) throw new Error('study config: lm_data gives no text (set synthetic_corpus or files)');
    writeFileSync(lmFile, text);
  }
  let tok: BPETokenizer;
  const tokPath = c.tokenizer.path ?? join(out, 'tokenizer', 'tokenizer.json');
  if (existsSync(tokPath)) tok = BPETokenizer.fromTokenizerJson(tokPath);
  else {
    const corpus = [readFileSync(lmFile, 'utf8'), ...fitTasks.slice(0, 200).map((t) => syntheticOrTaskText(taskDir, t))];
    tok = BPETokenizer.train(corpus, { vocabSize: c.tokenizer.vocab_size ?? 1000, specialTokens: ['<|endoftext|>'] });
    tok.save(dirname(tokPath));
    log(`tokenizer: ${tok.vocabSize} tokens → ${tokPath}`);
  }
  const shard = new TokenFile(buildShards([lmFile], tok, JSON.stringify(tok.toTokenizerJson()), join(out, 'lm-tokens'), { eos: tok.eosTokenId ?? null }));
  // 3. Base models.
  const base = (who: 'teacher' | 'student', spec: StudyConfig['student'], seed: number): string => {
    if (spec.path) return spec.path;
    const dir = join(out, `${who}-base`);
    if (!existsSync(join(dir, 'model.safetensors'))) {
      const m = new GPT2(gpt2Config({ resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, ...spec.model, vocab_size: tok.vocabSize, bos_token_id: tok.eosTokenId ?? 0, eos_token_id: tok.eosTokenId ?? 0 }), seed);
      m.savePretrained(dir); tok.save(dir);
    }
    return dir;
  };
  const studentBase = base('student', c.student, 11);
  // 4. Teacher: its base (given or fresh), in-context tuned on the fitting tasks when "ict" is set.
  const teacherBase = base('teacher', c.teacher, 7);
  let teacherDir = teacherBase;
  if (c.teacher.ict) {
    teacherDir = join(out, 'teacher');
    if (!existsSync(join(teacherDir, 'trainer_state.json'))) {
      const tm = GPT2.fromPretrained(teacherBase);
      log(`teacher: ${(tm.numParameters() / 1e6).toFixed(2)}M parameters, in-context tuning for ${c.teacher.ict.steps} steps`);
      trainIct({ model: tm, tokenizer: tok, pools: episodePools(taskDir, fitTasks, c.setting, c.k, c.seeds, dedupe), setting: c.setting, k: c.k, demos: true,
        method: 'direct', batchSize: c.teacher.ict.batch_size, out: teacherDir, log,
        train: { steps: c.teacher.ict.steps, lr: c.teacher.ict.lr, warmupSteps: c.teacher.ict.warmup_steps ?? 50, logEvery: 50, seed: 1, evalEvery: 0 } });
      rmCheckpoints(teacherDir);
    }
  }
  const teacher = GPT2.fromPretrained(teacherDir);
  const studentProbe = GPT2.fromPretrained(studentBase);
  const evalOpts = { taskDir, tasks: testTasks, k: c.k, method: c.eval.method ?? 'direct', testLimit: c.eval.test_limit, batchSize: c.eval.batch_size };
  // 5. Teacher row.
  const teacherRes = cached(join(out, 'teacher-eval.json'), () => {
    const r: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
    for (const s of c.seeds) { const e = evaluateIcl({ ...evalOpts, model: teacher, tokenizer: tok, seeds: [s] }); r[String(s)] = { tasks: mapTasks(e.tasks), average: e.average }; }
    log(`teacher: ${fmtAvg(Object.values(r).map((x) => x.average))}`);
    return r;
  });
  const speed = cached(join(out, 'speed.json'), () => measureSpeedup(teacher, studentProbe, tok, taskDir, testTasks[0], c.k));
  // 6. Arms × seeds.
  const arms = c.arms ?? [...ARMS];
  const d = c.distill;
  const cells: CellResult[] = [];
  for (const seed of c.seeds) {
    const pools = episodePools(taskDir, fitTasks, c.setting, c.k, [seed], dedupe);
    const sample = (demos: boolean): ReturnType<IctSampler['next']>[] => {
      const s = new IctSampler(tok, { pools, k: c.k, demos, method: 'direct', maxLength: Math.min(teacher.config.n_positions, studentProbe.config.n_positions), seed });
      return Array.from({ length: c.train.instances }, () => s.next());
    };
    const instances = sample(true);
    let cache: TeacherCache | null = null;
    for (const arm of arms) {
      const cellDir = join(out, 'cells', slug(arm), String(seed));
      const resPath = join(cellDir, 'result.json');
      if (existsSync(resPath)) { cells.push(JSON.parse(readFileSync(resPath, 'utf8')) as CellResult); log(`${arm} seed ${seed}: done earlier (kept)`); continue; }
      log(`— ${arm}, seed ${seed}`);
      const student = GPT2.fromPretrained(studentBase);
      const tc = performance.now();
      let steps = 0, curve: [number, number][] = [], epochS: number | null = null;
      const lm = { loader: new WindowLoader(shard, 0, shard.length, Math.min(c.lm_data.seq_len, student.config.n_positions), seed), batchSize: c.lm_data.batch_size };
      const common = { student, tokenizer: tok, epochs: c.train.epochs, batchSize: c.train.batch_size, out: join(cellDir, 'run'), log,
        train: { lr: c.train.lr, warmupSteps: c.train.warmup_steps ?? 20, seed, logEvery: 10 } };
      const dcfg = (alpha: number, beta: number): DistillConfig => ({ alpha, alphaEnd: alpha === 1 ? 1 : (d.alpha_end ?? alpha), alphaSchedule: d.alpha_schedule ?? 'constant', temperature: d.temperature, kl: d.kl, topK: d.top_k, beta });
      if (arm !== 'Raw') {
        let st;
        if (arm === 'Multitask-FT') st = trainDistill({ ...common, instances: sample(false), distill: dcfg(1, 0), objective: 'ict' });
        else if (arm === 'ICT') st = trainDistill({ ...common, instances, distill: dcfg(1, 0), objective: 'ict' });
        else if (arm === 'LM-KD') st = trainDistill({ ...common, distill: { ...dcfg(d.alpha, 0), kl: 'full' }, objective: 'lm-kd', teacher, lm, lmSteps: d.lm_kd_steps }); // plain text has no options: full-vocabulary KL
        else {
          cache ??= TeacherCache.ensure(join(out, 'teacher-cache', String(seed)), teacher, instances, { tau: d.temperature, topK: d.top_k, pad: tok.eosTokenId ?? 0, log });
          st = trainDistill({ ...common, instances, distill: dcfg(d.alpha, arm === 'ICL-D (LM)' ? d.beta : 0), objective: 'ict', cache, lm: arm === 'ICL-D (LM)' ? lm : undefined });
        }
        steps = st.global_step;
        curve = st.log_history.map((e) => [e.step, e.loss]);
        if (arm !== 'LM-KD') epochS = st.elapsed_s / c.train.epochs;
        rmCheckpoints(join(cellDir, 'run'));
      }
      const trainS = (performance.now() - tc) / 1000;
      const e = evaluateIcl({ ...evalOpts, model: student, tokenizer: tok, seeds: [seed] });
      const cell: CellResult = { arm, seed, tasks: mapTasks(e.tasks), average: e.average, train_s: +trainS.toFixed(1), steps, epoch_s: epochS === null ? null : +epochS.toFixed(2), curve };
      mkdirSync(cellDir, { recursive: true });
      writeFileSync(resPath, JSON.stringify(cell, null, 2));
      log(`${arm} seed ${seed}: ${fmtAvg([e.average])} (${trainS.toFixed(0)} s)`);
      cells.push(cell);
      student.dispose();
    }
  }
  // 7. Results.
  const groups = taskGroups(taskDir, testTasks);
  const results = assemble(c, cells, teacherRes, groups, teacher.numParameters(), studentProbe.numParameters(), speed);
  writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2));
  const report = writeStudyReport(join(out, 'report.html'), c, results, cells);
  log(`study finished in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return { ...results, report, out };
}

function syntheticOrTaskText(dir: string, task: string): string {
  const f = join(dir, task, `${task}_16_100_train.jsonl`);
  if (!existsSync(f)) return '';
  return readExamples(f).map((e) => `${e.input}\n${e.output}`).join('\n\n');
}

/** Drop intermediate checkpoints of a finished run (the final model stays in the run dir). */
function rmCheckpoints(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) if (/^checkpoint-\d+$/.test(e)) rmSync(join(dir, e), { recursive: true, force: true });
}

function cached<T>(path: string, f: () => T): T {
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as T;
  const v = f();
  writeFileSync(path, JSON.stringify(v, null, 2));
  return v;
}

function mapTasks(tasks: Record<string, { mean: Metrics }>): Record<string, Metrics> {
  const o: Record<string, Metrics> = {};
  for (const [t, v] of Object.entries(tasks)) o[t] = v.mean;
  return o;
}

const fmtAvg = (ms: Metrics[]): string => Object.entries(aggregate(ms).mean).map(([k, v]) => `${k} ${(100 * v).toFixed(1)}`).join('  ');

/** Column groups: classification (one option set for the whole task) vs multiple-choice. */
export function taskGroups(dir: string, tasks: string[]): Record<string, string[]> {
  const g: Record<string, string[]> = {};
  for (const t of tasks) {
    const ex = readExamples(join(dir, t, `${t}_test.jsonl`)).slice(0, 50);
    const fixed = ex.every((e) => e.options.join('\u0000') === ex[0].options.join('\u0000'));
    const name = ex[0]?.options.length ? (fixed ? 'classification' : 'multiple-choice') : 'generation';
    (g[name] ??= []).push(t);
  }
  return g;
}

/** Teacher/student inference speed on the same scoring workload (tokens/s ratio). */
function measureSpeedup(teacher: GPT2, student: GPT2, tok: BPETokenizer, taskDir: string, task: string, k: number): { teacher_tokens_per_s: number; student_tokens_per_s: number; speedup: number } {
  const lines = readExamples(join(taskDir, task, `${task}_test.jsonl`)).slice(0, 8);
  const items = lines.map((e) => {
    const ids = tok.encode(`${e.input}\n`.repeat(Math.max(1, k / 2)));
    const cont = tok.encode(e.output);
    const n = Math.min(teacher.config.n_positions, student.config.n_positions) - cont.length;
    return { prefix: [], suffix: ids.slice(-n).concat(cont), contStart: Math.min(ids.length, n) };
  });
  const time = (m: GPT2): number => {
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

/** One seed's average metrics plus per-group averages. */
export type SeedRow = Record<string, number | Record<string, Metrics>> & { groups: Record<string, Metrics> };

export interface StudyResults {
  arms: Record<string, { seeds: Record<string, SeedRow>; mean: Metrics; std: Metrics; groups: Record<string, { mean: Metrics; std: Metrics }>; retained: number | null }>;
  teacher: { seeds: Record<string, SeedRow>; mean: Metrics; std: Metrics; groups: Record<string, { mean: Metrics; std: Metrics }> };
  student_params: number;
  teacher_params: number;
  compression: number;
  speedup: number;
  speed: { teacher_tokens_per_s: number; student_tokens_per_s: number };
  groups: Record<string, string[]>;
  epoch_cost: { ict_s: number | null; icl_d_cached_s: number | null; ratio: number | null };
}

function groupAverages(tasks: Record<string, Metrics>, groups: Record<string, string[]>): Record<string, Metrics> {
  const out: Record<string, Metrics> = {};
  for (const [g, ts] of Object.entries(groups)) out[g] = aggregateMean(ts.map((t) => tasks[t]).filter(Boolean));
  return out;
}
function aggregateMean(ms: Metrics[]): Metrics { return aggregate(ms).mean; }

function assemble(c: StudyConfig, cells: CellResult[], teacherRes: Record<string, { tasks: Record<string, Metrics>; average: Metrics }>, groups: Record<string, string[]>,
  tParams: number, sParams: number, speed: { teacher_tokens_per_s: number; student_tokens_per_s: number; speedup: number }): StudyResults {
  const main = (m: Metrics): number => m.accuracy ?? m.em ?? NaN;
  const seedRows = (per: Record<string, { tasks: Record<string, Metrics>; average: Metrics }>) => {
    const seeds: Record<string, SeedRow> = {};
    for (const [s, r] of Object.entries(per)) seeds[s] = { ...r.average, groups: groupAverages(r.tasks, groups) } as SeedRow;
    const agg = aggregate(Object.values(per).map((r) => r.average));
    const g: Record<string, { mean: Metrics; std: Metrics }> = {};
    for (const name of Object.keys(groups)) g[name] = aggregate(Object.values(seeds).map((s) => s.groups[name]));
    return { seeds, ...agg, groups: g };
  };
  const teacher = seedRows(teacherRes);
  const arms: StudyResults['arms'] = {};
  for (const arm of c.arms ?? ARMS) {
    const per: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
    for (const cell of cells.filter((x) => x.arm === arm)) per[String(cell.seed)] = cell;
    if (Object.keys(per).length === 0) continue;
    const r = seedRows(per);
    arms[arm] = { ...r, retained: main(teacher.mean) > 0 ? +(main(r.mean) / main(teacher.mean)).toFixed(4) : null };
  }
  const epoch = (arm: string): number | null => { const xs = cells.filter((x) => x.arm === arm && x.epoch_s !== null).map((x) => x.epoch_s!); return xs.length ? xs.reduce((a, b) => a + b) / xs.length : null; };
  const ict = epoch('ICT'), icld = epoch('ICL-D');
  return {
    arms, teacher: { seeds: teacher.seeds, mean: teacher.mean, std: teacher.std, groups: teacher.groups },
    student_params: sParams, teacher_params: tParams, compression: +(tParams / sParams).toFixed(2),
    speedup: speed.speedup, speed: { teacher_tokens_per_s: speed.teacher_tokens_per_s, student_tokens_per_s: speed.student_tokens_per_s }, groups,
    epoch_cost: { ict_s: ict, icl_d_cached_s: icld, ratio: ict && icld ? +(icld / ict).toFixed(3) : null },
  };
}

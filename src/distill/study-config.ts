// The study config: its type, the schema every key is checked against (unknown keys name the
// closest valid one), the quick overrides, and which changes invalidate a study directory.

import { resolve, dirname } from 'node:path';
import { modelConfig, modelFamily } from '../models/index.js';

type ModelKeys = Record<string, unknown>;
import { checkSyntheticOptions, defaultSyntheticOptions, type SyntheticOptions } from '../data/synthetic.js';
import type { Setting } from '../icl/ict.js';
import type { Method, Template } from '../data/prompts.js';
import { readJsonFile, checkSchema, type Schema } from '../io/json.js';
import type { BasePretrain } from './bases.js';

/** ICT (LM): the student's ICT + β·L_LM^hard with no teacher (separates the LM text's effect from distillation's). */
export const ARMS = ['Raw', 'Multitask-FT', 'ICT', 'ICT (LM)', 'ICL-D', 'ICL-D (LM)', 'LM-KD'] as const;
export type Arm = (typeof ARMS)[number];

/** A study's arm × seed cells in their fixed order (seed-major): the index --shard partitions. */
export const studyCells = (c: StudyConfig): { arm: string; seed: number }[] => c.seeds.flatMap((seed) => (c.arms ?? [...ARMS]).map((arm) => ({ arm, seed })));

export interface CopyPretrainConfig {
  steps: number; lr: number; batch_size: number; length: number; max_gap?: number; warmup_steps?: number;
  /** > 0 (teacher only): loss = L_ICT + mix · L_copy during the teacher's ICT. */
  mix?: number;
}

export interface StudyConfig {
  name: string;
  tasks: {
    synthetic?: Partial<SyntheticOptions>; dir?: string; split?: string;
    /** Explicit task lists under dir (instead of a split): the Multitask setting's target tasks. */
    train?: string[]; test?: string[];
    /** LAMA (the paper's settings 1 and 3): see LamaTasks and src/distill/lama-study.ts. */
    lama?: LamaTasks;
    /** Students train only on these of the fitting tasks (the task-count ablation; the teacher keeps all). */
    train_subset?: string[];
    /** Students train on this fraction of each fitting task's examples, drawn by seed (the example-fraction ablation). */
    train_fraction?: number;
    /** How every prompt of the study is laid out (src/data/prompts.ts Template; default "\n" / "\n\n"). */
    template?: Partial<Omit<Template, 'verbalizers'>>;
  };
  /** Model family (config.json model_type) of the models the study builds; default gpt2. */
  arch?: 'gpt2' | 'bert';
  /** Headline metric: "paper" = macro-F1 for classification tasks, accuracy for the others (MetaICL's choice). */
  metric?: 'paper' | 'accuracy' | 'macro_f1';
  setting: Setting;
  k: number;
  seeds: number[];
  eval: { method?: Method; test_limit?: number; batch_size?: number };
  tokenizer: { path?: string; vocab_size?: number };
  lm_data: { synthetic_corpus?: boolean; files?: string[]; max_bytes?: number; seq_len: number; batch_size: number };
  teacher: {
    path?: string; model?: ModelKeys; pretrain?: BasePretrain; ict: { steps: number; lr: number; batch_size: number; warmup_steps?: number } | null;
    /** Teacher-training option (not the paper's method): LM training on "string, gap, string again" copy text over the suite's tokens before ICT. */
    copy_pretrain?: CopyPretrainConfig;
  };
  /** copy_pretrain: the same LM training on copy text for each seed's student (as the paper's students are pretrained LMs). */
  student: { path?: string; model?: ModelKeys; pretrain?: BasePretrain; copy_pretrain?: CopyPretrainConfig };
  /**
   * few_shot_train / few_shot_dev: the target tasks' few-shot data per seed (default 32 + 32, the
   * paper's; Multitask-ICT and Multitask-FT train on it); dev_every: steps between validation
   * scores for model selection in the multitask setting (0 = off; default: once per epoch).
   */
  train: { instances: number; epochs: number; batch_size: number; lr: number; warmup_steps?: number; few_shot_train?: number; few_shot_dev?: number; dev_every?: number };
  /** α(t) goes from alpha_start to alpha_end (default 0) linearly (default) or stays at alpha_start ('constant'). */
  distill: { alpha_start: number; alpha_end?: number; alpha_schedule?: 'constant' | 'linear'; temperature: number; kl: 'full' | 'options'; top_k: number; beta: number; lm_kd_steps: number };
  arms?: Arm[];
  /** Overrides applied unless --full (a quick version of the study). */
  quick?: Partial<StudyConfig>;
  notes?: string;
  /** Kernel threads for this study (tiny models run faster, and reproducibly, on 1). */
  threads?: number;
  /** Expected run time in minutes (documentation). */
  expected_minutes?: number;
  /** The paper's analyses, run as sub-studies after the main one (src/distill/analyses.ts). */
  analyses?: AnalysesConfig;
}

/**
 * LAMA as the study's tasks. meta (setting 1): the relations split into meta-train / validation /
 * test relations (`meta_split`, default 30 / 5 / 6 of the 41 T-REx relations, drawn with
 * `split_seed`); teacher and students are tuned on the meta-train relations' train facts
 * (TREx_train_dev, disjoint from the test facts) and tested on the test relations' LAMA facts.
 * multitask (setting 3): every relation; per seed, `test_fraction` (0.6) of each relation's LAMA
 * facts held out for test, train.few_shot_train (32) + few_shot_dev (32) drawn from the rest.
 */
export interface LamaTasks {
  /** A folder laid out like data/lama/ (default: the shipped one). */
  dir?: string;
  /** Relation ids (default: the 41 T-REx relations). */
  relations?: string[];
  /** Candidate set at evaluation: LAMA's common vocabulary (default) or the whole vocabulary. */
  vocab?: 'common' | 'full';
  /** Test facts per relation at most (default all). */
  test_limit?: number;
  /** Facts per validation relation / per relation's dev set scored for model selection (default 50). */
  dev_limit?: number;
  /** meta: train facts per meta-train relation at most (default all). */
  train_limit?: number;
  split_seed?: number;
  meta_split?: [number, number, number];
  test_fraction?: number;
}

export interface AnalysesSize { name: string; model?: ModelKeys; path?: string }
export interface AnalysesConfig {
  /** Arms each sub-study runs (default ICT and ICL-D). */
  arms?: Arm[];
  /** Seeds of the sub-studies (default the study's seeds). */
  seeds?: number[];
  student_sizes?: AnalysesSize[];
  teacher_sizes?: AnalysesSize[];
  /** Fractions of each meta-training task's examples (e.g. 0.125, 0.25, 0.5, 1). */
  meta_task_fraction?: number[];
  /** Numbers of meta-training tasks, each with `sets` random task sets (drawn with `seed`). */
  meta_task_count?: { counts: number[]; sets?: number; seed?: number };
}

const sInt = (min: number, max?: number): Schema => ({ t: 'int', min, max });
const sNum = (o: { min?: number; max?: number; gt?: number; lt?: number }): Schema => ({ t: 'number', ...o });
const sPath: Schema = { t: 'string', nonEmpty: true };
/** A fresh model's keys: checked against the chosen arch's family after the schema (see readStudyConfig). */
const sModel: Schema = { t: 'object', keys: {}, open: true };
/** Pretraining a base model here (teacher.pretrain / student.pretrain, see bases.ts). */
const sPretrain: Schema = {
  t: 'object', required: ['files', 'steps', 'batch_size', 'seq_len', 'lr'],
  keys: { files: { t: 'array', of: sPath, minLen: 1 }, max_bytes: sInt(1), steps: sInt(1), batch_size: sInt(1), seq_len: sInt(1), lr: sNum({ gt: 0 }), warmup_steps: sInt(0), mlm_probability: sNum({ gt: 0, lt: 1 }), whole_word_mask: { t: 'bool' } },
};
const sTaskList: Schema = { t: 'array', of: sPath, minLen: 1, unique: true };
const sCopy = {
  t: 'object', required: ['steps', 'lr', 'batch_size', 'length'],
  keys: { steps: sInt(1), lr: sNum({ gt: 0 }), batch_size: sInt(1), length: sInt(2, 4096), max_gap: sInt(1, 4096), warmup_steps: sInt(0), mix: sNum({ min: 0 }) } as Record<string, Schema>,
} as const satisfies Schema;

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
            symbols: { t: 'bool' }, outputSpace: { t: 'bool' }, balanced: { t: 'bool' },
          },
        },
        dir: sPath, split: sPath,
        train_subset: { t: 'array', of: sPath, minLen: 1, unique: true }, train_fraction: sNum({ gt: 0, max: 1 }),
        train: sTaskList, test: sTaskList,
        lama: {
          t: 'object', keys: {
            dir: sPath, relations: { t: 'array', of: sPath, minLen: 1, unique: true }, vocab: { t: 'string', enum: ['common', 'full'] },
            test_limit: sInt(1), dev_limit: sInt(1), train_limit: sInt(2), split_seed: sInt(0),
            meta_split: { t: 'tuple', of: [sInt(1), sInt(1), sInt(1)] }, test_fraction: sNum({ gt: 0, lt: 1 }),
          },
        },
        template: { t: 'object', keys: { instruction: { t: 'string' }, inputPrefix: { t: 'string' }, outputPrefix: { t: 'string' }, ioSep: { t: 'string' }, demoSep: { t: 'string' } } },
      },
    },
    setting: { t: 'string', enum: ['meta', 'multitask'] },
    arch: { t: 'string', enum: ['gpt2', 'bert'] },
    metric: { t: 'string', enum: ['paper', 'accuracy', 'macro_f1'] },
    k: sInt(0, 100_000),
    seeds: { t: 'array', of: sInt(0), minLen: 1, unique: true },
    eval: { t: 'object', keys: { method: { t: 'string', enum: ['direct', 'channel'] }, test_limit: sInt(1), batch_size: sInt(1) } },
    tokenizer: { t: 'object', keys: { path: sPath, vocab_size: sInt(257, 4_194_304) } },
    lm_data: {
      t: 'object', required: ['seq_len', 'batch_size'], keys: {
        synthetic_corpus: { t: 'bool' }, files: { t: 'array', of: sPath }, max_bytes: sInt(1), seq_len: sInt(1), batch_size: sInt(1),
      },
    },
    teacher: {
      t: 'object', keys: {
        path: sPath, model: sModel,
        pretrain: sPretrain,
        ict: {
          t: 'oneOf', what: 'null or an object {steps, lr, batch_size, warmup_steps}', of: [{ t: 'null' }, {
            t: 'object', required: ['steps', 'lr', 'batch_size'],
            keys: { steps: sInt(1), lr: sNum({ gt: 0 }), batch_size: sInt(1), warmup_steps: sInt(0) },
          }],
        },
        copy_pretrain: sCopy,
      },
    },
    student: { t: 'object', keys: { path: sPath, model: sModel, pretrain: sPretrain, copy_pretrain: { ...sCopy, keys: Object.fromEntries(Object.entries(sCopy.keys).filter(([k]) => k !== 'mix')) } } },
    train: {
      t: 'object', required: ['instances', 'epochs', 'batch_size', 'lr'],
      keys: { instances: sInt(1), epochs: sInt(1), batch_size: sInt(1), lr: sNum({ gt: 0 }), warmup_steps: sInt(0), few_shot_train: sInt(2), few_shot_dev: sInt(1), dev_every: sInt(0) },
    },
    distill: {
      t: 'object', required: ['alpha_start', 'temperature', 'kl', 'top_k', 'beta', 'lm_kd_steps'],
      keys: {
        alpha_start: sNum({ min: 0, max: 1 }), alpha_end: sNum({ min: 0, max: 1 }), alpha_schedule: { t: 'string', enum: ['constant', 'linear'] },
        temperature: sNum({ gt: 0 }), kl: { t: 'string', enum: ['full', 'options'] }, top_k: sInt(0), beta: sNum({ min: 0 }), lm_kd_steps: sInt(0),
      },
    },
    arms: { t: 'array', of: { t: 'string', enum: ARMS }, minLen: 1, unique: true },
    quick: { t: 'any' }, // checked below against this schema without its required keys
    notes: { t: 'string' },
    threads: sInt(1, 1024),
    expected_minutes: sNum({ min: 0 }),
    analyses: {
      t: 'object', keys: {
        arms: { t: 'array', of: { t: 'string', enum: ARMS }, minLen: 1, unique: true },
        seeds: { t: 'array', of: sInt(0), minLen: 1, unique: true },
        student_sizes: { t: 'array', minLen: 1, of: { t: 'object', required: ['name'], keys: { name: { t: 'string', nonEmpty: true }, model: sModel, path: sPath } } },
        teacher_sizes: { t: 'array', minLen: 1, of: { t: 'object', required: ['name'], keys: { name: { t: 'string', nonEmpty: true }, model: sModel, path: sPath } } },
        meta_task_fraction: { t: 'array', of: sNum({ gt: 0, max: 1 }), minLen: 1, unique: true },
        meta_task_count: { t: 'object', required: ['counts'], keys: { counts: { t: 'array', of: sInt(1), minLen: 1, unique: true }, sets: sInt(1, 1000), seed: sInt(0) } },
      },
    },
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
  const raw = readJsonFile(path, 'study config', 16 << 20);
  for (const [where, sec] of [['distill', (raw as { distill?: unknown })?.distill], ['quick.distill', (raw as { quick?: { distill?: unknown } })?.quick?.distill]] as const) {
    if (sec && typeof sec === 'object' && 'alpha' in sec) throw new Error(`${path}: ${where}.alpha is now ${where}.alpha_start (α(t) goes from alpha_start to alpha_end, default 0, linearly unless alpha_schedule is "constant")`);
  }
  checkSchema(raw, STUDY_SCHEMA, path, '');
  let c = raw as StudyConfig;
  if (c.quick !== undefined) checkSchema(c.quick, partialSchema(STUDY_SCHEMA), path, 'quick');
  if (!full && c.quick) {
    c = deepMerge(c, c.quick) as StudyConfig;
    checkSchema(c, STUDY_SCHEMA, `${path} (with its "quick" overrides)`, '');
  }
  if (c.eval?.method === 'channel' && c.distill.kl === 'options') throw new Error(`${path}: distill.kl "options" needs direct scoring (in channel order the answer is the input text); use "full"`);
  const t = c.tasks;
  if (c.arch === 'bert' && !t.lama) throw new Error(`${path}: arch "bert" (a masked LM) needs tasks.lama: the CrossFit-style tasks are scored as continuations by a causal LM`);
  if (t.lama) checkLamaTasks(c, path);
  else checkTaskSource(c, path);
  if (t.synthetic) {
    try { checkSyntheticOptions({ ...defaultSyntheticOptions, ...t.synthetic }); } catch (e) { throw new Error(`${path}: tasks.synthetic: ${(e as Error).message.replace(/^synthetic suite: /, "")}`); }
  }
  for (const who of ['teacher', 'student'] as const) {
    if (c[who].path && c[who].model) throw new Error(`${path}: ${who} has both "path" and "model"; give one`);
    if (c[who].path && c[who].pretrain) throw new Error(`${path}: ${who} has both "path" and "pretrain" (a model you bring is only read); give one`);
  }
  const family = modelFamily(c.arch ?? 'gpt2', `${path}: arch`);
  const models: [string, ModelKeys | undefined][] = [['teacher.model', c.teacher.model], ['student.model', c.student.model],
    ...(c.analyses?.student_sizes ?? []).map((z, i): [string, ModelKeys | undefined] => [`analyses.student_sizes[${i}].model`, z.model]),
    ...(c.analyses?.teacher_sizes ?? []).map((z, i): [string, ModelKeys | undefined] => [`analyses.teacher_sizes[${i}].model`, z.model])];
  for (const [where, m] of models) {
    if (!m) continue;
    checkSchema(m, { t: 'object', keys: { ...family.modelKeys } }, path, where);
    const { bos_token_id: _b, eos_token_id: _e, ...shape } = m;
    modelConfig(family.modelType, { ...shape, vocab_size: typeof m.vocab_size === 'number' ? m.vocab_size : 257 }, path, `${where}.`);
  }
  // Relative paths in the config are relative to the config file.
  const base = dirname(resolve(path));
  const abs = (p: string | undefined): string | undefined => (p ? resolve(base, p) : p);
  c.tasks.dir = abs(c.tasks.dir);
  if (c.tasks.lama) c.tasks.lama.dir = abs(c.tasks.lama.dir); c.tokenizer ??= {}; c.tokenizer.path = abs(c.tokenizer.path); c.teacher.path = abs(c.teacher.path); c.student.path = abs(c.student.path);
  c.eval ??= {};
  for (const key of ['student_sizes', 'teacher_sizes'] as const) for (const z of c.analyses?.[key] ?? []) {
    if (!!z.path === !!z.model) throw new Error(`${path}: analyses.${key} entry "${z.name}" needs exactly one of "path" and "model"`);
    z.path = abs(z.path);
  }
  if (c.lm_data.files) c.lm_data.files = c.lm_data.files.map((f) => abs(f)!);
  for (const who of ['teacher', 'student'] as const) { const p = c[who].pretrain; if (p) p.files = p.files.map((f) => abs(f)!); }
  return c;
}

/** tasks.lama excludes the other task sources and the options only they have. */
function checkLamaTasks(c: StudyConfig, path: string): void {
  const t = c.tasks;
  const other = (['synthetic', 'dir', 'split', 'train', 'test', 'train_subset', 'train_fraction', 'template'] as const).filter((k) => t[k] !== undefined);
  if (other.length) throw new Error(`${path}: tasks has "lama" and ${other.map((k) => `"${k}"`).join(', ')}; LAMA studies take their relations, facts and templates from tasks.lama`);
  if (c.eval.method === 'channel') throw new Error(`${path}: eval.method "channel" does not apply to LAMA (the object is predicted from the filled template)`);
  if (c.distill.kl === 'options') throw new Error(`${path}: distill.kl "options" does not apply to LAMA (the candidates are a vocabulary); use "full"`);
  if (c.analyses) throw new Error(`${path}: analyses are not supported for LAMA studies`);
  if (c.teacher.copy_pretrain || c.student.copy_pretrain) throw new Error(`${path}: copy_pretrain is not supported for LAMA studies`);
}

/** tasks: "synthetic", or "dir" with either a MetaICL "split" or explicit "train"/"test" lists (train needed for meta). */
function checkTaskSource(c: StudyConfig, path: string): void {
  const t = c.tasks, lists = !!(t.train || t.test);
  if (t.synthetic && (t.dir || t.split || lists)) throw new Error(`${path}: tasks has both "synthetic" and "dir"/"split"; give one`);
  if (t.synthetic) return;
  if (!t.dir) throw new Error(`${path}: tasks needs "synthetic" or both "dir" and "split" (or "dir" with "train"/"test" task lists)`);
  if (t.split && lists) throw new Error(`${path}: tasks has both "split" and "train"/"test" lists; give one`);
  if (!t.split && !t.test) throw new Error(`${path}: tasks needs "split" or a "test" list of tasks under ${t.dir}`);
  if (!t.split && c.setting === 'meta' && !t.train) throw new Error(`${path}: setting "meta" needs a tasks.train list (the meta-training tasks)`);
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


/**
 * Keys whose change cannot alter any finished cell: labels and documentation, and which arms run
 * (each arm's cells are independent, so adding or dropping arms only adds or hides cells), and
 * the analyses (they run in their own sub-study directories).
 */
const STUDY_FREE_KEYS = ['name', 'notes', 'expected_minutes', 'quick', 'arms', 'analyses'];

function flatten(v: unknown, prefix: string, out: Map<string, string>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(v));
}

/**
 * Refuse to resume into a study directory made with a config that would give different
 * results. Seeds may be added (only the new seeds' cells run) when nothing shared depends on
 * them; with lm_data.synthetic_corpus (the LM text and so the tokenizer are built from every
 * seed's data) or the multitask setting (teacher episodes come from the seeds' files), a
 * different seed list changes the shared teacher and tokenizer, so it is refused too.
 */
export function studyConfigChanges(old: StudyConfig, c: StudyConfig): string[] {
  const a = new Map<string, string>(), b = new Map<string, string>();
  flatten(old, '', a); flatten(c, '', b);
  const changes: string[] = [];
  const seedsShared = !!c.lm_data.synthetic_corpus || c.setting === 'multitask';
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    if (STUDY_FREE_KEYS.some((f) => k === f || k.startsWith(`${f}.`)) || a.get(k) === b.get(k)) continue;
    if (k === 'seeds' && !seedsShared && Array.isArray(old.seeds) && old.seeds.every((s) => c.seeds.includes(s))) continue;
    changes.push(`${k} ${a.get(k) ?? '(unset)'} → ${b.get(k) ?? '(unset)'}`);
  }
  return changes;
}
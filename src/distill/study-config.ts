// The study config: its type, the schema every key is checked against (unknown keys name the
// closest valid one), the quick overrides, and which changes invalidate a study directory.

import { resolve, dirname } from 'node:path';
import { GPT2_MODEL_KEYS, GPT2_LIMITS, type GPT2Config } from '../models/gpt2.js';
import { checkSyntheticOptions, defaultSyntheticOptions, type SyntheticOptions } from '../data/synthetic.js';
import type { Setting } from '../icl/ict.js';
import type { Method, Template } from '../data/prompts.js';
import { readJsonFile, checkSchema, type Schema } from '../io/json.js';

export const ARMS = ['Raw', 'Multitask-FT', 'ICT', 'ICL-D', 'ICL-D (LM)', 'LM-KD'] as const;
export type Arm = (typeof ARMS)[number];

export interface CopyPretrainConfig {
  steps: number; lr: number; batch_size: number; length: number; max_gap?: number; warmup_steps?: number;
  /** > 0 (teacher only): loss = L_ICT + mix · L_copy during the teacher's ICT. */
  mix?: number;
}

export interface StudyConfig {
  name: string;
  /** template: how every prompt of the study is laid out (src/data/prompts.ts Template; default "\n" / "\n\n"). */
  tasks: { synthetic?: Partial<SyntheticOptions>; dir?: string; split?: string; template?: Partial<Omit<Template, 'verbalizers'>> };
  setting: Setting;
  k: number;
  seeds: number[];
  eval: { method?: Method; test_limit?: number; batch_size?: number };
  tokenizer: { path?: string; vocab_size?: number };
  lm_data: { synthetic_corpus?: boolean; files?: string[]; max_bytes?: number; seq_len: number; batch_size: number };
  teacher: {
    path?: string; model?: Partial<GPT2Config>; ict: { steps: number; lr: number; batch_size: number; warmup_steps?: number } | null;
    /** Teacher-training option (not the paper's method): LM training on "string, gap, string again" copy text over the suite's tokens before ICT. */
    copy_pretrain?: CopyPretrainConfig;
  };
  /** copy_pretrain: the same LM training on copy text for the student's base (as the paper's students are pretrained LMs). */
  student: { path?: string; model?: Partial<GPT2Config>; copy_pretrain?: CopyPretrainConfig };
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
        template: { t: 'object', keys: { instruction: { t: 'string' }, inputPrefix: { t: 'string' }, outputPrefix: { t: 'string' }, ioSep: { t: 'string' }, demoSep: { t: 'string' } } },
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
        copy_pretrain: sCopy,
      },
    },
    student: { t: 'object', keys: { path: sPath, model: sModel, copy_pretrain: { ...sCopy, keys: Object.fromEntries(Object.entries(sCopy.keys).filter(([k]) => k !== 'mix')) } } },
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
  const raw = readJsonFile(path, 'study config', 16 << 20);
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
  if (t.synthetic) {
    try { checkSyntheticOptions({ ...defaultSyntheticOptions, ...t.synthetic }); } catch (e) { throw new Error(`${path}: tasks.synthetic: ${(e as Error).message.replace(/^synthetic suite: /, "")}`); }
  }
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


/**
 * Keys whose change cannot alter any finished cell: labels and documentation, and which arms run
 * (each arm's cells are independent, so adding or dropping arms only adds or hides cells).
 */
const STUDY_FREE_KEYS = ['name', 'notes', 'expected_minutes', 'quick', 'arms'];

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
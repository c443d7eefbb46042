// Few-shot task data in the MetaICL / CrossFit jsonl format: {"task","input","output","options"}.
// Layout of a task directory (as in tasks/crossfit/):
//   DIR/<task>/<task>_16_<seed>_train.jsonl, DIR/<task>/<task>_16_<seed>_dev.jsonl, DIR/<task>/<task>_test.jsonl
//   DIR/_config/<split>.json = {"train": [...], "test": [...]}

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { jsonlRecords, readJsonFile, readUserFile } from '../io/json.js';

export interface Example {
  task: string;
  input: string;
  output: string;
  /** Candidate answers; empty for generative tasks. */
  options: string[];
}

/** Largest task file we read (the biggest shipped one is well under a megabyte). */
export const MAX_TASK_FILE_BYTES = 1 << 30;

const oneLine = (v: unknown): string => {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
};

/**
 * Read a jsonl file of examples. Every non-blank line must be a JSON object with string "input"
 * and "output" and an "options" list of distinct strings: empty for open-answer (generative)
 * tasks, else containing the output. A file with no examples is an error. Every error is one
 * line naming FILE:LINE.
 */
export function readExamples(path: string): Example[] {
  const out: Example[] = [];
  for (const { value: o, at } of jsonlRecords(readUserFile(path, 'task file', MAX_TASK_FILE_BYTES), path)) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${at}: expected a JSON object {"task","input","output","options"}, got ${oneLine(o)}`);
    const r = o as Record<string, unknown>;
    if (typeof r.input !== 'string') throw new Error(`${at}: expected "input" to be a string, got ${oneLine(r.input)}`);
    if (typeof r.output !== 'string') throw new Error(`${at}: expected "output" to be a string, got ${oneLine(r.output)}`);
    if (r.task !== undefined && typeof r.task !== 'string') throw new Error(`${at}: expected "task" to be a string, got ${oneLine(r.task)}`);
    if (!Object.prototype.hasOwnProperty.call(r, 'options')) throw new Error(`${at}: missing "options" (a list of candidate answers; [] for open-answer tasks)`);
    const opts = r.options;
    if (!Array.isArray(opts)) throw new Error(`${at}: expected "options" to be a list of strings ([] for open-answer tasks), got ${oneLine(opts)}`);
    const seen = new Set<string>();
    opts.forEach((x, j) => {
      if (typeof x !== 'string') throw new Error(`${at}: expected options[${j}] to be a string, got ${oneLine(x)}`);
      if (seen.has(x)) throw new Error(`${at}: option ${oneLine(x)} appears twice`);
      seen.add(x);
    });
    const options = opts as string[];
    if (options.length > 0 && !seen.has(r.output)) throw new Error(`${at}: output ${oneLine(r.output)} is not one of the options`);
    out.push({ task: typeof r.task === 'string' ? r.task : '', input: r.input, output: r.output, options });
  }
  if (out.length === 0) throw new Error(`${path}: has no examples (empty task file)`);
  return out;
}

export interface TaskData { task: string; train: Example[]; test: Example[]; }

function trainFile(dir: string, task: string, k: number, seed: number): string {
  const exact = join(dir, task, `${task}_${k}_${seed}_train.jsonl`);
  if (existsSync(exact)) return exact;
  return join(dir, task, `${task}_16_${seed}_train.jsonl`);
}

/**
 * The k-shot training examples of a task for one seed (the first k lines of the seed's train
 * file, in file order) and its test set.
 */
export function loadTask(dir: string, task: string, k: number, seed: number, opts: { testLimit?: number } = {}): TaskData {
  if (!existsSync(join(dir, task))) throw new Error(`task '${task}' not found under ${dir}`);
  const tf = trainFile(dir, task, k, seed);
  const all = readExamples(tf);
  if (all.length < k) throw new Error(`${tf}: has ${all.length} examples, --k ${k} needs at least ${k}`);
  const testPath = join(dir, task, `${task}_test.jsonl`);
  let test = readExamples(testPath);
  if (opts.testLimit && opts.testLimit > 0) test = test.slice(0, opts.testLimit);
  return { task, train: all.slice(0, k), test };
}

/**
 * Every example available for training on a task: all seeds' train and dev files, deduplicated
 * unless `dedupe` is false (the synthetic suite repeats examples by design).
 */
export function trainingPool(dir: string, task: string, dedupe = true): Example[] {
  const tdir = join(dir, task);
  if (!existsSync(tdir)) throw new Error(`task '${task}' not found under ${dir}`);
  const seen = new Set<string>();
  const out: Example[] = [];
  for (const f of readdirSync(tdir).sort()) {
    if (!/_(train|dev)\.jsonl$/.test(f)) continue;
    for (const e of readExamples(join(tdir, f))) {
      const key = `${e.input}\u0000${e.output}`;
      if (dedupe && seen.has(key)) continue;
      seen.add(key); out.push(e);
    }
  }
  if (out.length === 0) throw new Error(`task '${task}' under ${dir} has no *_train.jsonl or *_dev.jsonl files`);
  return out;
}

export interface SplitConfig { train: string[]; test: string[]; [k: string]: string[]; }

export function loadSplit(dir: string, name: string): SplitConfig {
  const p = join(dir, '_config', `${name}.json`);
  if (!existsSync(p)) throw new Error(`split '${name}' not found: ${p}`);
  const s = readJsonFile(p, 'split file') as SplitConfig;
  if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new Error(`${p}: expected {"train": [...], "test": [...]}`);
  for (const [k, v] of Object.entries(s)) {
    if (!Array.isArray(v) || !v.every((t) => typeof t === 'string')) throw new Error(`${p}: "${k}" must be a list of task names`);
  }
  if (!Array.isArray(s.train) || !Array.isArray(s.test)) throw new Error(`${p}: expected {"train": [...], "test": [...]}`);
  return s;
}

/** Tasks of a directory (subfolders not starting with '_'). */
export function listTasks(dir: string): string[] {
  if (!existsSync(dir)) throw new Error(`task directory not found: ${dir}`);
  return readdirSync(dir).filter((n) => !n.startsWith('_') && statSync(join(dir, n)).isDirectory()).sort();
}

/** Tasks of a split that actually exist in `dir` (MetaICL splits name a few tasks not shipped). */
export function availableTasks(dir: string, tasks: string[]): { present: string[]; missing: string[] } {
  const present: string[] = [], missing: string[] = [];
  for (const t of tasks) (existsSync(join(dir, t)) ? present : missing).push(t);
  return { present, missing };
}

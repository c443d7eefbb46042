// Few-shot task data in the MetaICL / CrossFit jsonl format: {"task","input","output","options"}.
// Layout of a task directory (as in tasks/crossfit/):
//   DIR/<task>/<task>_16_<seed>_train.jsonl, DIR/<task>/<task>_16_<seed>_dev.jsonl, DIR/<task>/<task>_test.jsonl
//   DIR/_config/<split>.json = {"train": [...], "test": [...]}

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface Example {
  task: string;
  input: string;
  output: string;
  /** Candidate answers; empty for generative tasks. */
  options: string[];
}

/** Read a jsonl file of examples; errors name the file and line. */
export function readExamples(path: string): Example[] {
  if (!existsSync(path)) throw new Error(`task file not found: ${path}`);
  const out: Example[] = [];
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let o: unknown;
    try { o = JSON.parse(line); } catch (e) { throw new Error(`${path}:${i + 1}: invalid JSON (${(e as Error).message})`); }
    const r = o as Partial<Example>;
    if (!r || typeof r !== 'object' || typeof r.input !== 'string' || (typeof r.output !== 'string' && !Array.isArray(r.output))) {
      throw new Error(`${path}:${i + 1}: expected {"task","input","output","options"} with string input and output`);
    }
    const options = Array.isArray(r.options) ? r.options.map(String) : [];
    const output = Array.isArray(r.output) ? String(r.output[0]) : r.output;
    if (options.length > 0 && !options.includes(output)) throw new Error(`${path}:${i + 1}: output ${JSON.stringify(output)} is not one of the options`);
    out.push({ task: typeof r.task === 'string' ? r.task : '', input: r.input, output, options });
  });
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
  const s = JSON.parse(readFileSync(p, 'utf8')) as SplitConfig;
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

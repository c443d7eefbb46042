// A synthetic few-shot task suite whose answers can only be read off the demonstrations:
// every task is a fresh random mapping from a handful of nonce words to label words, so a model
// that has not seen the task can only answer by finding the query word among the
// demonstrations and copying its label (an induction-style skill: see src/icl/copy-pretrain.ts).
// Written in the CrossFit/MetaICL layout so every pipeline reads it like real data.
//
// It cannot be gamed by label statistics: within each task every label is mapped to the same
// number of key words, and every file (train, dev, test) cycles through shuffles of all the
// task's words, so labels are exactly balanced in the test set and in any demonstration set that
// is a multiple of wordsPerTask long: predicting the majority label of the demonstrations scores
// chance (1 / labelsPerTask).

import { mkdirSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { cleanStaleTemps, writeFileAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { join } from 'node:path';
import { Rng } from '../engine/rng.js';
import type { Example } from './tasks.js';

export interface SyntheticOptions {
  trainTasks: number;
  testTasks: number;
  /** Words per task (each maps to one label). */
  wordsPerTask: number;
  /** Labels per task (options). */
  labelsPerTask: number;
  /** Test examples per task. */
  testSize: number;
  seeds: number[];
  seed: number;
  /** Distractor words around the key word in each input (0 = the input is the word). */
  context: number;
  /** Size of the shared key-word vocabulary. Small enough that every word appears in many tasks
   * with different labels, so no word→label association can be memorised across tasks. */
  vocabulary: number;
  /** Key words are single capital letters (one byte-level token each; vocabulary ≤ 26) instead of nonce words. */
  symbols: boolean;
  /** Outputs and options start with a space (" red"): with the template ioSep "" a demonstration is
   * "Q red", so answering is the classic two-token induction pattern [Q, ␣red] … [Q] → ␣red. */
  outputSpace: boolean;
  /** true (default): every label gets wordsPerTask / labelsPerTask words and every file cycles
   * through shuffles of the words. false: the earlier suite (labels after the first L words drawn
   * at random, test examples drawn at random) — gameable by the majority label; kept only so old
   * results can be reproduced. */
  balanced: boolean;
}

export const defaultSyntheticOptions: SyntheticOptions = {
  trainTasks: 256, testTasks: 8, wordsPerTask: 8, labelsPerTask: 4, testSize: 64, seeds: [100, 13, 21, 42, 87], seed: 1, context: 0, vocabulary: 40, symbols: false, outputSpace: false, balanced: true,
};

const ONSETS = ['b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'z'];
const VOWELS = ['a', 'e', 'i', 'o', 'u'];
export const SYNTHETIC_LABELS = ['red', 'blue', 'green', 'gold', 'gray', 'pink', 'cyan', 'lime'];
const LABELS = SYNTHETIC_LABELS;

/**
 * The compact prompt template for a suite written with symbols + outputSpace: a demonstration is
 * "K red" and the prompt "K red\nJ lime\n…Q", so each key and label is one token and answering is
 * the two-token induction pattern. (The default "\n" / "\n\n" template was measured to stay at
 * chance on this suite after a short copy pretraining.)
 */
export const COMPACT_TEMPLATE = { ioSep: '', demoSep: '\n' } as const;

/** One-line error for options that cannot give a balanced suite. */
export function checkSyntheticOptions(o: SyntheticOptions): void {
  const bad = (m: string): never => { throw new Error(`synthetic suite: ${m}`); };
  if (o.labelsPerTask < 2 || o.labelsPerTask > LABELS.length) bad(`labelsPerTask must be 2..${LABELS.length}, got ${o.labelsPerTask}`);
  if (o.wordsPerTask > o.vocabulary) bad(`wordsPerTask ${o.wordsPerTask} exceeds the vocabulary of ${o.vocabulary}`);
  if (o.symbols && o.vocabulary > 26) bad(`symbols allow a vocabulary of at most 26, got ${o.vocabulary}`);
  if (!o.balanced) return;
  if (o.wordsPerTask % o.labelsPerTask !== 0) bad(`wordsPerTask ${o.wordsPerTask} must be a multiple of labelsPerTask ${o.labelsPerTask} (every label gets the same number of words)`);
  if (16 % o.wordsPerTask !== 0) bad(`wordsPerTask ${o.wordsPerTask} must divide 16 (the 16-example train/dev files are balanced)`);
}

function nonceWords(rng: Rng, n: number): string[] {
  const out = new Set<string>();
  while (out.size < n) out.add(ONSETS[rng.int(ONSETS.length)] + VOWELS[rng.int(5)] + ONSETS[rng.int(ONSETS.length)] + VOWELS[rng.int(5)]);
  return [...out];
}

/**
 * n examples: shuffles of the task's words one after another, so every word (and label) occurs
 * exactly n / words.length times when n is a multiple of words.length (at most one apart
 * otherwise); `random` draws each word independently instead (the unbalanced earlier suite).
 */
function taskExamples(name: string, words: string[], labels: string[], mapping: Map<string, string>, n: number, rng: Rng, fillers: string[], context: number, random = false): Example[] {
  const seq: string[] = [];
  if (!random) while (seq.length < n) seq.push(...rng.shuffle(words.slice()));
  else for (let i = 0; i < n; i++) seq.push(words[rng.int(words.length)]);
  return seq.slice(0, n).map((w) => {
    let input = w;
    if (context > 0) {
      const parts = Array.from({ length: context }, () => fillers[rng.int(fillers.length)]);
      parts.splice(rng.int(context + 1), 0, w);
      input = parts.join(' ');
    }
    return { task: name, input, output: mapping.get(w)!, options: labels.slice() };
  });
}

/** Write the suite to `dir` (idempotent for the same options). Returns the split config. */
export function writeSyntheticSuite(dir: string, opts: Partial<SyntheticOptions> = {}): { train: string[]; test: string[] } {
  const o = { ...defaultSyntheticOptions, ...opts };
  const stamp = JSON.stringify(o);
  const splitPath = join(dir, '_config', 'synthetic.json');
  if (existsSync(splitPath) && existsSync(join(dir, '_config', 'options.json')) && readFileSync(join(dir, '_config', 'options.json'), 'utf8') === stamp) {
    return readJsonFile(splitPath, 'synthetic split') as { train: string[]; test: string[] };
  }
  rmSync(join(dir, '_config', 'options.json'), { force: true }); // not complete until rewritten at the end
  checkSyntheticOptions(o);
  const rng = new Rng(o.seed);
  const vocab = o.symbols ? Array.from({ length: o.vocabulary }, (_, i) => String.fromCharCode(65 + i)).concat(nonceWords(rng, 100)) : nonceWords(rng, o.vocabulary + 100);
  const fillers = vocab.slice(o.vocabulary);
  const split = { train: [] as string[], test: [] as string[] };
  const total = o.trainTasks + o.testTasks;
  for (let t = 0; t < total; t++) {
    const name = `synth-${t < o.trainTasks ? 'train' : 'test'}-${String(t).padStart(3, '0')}`;
    (t < o.trainTasks ? split.train : split.test).push(name);
    const words = rng.shuffle(vocab.slice(0, o.vocabulary)).slice(0, o.wordsPerTask);
    const labels = rng.shuffle(LABELS.slice()).slice(0, o.labelsPerTask).map((l) => (o.outputSpace ? ` ${l}` : l));
    // Words are in random order, so word i → label i mod L is a random map giving every label
    // exactly wordsPerTask / labelsPerTask words.
    const mapping = new Map<string, string>();
    if (o.balanced) words.forEach((w, i) => mapping.set(w, labels[i % labels.length]));
    else words.forEach((w, i) => mapping.set(w, i < labels.length ? labels[i] : labels[rng.int(labels.length)]));
    const tdir = join(dir, name);
    mkdirSync(tdir, { recursive: true });
    cleanStaleTemps(tdir); // temp files of a killed earlier write
    const jsonl = (ex: Example[]): string => ex.map((e) => JSON.stringify(e)).join('\n') + '\n';
    for (const s of o.seeds) {
      const r = new Rng((o.seed * 7919 + t * 104729 + s) >>> 0);
      writeFileAtomic(join(tdir, `${name}_16_${s}_train.jsonl`), jsonl(taskExamples(name, words, labels, mapping, 16, r, fillers, o.context)));
      writeFileAtomic(join(tdir, `${name}_16_${s}_dev.jsonl`), jsonl(taskExamples(name, words, labels, mapping, 16, r, fillers, o.context)));
    }
    writeFileAtomic(join(tdir, `${name}_test.jsonl`), jsonl(taskExamples(name, words, labels, mapping, o.testSize, new Rng(o.seed + t), fillers, o.context, !o.balanced)));
  }
  mkdirSync(join(dir, '_config'), { recursive: true });
  // options.json is the completion stamp: written last, so a suite cut short is rewritten.
  writeFileAtomic(splitPath, JSON.stringify(split));
  writeFileAtomic(join(dir, '_config', 'options.json'), stamp);
  return split;
}

/** Plain text in the suite's style (demonstration blocks), for training a tokenizer or LM pretraining. */
export function syntheticCorpus(dir: string, tasks: string[], seed: number, ioSep = '\n', demoSep = '\n\n'): string {
  const parts: string[] = [];
  for (const t of tasks) {
    const f = join(dir, t, `${t}_16_${seed}_train.jsonl`);
    const lines = readFileSync(f, 'utf8').trim().split('\n').map((l, i) => {
      try { return JSON.parse(l) as Example; } catch (e) { throw new Error(`${f}:${i + 1}: invalid JSON (${(e as Error).message})`); }
    });
    parts.push(lines.map((e) => `${e.input}${ioSep}${e.output}`).join(demoSep));
  }
  return parts.join('\n\n');
}

// A tiny CrossFit-layout task directory and a tiny random GPT-2 + BPE tokenizer for the ICL
// tests (evaluate and CLI). Not a test file itself.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import type { Example } from '../../src/data/tasks.js';

export const SEEDS = [100, 13];
const OPTS = ['yes', 'no', 'maybe'];

const words = ['red', 'blue', 'cat', 'dog', 'sun', 'rain', 'tree', 'fish', 'moon', 'star', 'box', 'car'];
const w = (i: number): string => words[i % words.length];

/** Classification ("cls", 3 options) and generation ("gen", no options) examples. */
export function clsTrain(seed: number): Example[] {
  return Array.from({ length: 5 }, (_, i) => ({ task: 'cls', input: `is the ${w(seed + i)} ${w(seed + 2 * i + 1)}?`, output: OPTS[(seed + i) % 3], options: OPTS }));
}
export const clsTest: Example[] = Array.from({ length: 6 }, (_, i) => ({ task: 'cls', input: `the ${w(i + 3)} and the ${w(2 * i)}`, output: OPTS[i % 3], options: OPTS }));
export function genTrain(seed: number): Example[] {
  return Array.from({ length: 4 }, (_, i) => ({ task: 'gen', input: `what is ${w(seed + i)}?`, output: `a ${w(seed + i + 5)}`, options: [] }));
}
export const genTest: Example[] = Array.from({ length: 3 }, (_, i) => ({ task: 'gen', input: `what is ${w(i + 7)}?`, output: `the ${w(i + 1)}`, options: [] }));

const jsonl = (xs: Example[]): string => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';

/** DIR/<task>/<task>_16_<seed>_train.jsonl, <task>_test.jsonl, DIR/_config/mysplit.json. */
export function writeTaskDir(dir: string): void {
  for (const [task, train, test] of [['cls', clsTrain, clsTest], ['gen', genTrain, genTest]] as const) {
    mkdirSync(join(dir, task), { recursive: true });
    for (const s of SEEDS) {
      writeFileSync(join(dir, task, `${task}_16_${s}_train.jsonl`), jsonl(train(s)));
      writeFileSync(join(dir, task, `${task}_16_${s}_dev.jsonl`), jsonl(train(s + 1)));
    }
    writeFileSync(join(dir, task, `${task}_test.jsonl`), jsonl(test));
  }
  mkdirSync(join(dir, '_config'), { recursive: true });
  // A split naming one task that is not shipped (skipped with a note).
  writeFileSync(join(dir, '_config', 'mysplit.json'), JSON.stringify({ train: ['gen'], test: ['cls', 'not_shipped'] }));
}

export function allTexts(): string[] {
  const xs = [...SEEDS.flatMap((s) => [...clsTrain(s), ...genTrain(s), ...clsTrain(s + 1), ...genTrain(s + 1)]), ...clsTest, ...genTest];
  return [xs.map((x) => `${x.input}\n${x.output}\n\n`).join('').repeat(3), 'N/A\n' + OPTS.join('\n')];
}

export function tinyTokenizer(): BPETokenizer {
  return BPETokenizer.train(allTexts(), { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
}

/** A random GPT-2 with larger-than-usual weights so that option scores differ visibly. */
export function tinyModel(vocabSize: number, nPositions = 128, seed = 1): GPT2 {
  const m = new GPT2(gpt2Config({ vocab_size: vocabSize, n_positions: nPositions, n_embd: 16, n_layer: 2, n_head: 2, initializer_range: 0.3 }), seed);
  m.eval();
  return m;
}

/** Writes a loadable model directory (config, safetensors, tokenizer.json). */
export function writeModelDir(dir: string): void {
  const tok = tinyTokenizer();
  tinyModel(tok.vocabSize).savePretrained(dir);
  tok.save(dir);
}

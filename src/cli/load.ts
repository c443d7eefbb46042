// Loading a model directory (weights + tokenizer) for the CLI commands.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LanguageModel } from '../models/index.js';
import { BPETokenizer } from '../tokenizers/index.js';

export function loadLM(dir: string): { model: LanguageModel; tokenizer: BPETokenizer } {
  if (!existsSync(dir)) throw new Error(`--model directory not found: ${dir}`);
  const tp = join(dir, 'tokenizer.json');
  if (!existsSync(tp)) throw new Error(`${tp} not found: a model directory needs its tokenizer.json`);
  const tokenizer = BPETokenizer.fromTokenizerJson(tp);
  const model = loadModel(dir);
  model.eval();
  return { model, tokenizer };
}

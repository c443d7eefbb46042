// Loading a model directory (weights + tokenizer) for the CLI commands: any registered family,
// any tokenizer layout loadTokenizer knows (tokenizer.json, vocab.txt, vocab.json + merges.txt).

import { existsSync } from 'node:fs';
import { loadModel, type LanguageModel } from '../models/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';

export function loadLM(dir: string): { model: LanguageModel; tokenizer: Tokenizer } {
  if (!existsSync(dir)) throw new Error(`--model directory not found: ${dir}`);
  const tokenizer = loadTokenizer(dir);
  const model = loadModel(dir);
  model.eval();
  return { model, tokenizer };
}

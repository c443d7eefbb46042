// Loading a model directory (weights + tokenizer) for the CLI commands: any registered family,
// any tokenizer layout loadTokenizer knows (tokenizer.json, vocab.txt, vocab.json + merges.txt),
// optionally with a PEFT adapter directory on top (--adapter).

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LanguageModel } from '../models/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { attachAdapterDir, readAdapterConfig, type PeftModel } from '../tuners/index.js';

const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory();
const hasTokenizer = (d: string): boolean => ['tokenizer.json', 'vocab.txt', 'vocab.json'].some((f) => existsSync(join(d, f)));

/**
 * The model of `dir`, or with `adapter` the base (`dir`, else the adapter's
 * base_model_name_or_path) with the adapter attached. The tokenizer comes from the adapter
 * directory when it has one (fine-tuning may have added chat tokens), else from the base.
 */
export function loadLM(dir: string | undefined, adapter?: string): { model: LanguageModel; tokenizer: Tokenizer; base: string; peft: PeftModel | null } {
  if (adapter !== undefined) {
    if (!isDir(adapter)) throw new Error(`--adapter directory not found: ${adapter}`);
    const cfg = readAdapterConfig(adapter);
    const base = dir ?? cfg.base_model_name_or_path;
    if (!base) throw new Error(`${join(adapter, 'adapter_config.json')}: base_model_name_or_path is not set; give the base with --model`);
    if (!isDir(base)) throw new Error(dir ? `--model directory not found: ${dir}` : `${join(adapter, 'adapter_config.json')}: base_model_name_or_path ${base} is not a directory here; give the base with --model`);
    const tokenizer = loadTokenizer(hasTokenizer(adapter) ? adapter : base);
    const model = attachAdapterDir(loadModel(base), adapter);
    model.eval();
    return { model, tokenizer, base, peft: model };
  }
  if (dir === undefined) throw new Error('give --model (or --adapter with a base_model_name_or_path)');
  if (!existsSync(dir)) throw new Error(`--model directory not found: ${dir}`);
  const tokenizer = loadTokenizer(dir);
  const model = loadModel(dir);
  model.eval();
  return { model, tokenizer, base: dir, peft: null };
}

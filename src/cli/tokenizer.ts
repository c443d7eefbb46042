// `icld tokenizer train`: train a tokenizer on text files and write OUT/tokenizer.json.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { BPETokenizer } from '../tokenizers/index.js';

export interface TokenizerTrainArgs {
  type: string;
  vocabSize: number;
  out: string;
  files: string[];
  minFrequency?: number;
  specialTokens?: string[];
  /** Accepted for the CLI's sake; the caller prints the summary (once). */
  json?: boolean;
}

export interface TokenizerTrainSummary {
  type: string;
  vocab_size: number;
  merges: number;
  files: number;
  bytes: number;
  seconds: number;
  path: string;
}

export async function tokenizerTrainCommand(args: TokenizerTrainArgs): Promise<TokenizerTrainSummary> {
  const type = (args.type ?? '').toLowerCase();
  if (type === 'wordpiece') throw new Error('tokenizer train: --type wordpiece is not yet supported (use --type bpe)');
  if (type !== 'bpe') throw new Error(`tokenizer train: unknown --type ${JSON.stringify(args.type)} (expected bpe or wordpiece)`);
  if (!Number.isInteger(args.vocabSize) || args.vocabSize <= 0) throw new Error(`tokenizer train: --vocab-size must be a positive integer, got ${args.vocabSize}`);
  if (!args.out) throw new Error('tokenizer train: --out is required');
  if (!args.files || args.files.length === 0) throw new Error('tokenizer train: no input FILES given');
  for (const f of args.files) {
    if (!existsSync(f)) throw new Error(`tokenizer train: ${f}: file not found`);
    if (!statSync(f).isFile()) throw new Error(`tokenizer train: ${f}: not a regular file`);
  }
  const t0 = performance.now();
  let bytes = 0;
  const log = (msg: string) => process.stderr.write(`[tokenizer] ${msg}\n`);
  function* texts(): Generator<string> {
    for (const f of args.files) {
      const buf = readFileSync(f);
      bytes += buf.length;
      yield buf.toString('utf8');
    }
  }
  let tok: BPETokenizer;
  try {
    tok = BPETokenizer.train(texts(), {
      vocabSize: args.vocabSize,
      minFrequency: args.minFrequency,
      specialTokens: args.specialTokens ?? ['<|endoftext|>'],
      progressEvery: 1000,
      onProgress: (m, v) => log(`${m} merges, vocab ${v}/${args.vocabSize}, ${((performance.now() - t0) / 1000).toFixed(1)} s`),
    });
  } catch (e) {
    throw new Error(`tokenizer train: ${(e as Error).message}`);
  }
  const path = tok.save(args.out); // temp file + rename
  const seconds = (performance.now() - t0) / 1000;
  const summary: TokenizerTrainSummary = {
    type: 'bpe', vocab_size: tok.vocabSize, merges: tok.merges.length, files: args.files.length, bytes,
    seconds: Math.round(seconds * 1000) / 1000, path,
  };
  return summary;
}

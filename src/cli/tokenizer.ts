// `icld tokenizer train` (byte-level BPE or WordPiece → OUT/tokenizer.json …) and
// `icld tokenizer encode` (ids and tokens of a text with the tokenizer in DIR).

import { existsSync, readFileSync, statSync } from 'node:fs';
import { BPETokenizer, WordPieceTokenizer, BERT_SPECIAL_TOKENS, loadTokenizer, type Tokenizer } from '../tokenizers/index.js';

export interface TokenizerTrainArgs {
  type: string;
  vocabSize: number;
  out: string;
  files: string[];
  minFrequency?: number;
  /** Default: <|endoftext|> for BPE, [PAD] [UNK] [CLS] [SEP] [MASK] for WordPiece. */
  specialTokens?: string[];
  /** WordPiece only: lowercase (and strip accents) before splitting. */
  lowercase?: boolean;
  /** Accepted for the CLI's sake; the caller prints the summary (once). */
  json?: boolean;
}

export interface TokenizerTrainSummary {
  type: string;
  vocab_size: number;
  /** BPE: merges kept; WordPiece: merges made while training (the vocabulary keeps only tokens). */
  merges: number;
  files: number;
  bytes: number;
  seconds: number;
  path: string;
}

export async function tokenizerTrainCommand(args: TokenizerTrainArgs): Promise<TokenizerTrainSummary> {
  const type = (args.type ?? '').toLowerCase();
  if (type !== 'bpe' && type !== 'wordpiece') throw new Error(`tokenizer train: unknown --type ${JSON.stringify(args.type)} (expected bpe or wordpiece)`);
  if (!Number.isInteger(args.vocabSize) || args.vocabSize <= 0) throw new Error(`tokenizer train: --vocab-size must be a positive integer, got ${args.vocabSize}`);
  if (!args.out) throw new Error('tokenizer train: --out is required');
  if (!args.files || args.files.length === 0) throw new Error('tokenizer train: no input FILES given');
  if (args.lowercase && type !== 'wordpiece') throw new Error('tokenizer train: --lowercase applies to --type wordpiece only');
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
  const progress = (m: number, v: number) => log(`${m} merges, vocab ${v}/${args.vocabSize}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  let tok: Tokenizer;
  let merges = 0;
  try {
    if (type === 'bpe') {
      const b = BPETokenizer.train(texts(), {
        vocabSize: args.vocabSize, minFrequency: args.minFrequency,
        specialTokens: args.specialTokens ?? ['<|endoftext|>'], progressEvery: 1000, onProgress: progress,
      });
      merges = b.merges.length;
      tok = b;
    } else {
      const w = WordPieceTokenizer.train(texts(), {
        vocabSize: args.vocabSize, minFrequency: args.minFrequency, lowercase: !!args.lowercase,
        specialTokens: args.specialTokens ?? BERT_SPECIAL_TOKENS, progressEvery: 1000, onProgress: progress,
      });
      merges = w.trainedMerges ?? 0;
      tok = w;
    }
  } catch (e) {
    throw new Error(`tokenizer train: ${(e as Error).message}`);
  }
  const path = tok.save(args.out); // temp file + rename
  const seconds = (performance.now() - t0) / 1000;
  return {
    type, vocab_size: tok.vocabSize, merges, files: args.files.length, bytes,
    seconds: Math.round(seconds * 1000) / 1000, path,
  };
}

export interface TokenizerEncodeResult {
  ids: number[];
  tokens: string[];
}

/** Ids of `text` with the tokenizer in `dir` (post-processor specials unless `noSpecial`), and each id's token. */
export function tokenizerEncodeCommand(args: { model: string; text: string; noSpecial?: boolean }): TokenizerEncodeResult {
  const tok = loadTokenizer(args.model);
  const ids = tok.encode(args.text, { addSpecialTokens: !args.noSpecial });
  return { ids, tokens: ids.map((i) => tok.idToToken(i) ?? '') };
}

/** Readable form: one `id<TAB>token` line per token (token JSON-quoted when it has blanks or controls). */
export function formatEncode(r: TokenizerEncodeResult): string {
  const show = (t: string) => (/^[^\s\p{C}"]+$/u.test(t) ? t : JSON.stringify(t));
  return r.ids.map((id, i) => `${id}\t${show(r.tokens[i])}`).join('\n') + `\n(${r.ids.length} tokens)`;
}

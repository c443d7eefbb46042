// Tokenizers: byte-level BPE (GPT-2 style) with HF tokenizer.json load/save and training.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BPETokenizer } from './bpe.js';
import { readJsonFile } from '../io/json.js';

export {
  BPETokenizer, GPT2_PATTERN, bytesToUnicode, toByteLevel,
  type AddedToken, type BPETokenizerInit, type EncodeOptions, type DecodeOptions, type TrainOptions,
  type TokenizerJson, type PostProcessor,
} from './bpe.js';

/** Reads a special-token entry of tokenizer_config.json / special_tokens_map.json (string or {content}). */
function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/**
 * Loads DIR/tokenizer.json (HF `tokenizers` format). bos/eos/pad come from DIR/tokenizer_config.json
 * or DIR/special_tokens_map.json when present, else from well-known spellings (`<|endoftext|>` is
 * GPT-2's bos and eos). Errors name the path.
 */
export function loadTokenizer(dir: string): BPETokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(dir)) throw new Error(`${dir}: tokenizer directory not found`);
  if (!statSync(dir).isDirectory()) throw new Error(`${dir}: expected a directory holding tokenizer.json`);
  if (!existsSync(path)) throw new Error(`${path}: file not found`);
  const roles: { bosToken?: string; eosToken?: string; padToken?: string } = {};
  for (const f of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    const raw = readJsonFile(p, f, 16 << 20);
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${p}: expected a JSON object`);
    const cfg = raw as Record<string, unknown>;
    const bos = tokenName(cfg.bos_token), eos = tokenName(cfg.eos_token), pad = tokenName(cfg.pad_token);
    if (bos !== undefined) roles.bosToken = bos;
    if (eos !== undefined) roles.eosToken = eos;
    if (pad !== undefined) roles.padToken = pad;
  }
  const tok = BPETokenizer.fromTokenizerJson(path);
  // Roles naming tokens the tokenizer lacks are ignored rather than fatal (configs are often loose).
  const idOf = (s: string | undefined) => (s === undefined ? undefined : tok.tokenToId(s));
  if (roles.bosToken !== undefined && idOf(roles.bosToken) !== undefined) tok.bosTokenId = idOf(roles.bosToken);
  if (roles.eosToken !== undefined && idOf(roles.eosToken) !== undefined) tok.eosTokenId = idOf(roles.eosToken);
  if (roles.padToken !== undefined && idOf(roles.padToken) !== undefined) tok.padTokenId = idOf(roles.padToken);
  return tok;
}

// Tokenizers: byte-level BPE (GPT-2 style) and WordPiece (BERT), HF tokenizer.json load/save and
// training, and loadTokenizer(dir) which recognises the usual directory layouts.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BPETokenizer } from './bpe.js';
import { WordPieceTokenizer, tokenName, modelMaxLengthOf, type RoleOverrides } from './wordpiece.js';
import type { Tokenizer } from './types.js';
import { readJsonFile } from '../io/json.js';

export type { Tokenizer, EncodeOpts, DecodeOpts } from './types.js';
export {
  BPETokenizer, GPT2_PATTERN, bytesToUnicode, toByteLevel,
  type AddedToken, type BPETokenizerInit, type EncodeOptions, type DecodeOptions, type TrainOptions,
  type TokenizerJson, type PostProcessor,
} from './bpe.js';
export {
  WordPieceTokenizer, bertNormalize, bertPreTokenize, BERT_SPECIAL_TOKENS,
  type BertNormalizerOptions, type WordPieceInit, type WordPieceTrainOptions, type WordPieceAddedToken,
  type WordPiecePostProcessor, type TemplatePiece, type WordPieceTokenizerJson,
} from './wordpiece.js';
export { readVocabTxt } from './vocab.js';
export { ChatTemplate, compileChatTemplate, renderChatTemplate, TemplateRaisedError, type ChatTemplateVars } from './chat-template.js';

const ROLES = ['bos', 'eos', 'pad', 'unk', 'cls', 'sep', 'mask'] as const;
type Role = typeof ROLES[number];

/** Role tokens and settings from DIR/special_tokens_map.json then DIR/tokenizer_config.json (the latter wins). */
function readConfigs(dir: string): { roles: Partial<Record<Role, string>>; config: Record<string, unknown>; modelMaxLength?: number; chatTemplate?: string } {
  const roles: Partial<Record<Role, string>> = {};
  let config: Record<string, unknown> = {};
  for (const f of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    const raw = readJsonFile(p, f, 16 << 20);
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${p}: expected a JSON object`);
    const cfg = raw as Record<string, unknown>;
    for (const r of ROLES) {
      const v = cfg[`${r}_token`];
      if (v === undefined || v === null) continue;
      const name = tokenName(v);
      if (name === undefined) throw new Error(`${p}: ${r}_token must be a string or {"content": …}, got ${JSON.stringify(v).slice(0, 80)}`);
      roles[r] = name;
    }
    if (f === 'tokenizer_config.json') config = cfg;
  }
  const mml = config.model_max_length;
  if (mml !== undefined && mml !== null && (typeof mml !== 'number' || !(mml > 0))) {
    throw new Error(`${join(dir, 'tokenizer_config.json')}: model_max_length must be a positive number, got ${JSON.stringify(mml)}`);
  }
  // HF writes int(1e30) for "no limit": ignored (modelMaxLengthOf keeps safe integers only).
  return { roles, config, modelMaxLength: modelMaxLengthOf(mml), chatTemplate: chatTemplateOf(dir, config.chat_template) };
}

/**
 * tokenizer_config.json's chat_template: a string, or a list of {name, template} of which "default"
 * is used (none named "default": no template). Without one, DIR/chat_template.jinja (newer
 * transformers save it there) is read when present.
 */
function chatTemplateOf(dir: string, v: unknown): string | undefined {
  const where = join(dir, 'tokenizer_config.json');
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    let found: string | undefined;
    v.forEach((e, i) => {
      const ok = e !== null && typeof e === 'object' && typeof (e as Record<string, unknown>).name === 'string' && typeof (e as Record<string, unknown>).template === 'string';
      if (!ok) throw new Error(`${where}: chat_template[${i}] must be {"name": string, "template": string}`);
      if ((e as Record<string, string>).name === 'default') found = (e as Record<string, string>).template;
    });
    return found;
  }
  if (v !== undefined && v !== null) throw new Error(`${where}: chat_template must be a string or a list of {"name", "template"}, got ${typeof v}`);
  const jinja = join(dir, 'chat_template.jinja');
  if (existsSync(jinja)) {
    const buf = readFileSync(jinja);
    try { return new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { throw new Error(`${jinja}: not valid UTF-8`); }
  }
  return undefined;
}

/**
 * Loads the tokenizer in DIR, whichever layout it has:
 * - tokenizer.json (HF `tokenizers`; BPE or WordPiece by model.type),
 * - vocab.txt (+ tokenizer_config.json: do_lower_case, strip_accents, tokenize_chinese_chars…),
 * - GPT-2's vocab.json + merges.txt (or OpenAI's encoder.json + vocab.bpe).
 * Role ids (bos/eos/pad/unk/cls/sep/mask) and model_max_length come from tokenizer_config.json /
 * special_tokens_map.json when present (roles naming tokens the tokenizer lacks are ignored), else
 * from well-known spellings. Errors are one line naming the directory or file.
 */
export function loadTokenizer(dir: string): Tokenizer {
  if (!existsSync(dir)) throw new Error(`${dir}: tokenizer directory not found`);
  if (!statSync(dir).isDirectory()) throw new Error(`${dir}: expected a directory holding tokenizer.json, vocab.txt or vocab.json + merges.txt`);
  const { roles, config, modelMaxLength, chatTemplate } = readConfigs(dir);
  const has = (f: string) => existsSync(join(dir, f));
  let tok: Tokenizer;
  if (has('tokenizer.json')) {
    const path = join(dir, 'tokenizer.json');
    const obj = readJsonFile(path, 'tokenizer.json');
    const type = typeof obj === 'object' && obj !== null && !Array.isArray(obj) ? ((obj as { model?: { type?: unknown } }).model?.type) : undefined;
    if (type === 'WordPiece') {
      const o: RoleOverrides = {};
      if (roles.cls) o.clsToken = roles.cls;
      if (roles.sep) o.sepToken = roles.sep;
      if (roles.pad) o.padToken = roles.pad;
      if (roles.mask) o.maskToken = roles.mask;
      if (roles.bos) o.bosToken = roles.bos;
      if (roles.eos) o.eosToken = roles.eos;
      tok = wrap(path, () => WordPieceTokenizer.fromTokenizerJson(obj, o));
    } else if (type === 'BPE' || type === undefined) {
      tok = wrap(path, () => BPETokenizer.fromTokenizerJson(obj));
    } else throw new Error(`${path}: model.type ${JSON.stringify(type)} is not supported (BPE or WordPiece)`);
  } else if (has('vocab.txt')) {
    tok = WordPieceTokenizer.fromVocabTxt(join(dir, 'vocab.txt'), config, has('tokenizer_config.json') ? join(dir, 'tokenizer_config.json') : join(dir, 'vocab.txt'));
  } else if (has('vocab.json') && has('merges.txt')) {
    tok = BPETokenizer.fromGpt2Files(join(dir, 'vocab.json'), join(dir, 'merges.txt'));
  } else if (has('encoder.json') && has('vocab.bpe')) {
    tok = BPETokenizer.fromGpt2Files(join(dir, 'encoder.json'), join(dir, 'vocab.bpe'));
  } else {
    const half = has('vocab.json') ? ' (vocab.json without merges.txt)' : has('merges.txt') ? ' (merges.txt without vocab.json)' : '';
    throw new Error(`${dir}: no tokenizer found${half}: expected ${join(dir, 'tokenizer.json')}, or vocab.txt (+ tokenizer_config.json), or vocab.json + merges.txt`);
  }
  // Roles naming tokens the tokenizer lacks are ignored rather than fatal (configs are often loose).
  for (const r of ROLES) {
    const name = roles[r];
    if (name === undefined) continue;
    const id = tok.tokenToId(name);
    if (id !== undefined) tok[`${r}TokenId`] = id;
  }
  if (modelMaxLength !== undefined) tok.modelMaxLength = modelMaxLength;
  if (chatTemplate !== undefined) tok.chatTemplate = chatTemplate;
  return tok;
}

/** Prefixes a message with the file unless it already names it. */
function wrap<T>(path: string, f: () => T): T {
  try { return f(); } catch (e) {
    const m = (e as Error).message;
    throw new Error(m.includes(path) ? m : `${path}: ${m}`);
  }
}

// Request validation for the OpenAI-compatible endpoints: each bad field is a 400 naming the
// field (OpenAI's "param"), what it must be and what it got. Unknown fields are ignored, as OpenAI does.

import type { ChatMessage, ChatRole } from '../data/chat.js';

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'invalid_request_error', readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }
}

export const bad = (param: string, message: string, code: string | null = null): ApiError => new ApiError(400, message, 'invalid_request_error', param, code);

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};
const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

export function num(b: Record<string, unknown>, name: string, r: { min?: number; max?: number; integer?: boolean; minExclusive?: boolean } = {}): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(name, `'${name}' must be a number, got ${kind(v)} ${show(v)}`);
  if (r.integer && !Number.isInteger(v)) throw bad(name, `'${name}' must be an integer, got ${v}`);
  if (r.min !== undefined && (r.minExclusive ? !(v > r.min) : v < r.min)) throw bad(name, `'${name}' must be ${r.minExclusive ? '>' : '≥'} ${r.min}, got ${v}`);
  if (r.max !== undefined && v > r.max) throw bad(name, `'${name}' must be ≤ ${r.max}, got ${v}`);
  return v;
}

export function bool(b: Record<string, unknown>, name: string): boolean | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(name, `'${name}' must be a boolean, got ${kind(v)} ${show(v)}`);
  return v;
}

export function str(b: Record<string, unknown>, name: string): string | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(name, `'${name}' must be a string, got ${kind(v)} ${show(v)}`);
  return v;
}

export function stops(b: Record<string, unknown>): string[] | undefined {
  const v = b.stop;
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) throw bad('stop', `'stop' must be a string or a list of strings, got ${show(v)}`);
  if (list.length > 16) throw bad('stop', `'stop' may hold at most 16 strings, got ${list.length}`);
  return list.filter((s) => s.length > 0);
}

export function logitBias(b: Record<string, unknown>, vocab: number): Map<number, number> | undefined {
  const v = b.logit_bias;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad('logit_bias', `'logit_bias' must be an object mapping token ids to numbers, got ${show(v)}`);
  const m = new Map<number, number>();
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || id >= vocab) throw bad('logit_bias', `'logit_bias' key ${show(k)} is not a token id below the vocabulary size ${vocab}`);
    if (typeof x !== 'number' || !(x >= -100 && x <= 100)) throw bad('logit_bias', `'logit_bias' values must be numbers in [-100, 100], got ${show(x)} for ${k}`);
    m.set(id, x);
  }
  return m;
}

export interface SamplingParams {
  maxTokens?: number;
  temperature: number;
  topP: number;
  topK: number;
  stop?: string[];
  seed?: number;
  n: number;
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias?: Map<number, number>;
  stream: boolean;
  includeUsage: boolean;
}

/** The fields completions and chat share. */
export function sampling(b: Record<string, unknown>, vocab: number, maxTokensName = 'max_tokens'): SamplingParams {
  const stream = bool(b, 'stream') ?? false;
  const so = b.stream_options;
  let includeUsage = false;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw bad('stream_options', `'stream_options' must be an object, got ${show(so)}`);
    includeUsage = bool(so as Record<string, unknown>, 'include_usage') ?? false;
  }
  const seed = num(b, 'seed', { integer: true });
  return {
    maxTokens: num(b, maxTokensName, { integer: true, min: 0 }),
    temperature: num(b, 'temperature', { min: 0, max: 2 }) ?? 1,
    topP: num(b, 'top_p', { min: 0, max: 1 }) ?? 1,
    topK: Math.max(0, num(b, 'top_k', { integer: true, min: -1 }) ?? 0),
    stop: stops(b),
    seed: seed === undefined ? undefined : ((seed % 2 ** 32) + 2 ** 32) % 2 ** 32,
    n: num(b, 'n', { integer: true, min: 1, max: 64 }) ?? 1,
    presencePenalty: num(b, 'presence_penalty', { min: -2, max: 2 }) ?? 0,
    frequencyPenalty: num(b, 'frequency_penalty', { min: -2, max: 2 }) ?? 0,
    logitBias: logitBias(b, vocab),
    stream,
    includeUsage,
  };
}

/** A completions prompt: a string, a list of strings, a list of token ids, or a list of such lists. */
export function prompts(b: Record<string, unknown>, vocab: number): (string | number[])[] {
  const v = b.prompt;
  if (v === undefined || v === null) throw bad('prompt', "'prompt' is required (a string, a list of strings, or token ids)");
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number');
  let list: (string | number[])[];
  if (typeof v === 'string') list = [v];
  else if (isIds(v)) list = [v];
  else if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' || isIds(x))) list = v as (string | number[])[];
  else throw bad('prompt', `'prompt' must be a string, a list of strings, a list of token ids or a list of such lists, got ${show(v)}`);
  if (list.length > 64) throw bad('prompt', `'prompt' may hold at most 64 prompts, got ${list.length}`);
  for (const p of list) {
    if (typeof p === 'string') continue;
    for (const t of p) if (!Number.isInteger(t) || t < 0 || t >= vocab) throw bad('prompt', `'prompt' token id ${t} is not an integer in [0, ${vocab})`);
  }
  return list;
}

const ROLES: Record<string, ChatRole> = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant', tool: 'tool' };

export function messages(b: Record<string, unknown>): ChatMessage[] {
  const v = b.messages;
  if (!Array.isArray(v) || v.length === 0) throw bad('messages', `'messages' must be a non-empty list of {role, content}, got ${show(v)}`);
  return v.map((m, i) => {
    const p = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw bad(p, `'${p}' must be an object {role, content}, got ${show(m)}`);
    const r = (m as Record<string, unknown>).role, c = (m as Record<string, unknown>).content;
    if (typeof r !== 'string' || !(r in ROLES)) throw bad(`${p}.role`, `'${p}.role' must be one of system, developer, user, assistant, tool, got ${show(r)}`);
    let content: string;
    if (typeof c === 'string') content = c;
    else if (c === null || c === undefined) content = '';
    else if (Array.isArray(c) && c.every((x) => typeof x === 'object' && x !== null && (x as Record<string, unknown>).type === 'text' && typeof (x as Record<string, unknown>).text === 'string')) {
      content = c.map((x) => (x as { text: string }).text).join('');
    } else throw bad(`${p}.content`, `'${p}.content' must be a string or a list of {type: "text", text} parts, got ${show(c)}`);
    return { role: ROLES[r], content };
  });
}

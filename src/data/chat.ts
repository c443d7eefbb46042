// Chat data (DESIGN §3), read into one normalised form {messages: {role, content}[]}:
//   - role/content:  {"conversations": [{"role": "system|user|assistant|tool", "content": "…"}]}
//                    (a "messages" list in the same shape is accepted too: HF chat datasets use it)
//   - ShareGPT:      {"conversations": [{"from": "human|gpt|system", "value": "…"}]}
//   - Alpaca:        {"instruction": "…", "input": "…" (optional), "output": "…"}
// A file is a JSON array of records (or one record), or JSONL (one record per line) when its
// name ends in .jsonl. Errors are one line naming the file and the record (and line for JSONL).

import { jsonlRecords, readUserFile } from '../io/json.js';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';
export interface ChatMessage { role: ChatRole; content: string }
export interface ChatRecord { messages: ChatMessage[] }

export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant', 'tool'];
/** ShareGPT speaker names → roles. */
const SHAREGPT_FROM: Readonly<Record<string, ChatRole>> = { human: 'user', gpt: 'assistant', system: 'system' };

/** Largest chat file we read. */
export const MAX_CHAT_FILE_BYTES = 1 << 30;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const own = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return (s.length > 60 ? s.slice(0, 60) + '…' : s).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/** One record in any of the three formats → normalised messages. `at` prefixes errors. */
export function normalizeChatRecord(rec: unknown, at: string): ChatRecord {
  if (!isObj(rec)) throw new Error(`${at}: expected an object, got ${show(rec)}`);
  const hasTurns = own(rec, 'conversations') || own(rec, 'messages');
  const hasAlpaca = own(rec, 'instruction') || own(rec, 'output');
  if (hasTurns && hasAlpaca) throw new Error(`${at}: mixes a conversation list with Alpaca fields (instruction/output)`);
  if (own(rec, 'conversations') && own(rec, 'messages')) throw new Error(`${at}: has both "conversations" and "messages"; give one`);
  let messages: ChatMessage[];
  if (hasTurns) {
    const key = own(rec, 'conversations') ? 'conversations' : 'messages';
    const turns = rec[key];
    if (!Array.isArray(turns)) throw new Error(`${at}: "${key}" must be a list of turns, got ${show(turns)}`);
    if (turns.length === 0) throw new Error(`${at}: "${key}" is empty`);
    messages = turns.map((t, j) => {
      const w = `${at}: ${key}[${j}]`;
      if (!isObj(t)) throw new Error(`${w}: expected an object, got ${show(t)}`);
      const roleStyle = own(t, 'role') || own(t, 'content'), shareStyle = own(t, 'from') || own(t, 'value');
      if (roleStyle && shareStyle) throw new Error(`${w}: mixes "role"/"content" with ShareGPT's "from"/"value"`);
      if (shareStyle) {
        const from = t.from;
        if (typeof from !== 'string' || !own(SHAREGPT_FROM, from)) throw new Error(`${w}: "from" must be one of human, gpt, system; got ${show(from)}`);
        if (typeof t.value !== 'string') throw new Error(`${w}: "value" must be a string, got ${show(t.value)}`);
        return { role: SHAREGPT_FROM[from], content: t.value };
      }
      const role = t.role;
      if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) throw new Error(`${w}: "role" must be one of ${CHAT_ROLES.join(', ')}; got ${show(role)}`);
      if (typeof t.content !== 'string') throw new Error(`${w}: "content" must be a string, got ${show(t.content)}`);
      return { role: role as ChatRole, content: t.content };
    });
  } else if (hasAlpaca) {
    for (const k of ['instruction', 'output'] as const) if (typeof rec[k] !== 'string') throw new Error(`${at}: Alpaca "${k}" must be a string, got ${show(rec[k])}`);
    if (own(rec, 'input') && typeof rec.input !== 'string') throw new Error(`${at}: Alpaca "input" must be a string, got ${show(rec.input)}`);
    if (own(rec, 'system') && typeof rec.system !== 'string') throw new Error(`${at}: Alpaca "system" must be a string, got ${show(rec.system)}`);
    const input = (rec.input as string | undefined) ?? '';
    // The instruction and its input form one user turn (as LLaMA-Factory joins them).
    messages = [];
    if (typeof rec.system === 'string' && rec.system !== '') messages.push({ role: 'system', content: rec.system });
    messages.push({ role: 'user', content: input ? `${rec.instruction as string}\n${input}` : rec.instruction as string });
    messages.push({ role: 'assistant', content: rec.output as string });
  } else {
    throw new Error(`${at}: not a chat record (expected "conversations", "messages", or Alpaca "instruction"/"output")`);
  }
  if (!messages.some((m) => m.role === 'assistant')) throw new Error(`${at}: has no assistant turn (nothing to learn from)`);
  return { messages };
}

/** Read a chat file (JSON array, one JSON record, or .jsonl) into normalised records. */
export function readChatFile(path: string): ChatRecord[] {
  const buf = readUserFile(path, 'chat file', MAX_CHAT_FILE_BYTES);
  const out: ChatRecord[] = [];
  if (path.endsWith('.jsonl')) {
    for (const { value, at } of jsonlRecords(buf, path, (line, i) => `${path}:${line} (record ${i})`)) out.push(normalizeChatRecord(value, at));
  } else {
    let text: string;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { throw new Error(`${path}: not valid UTF-8`); }
    let v: unknown;
    try { v = JSON.parse(text); } catch (e) { throw new Error(`${path}: invalid JSON (${(e as Error).message.split('\n')[0]})`); }
    const recs = Array.isArray(v) ? v : [v];
    recs.forEach((r, i) => out.push(normalizeChatRecord(r, `${path}: record ${i}`)));
  }
  if (out.length === 0) throw new Error(`${path}: has no chat records`);
  return out;
}

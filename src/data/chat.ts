// Chat data (DESIGN §3), read into one normalised form {messages: {role, content}[]}:
//   - role/content:  {"conversations": [{"role": "system|user|assistant|tool", "content": "…"}]}
//                    (a "messages" list in the same shape is accepted too: HF chat datasets use it)
//                    content may also be a list of parts [{"type": "text", "value"|"text": "…"}] (LLaMA-Factory's
//                    v1 format, OpenAI style): the text parts are joined; any other part type is an error.
//                    Per-message "loss_weight" (v1) is ignored: every assistant turn is learned.
//   - ShareGPT:      {"conversations": [{"from": "human|gpt|system|function_call|observation", "value": "…"}]}
//                    (FastChat, LLaMA-Factory). function_call → an assistant turn whose content is the call
//                    JSON as written (the model learns to emit it); observation → a tool turn.
//                    An optional record-level "system" string becomes a leading system turn.
//   - Alpaca:        {"instruction": "…", "input": "…" (optional), "output": "…"}
// Tool schemas: a record's "tools" (a JSON string as in glaive_toolcall, or a list) is kept as the
// record's `tools` field (JSON text), not turned into a turn here: a template that reads `tools`
// gets them as data; for one that does not, chat-encode.ts puts the text in the system turn.
// A file is a JSON array of records (or one record), or JSONL (one record per line) when its
// name ends in .jsonl. Errors are one line naming the file and the record (and line for JSONL).

import { jsonlRecords, readUserFile } from '../io/json.js';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';
export interface ChatMessage { role: ChatRole; content: string }
export interface ChatRecord {
  messages: ChatMessage[];
  /** Tool/function schemas as JSON text (a JSON list), when the record gives them. */
  tools?: string;
}

export const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant', 'tool'];
/** ShareGPT speaker names → roles. */
const SHAREGPT_FROM: Readonly<Record<string, ChatRole>> = { human: 'user', gpt: 'assistant', system: 'system', function_call: 'assistant', observation: 'tool' };

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

/** One turn in role/content or ShareGPT from/value style; `w` starts error messages. */
export function chatTurn(t: unknown, w: string): ChatMessage {
  if (!isObj(t)) throw new Error(`${w}: expected an object, got ${show(t)}`);
  const roleStyle = own(t, 'role') || own(t, 'content'), shareStyle = own(t, 'from') || own(t, 'value');
  if (roleStyle && shareStyle) throw new Error(`${w}: mixes "role"/"content" with ShareGPT's "from"/"value"`);
  if (shareStyle) {
    const from = t.from;
    if (typeof from !== 'string' || !own(SHAREGPT_FROM, from)) throw new Error(`${w}: "from" must be one of ${Object.keys(SHAREGPT_FROM).join(', ')}; got ${show(from)}`);
    if (typeof t.value !== 'string') throw new Error(`${w}: "value" must be a string, got ${show(t.value)}`);
    return { role: SHAREGPT_FROM[from], content: t.value };
  }
  const role = t.role;
  if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) throw new Error(`${w}: "role" must be one of ${CHAT_ROLES.join(', ')}; got ${show(role)}`);
  return { role: role as ChatRole, content: contentText(t.content, w) };
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
    messages = turns.map((t, j) => chatTurn(t, `${at}: ${key}[${j}]`));
    if (own(rec, 'system')) {
      if (typeof rec.system !== 'string') throw new Error(`${at}: "system" must be a string, got ${show(rec.system)}`);
      if (rec.system !== '') {
        if (messages[0].role === 'system') throw new Error(`${at}: has both a "system" field and a system turn`);
        messages.unshift({ role: 'system', content: rec.system });
      }
    }
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
  const tools = toolsText(rec.tools, at);
  return tools === undefined ? { messages } : { messages, tools };
}

/** A turn's content: a string, or text parts joined. */
function contentText(c: unknown, w: string): string {
  if (typeof c === 'string') return c;
  if (!Array.isArray(c)) throw new Error(`${w}: "content" must be a string, got ${show(c)} (or a list of text parts)`);
  let text = '';
  c.forEach((p, k) => {
    if (!isObj(p)) throw new Error(`${w}: content[${k}] must be an object {"type": "text", …}, got ${show(p)}`);
    if (p.type !== 'text') throw new Error(`${w}: content[${k}] has type ${show(p.type)}; only "text" parts are supported`);
    const v = own(p, 'value') ? p.value : p.text;
    if (typeof v !== 'string') throw new Error(`${w}: content[${k}] text part needs a string "value" or "text", got ${show(v)}`);
    text += v;
  });
  return text;
}

/** The record's tools as JSON text; undefined when absent or empty. */
function toolsText(v: unknown, at: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (Array.isArray(v)) return v.length ? JSON.stringify(v) : undefined;
  if (typeof v !== 'string') throw new Error(`${at}: "tools" must be a JSON string or a list, got ${show(v)}`);
  let parsed: unknown;
  try { parsed = JSON.parse(v); } catch (e) { throw new Error(`${at}: "tools" is not valid JSON (${(e as Error).message.split('\n')[0]})`); }
  if (!Array.isArray(parsed)) throw new Error(`${at}: "tools" must hold a JSON list, got ${show(parsed)}`);
  return parsed.length ? v : undefined;
}

/**
 * The records of a JSON array, one JSON record, or a .jsonl file (`what`: "chat", "preference"),
 * each normalised with `at` naming the file and record (and line for JSONL). `parse` turns the
 * bytes of a JSON file into a value; at least one record is required.
 */
export function readRecordFile<T>(path: string, what: string, normalize: (v: unknown, at: string) => T, parse: (buf: Uint8Array) => unknown): T[] {
  const buf = readUserFile(path, `${what} file`, MAX_CHAT_FILE_BYTES);
  const out: T[] = [];
  if (path.endsWith('.jsonl')) {
    for (const { value, at } of jsonlRecords(buf, path, (line, i) => `${path}:${line} (record ${i})`)) out.push(normalize(value, at));
  } else {
    const v = parse(buf);
    const recs = Array.isArray(v) ? v : [v];
    recs.forEach((r, i) => out.push(normalize(r, `${path}: record ${i}`)));
  }
  if (out.length === 0) throw new Error(`${path}: has no ${what} records`);
  return out;
}

/** Read a chat file (JSON array, one JSON record, or .jsonl) into normalised records. */
export function readChatFile(path: string): ChatRecord[] {
  return readRecordFile(path, 'chat', normalizeChatRecord, (buf) => {
    let text: string;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { throw new Error(`${path}: not valid UTF-8`); }
    try { return JSON.parse(text) as unknown; } catch (e) { throw new Error(`${path}: invalid JSON (${(e as Error).message.split('\n')[0]})`); }
  });
}

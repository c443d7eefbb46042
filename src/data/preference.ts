// Preference data for DPO, read into one normalised form {prompt, chosen, rejected}:
//   - TRL standard:        {"prompt": "…", "chosen": "…", "rejected": "…"}
//   - TRL conversational:  {"prompt": [{"role": "user", "content": "…"}], "chosen": [{"role": "assistant", …}], "rejected": […]}
//   - TRL implicit prompt: {"chosen": [turns…, assistant], "rejected": [same turns…, assistant]} (the shared turns are the prompt)
//   - LLaMA-Factory ShareGPT: {"conversations": [{"from": "human", "value": "…"}], "chosen": {"from": "gpt", "value": "…"}, "rejected": {…}}
//   - LLaMA-Factory Alpaca:   {"instruction": "…", "input": "…" (optional), "chosen": "…", "rejected": "…"}
// The prompt stays text when given as text and becomes a message list otherwise (the chat
// template renders it later); chosen and rejected are the completions' text. A file is a JSON
// array of records (or one record), or JSONL when its name ends in .jsonl. Errors are one line
// naming the file and the record (and line for JSONL).

import { parseJsonStrict, decodeUtf8 } from '../io/json.js';
import { chatTurn, readRecordFile, type ChatMessage } from './chat.js';

export interface PreferencePair {
  /** Text (used as is) or the conversation so far (rendered by a chat template). */
  prompt: ChatMessage[] | string;
  chosen: string;
  rejected: string;
}


type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const own = (o: Obj, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function show(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return (s.length > 60 ? s.slice(0, 60) + '…' : s).replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

function turns(v: unknown, w: string): ChatMessage[] {
  if (!Array.isArray(v)) throw new Error(`${w}: must be a list of messages, got ${show(v)}`);
  if (v.length === 0) throw new Error(`${w}: is empty`);
  return v.map((t, j) => chatTurn(t, `${w}[${j}]`));
}

/** A completion: text, one assistant message, or a list holding one assistant message. */
function completion(v: unknown, w: string): string {
  if (typeof v === 'string') return v;
  const msgs = Array.isArray(v) ? turns(v, w) : isObj(v) ? [chatTurn(v, w)] : null;
  if (msgs === null) throw new Error(`${w}: must be text or an assistant message, got ${show(v)}`);
  if (msgs.length !== 1 || msgs[0].role !== 'assistant') throw new Error(`${w}: must be one assistant message, got ${msgs.map((m) => m.role).join(', ')}`);
  return msgs[0].content;
}

/** One record in any of the formats above → a normalised pair. `at` prefixes errors. */
export function normalizePreferenceRecord(rec: unknown, at: string): PreferencePair {
  if (!isObj(rec)) throw new Error(`${at}: expected an object, got ${show(rec)}`);
  for (const k of ['chosen', 'rejected']) if (!own(rec, k)) throw new Error(`${at}: missing "${k}" (a preference record needs "chosen" and "rejected")`);
  const sources = ['prompt', 'conversations', 'instruction'].filter((k) => own(rec, k));
  if (sources.length > 1) throw new Error(`${at}: gives the prompt twice ("${sources.join('" and "')}"); give one`);
  let prompt: ChatMessage[] | string;
  let chosen: string, rejected: string;
  if (sources.length === 0) {
    // Implicit prompt: chosen and rejected are whole conversations sharing every turn but the last.
    if (!Array.isArray(rec.chosen)) throw new Error(`${at}: has no "prompt" (give "prompt", "conversations" or "instruction")`);
    const c = turns(rec.chosen, `${at}: "chosen"`), r = turns(rec.rejected, `${at}: "rejected"`);
    const same = c.length === r.length && c.slice(0, -1).every((m, i) => m.role === r[i].role && m.content === r[i].content);
    if (!same || c.length < 2) throw new Error(`${at}: has no "prompt", and "chosen"/"rejected" do not share all turns but their last`);
    for (const [k, m] of [['chosen', c], ['rejected', r]] as const) {
      if (m[m.length - 1].role !== 'assistant') throw new Error(`${at}: the last turn of "${k}" must be an assistant message, got ${m[m.length - 1].role}`);
    }
    prompt = c.slice(0, -1);
    chosen = c[c.length - 1].content;
    rejected = r[r.length - 1].content;
  } else {
    const src = sources[0];
    if (src === 'prompt') {
      const p = rec.prompt;
      prompt = typeof p === 'string' ? p : turns(p, `${at}: "prompt"`);
    } else if (src === 'conversations') {
      prompt = turns(rec.conversations, `${at}: "conversations"`);
    } else {
      if (typeof rec.instruction !== 'string') throw new Error(`${at}: "instruction" must be a string, got ${show(rec.instruction)}`);
      if (own(rec, 'input') && typeof rec.input !== 'string') throw new Error(`${at}: "input" must be a string, got ${show(rec.input)}`);
      const input = (rec.input as string | undefined) ?? '';
      prompt = [{ role: 'user', content: input ? `${rec.instruction}\n${input}` : rec.instruction }];
    }
    if (Array.isArray(prompt) && prompt[prompt.length - 1].role === 'assistant') {
      throw new Error(`${at}: the prompt ends with an assistant turn; it should end where the answer starts`);
    }
    chosen = completion(rec.chosen, `${at}: "chosen"`);
    rejected = completion(rec.rejected, `${at}: "rejected"`);
  }
  if (chosen === '') throw new Error(`${at}: "chosen" is empty`);
  if (rejected === '') throw new Error(`${at}: "rejected" is empty`);
  if (chosen === rejected) throw new Error(`${at}: "chosen" and "rejected" are the same text (nothing to prefer)`);
  return { prompt, chosen, rejected };
}

/** Read a preference file (JSON array, one JSON record, or .jsonl) into normalised pairs. */
export function readPreferenceFile(path: string): PreferencePair[] {
  return readRecordFile(path, 'preference', normalizePreferenceRecord, (buf) => parseJsonStrict(decodeUtf8(buf, path), path));
}

// Plain text for language modelling: a .txt file as it is, or a .jsonl file of documents
// {"text": "..."} (the C4 / OpenWebText dump format) joined with blank lines.

import { jsonlRecords, readUserFile } from '../io/json.js';

/** Largest LM text file we read whole. */
export const MAX_TEXT_FILE_BYTES = 1 << 30;

/**
 * The text of one LM data file. A name ending in .jsonl is read as one JSON object per non-blank
 * line with a string "text" (other keys ignored); every bad line is a one-line error naming FILE:LINE.
 */
export function readLmText(path: string): string {
  const buf = readUserFile(path, 'LM text file', MAX_TEXT_FILE_BYTES);
  let s: string;
  try { s = new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { throw new Error(`${path}: not valid UTF-8`); }
  if (!/\.jsonl$/i.test(path)) return s;
  const docs: string[] = [];
  for (const { value: o, at } of jsonlRecords(buf, path)) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${at}: expected a JSON object {"text": ...}`);
    const t = (o as Record<string, unknown>).text;
    if (typeof t !== 'string') throw new Error(`${at}: expected "text" to be a string, got ${JSON.stringify(t)?.slice(0, 60) ?? 'nothing'}`);
    docs.push(t);
  }
  if (docs.length === 0) throw new Error(`${path}: has no {"text"} documents (empty file)`);
  return docs.join('\n\n');
}

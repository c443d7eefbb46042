// Plain text for language modelling: a .txt file as it is, or a .jsonl file of documents
// {"text": "..."} (the C4 / OpenWebText dump format) joined with blank lines.

import { readFileSync, statSync } from 'node:fs';

/** Largest LM text file we read whole. */
export const MAX_TEXT_FILE_BYTES = 1 << 30;

/**
 * The text of one LM data file. A name ending in .jsonl is read as one JSON object per non-blank
 * line with a string "text" (other keys ignored); every bad line is a one-line error naming FILE:LINE.
 */
export function readLmText(path: string): string {
  let st;
  try { st = statSync(path); } catch { throw new Error(`LM text file not found: ${path}`); }
  if (!st.isFile()) throw new Error(`${path}: not a regular file`);
  if (st.size > MAX_TEXT_FILE_BYTES) throw new Error(`${path}: ${st.size} bytes is larger than the ${MAX_TEXT_FILE_BYTES}-byte limit for an LM text file`);
  let s: string;
  try { s = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(path)); } catch { throw new Error(`${path}: not valid UTF-8`); }
  if (!/\.jsonl$/i.test(path)) return s;
  const docs: string[] = [];
  s.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const at = `${path}:${i + 1}`;
    let o: unknown;
    try { o = JSON.parse(line); } catch (e) { throw new Error(`${at}: invalid JSON (${(e as Error).message.split('\n')[0]})`); }
    if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new Error(`${at}: expected a JSON object {"text": ...}`);
    const t = (o as Record<string, unknown>).text;
    if (typeof t !== 'string') throw new Error(`${at}: expected "text" to be a string, got ${JSON.stringify(t)?.slice(0, 60) ?? 'nothing'}`);
    docs.push(t);
  });
  if (docs.length === 0) throw new Error(`${path}: has no {"text"} documents (empty file)`);
  return docs.join('\n\n');
}

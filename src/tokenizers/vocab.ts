// WordPiece vocab.txt (BERT's format): one token per line, the line index is the token id.
// Only the reader for now (WordPiece encoding comes with the BERT issue); it is strict so a broken
// vocabulary fails at load time, by file and line, instead of shifting every id after it.

import { readUserFile } from '../io/json.js';

/** Largest vocab.txt we read (BERT's is 230 kB; the biggest multilingual ones a few MB). */
export const MAX_VOCAB_TXT_BYTES = 64 << 20;

function show(tok: string): string {
  const s = JSON.stringify(tok.length > 60 ? tok.slice(0, 60) + '…' : tok);
  return s.replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

/**
 * token → id of a vocab.txt. Lines end in LF or CRLF; a final newline is optional. UTF-8 only (a
 * leading byte-order mark is dropped), no empty lines, no token twice, at least one token. Errors
 * are one line naming FILE or FILE:LINE.
 */
export function readVocabTxt(path: string): Map<string, number> {
  const buf = readUserFile(path, 'vocab file', MAX_VOCAB_TXT_BYTES, 'vocab.txt');
  let text: string;
  try { text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(buf); } catch {
    // Name the line of the first bad byte.
    const dec = new TextDecoder('utf-8', { fatal: true });
    let line = 1;
    for (let start = 0; start <= buf.length; line++) {
      let end = buf.indexOf(0x0a, start);
      if (end < 0) end = buf.length;
      try { dec.decode(buf.subarray(start, end)); } catch { break; }
      start = end + 1;
    }
    throw new Error(`${path}:${line}: not valid UTF-8`);
  }
  if (text.length === 0) throw new Error(`${path}: empty vocab file`);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const vocab = new Map<string, number>();
  for (let i = 0; i < lines.length; i++) {
    const tok = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (tok === '') throw new Error(`${path}:${i + 1}: empty line (every line must hold one token)`);
    if (tok.includes('\r')) throw new Error(`${path}:${i + 1}: token ${show(tok)} contains a carriage return`);
    const prev = vocab.get(tok);
    if (prev !== undefined) throw new Error(`${path}:${i + 1}: token ${show(tok)} already appears on line ${prev + 1}`);
    vocab.set(tok, i);
  }
  return vocab;
}

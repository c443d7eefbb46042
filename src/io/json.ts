// Reading user JSON: parse errors name the file, unknown keys are errors that name the key and
// suggest the closest known one (a typo must never be silently ignored).

import { readFileSync, statSync } from 'node:fs';

/** Levenshtein distance (small strings: keys, flags, command names). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** The candidate closest to `name` if it is plausibly a typo of it, else undefined. */
export function closestMatch(name: string, candidates: readonly string[]): string | undefined {
  if (name.length > 200) return undefined; // no typo is that long; keeps hostile keys cheap
  let best: string | undefined, bestD = Infinity;
  const norm = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, '');
  for (const c of candidates) {
    const d = Math.min(editDistance(name, c), norm(name) === norm(c) ? 0 : Infinity);
    if (d < bestD) { bestD = d; best = c; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** " (did you mean 'x'?)" or "". */
export function didYouMean(name: string, candidates: readonly string[]): string {
  const c = closestMatch(name, candidates);
  return c ? ` (did you mean '${c}'?)` : '';
}

/** A user-given name made safe for a one-line message: control characters escaped, long names cut. */
export function printable(name: string, max = 80): string {
  const cut = name.length > max ? name.slice(0, max) + '…' : name;
  return cut.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Throw on the first key of `obj` not in `known`: `FILE: unknown key WHERE.KEY (did you mean …?)`. */
export function checkKeys(obj: Record<string, unknown>, known: readonly string[], file: string, where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw new Error(`${file}: unknown key ${where ? `${where}.` : ''}${printable(k)}${didYouMean(k, known)}`);
  }
}

/**
 * The first key that appears twice in one object of a JSON text (JSON.parse silently keeps the
 * last one), as `path.key`, or null. `text` must already be valid JSON. Iterative: no recursion
 * on deeply nested input.
 */
export function duplicateJsonKey(text: string): string | null {
  // One frame per open container: keys seen (objects only) and its path for the message.
  const stack: { keys: Set<string> | null; path: string; expectKey: boolean; lastKey: string; index: number }[] = [];
  const n = text.length;
  const childPath = (): string => {
    const top = stack[stack.length - 1];
    if (!top) return '';
    return top.keys ? (top.path ? `${top.path}.${top.lastKey}` : top.lastKey) : `${top.path}[${top.index}]`;
  };
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // string
      let j = i + 1, raw = false;
      while (j < n && text.charCodeAt(j) !== 0x22) { if (text.charCodeAt(j) === 0x5c) { raw = true; j++; } j++; }
      const top = stack[stack.length - 1];
      if (top && top.keys && top.expectKey) {
        const key = raw ? JSON.parse(text.slice(i, j + 1)) as string : text.slice(i + 1, j);
        if (top.keys.has(key)) return top.path ? `${top.path}.${key}` : key;
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x7b || c === 0x5b) { // { [
      const path = childPath();
      stack.push({ keys: c === 0x7b ? new Set() : null, path, expectKey: c === 0x7b, lastKey: '', index: 0 });
    } else if (c === 0x7d || c === 0x5d) { // } ]
      stack.pop();
    } else if (c === 0x2c) { // ,
      const top = stack[stack.length - 1];
      if (top) { if (top.keys) top.expectKey = true; else top.index++; }
    }
  }
  return null;
}

/** Parse JSON text; a syntax error or a duplicated key is a one-line error naming `file`. */
export function parseJsonStrict(text: string, file: string): unknown {
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${file}: invalid JSON (${(e as Error).message.split('\n')[0]})`); }
  const dup = duplicateJsonKey(text);
  if (dup !== null) throw new Error(`${file}: duplicate key ${printable(dup)}`);
  return v;
}

/** Bytes → string, or a one-line error naming `file` when they are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array, file: string, what = 'file'): string {
  try { return new TextDecoder('utf-8', { fatal: true }).decode(bytes); } catch { throw new Error(`${file}: ${what} is not valid UTF-8`); }
}

/**
 * The bytes of a user's data file: it must exist, be a regular file and hold at most `maxBytes`
 * (checked before reading, so a huge file is refused without being read). One-line errors:
 * `KIND not found: PATH`, `PATH: not a regular file`, `PATH: N bytes is larger than the M-byte
 * limit for a SIZEKIND`.
 */
export function readUserFile(path: string, kind: string, maxBytes: number, sizeKind = kind): Buffer {
  let st;
  try { st = statSync(path); } catch { throw new Error(`${kind} not found: ${path}`); }
  if (!st.isFile()) throw new Error(`${path}: not a regular file`);
  if (st.size > maxBytes) throw new Error(`${path}: ${st.size} bytes is larger than the ${maxBytes}-byte limit for a ${sizeKind}`);
  return readFileSync(path);
}

/**
 * The records of a JSONL buffer, one per non-blank line, each with its 1-based line number and
 * the location its errors should name. A line that is not UTF-8 is an error naming FILE:LINE; a
 * line that is not JSON names `label(line, index)` (default FILE:LINE; index = records so far).
 */
export function* jsonlRecords(buf: Uint8Array, path: string, label: (line: number, index: number) => string = (l) => `${path}:${l}`):
  Generator<{ value: unknown; line: number; at: string }> {
  const dec = new TextDecoder('utf-8', { fatal: true });
  let index = 0;
  for (let start = 0, line = 1; start < buf.length; line++) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    let text: string;
    try { text = dec.decode(buf.subarray(start, end)); } catch { throw new Error(`${path}:${line}: not valid UTF-8`); }
    start = end + 1;
    if (!text.trim()) continue;
    const at = label(line, index);
    let value: unknown;
    try { value = JSON.parse(text); } catch (e) { throw new Error(`${at}: invalid JSON (${(e as Error).message.split('\n')[0]})`); }
    index++;
    yield { value, line, at };
  }
}

/**
 * Read a user JSON file strictly: must exist, be a regular file under `maxBytes`, UTF-8, valid
 * JSON without duplicate keys. Every failure is one line naming the file.
 */
export function readJsonFile(path: string, what = 'file', maxBytes = 1 << 30): unknown {
  let st;
  try { st = statSync(path); } catch { throw new Error(`${what} not found: ${path}`); }
  if (st.isDirectory()) throw new Error(`${path}: is a directory, expected a JSON file`);
  if (st.size > maxBytes) throw new Error(`${path}: ${st.size} bytes is larger than the ${maxBytes}-byte limit for a ${what}`);
  let buf: Uint8Array;
  try { buf = readFileSync(path); } catch (e) { throw new Error(`${path}: cannot read (${(e as Error).message.split('\n')[0]})`); }
  return parseJsonStrict(decodeUtf8(buf, path), path);
}

// ---------------------------------------------------------------------------------------------
// A small schema checker for user configs: types, ranges, enums, unknown keys (with suggestion).

export type Schema =
  | { t: 'int'; min?: number; max?: number }
  | { t: 'number'; min?: number; max?: number; gt?: number; lt?: number }
  | { t: 'string'; enum?: readonly string[]; nonEmpty?: boolean }
  | { t: 'bool' }
  | { t: 'null' }
  | { t: 'array'; of: Schema; minLen?: number; maxLen?: number; unique?: boolean }
  | { t: 'tuple'; of: Schema[] }
  | { t: 'object'; keys: Record<string, Schema>; required?: readonly string[]; open?: boolean }
  | { t: 'any' }
  | { t: 'oneOf'; of: Schema[]; what: string };

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? typeof v;
  return s.length > 60 ? s.slice(0, 60) + '…' : s;
}

function describeSchema(s: Schema): string {
  switch (s.t) {
    case 'int': return `an integer${s.min !== undefined && s.max !== undefined ? ` in [${s.min}, ${s.max}]` : s.min !== undefined ? ` ≥ ${s.min}` : s.max !== undefined ? ` ≤ ${s.max}` : ''}`;
    case 'number': {
      const lo = s.gt !== undefined ? `> ${s.gt}` : s.min !== undefined ? `≥ ${s.min}` : '';
      const hi = s.lt !== undefined ? `< ${s.lt}` : s.max !== undefined ? `≤ ${s.max}` : '';
      return `a number${lo || hi ? ' ' + [lo, hi].filter(Boolean).join(' and ') : ''}`;
    }
    case 'string': return s.enum ? `one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}` : s.nonEmpty ? 'a non-empty string' : 'a string';
    case 'bool': return 'true or false';
    case 'null': return 'null';
    case 'array': return `an array${s.minLen ? ` of at least ${s.minLen}` : ''}${s.unique ? ' (no repeats)' : ''} of ${describeSchema(s.of).replace(/^an? /, '')}s`;
    case 'tuple': return `[${s.of.map(describeSchema).join(', ')}]`;
    case 'object': return 'an object';
    case 'any': return 'any value';
    case 'oneOf': return s.what;
  }
}

/** True when `v` matches `s` (no messages; used by oneOf). */
function matches(v: unknown, s: Schema): boolean {
  try { checkSchema(v, s, '', ''); return true; } catch { return false; }
}

/**
 * Check `v` against `s`; the first problem throws `FILE: WHERE must be …, got …` or
 * `FILE: unknown key WHERE.KEY (did you mean …?)` or `FILE: missing key WHERE.KEY`.
 */
export function checkSchema(v: unknown, s: Schema, file: string, where: string): void {
  const bad = (): never => { throw new Error(`${file}: ${where || '(top level)'} must be ${describeSchema(s)}, got ${typeName(v)}`); };
  switch (s.t) {
    case 'any': return;
    case 'null': if (v !== null) bad(); return;
    case 'bool': if (typeof v !== 'boolean') bad(); return;
    case 'int':
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || (s.min !== undefined && v < s.min) || (s.max !== undefined && v > s.max)) bad();
      return;
    case 'number':
      if (typeof v !== 'number' || !Number.isFinite(v) || (s.min !== undefined && v < s.min) || (s.max !== undefined && v > s.max) ||
        (s.gt !== undefined && !(v > s.gt)) || (s.lt !== undefined && !(v < s.lt))) bad();
      return;
    case 'string':
      if (typeof v !== 'string' || (s.nonEmpty && v === '') || (s.enum && !s.enum.includes(v))) bad();
      return;
    case 'array': {
      if (!Array.isArray(v) || (s.minLen !== undefined && v.length < s.minLen) || (s.maxLen !== undefined && v.length > s.maxLen)) bad();
      const arr = v as unknown[];
      arr.forEach((x, i) => checkSchema(x, s.of, file, `${where}[${i}]`));
      if (s.unique) {
        const seen = new Set<string>();
        arr.forEach((x, i) => { const k = JSON.stringify(x); if (seen.has(k)) throw new Error(`${file}: ${where}[${i}] repeats ${k}`); seen.add(k); });
      }
      return;
    }
    case 'tuple': {
      if (!Array.isArray(v) || v.length !== s.of.length) bad();
      (v as unknown[]).forEach((x, i) => checkSchema(x, s.of[i], file, `${where}[${i}]`));
      return;
    }
    case 'oneOf': {
      if (s.of.some((o) => matches(v, o))) return;
      // One alternative of the value's own kind: its message is the precise one.
      const kind = (x: Schema): boolean => (x.t === 'object' ? v !== null && typeof v === 'object' && !Array.isArray(v)
        : x.t === 'array' || x.t === 'tuple' ? Array.isArray(v) : x.t === 'int' || x.t === 'number' ? typeof v === 'number' : false);
      const same = s.of.filter(kind);
      if (same.length === 1) checkSchema(v, same[0], file, where);
      return bad();
    }
    case 'object': {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) bad();
      const o = v as Record<string, unknown>;
      if (!s.open) checkKeys(o, Object.keys(s.keys), file, where);
      for (const k of s.required ?? []) if (o[k] === undefined) throw new Error(`${file}: missing key ${where ? `${where}.` : ''}${k}`);
      for (const [k, sub] of Object.entries(s.keys)) {
        if (Object.prototype.hasOwnProperty.call(o, k) && o[k] !== undefined) checkSchema(o[k], sub, file, where ? `${where}.${k}` : k);
      }
      return;
    }
  }
}

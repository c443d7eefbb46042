// Reading user JSON: parse errors name the file, unknown keys are errors that name the key and
// suggest the closest known one (a typo must never be silently ignored).

import { existsSync, readFileSync } from 'node:fs';

/** Parse a JSON file; every failure is one line naming the file. */
export function readJsonFile(path: string, what = 'file'): unknown {
  if (!existsSync(path)) throw new Error(`${what} not found: ${path}`);
  let text: string;
  try { text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(path)); } catch (e) {
    throw new Error(`${path}: ${(e as NodeJS.ErrnoException).code === 'EISDIR' ? 'is a directory' : 'not valid UTF-8'}`);
  }
  try { return JSON.parse(text); } catch (e) { throw new Error(`${path}: invalid JSON (${(e as Error).message})`); }
}

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

/** Throw on the first key of `obj` not in `known`: `FILE: unknown key WHERE.KEY (did you mean …?)`. */
export function checkKeys(obj: Record<string, unknown>, known: readonly string[], file: string, where: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw new Error(`${file}: unknown key ${where ? `${where}.` : ''}${k}${didYouMean(k, known)}`);
  }
}

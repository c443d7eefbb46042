// Minimal, strict flag parser shared by every command: unknown flags, missing values, numbers out
// of range and values outside a fixed set are one-line usage errors that name the flag (exit 2).

import { existsSync, statSync } from 'node:fs';
import { closestMatch } from '../io/json.js';

export class UsageError extends Error {}

export interface FlagSpec {
  /** 'string' | 'number' | 'boolean' | 'list' (repeatable / space-separated values until the next flag) */
  type: 'string' | 'number' | 'boolean' | 'list';
  default?: string | number | boolean | string[];
  help: string;
  /** number (or number-list item) bounds; inclusive unless the matching *Exclusive is set. */
  min?: number;
  max?: number;
  minExclusive?: boolean;
  maxExclusive?: boolean;
  /** number (or number-list item) must be an integer. */
  integer?: boolean;
  /** list: every item (comma or space separated) is a number checked like a number flag; kept as strings. */
  items?: 'number';
  /** string: the value must be one of these. */
  choices?: readonly string[];
  /** string/list: interpret backslash escapes (\n \t \r \\ \" \' \0 \uXXXX) in the value. */
  escapes?: boolean;
  /** The value names an input that must exist (checked by checkPaths: a runtime error, exit 1). */
  path?: 'file' | 'dir';
}

export type Parsed = Record<string, string | number | boolean | string[] | undefined> & { _: string[] };

/** "an integer ≥ 0", "a number in (0, 1]", … (the constraint part of a range message). */
export function describeRange(s: FlagSpec): string {
  const kind = s.integer ? 'an integer' : 'a number';
  const lo = s.min, hi = s.max;
  if (lo !== undefined && hi !== undefined) return `${kind} in ${s.minExclusive ? '(' : '['}${lo}, ${hi}${s.maxExclusive ? ')' : ']'}`;
  if (lo !== undefined) return `${kind} ${s.minExclusive ? '>' : '≥'} ${lo}`;
  if (hi !== undefined) return `${kind} ${s.maxExclusive ? '<' : '≤'} ${hi}`;
  return kind;
}

function inRange(n: number, s: FlagSpec): boolean {
  if (s.integer && !Number.isInteger(n)) return false;
  if (s.min !== undefined && (s.minExclusive ? !(n > s.min) : !(n >= s.min))) return false;
  if (s.max !== undefined && (s.maxExclusive ? !(n < s.max) : !(n <= s.max))) return false;
  return true;
}

function toNumber(v: string, cmd: string, name: string, s: FlagSpec): number {
  const n = v.trim() === '' ? NaN : Number(v); // Number('') is 0: an empty value is not a number
  if (!Number.isFinite(n)) throw new UsageError(`${cmd}: --${name} expects a number, got '${v}'`);
  if (!inRange(n, s)) throw new UsageError(`${cmd}: --${name} must be ${describeRange(s)}, got ${v}`);
  return n;
}

/** "a or b" / "one of a, b, c". */
export function describeChoices(c: readonly string[]): string {
  return c.length === 1 ? c[0] : c.length === 2 ? `${c[0]} or ${c[1]}` : `one of ${c.join(', ')}`;
}

function checkChoice(v: string, cmd: string, name: string, s: FlagSpec): void {
  if (!s.choices || s.choices.includes(v)) return;
  const near = closestMatch(v, s.choices);
  throw new UsageError(`${cmd}: --${name} must be ${describeChoices(s.choices)}, got '${v}'${near ? ` (did you mean '${near}'?)` : ''}`);
}

const ESC: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"', "'": "'", '0': '\0' };

/** Backslash escapes as in a JSON/JS string literal (a README's `--stop "\n\n"` arrives as backslash-n). */
export function unescapeArg(v: string, what: string): string {
  let out = '';
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (c !== '\\') { out += c; continue; }
    const e = v[++i];
    if (e === undefined) throw new UsageError(`${what}: a trailing backslash in '${v}' (write \\\\ for a backslash)`);
    if (e in ESC) { out += ESC[e]; continue; }
    if (e === 'u') {
      const hex = v.slice(i + 1, i + 5);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new UsageError(`${what}: \\u needs 4 hex digits in '${v}'`);
      out += String.fromCharCode(parseInt(hex, 16));
      i += 4;
      continue;
    }
    throw new UsageError(`${what}: unknown escape \\${e} in '${v}' (known: \\n \\t \\r \\\\ \\" \\' \\0 \\uXXXX)`);
  }
  return out;
}

/** A value that is itself a flag ("--out --json") means the value was forgotten. */
function looksLikeFlag(v: string): boolean {
  return /^--[a-z][a-z0-9_-]*(=|$)/i.test(v);
}

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, cmd: string): Parsed {
  const out: Parsed = { _: [] };
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out[k] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || a === '--') { out._.push(a); continue; }
    let name = a.slice(2), inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { inline = name.slice(eq + 1); name = name.slice(0, eq); }
    const s = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (!s) {
      const near = closestMatch(name, Object.keys(spec));
      throw new UsageError(`${cmd}: unknown flag --${name}${near ? ` (did you mean --${near}?)` : ` (see ${cmd} --help)`}`);
    }
    if (s.type === 'boolean') {
      if (inline !== undefined && !['true', 'false', '1', '0'].includes(inline)) throw new UsageError(`${cmd}: --${name} takes no value (or =true/=false), got '${inline}'`);
      out[name] = inline === undefined ? true : inline === 'true' || inline === '1';
      continue;
    }
    if (s.type === 'list') {
      // Text lists (--stop) keep commas: a stop string may contain one.
      const vals: string[] = inline !== undefined ? (s.escapes ? [inline] : inline.split(',')) : [];
      while (inline === undefined && i + 1 < argv.length && !argv[i + 1].startsWith('--')) vals.push(argv[++i]);
      if (vals.length === 0) throw new UsageError(`${cmd}: --${name} needs at least one value`);
      if (s.items === 'number') {
        const items = vals.flatMap((v) => v.split(',')).filter((v) => v !== '');
        if (items.length === 0) throw new UsageError(`${cmd}: --${name} needs at least one value`);
        for (const v of items) toNumber(v, cmd, name, s);
        out[name] = items;
      } else if (s.escapes) {
        out[name] = vals.map((v) => {
          const u = unescapeArg(v, `${cmd}: --${name}`);
          if (u === '') throw new UsageError(`${cmd}: --${name} values must not be empty`);
          return u;
        });
      } else out[name] = vals;
      continue;
    }
    const v = inline ?? argv[i + 1];
    if (v === undefined || (inline === undefined && looksLikeFlag(v))) throw new UsageError(`${cmd}: --${name} needs a value`);
    if (inline === undefined) i++;
    if (s.type === 'number') out[name] = toNumber(v, cmd, name, s);
    else {
      const str = s.escapes ? unescapeArg(v, `${cmd}: --${name}`) : v;
      checkChoice(str, cmd, name, s);
      out[name] = str;
    }
  }
  return out;
}

/** Inputs named by flags with `path` must exist: a runtime error (exit 1) naming the flag and the path. */
export function checkPaths(a: Parsed, spec: Record<string, FlagSpec>, cmd: string): void {
  for (const [k, s] of Object.entries(spec)) {
    if (!s.path || a[k] === undefined) continue;
    const v = a[k];
    for (const p of Array.isArray(v) ? v : [String(v)]) {
      if (!existsSync(p)) throw new Error(`${cmd}: --${k} ${s.path === 'dir' ? 'directory' : 'file'} not found: ${p}`);
      const isDir = statSync(p).isDirectory();
      if (s.path === 'dir' && !isDir) throw new Error(`${cmd}: --${k} must be a directory, got the file ${p}`);
      if (s.path === 'file' && isDir) throw new Error(`${cmd}: --${k} must be a file, got the directory ${p}`);
    }
  }
}

/** Two columns: names padded to the longest (+2 spaces, so they never touch the text), text wrapped. */
export function columns(rows: [string, string][], indent = 2, width = 100): string[] {
  const w = Math.max(0, ...rows.map(([n]) => n.length)) + 2;
  const textW = Math.max(30, width - indent - w);
  const out: string[] = [];
  for (const [n, text] of rows) {
    const words = text.split(/\s+/).filter(Boolean);
    const lines: string[] = [];
    let cur = '';
    for (const word of words) {
      if (cur && cur.length + 1 + word.length > textW) { lines.push(cur); cur = word; } else cur = cur ? `${cur} ${word}` : word;
    }
    lines.push(cur);
    lines.forEach((l, i) => out.push(' '.repeat(indent) + (i === 0 ? n.padEnd(w) : ' '.repeat(w)) + l));
  }
  return out;
}

function constraint(s: FlagSpec): string {
  if (s.type === 'number' || s.items === 'number') {
    const r = s.integer || s.min !== undefined || s.max !== undefined ? describeRange(s).replace(/^an? /, '') : '';
    return s.type === 'list' && r ? `each ${r}` : r;
  }
  if (s.choices) return describeChoices(s.choices).replace(/^one of /, '');
  return '';
}

export function helpText(cmd: string, summary: string, spec: Record<string, FlagSpec>, positionals?: string): string {
  const lines = [`usage: ${cmd}${positionals ? ` ${positionals}` : ''} [flags]`, '', ...columns([['', summary]], 0).map((l) => l.slice(2)), '', 'flags:'];
  const rows: [string, string][] = Object.entries(spec).map(([k, s]) => {
    const d = s.default !== undefined && s.default !== false ? `default ${Array.isArray(s.default) ? s.default.join(',') : s.default}` : '';
    const extra = [constraint(s), d].filter(Boolean).join('; ');
    return [`--${k}${s.type === 'boolean' ? '' : ` <${s.type === 'list' ? (s.items === 'number' ? 'numbers' : 'values') : s.type}>`}`, s.help + (extra ? ` (${extra})` : '')];
  });
  lines.push(...columns(rows));
  return lines.join('\n');
}

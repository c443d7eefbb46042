// Minimal, strict flag parser shared by every command: unknown flags and missing values are
// one-line errors that name the flag.

export class UsageError extends Error {}

export interface FlagSpec {
  /** 'string' | 'number' | 'boolean' | 'list' (repeatable / space-separated values until the next flag) */
  type: 'string' | 'number' | 'boolean' | 'list';
  default?: string | number | boolean | string[];
  help: string;
}

export type Parsed = Record<string, string | number | boolean | string[] | undefined> & { _: string[] };

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, cmd: string): Parsed {
  const out: Parsed = { _: [] };
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out[k] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { out._.push(a); continue; }
    let name = a.slice(2), inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { inline = name.slice(eq + 1); name = name.slice(0, eq); }
    const s = spec[name];
    if (!s) throw new UsageError(`${cmd}: unknown flag --${name} (see ${cmd} --help)`);
    if (s.type === 'boolean') { out[name] = inline === undefined ? true : inline !== 'false'; continue; }
    if (s.type === 'list') {
      const vals: string[] = inline !== undefined ? inline.split(',') : [];
      while (inline === undefined && i + 1 < argv.length && !argv[i + 1].startsWith('--')) vals.push(argv[++i]);
      if (vals.length === 0) throw new UsageError(`${cmd}: --${name} needs at least one value`);
      out[name] = vals;
      continue;
    }
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`${cmd}: --${name} needs a value`);
    if (s.type === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n)) throw new UsageError(`${cmd}: --${name} expects a number, got '${v}'`);
      out[name] = n;
    } else out[name] = v;
  }
  return out;
}

export function helpText(cmd: string, summary: string, spec: Record<string, FlagSpec>): string {
  const lines = [`usage: ${cmd} [flags]`, '', summary, '', 'flags:'];
  for (const [k, s] of Object.entries(spec)) {
    const d = s.default !== undefined && s.default !== false ? ` (default ${Array.isArray(s.default) ? s.default.join(',') : s.default})` : '';
    lines.push(`  --${k}${s.type === 'boolean' ? '' : ` <${s.type}>`}`.padEnd(30) + s.help + d);
  }
  return lines.join('\n');
}

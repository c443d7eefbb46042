// Shared pieces of the loader fuzz tests: a seeded generator, byte/JSON mutators, and the one
// rule every case must satisfy: the loader returns (then the caller checks the result is sane) or
// throws a plain Error whose message is one line naming the file — never a RangeError/TypeError
// from deep inside, never a slow case, never a big allocation.

import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.js';

export class Fuzz {
  readonly rng: Rng;
  constructor(seed: number) { this.rng = new Rng(seed); }
  /** integer in [0, n) */
  int(n: number): number { return Math.floor(this.rng.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  chance(p: number): boolean { return this.rng.next() < p; }

  /** A random byte-level mutation: truncate, flip, insert, delete, duplicate or overwrite a span. */
  mutateBytes(b: Uint8Array): Uint8Array {
    const n = b.length;
    switch (this.int(6)) {
      case 0: return b.slice(0, this.int(n + 1));
      case 1: { const c = b.slice(); for (let k = 1 + this.int(4); k > 0 && n; k--) c[this.int(n)] ^= 1 << this.int(8); return c; }
      case 2: { const at = this.int(n + 1), ins = Uint8Array.from({ length: 1 + this.int(8) }, () => this.int(256)); return concat(b.subarray(0, at), ins, b.subarray(at)); }
      case 3: { const at = this.int(n + 1), len = this.int(16); return concat(b.subarray(0, at), b.subarray(Math.min(n, at + len))); }
      case 4: { const at = this.int(n + 1), len = this.int(32); return concat(b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)); }
      default: { const c = b.slice(); const at = this.int(n + 1); for (let i = at; i < Math.min(n, at + 1 + this.int(8)); i++) c[i] = this.pick([0x00, 0x22, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c, 0x3a, 0x0a, 0xff, 0xc3, 0x80, 0x30, 0x2d]); return c; }
    }
  }

  /** A hostile JSON value: wrong types, huge/negative/fractional numbers, long strings, deep nesting. */
  value(): unknown {
    return this.pick<() => unknown>([
      () => null, () => true, () => 0, () => -1, () => 1.5, () => 2 ** 53, () => 1e308, () => -1e-300, () => 2e7, () => 20000, () => 2 ** 31,
      () => '', () => 'x', () => '\n', () => '\ud800', () => 'é'.repeat(this.int(300)), () => [], () => [1, 2], () => ['a', 'a'], () => ({}),
      () => ({ a: 1 }), () => JSON.parse('['.repeat(2000) + ']'.repeat(2000)), () => this.int(100),
    ])();
  }

  /** Mutate a parsed JSON document in place at a random node (set/delete/add key, replace value). */
  mutateJson(doc: unknown, keyPool: readonly string[]): unknown {
    if (this.chance(0.05)) return this.value();
    const nodes: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
    const walk = (v: unknown, depth: number): void => {
      if (depth > 6 || nodes.length > 4000) return;
      if (Array.isArray(v)) v.forEach((x, i) => { nodes.push({ parent: v, key: i }); walk(x, depth + 1); });
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { nodes.push({ parent: v as Record<string, unknown>, key: k }); walk(x, depth + 1); }
    };
    walk(doc, 0);
    if (nodes.length === 0) return this.value();
    const { parent, key } = this.pick(nodes);
    const op = this.int(5);
    if (Array.isArray(parent)) {
      const i = key as number;
      if (op === 0) parent.splice(i, 1);
      else if (op === 1) parent.push(parent[i]);
      else parent[i] = this.value();
    } else {
      const k = key as string;
      if (op === 0) delete parent[k];
      else if (op === 1) parent[this.pick(keyPool) + (this.chance(0.5) ? 's' : '')] = this.value();
      else if (op === 2 && typeof parent[k] === 'number') parent[k] = this.pick([(parent[k] as number) * 1000, -(parent[k] as number), (parent[k] as number) + 0.5, 0]);
      else parent[k] = this.value();
    }
    return doc;
  }

  /** Text edits JSON.stringify cannot make: a key written twice, a cut, a stray byte. */
  mutateJsonText(text: string): string {
    switch (this.int(3)) {
      case 0: { // duplicate the first key of some object
        const m = [...text.matchAll(/\{"([^"\\]{1,40})":/g)];
        if (!m.length) return text;
        const hit = this.pick(m), at = hit.index! + 1;
        return text.slice(0, at) + `"${hit[1]}":0,` + text.slice(at);
      }
      case 1: return text.slice(0, this.int(text.length + 1));
      default: { const at = this.int(text.length + 1); return text.slice(0, at) + this.pick(['"', '}', ',', '\u0000', '\\', 'NaN', '1e999', '-']) + text.slice(at); }
    }
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export interface Tally { ok: number; err: number; maxMs: number }

/**
 * Run one case. A throw must be a plain Error with a one-line message containing `file`; a return
 * goes to `sane` (which asserts the result). Each case must finish within `maxMs` and grow
 * ArrayBuffer memory by less than `maxBytes`.
 */
export function runCase<T>(tally: Tally, file: string, load: () => T, sane: (r: T) => void, what: string, maxMs = 2000, maxBytes = 64 << 20): void {
  const before = process.memoryUsage().arrayBuffers;
  const t0 = performance.now();
  let r: T | undefined, err: unknown;
  let threw = false;
  try { r = load(); } catch (e) { threw = true; err = e; }
  const ms = performance.now() - t0;
  tally.maxMs = Math.max(tally.maxMs, ms);
  assert.ok(ms < maxMs, `${what}: took ${ms.toFixed(0)} ms`);
  const grown = process.memoryUsage().arrayBuffers - before;
  assert.ok(grown < maxBytes, `${what}: ArrayBuffer memory grew by ${grown} bytes`);
  if (threw) {
    assert.ok(err instanceof Error, `${what}: threw a non-Error ${String(err)}`);
    const e = err as Error;
    assert.equal(e.constructor, Error, `${what}: threw ${e.constructor.name}: ${e.message}\n${e.stack}`);
    assert.ok(!/[\n\r]/.test(e.message), `${what}: message is not one line: ${JSON.stringify(e.message)}`);
    assert.ok(e.message.includes(file), `${what}: message does not name ${file}: ${e.message}`);
    tally.err++;
  } else {
    sane(r as T);
    tally.ok++;
  }
}

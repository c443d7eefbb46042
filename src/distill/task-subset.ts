// Restricting the students' training pools for the paper's ablations: a subset of the fitting
// tasks (number of meta-training tasks) and a fraction of each task's examples. Applied to the
// pools after they are built, so the teacher and the way pools are built stay as they are.

import { Rng } from '../engine/index.js';
import type { Example } from '../data/tasks.js';

/** FNV-1a of a string: a per-task seed that does not depend on the task's position. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h >>> 0;
}

/** How many of n examples a fraction keeps: round(f·n), at least 2 (an episode needs a demonstration and a query), at most n. */
export const fractionCount = (n: number, f: number): number => Math.min(n, Math.max(2, Math.round(f * n)));

/**
 * The pools restricted to `subset` (in the pools' own order, so the full subset gives the same
 * pools) and to `fraction` of each task's examples: a seeded random choice per task (by seed
 * and task name), kept in file order. Names not among the pools are an error naming the key.
 */
export function restrictPools(pools: Map<string, Example[]>, t: { train_subset?: string[]; train_fraction?: number }, seed: number): Map<string, Example[]> {
  if (!t.train_subset && (t.train_fraction === undefined || t.train_fraction === 1)) return pools;
  if (t.train_subset) {
    const missing = t.train_subset.filter((n) => !pools.has(n));
    if (missing.length) throw new Error(`study config: tasks.train_subset names ${missing.map((m) => `"${m}"`).join(', ')}, not among this study's training tasks (${[...pools.keys()].slice(0, 5).join(', ')}${pools.size > 5 ? ', …' : ''})`);
  }
  const keep = t.train_subset ? new Set(t.train_subset) : null;
  const out = new Map<string, Example[]>();
  for (const [name, pool] of pools) {
    if (keep && !keep.has(name)) continue;
    if (t.train_fraction === undefined || t.train_fraction === 1) { out.set(name, pool); continue; }
    const idx = new Rng((hash32(name) ^ Math.imul(seed + 1, 0x9e3779b1)) >>> 0).shuffle(pool.map((_, i) => i));
    const chosen = idx.slice(0, fractionCount(pool.length, t.train_fraction)).sort((a, b) => a - b);
    out.set(name, chosen.map((i) => pool[i]));
  }
  return out;
}

/** `sets` random task sets of each size in `counts`, drawn from `tasks` with `seed`; a count ≥ the number of tasks gives the one full set. */
export function taskSets(tasks: string[], counts: number[], sets: number, seed: number): { count: number; sets: string[][] }[] {
  return counts.map((count) => {
    if (count >= tasks.length) return { count: tasks.length, sets: [tasks.slice()] };
    const rng = new Rng((seed * 1000003 + count) >>> 0);
    const order = new Map(tasks.map((t, i) => [t, i]));
    return { count, sets: Array.from({ length: sets }, () => rng.shuffle(tasks.slice()).slice(0, count).sort((a, b) => order.get(a)! - order.get(b)!)) };
  });
}

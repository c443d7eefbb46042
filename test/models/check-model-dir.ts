// Shared by the round-trip tests: run tools/check_model_dir.py (an independent PyTorch loader of
// Hugging Face model dirs) on many dirs in one Python start-up, and compare logits.
// Needs PY with torch (Debian: python3-torch; ICLD_PYTHON overrides the path). Without it the
// tests fail; ICLD_ALLOW_NO_TORCH=1 turns that into a visible skip.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';

export const PY = process.env.ICLD_PYTHON ?? '/usr/bin/python3';
export const CHECK = fileURLToPath(new URL('../../../tools/check_model_dir.py', import.meta.url));

function torchProblem(): string | null {
  const r = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return r.error.message;
  if (r.status !== 0) return (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`);
  return null;
}
/** Why torch cannot be imported, or null. */
export const noTorch = torchProblem();
/** The describe() skip option: a reason only when torch is missing and ICLD_ALLOW_NO_TORCH=1. */
export const skip: string | false = noTorch && process.env.ICLD_ALLOW_NO_TORCH === '1'
  ? `${PY} cannot import torch (${noTorch}); skipped because ICLD_ALLOW_NO_TORCH=1` : false;

/** Fails the test when torch is missing (reached only when not skipped). */
export function requireTorch(): void {
  if (noTorch) assert.fail(`${PY} cannot import torch (${noTorch}): install python3-torch (or set ICLD_ALLOW_NO_TORCH=1 to skip this test)`);
}

/** What check_model_dir.py prints per dir (family-specific fields are optional). */
export interface Checked {
  dir: string; error?: string;
  config: Record<string, unknown>; unknown_keys: string[]; tied?: boolean; dtypes?: string[];
  ignored: string[]; shape: number[]; logits: number[];
}

/** One Python start-up for every dir (importing torch costs seconds on a slow machine). */
export function checkAll(dirs: string[], ids: number[]): Map<string, Checked> {
  const r = spawnSync(PY, [CHECK, '--ids', ids.join(','), ...dirs], { encoding: 'utf8', timeout: 180_000, maxBuffer: 64 << 20 });
  assert.equal(r.error, undefined, `${PY} ${CHECK}: ${r.error?.message}`);
  assert.ok(r.status === 0 || r.status === 1, `check_model_dir.py exited ${r.status}: ${r.stderr}`);
  const out = new Map<string, Checked>();
  for (const line of r.stdout.trim().split('\n')) {
    const c = JSON.parse(line) as Checked;
    out.set(c.dir, c);
  }
  assert.deepEqual([...out.keys()], dirs, `one result per dir: ${r.stderr}`);
  return out;
}

/** The dir's result, which must not be an error. */
export function ok(c: Checked | undefined): Checked {
  assert.ok(c, 'no result');
  assert.equal(c.error, undefined, `check_model_dir.py ${c.dir}: ${c.error}`);
  return c;
}

/** Our logits for one sequence, flattened. */
export function ourLogits(model: { eval(): unknown; forward(t: O.TensorLike & ReturnType<typeof O.tensor>): ReturnType<typeof O.tensor> }, ids: number[]): number[] {
  model.eval();
  return tidy(() => noGrad(() => Array.from(model.forward(O.tensor(ids, [1, ids.length], 'int32')).f32)));
}

export function maxDiff(a: number[], b: number[]): number {
  assert.equal(a.length, b.length);
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]));
  return w;
}

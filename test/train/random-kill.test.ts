// SIGKILL at random (seeded) moments: during `pretrain` with a checkpoint every step, during
// writeSafetensors over an existing file, during a teacher-cache build and during a `study`.
// After every kill each file is the old or the new version (never torn); rerunning/resuming
// then finishes byte-identical to an uninterrupted run (study: results.json equal apart from
// the timing fields speedup, speed and epoch_cost, which are measured wall-clock figures, and the
// speed-up the compression claims quote).

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Rng } from '../../src/engine/rng.js';
import { listCheckpoints } from '../../src/train/trainer.js';
import { TeacherCache } from '../../src/distill/cache.js';
import { serializeSafetensors } from '../../src/io/safetensors.js';
import { cleanStaleTemps } from '../../src/io/atomic.js';
import { MAIN, distModule, killAfter, tinyRun, assertCheckpointsLikeReference, sameBytes } from './kill-helpers.js';

const T = tinyRun();
const rng = new Rng(20261130);

/** Run node ARGS to the end; it must succeed. Returns its wall time in ms. */
function complete(args: string[]): number {
  const t0 = performance.now();
  const env = { ...process.env };
  delete env.ICLD_CRASH_AT;
  const r = spawnSync(process.execPath, args, { env, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  return performance.now() - t0;
}

/**
 * Kill `kills` runs at random moments in [lo, hi] ms, each continuing the previous one's dir
 * (`argsFor` picks resume/rerun arguments); `check` runs after every kill. A run that ends
 * before its kill starts the chain again in a fresh dir. Returns the dir of the last chain,
 * completed by one more uninterrupted run.
 */
async function killChain(kills: number, lo: number, hi: number, freshDir: () => string, argsFor: (dir: string) => string[], check: (dir: string) => string): Promise<{ dir: string; killed: number; seen: string[] }> {
  let dir = freshDir(), killed = 0;
  const seen: string[] = [];
  for (let i = 0; i < kills; i++) {
    const ms = Math.round(lo + rng.next() * (hi - lo));
    const r = await killAfter(argsFor(dir), ms);
    if (r.killed) killed++;
    else { assert.equal(r.status, 0, `run ended early but failed (kill at ${ms} ms): ${r.stderr}`); }
    seen.push(`${r.killed ? 'killed' : 'finished'} at ${ms} ms: ${check(dir)}`);
    if (!r.killed) dir = freshDir();
  }
  complete(argsFor(dir));
  return { dir, killed, seen };
}

test('pretrain with a checkpoint every step, killed at random moments: checkpoints intact, resume bit-exact', async (t) => {
  const ref = join(T.dir, 'pt-ref');
  const cfgRef = T.config({ steps: 10, save_every: 1, save_total_limit: 0, eval_every: 5 });
  const cfg = T.config({ steps: 10, save_every: 1, save_total_limit: 2, eval_every: 5 });
  const base = (c: string, out: string): string[] => [MAIN, 'pretrain', '--config', c, '--data', T.data, '--out', out];
  const dur = complete(base(cfgRef, ref));
  const argsFor = (out: string): string[] => {
    if (listCheckpoints(out).length) return [...base(cfg, out), '--resume', out];
    return existsSync(out) && readdirSync(out).length ? [...base(cfg, out), '--overwrite'] : base(cfg, out);
  };
  const { dir, killed, seen } = await killChain(8, 100, dur, () => join(mkdtempSync(join(T.dir, 'pt-')), 'out'), argsFor, (out) => {
    if (!existsSync(out)) return 'nothing written';
    const cks = assertCheckpointsLikeReference(out, ref);
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) if (existsSync(join(out, f))) assert.ok(sameBytes(join(out, f), join(ref, f)), `${out}/${f} torn`);
    return `checkpoints [${cks.join(', ')}]`;
  });
  t.diagnostic(seen.join('; '));
  assert.ok(killed >= 2, `only ${killed} of 8 runs were actually killed`);
  assert.ok(sameBytes(join(dir, 'model.safetensors'), join(ref, 'model.safetensors')), 'final weights differ from the uninterrupted run');
  assertCheckpointsLikeReference(dir, ref);
});

test('writeSafetensors over an existing file, killed at random moments: always the old or the new file', async () => {
  const dir = mkdtempSync(join(T.dir, 'st-'));
  const p = join(dir, 'model.safetensors');
  const n = 1 << 20;
  const version = (v: number): Uint8Array => serializeSafetensors({ w: { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) } }, { v: String(v) });
  const A = Buffer.from(version(1)), B = Buffer.from(version(2));
  writeFileSync(p, A);
  const child = join(dir, 'child.mjs');
  writeFileSync(child, `import { writeSafetensors } from ${JSON.stringify(distModule('io/safetensors.js'))};
const n = ${n};
for (let i = 0; i < 40; i++) { const v = i % 2 ? 1 : 2; writeSafetensors(process.argv[2], { w: { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) } }, { v: String(v) }); }
`);
  const t0 = performance.now();
  complete([child, p]);
  const dur = performance.now() - t0;
  assert.ok(readFileSync(p).equals(A), 'after an even number of rewrites the file is version 1 again');
  let killed = 0;
  for (let i = 0; i < 8; i++) {
    const r = await killAfter([child, p], Math.round(80 + rng.next() * (dur - 80)));
    if (r.killed) killed++;
    const now = readFileSync(p);
    assert.ok(now.equals(A) || now.equals(B), `kill ${i}: ${p} is neither version (${now.length} bytes)`);
  }
  assert.ok(killed >= 4, `only ${killed} of 8 runs were killed`);
  cleanStaleTemps(dir);
  assert.deepEqual(readdirSync(dir).sort(), ['child.mjs', 'model.safetensors']);
});

test('teacher-cache build killed at random moments: no cache or the complete one, then the same bytes', async (t) => {
  const dir = mkdtempSync(join(T.dir, 'tc-'));
  const child = join(dir, 'child.mjs');
  writeFileSync(child, `const { GPT2, gpt2Config } = await import(${JSON.stringify(distModule('models/gpt2.js'))});
const { TeacherCache } = await import(${JSON.stringify(distModule('distill/cache.js'))});
const { Rng } = await import(${JSON.stringify(distModule('engine/rng.js'))});
const teacher = new GPT2(gpt2Config({ n_positions: 64, n_embd: 64, n_layer: 2, n_head: 2, vocab_size: 300 }), 7);
const rng = new Rng(1);
const instances = Array.from({ length: 400 }, () => ({ prefix: [], suffix: Array.from({ length: 40 }, () => rng.int(300)), contStart: 35, task: 't', options: [], gold: '' }));
TeacherCache.ensure(process.argv[2], teacher, instances, { tau: 2, topK: 8, pad: 0, log: (s) => process.stderr.write(s + '\\n') });
`);
  const ref = join(dir, 'ref', '100');
  const t0 = performance.now();
  complete([child, ref]);
  const dur = performance.now() - t0;
  const same = (d: string): boolean => ['meta.json', 'targets.bin'].every((f) => sameBytes(join(d, f), join(ref, f)));
  const { dir: last, killed, seen } = await killChain(6, 100, dur, () => join(mkdtempSync(join(dir, 'k-')), '100'), (d) => [child, d], (d) => {
    if (!existsSync(d)) return 'no cache';
    TeacherCache.open(d, 300);
    assert.ok(same(d), `${d}: a cache other than the complete one`);
    return 'complete cache';
  });
  t.diagnostic(seen.join('; '));
  assert.ok(killed >= 2, `only ${killed} of 6 runs were killed`);
  assert.ok(same(last));
  // and a rerun is a cache hit
  const r = spawnSync(process.execPath, [child, last], { encoding: 'utf8' });
  assert.match(r.stderr, /teacher cache hit/);
});

/** Every JSON file under `dir` (not temp files) parses. */
function allJsonParses(dir: string): void {
  for (const e of readdirSync(dir)) {
    if (e.startsWith('.')) continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) allJsonParses(p);
    else if (e.endsWith('.json')) assert.doesNotThrow(() => JSON.parse(readFileSync(p, 'utf8')), `${p} is torn`);
  }
}

test('study killed at random moments: files old or new, rerun gives the uninterrupted results.json', async (t) => {
  const dir = mkdtempSync(join(T.dir, 'study-'));
  const cfg = join(dir, 'study.json');
  writeFileSync(cfg, JSON.stringify({
    name: 'tiny', setting: 'meta', k: 4, seeds: [100], threads: 1,
    tasks: { synthetic: { trainTasks: 8, testTasks: 2, testSize: 8, seeds: [100] } },
    eval: { method: 'direct', batch_size: 16 }, tokenizer: { vocab_size: 300 },
    lm_data: { synthetic_corpus: true, seq_len: 32, batch_size: 4 },
    teacher: { model: { n_positions: 64, n_embd: 32, n_layer: 2, n_head: 2 }, ict: { steps: 20, lr: 3e-3, batch_size: 8 } },
    student: { model: { n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2 } },
    train: { instances: 32, epochs: 2, batch_size: 8, lr: 3e-3 },
    distill: { alpha_start: 0.5, alpha_end: 0.2, alpha_schedule: 'linear', temperature: 2, kl: 'options', top_k: 8, beta: 0.5, lm_kd_steps: 6 },
    arms: ['Raw', 'ICT', 'ICL-D', 'ICL-D (LM)'],
  }));
  const args = (out: string): string[] => [MAIN, 'study', '--config', cfg, '--out', out];
  const ref = join(dir, 'ref');
  const dur = complete(args(ref));
  const timing = (o: Record<string, unknown>, keys: string[]): Record<string, unknown> => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
  const json = (p: string): Record<string, unknown> => JSON.parse(readFileSync(p, 'utf8'));
  const check = (out: string): string => {
    if (!existsSync(out)) return 'nothing written';
    allJsonParses(out);
    for (const f of ['lm.txt', 'tokenizer/tokenizer.json', 'teacher-eval.json', 'teacher/model.safetensors', 'teacher-cache/100/targets.bin']) {
      if (existsSync(join(out, f))) assert.ok(sameBytes(join(out, f), join(ref, f)), `${out}/${f} is not the uninterrupted run's`);
    }
    for (const arm of ['raw', 'ict', 'icl-d', 'icl-d-lm']) {
      const p = join(out, 'cells', arm, '100', 'result.json');
      if (existsSync(p)) assert.deepEqual(timing(json(p), ['train_s', 'epoch_s']), timing(json(join(ref, relative(out, p))), ['train_s', 'epoch_s']), p);
    }
    return readdirSync(out).sort().join(' ');
  };
  const { dir: last, killed, seen } = await killChain(5, 300, 0.6 * dur, () => join(mkdtempSync(join(dir, 'k-')), 'out'), args, check);
  t.diagnostic(seen.join('; '));
  assert.ok(killed >= 2, `only ${killed} of 5 runs were killed`);
  const drop = ['speedup', 'speed', 'epoch_cost'];
  // The compression claims quote the measured speed-up too: drop it there as well.
  const noSpeed = (r: Record<string, unknown>): Record<string, unknown> => ({ ...timing(r, drop),
    claims: (r.claims as Record<string, unknown>[]).map((c) => ({ ...timing(c, ['speedup']), measured: String(c.measured).replace(/ \([0-9.]+× faster\)/, '') })) });
  assert.deepEqual(noSpeed(json(join(last, 'results.json'))), noSpeed(json(join(ref, 'results.json'))));
});

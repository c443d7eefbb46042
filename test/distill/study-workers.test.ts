// A study as jobs: --stage teacher, then 3 --worker processes at once on one --out (one SIGKILLed
// mid-cell, its cell taken over once its lease expires), then --merge, equals the single-process `icld study`; so do
// --shard 0/2 + 1/2 + --merge. Plus lease expiry and the usage errors.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tryClaim } from '../../src/distill/study-lease.js';
import { backend } from '../../src/engine/backend/index.js';
import { tinyJobsStudy } from '../helpers.js';

const cli = new URL('../../src/cli/main.js', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'icld-workers-'));
const cfgPath = join(tmp, 'study.json');
// The tiny study of study.test.ts, cut to 2 seeds × 3 arms; one thread everywhere.
writeFileSync(cfgPath, JSON.stringify({ ...tinyJobsStudy('tiny-workers'), threads: 1 }));

const icld = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [cli, 'study', '--config', cfgPath, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};
const start = (host: string, ...args: string[]): ChildProcess => spawn(process.execPath, [cli, 'study', '--config', cfgPath, ...args],
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ICLD_WORKER_HOST: host } });
const exited = (p: ChildProcess): Promise<number | null> => new Promise((r) => { if (p.exitCode !== null || p.signalCode !== null) r(p.exitCode); else p.on('exit', (code) => r(code)); });

/** Every cell's result without its timings, keyed arm/seed. */
function cellResults(out: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const a of readdirSync(join(out, 'cells'))) for (const s of readdirSync(join(out, 'cells', a))) {
    const p = join(out, 'cells', a, s, 'result.json');
    if (!existsSync(p)) continue;
    const { train_s, epoch_s, ...rest } = JSON.parse(readFileSync(p, 'utf8')); void train_s; void epoch_s;
    o[`${a}/${s}`] = rest;
  }
  return o;
}
/** results.json's per-cell metrics (arms' seed rows), the teacher row and the missing list. */
function merged(out: string): unknown {
  const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  return { arms: Object.fromEntries(Object.entries(r.arms as Record<string, { seeds: unknown }>).map(([k, v]) => [k, v.seeds])), teacher: r.teacher.seeds, missing: r.missing_cells };
}

let single: { cells: Record<string, unknown>; merged: unknown };
const singleRun = (): typeof single => {
  if (single) return single;
  const out = join(tmp, 'single');
  const r = icld('--out', out);
  assert.equal(r.status, 0, r.stderr);
  single = { cells: cellResults(out), merged: merged(out) };
  assert.equal(Object.keys(single.cells).length, 6);
  for (const c of Object.values(single.cells)) {
    assert.equal((c as { threads: number }).threads, 1);
    assert.deepEqual((c as { kernels: unknown }).kernels, backend().cpu().paths);
  }
  return single;
};

test('study: 3 workers (one SIGKILLed mid-cell) + merge equal the single-process study', async () => {
  const out = join(tmp, 'workers');
  const early = icld('--out', out, '--worker');
  assert.equal(early.status, 1);
  assert.match(early.stderr.trim().split('\n').at(-1)!, /the teacher stage has not been run there; run icld study --config C --out .* --stage teacher first/);
  const st = icld('--out', out, '--stage', 'teacher');
  assert.equal(st.status, 0, st.stderr);
  assert.ok(!existsSync(join(out, 'cells')), 'the stage ran cells');
  // Each worker names its own host, as on three machines: a dead holder is then seen only through
  // its lease expiring (a dead pid on this host would be taken over at once).
  const workers = [0, 1, 2].map((i) => start(`node${i}`, '--out', out, '--worker', '--lease-seconds', '2'));
  const pids = new Set(workers.map((w) => w.pid!));
  // Kill the worker that holds the first lease of a training cell (not Raw), while it trains.
  let killed: { pid: number; cell: string; at: number; by: string } | null = null;
  while (!killed && workers.some((w) => w.exitCode === null)) {
    for (const a of existsSync(join(out, 'cells')) ? readdirSync(join(out, 'cells')).filter((x) => x !== 'raw') : []) {
      for (const s of readdirSync(join(out, 'cells', a))) {
        let lease: { worker?: string };
        try { lease = JSON.parse(readFileSync(join(out, 'cells', a, s, 'lease.json'), 'utf8')); } catch { continue; }
        const pid = Number(lease.worker?.split(':').at(-1));
        if (!killed && pids.has(pid)) { process.kill(pid, 'SIGKILL'); killed = { pid, cell: `${a}/${s}`, at: Date.now(), by: lease.worker! }; }
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(killed, 'no training cell was ever leased');
  // The dead worker's lease stays until it expires (2 s after its last renewal, at most 2/3 s
  // before the kill), then another worker takes the cell over.
  const leasePath = join(out, 'cells', killed.cell, 'lease.json');
  let takenAt = 0;
  while (!takenAt && workers.some((w) => w.pid !== killed!.pid && w.exitCode === null)) {
    let w = '';
    try { w = JSON.parse(readFileSync(leasePath, 'utf8')).worker; } catch { /* between owners */ }
    if (w && w !== killed.by) takenAt = Date.now();
    else if (existsSync(join(out, 'cells', killed.cell, 'result.json'))) takenAt = Date.now();
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(takenAt, 'the killed worker\'s cell was never taken over');
  assert.ok(takenAt - killed.at >= 1200, `the lease was taken over ${takenAt - killed.at} ms after the kill, before it expired`);
  const codes = await Promise.all(workers.map(exited));
  for (const [i, w] of workers.entries()) if (w.pid !== killed.pid) assert.equal(codes[i], 0, `worker ${w.pid} failed`);
  assert.ok(!existsSync(join(out, 'cells', killed.cell, 'lease.json')), 'the killed cell\'s lease was left behind');
  const m = icld('--out', out, '--merge');
  assert.equal(m.status, 0, m.stderr);
  const s = singleRun();
  assert.deepEqual(cellResults(out), s.cells);
  assert.deepEqual(merged(out), s.merged);
  assert.deepEqual((merged(out) as { missing: string[] }).missing, []);
});

test('study: --shard 0/2 + 1/2 + --merge equal the single-process study; a merge lists missing cells', async () => {
  const out = join(tmp, 'shards');
  assert.equal(icld('--out', out, '--stage', 'teacher').status, 0);
  const s0 = icld('--out', out, '--shard', '0/2');
  assert.equal(s0.status, 0, s0.stderr);
  // Half the cells: the merge succeeds and names the others.
  const half = icld('--out', out, '--merge');
  assert.equal(half.status, 0, half.stderr);
  const missing = (merged(out) as { missing: string[] }).missing;
  assert.deepEqual(missing, ['ICT seed 100', 'Raw seed 13', 'ICL-D seed 13']);
  assert.match(half.stderr, /merge: 3 of 6 cells not finished \(left out\): ICT seed 100, Raw seed 13, ICL-D seed 13/);
  assert.equal(icld('--out', out, '--shard', '1/2').status, 0);
  const same = icld('--out', out, '--merge');
  assert.equal(same.status, 0);
  assert.doesNotMatch(same.stderr, /settings/);
  const s = singleRun();
  assert.deepEqual(cellResults(out), s.cells);
  assert.deepEqual(merged(out), s.merged);
  // A cell from a machine with other kernels: the merge says so.
  const p = join(out, 'cells', 'ict', '13', 'result.json');
  writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), kernels: { gemm: 'builtin' } }));
  assert.match(icld('--out', out, '--merge').stderr, /merge: the cells ran in 2 settings \(5 with 1 thread\(s\), kernels gemm .*; 1 with 1 thread\(s\), kernels gemm builtin\); their numbers may differ/);
});

test('study: usage errors for the job flags', () => {
  const out = join(tmp, 'usage');
  for (const [args, re] of [
    [['--shard', '2/2'], /--shard '2\/2' must be i\/N with 0 <= i < N/],
    [['--shard', 'x'], /--shard 'x' must be i\/N/],
    [['--shard', '0/0'], /--shard '0\/0' must be i\/N/],
    [['--worker', '--merge'], /--worker, --merge are different parts of a study; give one/],
    [['--merge', '--lease-seconds', '5'], /--lease-seconds applies to --worker only/],
    [['--stage', 'student'], /stage/],
  ] as [string[], RegExp][]) {
    const r = icld('--out', out, ...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  assert.ok(!existsSync(out), 'a refused command wrote --out');
});

test('leases: exclusive, a live foreign lease is kept until it expires, then taken over', async () => {
  const dir = join(tmp, 'lease'); mkdirSync(dir);
  const p = join(dir, 'lease.json');
  const a = tryClaim(p, 2);
  assert.ok(a);
  assert.equal(tryClaim(p, 2), null, 'a held lease was claimed twice');
  await a.release();
  assert.ok(!existsSync(p));
  writeFileSync(p, JSON.stringify({ worker: 'elsewhere:1', time: Date.now() }));
  assert.equal(tryClaim(p, 2), null, 'a fresh lease of another host was taken');
  writeFileSync(p, JSON.stringify({ worker: 'elsewhere:1', time: Date.now() - 2500 }));
  const b = tryClaim(p, 2);
  assert.ok(b, 'an expired lease was not taken over');
  assert.equal(JSON.parse(readFileSync(p, 'utf8')).worker.split(':').at(-1), String(process.pid));
  // Renewed while held: its time moves on.
  const t1 = JSON.parse(readFileSync(p, 'utf8')).time;
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(JSON.parse(readFileSync(p, 'utf8')).time > t1, 'the lease was not renewed');
  await b.release();
});

// deploy/slurm/study.sbatch without a cluster: the submitter against a recording `sbatch` (the
// chain's dependencies, array, CPUs, jobs.env, cancelling on a failed submit, bad variables), and
// the phases run as Slurm would run them (stage, a shard, a partial merge that fails naming the
// missing cells, a lease worker, the final merge) on a tiny study. bench/slurm.mjs runs it on a
// real one-node Slurm.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { tinyJobsStudy } from '../helpers.js';

const root = resolve(new URL('../../..', import.meta.url).pathname); // dist/test/deploy → repo
const script = join(root, 'deploy/slurm/study.sbatch');
const cli = join(root, 'dist/src/cli/main.js');
const tmp = mkdtempSync(join(tmpdir(), 'icld-slurm-test-'));

// The tiny study of study-workers.test.ts without "threads", so the jobs' CPU count decides it.
const cfg = join(tmp, 'tiny.json');
writeFileSync(cfg, JSON.stringify(tinyJobsStudy('tiny-slurm')));
const cfg1 = join(tmp, 'tiny-threads.json');
writeFileSync(cfg1, JSON.stringify({ ...JSON.parse(readFileSync(cfg, 'utf8')), threads: 1 }));

// A recording sbatch (one call per line, arguments tab-separated; ids 101, 102, … as "id;cluster",
// failing on call FAIL_AT) and scancel.
const bin = join(tmp, 'bin'); mkdirSync(bin);
writeFileSync(join(bin, 'sbatch'), `#!/bin/bash
n=$(( $(cat "$REC.n" 2>/dev/null || echo 0) + 1 )); echo $n > "$REC.n"
(IFS=$'\\t'; echo "$*") >> "$REC"
[[ $n == "\${FAIL_AT:-0}" ]] && { echo "sbatch: error: Batch job submission failed" >&2; exit 1; }
echo "$((100 + n));icld"
`);
writeFileSync(join(bin, 'scancel'), '#!/bin/bash\necho "scancel $*" >> "$REC.cancel"\n');
for (const f of ['sbatch', 'scancel']) chmodSync(join(bin, f), 0o755);

let recN = 0;
function submit(env: Record<string, string>, args: string[] = []): { status: number | null; stderr: string; stdout: string; calls: string[][]; cancel: string } {
  const rec = join(tmp, `rec${recN++}`);
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('SLURM_') && !k.startsWith('ICLD')) base[k] = v;
  const r = spawnSync('bash', [script, ...args], { cwd: tmp, encoding: 'utf8', env: { ...base, PATH: `${bin}:${process.env.PATH}`, REC: rec, ICLD_HOME: root, ...env } });
  const calls = existsSync(rec) ? readFileSync(rec, 'utf8').trim().split('\n').map((l) => l.split('\t')) : [];
  return { status: r.status, stderr: r.stderr, stdout: r.stdout, calls, cancel: existsSync(`${rec}.cancel`) ? readFileSync(`${rec}.cancel`, 'utf8').trim() : '' };
}

test('study.sbatch submits stage → worker array (afterok) → merge (afterany), every job with the same CPUs', () => {
  const out = join(tmp, 'sub');
  const r = submit({ ICLD_WORKERS: '3' }, [cfg1, out]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.calls.length, 3);
  const [stage, workers, merge] = r.calls;
  for (const c of r.calls) {
    for (const f of ['--parsable', '--export=ALL', '--kill-on-invalid-dep=yes', '--requeue', '--cpus-per-task=1', '--ntasks=1']) assert.ok(c.includes(f), `${f} missing in ${c.join(' ')}`);
    assert.equal(c.at(-3), script);
  }
  assert.deepEqual(stage.slice(-2), ['--phase', 'stage']);
  assert.ok(!stage.some((a) => a.startsWith('--dependency')));
  assert.deepEqual(workers.slice(-2), ['--phase', 'worker']);
  assert.ok(workers.includes('--array=0-2') && workers.includes('--dependency=afterok:101'), workers.join(' '));
  assert.deepEqual(merge.slice(-2), ['--phase', 'merge']);
  assert.ok(merge.includes('--dependency=afterany:102'), merge.join(' '));
  assert.ok(stage.includes(`--output=${out}/slurm/stage-%j.out`) && workers.includes(`--output=${out}/slurm/worker-%A_%a.out`));
  assert.equal(readFileSync(join(out, 'slurm/jobs.env'), 'utf8'), 'ICLD_STAGE_JOB=101\nICLD_WORKER_JOB=102\nICLD_MERGE_JOB=103\n');
  assert.match(r.stdout, /stage 101, workers 102 \(array 0-2, lease, 1 CPU\(s\) each\), merge 103/);
  // More CPUs than the config's threads: said, and given to every job; extra sbatch options reach all three.
  const r2 = submit({ ICLD_CPUS: '2', ICLD_SBATCH_ARGS: '--partition=cpu --mem=2G' }, [cfg1, join(tmp, 'sub2')]);
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stderr, /sets "threads": 1, so each cell runs 1 thread\(s\) on ICLD_CPUS=2 CPU\(s\)/);
  for (const c of r2.calls) assert.ok(c.includes('--cpus-per-task=2') && c.includes('--partition=cpu') && c.includes('--mem=2G'), c.join(' '));
});

test('study.sbatch: a failed submit cancels what was submitted; bad variables are one-line errors', () => {
  const r = submit({ FAIL_AT: '2' }, [cfg1, join(tmp, 'fail')]);
  assert.notEqual(r.status, 0);
  assert.equal(r.cancel, 'scancel 101');
  assert.match(r.stderr, /sbatch failed; cancelled 101/);
  for (const [env, args, re] of [
    [{ ICLD_WORKERS: '0' }, [cfg1], /^study\.sbatch: ICLD_WORKERS '0' must be a positive integer$/],
    [{ ICLD_MODE: 'locks' }, [cfg1], /^study\.sbatch: ICLD_MODE 'locks' must be lease or shard$/],
    [{ ICLD_CPUS: 'x' }, [cfg], /^study\.sbatch: ICLD_CPUS 'x' must be a positive integer$/],
    [{}, [join(tmp, 'nope.json')], /^study\.sbatch: ICLD_CONFIG .*nope\.json: not found$/],
    [{ ICLD_HOME: '', SLURM_JOB_ID: '7', SLURM_SUBMIT_DIR: tmp }, [cfg1], /^study\.sbatch: set ICLD_HOME to the icl-distill checkout \(sbatch was run from .*, which is not one\)$/],
  ] as [Record<string, string>, string[], RegExp][]) {
    const b = submit(env, args);
    assert.equal(b.status, 2, `${JSON.stringify(env)}: ${b.stderr}`);
    assert.match(b.stderr.trim(), re);
    assert.equal(b.calls.length, 0);
  }
});

test('study.sbatch phases: stage, a shard, a failing partial merge, a lease worker, the merge; threads = the job\'s CPUs', () => {
  const out = join(tmp, 'phases');
  const phase = (p: string, env: Record<string, string> = {}): { status: number | null; out: string } => {
    const r = spawnSync('bash', [script, '--phase', p], { cwd: tmp, encoding: 'utf8', env: {
      PATH: process.env.PATH!, HOME: tmp, ICLD_HOME: root, ICLD_CONFIG: cfg, ICLD_OUT: out, ICLD: `${process.execPath} ${cli}`,
      ICLD_WORKERS: '2', ICLD_LEASE_SECONDS: '30', SLURM_JOB_ID: '9', SLURM_CPUS_PER_TASK: '2', ...env } });
    return { status: r.status, out: r.stdout + r.stderr };
  };
  const st = phase('stage');
  assert.equal(st.status, 0, st.out);
  assert.match(st.out, /stage on .*, job 9, restart 0, 2 thread\(s\)/);
  const s0 = phase('worker', { ICLD_MODE: 'shard', SLURM_ARRAY_TASK_ID: '0' });
  assert.equal(s0.status, 0, s0.out);
  assert.match(s0.out, /ran 3 cell\(s\) of shard 0\/2/);
  const half = phase('merge');
  assert.equal(half.status, 1, half.out);
  assert.match(half.out, /merge: 3 of 6 cells not finished \(left out\): ICT seed 100, Raw seed 13, ICL-D seed 13/);
  assert.match(half.out, /the merge lists missing cells/);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).missing_cells, ['ICT seed 100', 'Raw seed 13', 'ICL-D seed 13']);
  const w = phase('worker', { ICLD_MODE: 'lease', SLURM_ARRAY_TASK_ID: '1' });
  assert.equal(w.status, 0, w.out);
  assert.match(w.out, /ran 3 cell\(s\)/);
  const m = phase('merge');
  assert.equal(m.status, 0, m.out);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).missing_cells, []);
  let cells = 0;
  for (const a of readdirSync(join(out, 'cells'))) for (const s of readdirSync(join(out, 'cells', a))) {
    assert.equal(JSON.parse(readFileSync(join(out, 'cells', a, s, 'result.json'), 'utf8')).threads, 2, `${a}/${s}`);
    cells++;
  }
  assert.equal(cells, 6);
  const bad = phase('reduce');
  assert.equal(bad.status, 2);
  assert.match(bad.out, /--phase 'reduce' must be stage, worker or merge/);
});

#!/usr/bin/env node
// A study as Slurm jobs on a real one-node cluster (issue 15). Not CI: it installs packages and runs
// daemons, as root. It installs Debian's slurm-wlm and munge when missing, writes a one-node
// slurm.conf under --slurm-dir (node `hostname -s`, all its CPUs, proctrack/linuxproc, task/none,
// cons_tres with CR_CPU, state, spool and logs there too), starts whichever of munged, slurmctld and
// slurmd are not running (and stops exactly those at the end, also on failure or Ctrl-C), waits for
// the node to be idle, submits deploy/slurm/study.sbatch (submitter → stage → worker array → merge)
// on --config into a fresh out dir, waits for every job, then checks the merged study equals a
// single-process `icld study` (each cell's result.json minus its timings; results.json's per-seed
// rows of every arm and of the teacher; no missing cells): exit 0 when equal, 1 when not or when a
// job failed, 2 on a bad flag.
//
//   npx tsc -p tsconfig.json && node bench/slurm.mjs [--config studies/synthetic.json] [--full]
//     [--single DIR] [--out DIR] [--workers 2] [--cpus N] [--mode lease|shard] [--lease-seconds 120]
//     [--slurm-dir /tmp/icld-slurm] [--timeout-min 120] [--requeue-one] [--write]
//
// --single DIR reuses a finished single-process run of the same config (else one is run after the
// jobs, in --slurm-dir/single-<name>). --cpus defaults to the config's "threads", else 1; the
// single-process run gets the same ICLD_THREADS. --write puts the summary into bench/RESULTS.md
// (between slurm-bench markers, in section "Slurm: a study as jobs on a one-node cluster").
// --requeue-one requeues (scontrol requeue, as pre-emption does) the worker task running the first
// training cell; its cell must be taken over and redone, and the results still equal.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, closeSync, chownSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/src/cli/main.js');
const argv = process.argv.slice(2);
const usage = (m) => { console.error(`bench/slurm: ${m}`); process.exit(2); };
class Fail extends Error {}
const fail = (m) => { throw new Fail(m); };
const log = (m) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${m}`);

// ---- flags --------------------------------------------------------------------------------------
const STR = ['config', 'single', 'out', 'mode', 'slurm-dir'], INT = { workers: [1, 64], cpus: [1, 256], 'lease-seconds': [1, 86400], 'timeout-min': [1, 10000] }, BOOL = ['full', 'write', 'requeue-one'];
const opt = { config: 'studies/synthetic.json', workers: 2, mode: 'lease', 'lease-seconds': 60, 'slurm-dir': '/tmp/icld-slurm', 'timeout-min': 120 };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i], k = a.replace(/^--/, '');
  if (!a.startsWith('--')) usage(`unexpected argument '${a}'`);
  if (BOOL.includes(k)) { opt[k] = true; continue; }
  if (!STR.includes(k) && !(k in INT)) usage(`unknown flag ${a} (flags: --${[...STR, ...Object.keys(INT), ...BOOL].join(', --')})`);
  const v = argv[++i];
  if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`);
  if (k in INT) {
    const n = Number(v), [lo, hi] = INT[k];
    if (!Number.isInteger(n) || n < lo || n > hi) usage(`${a} '${v}' must be an integer in ${lo}..${hi}`);
    opt[k] = n;
  } else opt[k] = v;
}
if (!['lease', 'shard'].includes(opt.mode)) usage(`--mode '${opt.mode}' must be lease or shard`);
const config = resolve(opt.config);
if (!existsSync(config)) usage(`--config ${opt.config}: not found`);
let cfgJson;
try { cfgJson = JSON.parse(readFileSync(config, 'utf8')); } catch (e) { usage(`--config ${opt.config}: not valid JSON (${e.message})`); }
const name = basename(config, '.json');
const cfgThreads = (opt.full ? undefined : cfgJson.quick?.threads) ?? cfgJson.threads;
const cpus = opt.cpus ?? cfgThreads ?? 1;
const threads = cfgThreads ?? cpus; // what every cell must record
if (opt.single && !existsSync(join(resolve(opt.single), 'results.json'))) usage(`--single ${opt.single}: no results.json there (not a finished study)`);
const D = resolve(opt['slurm-dir']);
const out = resolve(opt.out ?? join(D, `${name}-slurm-${Date.now().toString(36)}`));
if (existsSync(out) && readdirSync(out).length) usage(`--out ${out}: not empty (the run must start fresh)`);

// ---- helpers ------------------------------------------------------------------------------------
const conf = join(D, 'etc/slurm.conf');
const env = { ...process.env, SLURM_CONF: conf };
delete env.ICLD; delete env.ICLD_HOME; delete env.ICLD_OUT; delete env.ICLD_CONFIG;
const sh = (cmd, args, o = {}) => spawnSync(cmd, args, { encoding: 'utf8', env, ...o });
const ok = (cmd, args) => sh(cmd, args).status === 0;
const must = (cmd, args, o) => {
  const r = sh(cmd, args, o);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout || r.error?.message || '').trim().split('\n').at(-1)}`);
  return r.stdout.trim();
};
const has = (bin) => sh('sh', ['-c', `command -v ${bin}`]).status === 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (s) => s == null ? '–' : `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, '0')}`;
const dur = (t) => { const m = /^(?:(\d+)-)?(\d+):(\d+):(\d+)$/.exec(t ?? ''); return m ? (+(m[1] ?? 0)) * 86400 + +m[2] * 3600 + +m[3] * 60 + +m[4] : null; };

// ---- daemons: start what is not running, stop exactly that -------------------------------------
const started = []; // { name, pid }
let jobIds = [], singleChild = null, cleaned = false;
/** Cancel our live jobs, then stop the daemons this run started (last started first), reaping each. */
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (singleChild && singleChild.exitCode === null) { try { process.kill(singleChild.pid, 'SIGTERM'); } catch { /* gone */ } }
  const state = (id) => /JobState=(\w+)/.exec(sh('scontrol', ['show', 'job', '-o', id]).stdout ?? '')?.[1] ?? '';
  const live = jobIds.filter((id) => /^(PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|SUSPENDED)/.test(state(id)));
  if (live.length) {
    log(`cancelling jobs ${live.join(' ')}`);
    sh('scancel', live);
    for (let t = 0; t < 30 && live.some((id) => /^(RUNNING|COMPLETING|CONFIGURING)/.test(state(id))); t++) await sleep(500);
  }
  for (const d of [...started].reverse()) {
    if (d.proc.exitCode !== null || d.proc.signalCode !== null) { log(`${d.name} (pid ${d.pid}) had exited`); continue; }
    const gone = new Promise((r) => d.proc.once('exit', r));
    d.proc.kill('SIGTERM');
    if (await Promise.race([gone.then(() => true), sleep(10_000).then(() => false)]) === false) { d.proc.kill('SIGKILL'); await gone; }
    log(`stopped ${d.name} (pid ${d.pid})`);
  }
}
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => { log(`${s}: stopping`); cleanup().finally(() => process.exit(130)); });

function startDaemon(name, cmd, args) {
  const fd = openSync(join(D, 'log', `${name}.out`), 'a');
  const p = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  if (!p.pid) fail(`could not start ${name}`);
  started.push({ name, pid: p.pid, proc: p });
  log(`started ${name} (pid ${p.pid}): ${cmd} ${args.join(' ')}`);
  return p.pid;
}
async function waitFor(what, secs, f) {
  for (let t = 0; t < secs * 4; t++) { if (f()) return; await sleep(250); }
  fail(`${what} did not happen within ${secs} s (logs in ${join(D, 'log')})`);
}
const pgrep = (n) => (sh('pgrep', ['-x', n]).stdout ?? '').trim().split('\n').filter(Boolean).map(Number);

async function cluster() {
  if (process.getuid?.() !== 0) fail('run as root: it installs slurm-wlm and munge and starts munged, slurmctld and slurmd');
  if (!existsSync(cli)) fail(`${cli} not found: build first (npx tsc -p tsconfig.json)`);
  if (!has('slurmctld') || !has('slurmd') || !has('munged') || !has('sbatch')) {
    log('installing slurm-wlm and munge (apt-get)');
    const ae = { ...env, DEBIAN_FRONTEND: 'noninteractive' };
    if (sh('apt-get', ['install', '-y', 'slurm-wlm', 'munge'], { env: ae, stdio: 'inherit' }).status !== 0) {
      must('apt-get', ['update'], { env: ae });
      must('apt-get', ['install', '-y', 'slurm-wlm', 'munge'], { env: ae });
    }
  }
  const host = os.hostname().split('.')[0], ncpu = os.availableParallelism();
  for (const d of ['etc', 'state', 'spool', 'log', 'run']) mkdirSync(join(D, d), { recursive: true });
  writeFileSync(conf, [
    '# one-node cluster of bench/slurm.mjs',
    'ClusterName=icld',
    `SlurmctldHost=${host}(127.0.0.1)`,
    'SlurmUser=root', 'SlurmdUser=root',
    'AuthType=auth/munge', 'CredType=cred/munge', 'MpiDefault=none',
    'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
    'SelectType=select/cons_tres', 'SelectTypeParameters=CR_CPU', 'SchedulerType=sched/backfill',
    'JobAcctGatherType=jobacct_gather/none', 'AccountingStorageType=accounting_storage/none',
    `JobCompType=jobcomp/filetxt`, `JobCompLoc=${join(D, 'log/jobcomp.log')}`,
    'ReturnToService=2', 'MinJobAge=3600', // finished jobs stay visible to scontrol show job
    `StateSaveLocation=${join(D, 'state')}`, `SlurmdSpoolDir=${join(D, 'spool')}`,
    `SlurmctldPidFile=${join(D, 'run/slurmctld.pid')}`, `SlurmdPidFile=${join(D, 'run/slurmd.pid')}`,
    `SlurmctldLogFile=${join(D, 'log/slurmctld.log')}`, `SlurmdLogFile=${join(D, 'log/slurmd.log')}`,
    `NodeName=${host} NodeAddr=127.0.0.1 CPUs=${ncpu} RealMemory=1024 State=UNKNOWN`,
    `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
    '',
  ].join('\n'));
  const version = must('sinfo', ['--version']);
  // munge: a key, its socket directory, then the daemon as the munge user.
  const key = '/etc/munge/munge.key';
  const mu = Number(must('id', ['-u', 'munge'])), mg = Number(must('id', ['-g', 'munge']));
  if (!existsSync(key)) {
    mkdirSync(dirname(key), { recursive: true });
    writeFileSync(key, randomBytes(128), { mode: 0o400 });
    chownSync(key, mu, mg); chmodSync(key, 0o400);
    log(`generated ${key}`);
  }
  const mungeOk = () => sh('sh', ['-c', 'munge -n | unmunge']).status === 0;
  if (!mungeOk()) {
    if (pgrep('munged').length) fail(`munged runs (pid ${pgrep('munged').join(' ')}) but munge -n | unmunge fails`);
    for (const d of ['/run/munge', '/var/lib/munge', '/var/log/munge']) { mkdirSync(d, { recursive: true }); chownSync(d, mu, mg); }
    startDaemon('munged', 'setpriv', ['--reuid=munge', '--regid=munge', '--init-groups', '--', 'munged', '-F']); // logs to /var/log/munge
    await waitFor('munged answering', 20, mungeOk);
  }
  // slurmctld (clean state: a fresh cluster each run) and slurmd.
  const ctlUp = () => /UP/.test(sh('scontrol', ['ping']).stdout ?? '');
  if (pgrep('slurmctld').length) { if (!ctlUp()) fail(`a slurmctld runs (pid ${pgrep('slurmctld').join(' ')}) but not with ${conf}; stop it first`); }
  else { startDaemon('slurmctld', 'slurmctld', ['-D', '-c', '-f', conf]); await waitFor('slurmctld answering scontrol ping', 60, ctlUp); }
  if (!pgrep('slurmd').length) startDaemon('slurmd', 'slurmd', ['-D', '-f', conf]);
  const state = () => (sh('sinfo', ['-h', '-n', host, '-o', '%T']).stdout ?? '').trim();
  await waitFor(`node ${host} idle (sinfo: ${state() || '?'})`, 90, () => {
    const s = state();
    if (/down|drain/.test(s)) sh('scontrol', ['update', `nodename=${host}`, 'state=resume']);
    return s === 'idle';
  });
  log(`${version}: node ${host} idle with ${ncpu} CPUs`);
  return { version, host, ncpu };
}

// ---- jobs ----------------------------------------------------------------------------------------
/** scontrol's one-line records of a job (an array gives one per task). */
function jobRecords(id) {
  const r = sh('scontrol', ['show', 'job', '-o', String(id)]);
  return (r.stdout ?? '').split('\n').filter((l) => l.includes('JobId=')).map((l) => Object.fromEntries(l.trim().split(/\s+/).map((kv) => { const i = kv.indexOf('='); return [kv.slice(0, i), kv.slice(i + 1)]; })));
}
const TERMINAL = /^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)/;
const cellsDone = () => {
  const c = join(out, 'cells');
  if (!existsSync(c)) return 0;
  let n = 0;
  for (const a of readdirSync(c)) for (const s of readdirSync(join(c, a))) if (existsSync(join(c, a, s, 'result.json'))) n++;
  return n;
};

/**
 * --requeue-one: `scontrol requeue` the worker task holding the first lease of a training cell (not
 * Raw) while it runs it, as pre-emption would; the cell must be taken over and redone.
 */
function requeueOne(arrayJob) {
  const c = join(out, 'cells');
  for (const a of existsSync(c) ? readdirSync(c).filter((x) => x !== 'raw') : []) for (const sd of readdirSync(join(c, a))) {
    let pid, environ;
    try { pid = Number(JSON.parse(readFileSync(join(c, a, sd, 'lease.json'), 'utf8')).worker.split(':').at(-1)); environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'); } catch { continue; }
    const v = (k) => environ.find((e) => e.startsWith(`${k}=`))?.slice(k.length + 1);
    if (v('SLURM_ARRAY_JOB_ID') !== arrayJob) continue;
    const task = `${arrayJob}_${v('SLURM_ARRAY_TASK_ID')}`;
    must('scontrol', ['requeue', task]);
    log(`requeued worker ${task} (pid ${pid}) while it ran cell ${a}/${sd}`);
    return { task, cell: `${a}/${sd}`, pid };
  }
  return null;
}

async function runJobs() {
  const t0 = Date.now();
  const jenv = { ...env, ICLD_HOME: root, ICLD_CONFIG: config, ICLD_OUT: out, ICLD_WORKERS: String(opt.workers), ICLD_CPUS: String(cpus), ICLD_MODE: opt.mode, ICLD_LEASE_SECONDS: String(opt['lease-seconds']), ICLD_FULL: opt.full ? '1' : '0' };
  const cmd = ['sbatch', '--parsable', `--output=${join(D, 'log', 'submit-%j.out')}`, 'deploy/slurm/study.sbatch'];
  log(`submitting: ${Object.entries(jenv).filter(([k]) => k.startsWith('ICLD_') || k === 'SLURM_CONF').map(([k, v]) => `${k}=${v}`).join(' ')} ${cmd.join(' ')}`);
  const submitter = must(cmd[0], cmd.slice(1), { cwd: root, env: jenv }).split(';')[0];
  jobIds = [submitter];
  const jobsEnv = join(out, 'slurm', 'jobs.env');
  await waitFor(`submitter job ${submitter} writing ${jobsEnv}`, 300, () => {
    const st = jobRecords(submitter)[0]?.JobState ?? '';
    if (st && TERMINAL.test(st) && st !== 'COMPLETED') fail(`submitter job ${submitter} ${st}: ${readFileSync(join(D, 'log', `submit-${submitter}.out`), 'utf8').trim().split('\n').at(-1)}`);
    return existsSync(jobsEnv);
  });
  const ids = Object.fromEntries(readFileSync(jobsEnv, 'utf8').trim().split('\n').map((l) => l.split('=')));
  const stage = ids.ICLD_STAGE_JOB, workers = ids.ICLD_WORKER_JOB, merge = ids.ICLD_MERGE_JOB;
  jobIds.push(stage, workers, merge);
  log(`jobs: submitter ${submitter}, stage ${stage}, workers ${workers} (array of ${opt.workers}), merge ${merge}`);
  let last = 0, requeued = null;
  for (;;) {
    const recs = [submitter, stage, workers, merge].flatMap(jobRecords);
    const done = recs.length >= 4 && recs.every((r) => TERMINAL.test(r.JobState));
    if (done || Date.now() - last > 60_000) {
      last = Date.now();
      log(`${recs.map((r) => `${r.ArrayTaskId !== undefined && r.ArrayTaskId !== '' ? `${r.ArrayJobId}_${r.ArrayTaskId}` : r.JobId} ${r.JobState}`).join(', ')}; ${cellsDone()} cell(s) finished`);
    }
    if (done) break;
    if (opt['requeue-one'] && !requeued) requeued = requeueOne(workers);
    if (Date.now() - t0 > opt['timeout-min'] * 60_000) fail(`jobs still running after --timeout-min ${opt['timeout-min']}`);
    await sleep(opt['requeue-one'] && !requeued ? 200 : 5000);
  }
  const wall = (Date.now() - t0) / 1000;
  const recs = [submitter, stage, workers, merge].flatMap(jobRecords);
  const row = (r, phase) => {
    const id = r.ArrayTaskId ? `${r.ArrayJobId}_${r.ArrayTaskId}` : r.JobId;
    let ran = '';
    if (phase === 'worker') {
      const f = join(out, 'slurm', `worker-${r.ArrayJobId}_${r.ArrayTaskId}.out`);
      const m = existsSync(f) ? /ran (\d+) cell\(s\)/.exec(readFileSync(f, 'utf8')) : null;
      ran = m ? `${m[1]} cell(s)` : '';
    }
    return { phase, id, state: r.JobState, restarts: Number(r.Restarts ?? 0), start: r.StartTime, end: r.EndTime, run_s: dur(r.RunTime), ran, exit: r.ExitCode };
  };
  const rows = [
    ...recs.filter((r) => r.JobId === submitter).map((r) => row(r, 'submitter')),
    ...recs.filter((r) => r.JobId === stage).map((r) => row(r, 'stage')),
    ...recs.filter((r) => r.ArrayJobId === workers).sort((a, b) => +a.ArrayTaskId - +b.ArrayTaskId).map((r) => row(r, 'worker')),
    ...recs.filter((r) => r.JobId === merge).map((r) => row(r, 'merge')),
  ];
  const span = (ph) => {
    const rs = rows.filter((r) => r.phase === ph);
    const s = Math.min(...rs.map((r) => Date.parse(r.start))), e = Math.max(...rs.map((r) => Date.parse(r.end)));
    return Number.isFinite(s) && Number.isFinite(e) ? (e - s) / 1000 : null;
  };
  return { ids: { submitter, stage, workers, merge }, rows, wall, requeued, spans: { stage: span('stage'), workers: span('worker'), merge: span('merge') } };
}

// ---- the single-process run and the comparison (as test/distill/study-workers.test.ts) ------------
async function singleRun() {
  if (opt.single) return { dir: resolve(opt.single), reused: true, wall: null };
  const dir = join(D, `single-${name}-${Date.now().toString(36)}`);
  const args = [cli, 'study', '--config', config, '--out', dir, ...(opt.full ? ['--full'] : [])];
  log(`single-process run: ICLD_THREADS=${threads} node ${args.join(' ')} (log ${dir}.log)`);
  const fd = openSync(`${dir}.log`, 'a');
  const t0 = Date.now();
  singleChild = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env: { ...env, ICLD_THREADS: String(threads), OMP_NUM_THREADS: String(threads) } });
  closeSync(fd);
  const code = await new Promise((r) => singleChild.on('exit', (c, s) => r(c ?? s)));
  if (code !== 0) fail(`single-process run failed (${code}); see ${dir}.log`);
  return { dir, reused: false, wall: (Date.now() - t0) / 1000 };
}
function cellResults(dir) {
  const o = {};
  for (const a of readdirSync(join(dir, 'cells'))) for (const s of readdirSync(join(dir, 'cells', a))) {
    const p = join(dir, 'cells', a, s, 'result.json');
    if (!existsSync(p)) continue;
    const { train_s, epoch_s, ...rest } = JSON.parse(readFileSync(p, 'utf8')); void train_s; void epoch_s;
    o[`${a}/${s}`] = rest;
  }
  return o;
}
function merged(dir) {
  const r = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
  return { arms: Object.fromEntries(Object.entries(r.arms).map(([k, v]) => [k, v.seeds])), teacher: r.teacher.seeds, missing: r.missing_cells };
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
function compare(jobs, single) {
  const problems = [];
  const a = cellResults(out), b = cellResults(single);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  let equal = 0;
  for (const k of keys) {
    if (!(k in a)) problems.push(`cell ${k}: missing in the Slurm run`);
    else if (!(k in b)) problems.push(`cell ${k}: missing in the single-process run`);
    else if (!same(a[k], b[k])) {
      const diff = Object.keys({ ...a[k], ...b[k] }).filter((f) => !same(a[k][f], b[k][f]));
      problems.push(`cell ${k}: differs in ${diff.join(', ')}`);
    } else equal++;
    if (k in a && a[k].threads !== threads) problems.push(`cell ${k}: ran with ${a[k].threads} thread(s), expected ${threads}`);
  }
  const ma = merged(out), mb = merged(single);
  if (!same(ma.arms, mb.arms)) problems.push(`results.json: arms' per-seed rows differ (${Object.keys(ma.arms).filter((k) => !same(ma.arms[k], mb.arms[k])).join(', ')})`);
  if (!same(ma.teacher, mb.teacher)) problems.push('results.json: teacher rows differ');
  if (ma.missing.length) problems.push(`results.json: missing_cells ${ma.missing.join(', ')}`);
  return { cells: keys.length, equal, problems, missing: ma.missing };
}

// ---- main ----------------------------------------------------------------------------------------
function summary(c, jobs, single, cmp, pass) {
  const L = [];
  L.push(`bench/slurm: ${pass ? 'PASS' : 'FAIL'}`);
  L.push(`  ${c.version}, one node ${c.host} with ${c.ncpu} CPUs (proctrack/linuxproc, task/none, cons_tres CR_CPU)`);
  L.push(`  study ${opt.config}${opt.full ? ' --full' : ' (quick)'} → ${out}; ${opt.workers} worker task(s) × ${cpus} CPU(s), ${opt.mode} mode, ${threads} thread(s) per cell`);
  L.push('  phase      job        state       run time  restarts  cells');
  for (const r of jobs.rows) L.push(`  ${r.phase.padEnd(10)} ${r.id.padEnd(10)} ${r.state.padEnd(11)} ${fmt(r.run_s).padStart(8)}  ${String(r.restarts).padStart(8)}  ${r.ran}`);
  if (opt['requeue-one']) L.push(jobs.requeued ? `  requeued worker ${jobs.requeued.task} (scontrol requeue) while it ran cell ${jobs.requeued.cell}` : '  ✗ --requeue-one: no worker was caught mid-cell');
  L.push(`  spans (first start → last end): stage ${fmt(jobs.spans.stage)}, workers ${fmt(jobs.spans.workers)}, merge ${fmt(jobs.spans.merge)}; submit → all done ${fmt(jobs.wall)}`);
  if (single) L.push(`  single-process run: ${single.dir} (${single.reused ? 'reused' : `ran in ${fmt(single.wall)}`})`);
  if (cmp) {
    L.push(`  cells equal (result.json minus train_s/epoch_s): ${cmp.equal}/${cmp.cells}; results.json arms' seed rows, teacher rows: ${cmp.problems.some((p) => p.startsWith('results.json')) ? 'DIFFER' : 'equal'}; missing_cells: [${cmp.missing.join(', ')}]`);
    for (const p of cmp.problems) L.push(`  ✗ ${p}`);
  }
  return L.join('\n');
}

/** --write: the summary between markers in bench/RESULTS.md (replaced on the next --write), after the section's text. */
function writeResults(text) {
  const f = join(root, 'bench/RESULTS.md');
  const title = '## Slurm: a study as jobs on a one-node cluster', begin = '<!-- slurm-bench:begin -->', end = '<!-- slurm-bench:end -->';
  const block = `${begin}\nLatest \`node bench/slurm.mjs ${argv.join(' ')}\` (${new Date().toISOString().slice(0, 16)}Z):\n\n\`\`\`\n${text}\n\`\`\`\n${end}`;
  let s = existsSync(f) ? readFileSync(f, 'utf8') : '';
  const i = s.indexOf(begin), j = s.indexOf(end);
  if (i >= 0 && j > i) s = s.slice(0, i) + block + s.slice(j + end.length);
  else s = s.replace(/\n*$/, '\n\n') + (s.includes(title) ? '' : `${title}\n\n`) + block + '\n';
  writeFileSync(f, s);
  log(`wrote the summary to ${f}`);
}

let code = 1;
try {
  const c = await cluster();
  mkdirSync(out, { recursive: true });
  const jobs = await runJobs();
  const bad = jobs.rows.filter((r) => r.state !== 'COMPLETED');
  let single = null, cmp = null;
  if (!bad.length) { single = await singleRun(); cmp = compare(jobs, single.dir); }
  else for (const r of bad) {
    const f = r.phase === 'submitter' ? join(D, 'log', `submit-${r.id}.out`) : join(out, 'slurm', `${r.phase}-${r.id}.out`);
    if (existsSync(f)) console.error(`--- ${f} (last lines)\n${readFileSync(f, 'utf8').trim().split('\n').slice(-8).join('\n')}`);
  }
  const pass = !bad.length && cmp && !cmp.problems.length && (!opt['requeue-one'] || !!jobs.requeued);
  const text = summary(c, jobs, single, cmp, pass);
  console.log(text);
  writeFileSync(join(D, 'last-summary.txt'), text + '\n');
  if (opt.write) writeResults(text);
  code = pass ? 0 : 1;
} catch (e) {
  console.error(`bench/slurm: FAIL: ${e instanceof Fail ? e.message : e.stack}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);

#!/usr/bin/env node
// Ops benchmark against PyTorch, in one run: our `icld bench ops --json` and its twin
// bench/torch_ops.py (threads 1 and 2), then the per-case ratio against PyTorch's BEST thread
// count, written into the "ops" section of bench/RESULTS.md (between <!-- ops:begin --> and
// <!-- ops:end -->; other sections are left as they are). Raw JSON goes to .bench-tmp/ops.json.
//
//   npm run build && node bench/ops.mjs [--quick] [--rounds N] [--filter a,b] [--threads N] [--no-write]
//
// The two sides run one after the other, never concurrently (the 2 vCPUs share one core's FP
// units). Goal per case: ours within 1.2× of PyTorch, i.e. speedup = torch_ms/ours_ms ≥ 1/1.2.

import { spawnSync, execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (n) => argv.includes(n);
const opt = (n) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : undefined; };
const quick = flag('--quick'), filter = opt('--filter'), threads = opt('--threads'), write = !flag('--no-write');
const GOAL = 1 / 1.2;

function sh(cmd) { try { return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return ''; } }
function lastJson(text) {
  const lines = text.trim().split('\n').reverse();
  for (const l of lines) { const s = l.trim(); if (s.startsWith('{')) { try { return JSON.parse(s); } catch { /* next */ } } }
  return null;
}

// ---- ours
function runOurs() {
  const extra = [...(quick ? ['--quick'] : []), ...(filter ? ['--filter', filter] : []), ...(threads ? ['--threads', threads] : [])];
  const main = join(root, 'dist/src/cli/main.js');
  if (existsSync(main)) {
    const args = [main, 'bench', 'ops', '--json', ...extra];
    const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
    const j = r.status === 0 ? lastJson(r.stdout) : null;
    if (j && Array.isArray(j.cases)) return { result: j, command: `node dist/src/cli/main.js bench ops --json ${extra.join(' ')}`.trim() };
    console.error(`[ops] 'icld bench ops' unavailable (exit ${r.status}); importing benchOps from dist directly`);
  }
  const mod = pathToFileURL(join(root, 'dist/src/cli/bench-ops.js')).href;
  const o = JSON.stringify({ json: true, quick, filter, threads: threads ? Number(threads) : undefined });
  const code = `import(${JSON.stringify(mod)}).then((m) => m.benchOps(${o})).then((r) => console.log(JSON.stringify(r)))`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const j = r.status === 0 ? lastJson(r.stdout) : null;
  if (!j) throw new Error(`our bench failed (exit ${r.status})`);
  return { result: j, command: `node -e "import('./dist/src/cli/bench-ops.js').then(m => m.benchOps(${o})).then(r => console.log(JSON.stringify(r)))"` };
}

// ---- PyTorch twin
function runTorch() {
  const args = [join(root, 'bench/torch_ops.py'), ...(quick ? ['--quick'] : []), ...(filter ? ['--filter', filter] : [])];
  const r = spawnSync('/usr/bin/python3', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const j = r.status === 0 ? lastJson(r.stdout) : null;
  if (!j) throw new Error(`bench/torch_ops.py failed (exit ${r.status})`);
  return { result: j, command: `/usr/bin/python3 bench/torch_ops.py ${args.slice(1).join(' ')}`.trim() };
}

const load0 = os.loadavg()[0];
const t0 = Date.now();
// --rounds N: alternate the two sides N times and keep, per case, the fastest median of each
// side (robust against other processes briefly sharing the machine).
const rounds = Math.max(1, Number(opt('--rounds') ?? 1));
let ours = null, torch = null;
for (let r = 0; r < rounds; r++) {
  if (rounds > 1) console.error(`[ops] round ${r + 1}/${rounds}`);
  const o = runOurs(), t = runTorch();
  if (!ours) { ours = o; torch = t; continue; }
  for (const c of ours.result.cases) {
    const n = o.result.cases.find((x) => x.name === c.name);
    if (n && n.ms < c.ms) Object.assign(c, n);
  }
  for (const [nt, per] of Object.entries(t.result.threads)) {
    const cur = torch.result.threads[nt] ??= {};
    for (const [k, v] of Object.entries(per)) if (cur[k] === undefined || v < cur[k]) cur[k] = v;
  }
  for (const [nt, sg] of Object.entries(t.result.sgemm_1024 ?? {})) {
    const cur = torch.result.sgemm_1024[nt] ??= {};
    for (const [k, v] of Object.entries(sg)) if (cur[k] === undefined || v > cur[k]) cur[k] = v;
  }
}
const load1 = os.loadavg()[0];

// ---- compare
const fmt = (x, d = 2) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const rows = [];
for (const c of ours.result.cases) {
  let best = null, bestT = null;
  for (const [nt, per] of Object.entries(torch.result.threads)) {
    const ms = per[c.name];
    if (ms !== undefined && (best === null || ms < best)) { best = ms; bestT = nt; }
  }
  const speedup = best !== null ? best / c.ms : null;
  rows.push({ name: c.name, shape: c.shape, ours: c.ms, gflops: c.gflops, torch: best, torchThreads: bestT, speedup, met: speedup !== null ? speedup >= GOAL : null,
    torchByThreads: Object.fromEntries(Object.entries(torch.result.threads).map(([nt, per]) => [nt, per[c.name]])) });
}
// sgemm goal: our 1024³ matmul rate vs the best raw OpenBLAS sgemm rate (torch.mm / numpy).
let blasBest = 0, blasWhere = '';
for (const [nt, r] of Object.entries(torch.result.sgemm_1024 ?? {})) {
  for (const [k, v] of Object.entries(r)) if (v > blasBest) { blasBest = v; blasWhere = `${k.replace('_gflops', '')}, ${nt} thread${nt === '1' ? '' : 's'}`; }
}
const our1024 = ours.result.cases.find((c) => c.name === 'matmul 1024x1024x1024');
const sgemmRatio = our1024 && blasBest ? our1024.gflops / blasBest : null;

const flags = sh("grep -m1 '^flags' /proc/cpuinfo").split(/\s+/);
const isa = ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile'].filter((f) => flags.includes(f)).join(' ');
const model = sh("lscpu | sed -n 's/^Model name:[ \\t]*//p'") || os.cpus()[0]?.model || 'unknown';
const machine = `${model}, ${os.cpus().length} vCPUs (${isa || 'no AVX2'}), Linux ${os.release()}, Node ${process.version}, PyTorch ${torch.result.torch}, numpy ${torch.result.numpy}`;
const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

// ---- print
console.log(`\nours: ${ours.result.backend} backend, gemm ${ours.result.gemm}, ${ours.result.threads} thread(s)`);
console.log(`${'case'.padEnd(40)} ${'ours ms'.padStart(10)} ${'torch ms'.padStart(10)} thr ${'speedup'.padStart(8)} goal`);
for (const r of rows) console.log(`${r.name.padEnd(40)} ${fmt(r.ours, 3).padStart(10)} ${fmt(r.torch, 3).padStart(10)} ${String(r.torchThreads ?? '-').padStart(3)} ${fmt(r.speedup).padStart(8)} ${r.met === null ? '-' : r.met ? 'yes' : 'NO'}`);
if (sgemmRatio !== null) console.log(`matmul 1024³: ours ${fmt(our1024.gflops, 1)} GFLOP/s vs OpenBLAS ${fmt(blasBest, 1)} (${blasWhere}) = ${(sgemmRatio * 100).toFixed(0)}% (goal ≥ 80%)`);

// ---- RESULTS.md
const md = [];
md.push('## Ops (kernels through the public ops) vs PyTorch', '');
md.push(`Date: ${date}. Machine: ${machine}.`);
md.push(`Ours: \`${ours.result.backend}\` backend, gemm \`${ours.result.gemm}\`, ${ours.result.threads} thread(s). PyTorch: best of \`torch.set_num_threads(1)\` and \`(2)\` per case (each in a fresh process with OMP/OPENBLAS_NUM_THREADS set).`);
md.push(`Load average (1 min) before/after: ${load0.toFixed(2)} / ${load1.toFixed(2)}; wall ${((Date.now() - t0) / 1000).toFixed(0)} s${quick ? '; **--quick** run (fewer repeats)' : ''}.`);
if (Math.max(load0, load1) > 1.5) md.push('', `> **Warning:** the 1-min load average exceeded 1.5 (${load0.toFixed(2)} / ${load1.toFixed(2)}): other processes shared the 2 vCPUs during this run, so these ratios are noisy (GEMM-bound rows most of all). Re-run on an idle machine for numbers to quote.`);
md.push('', 'Command: `npm run build && node bench/ops.mjs' + (argv.length ? ' ' + argv.filter((a) => a !== '--no-write').join(' ') : '') + '`', `(ours: \`${ours.command}\`; torch: \`${torch.command}\`)`, '');
md.push(`Median of ≥5 repeats and ≥0.3 s after warm-up${rounds > 1 ? `; best median of ${rounds} alternating rounds per side` : ''}. speedup = torch ms / ours ms; goal met when ≥ 1/1.2 = 0.83.`, '');
md.push('| case | shape | ours ms | GFLOP/s | torch ms (best) | torch 1t / 2t ms | speedup | goal |');
md.push('|---|---|---:|---:|---:|---:|---:|:---:|');
for (const r of rows) {
  const tt = Object.values(r.torchByThreads).map((x) => fmt(x, 3)).join(' / ');
  md.push(`| ${r.name} | \`${r.shape}\` | ${fmt(r.ours, 3)} | ${r.gflops ? fmt(r.gflops, 1) : ''} | ${fmt(r.torch, 3)} (${r.torchThreads ?? '-'}t) | ${tt} | ${fmt(r.speedup)} | ${r.met === null ? '–' : r.met ? 'yes' : '**no**'} |`);
}
md.push('');
if (sgemmRatio !== null) {
  const sg = Object.entries(torch.result.sgemm_1024).map(([nt, r]) => `${nt}t: torch.mm ${fmt(r.torch_mm_gflops, 1)}, numpy ${fmt(r.numpy_gflops, 1)}`).join('; ');
  md.push(`Raw OpenBLAS sgemm 1024³ (GFLOP/s): ${sg}. Ours at 1024³: ${fmt(our1024.gflops, 1)} GFLOP/s = **${(sgemmRatio * 100).toFixed(0)}%** of the best (${blasWhere}); goal ≥ 80%: ${sgemmRatio >= 0.8 ? 'met' : '**not met**'}.`, '');
}
const section = ['<!-- ops:begin -->', ...md, '<!-- ops:end -->'].join('\n');

if (write) {
  const path = join(root, 'bench/RESULTS.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n\nMeasured ratios against PyTorch on the same machine, in one run (see DESIGN.md §5).\n';
  const re = /<!-- ops:begin -->[\s\S]*?<!-- ops:end -->/;
  text = re.test(text) ? text.replace(re, section) : text.replace(/\s*$/, '\n\n') + section + '\n';
  writeFileSync(path, text);
  mkdirSync(join(root, '.bench-tmp'), { recursive: true });
  writeFileSync(join(root, '.bench-tmp/ops.json'), JSON.stringify({ date, machine, ours: ours.result, torch: torch.result, rows }, null, 1));
  console.log(`\nwrote bench/RESULTS.md (ops section) and .bench-tmp/ops.json`);
}

#!/usr/bin/env node
// The llama.cpp twin: the same random-weight GPT-2 124M (`icld bench generate --config gpt2-124m`,
// seed 0) written as GGUF (bench/gguf.ts; f32, then llama-quantize → F16, BF16, Q8_0, Q4_0),
// timed by llama-bench (pp64 / tg128) and by `icld bench generate --dtype …` (prefill 64 / decode
// 128 tokens) at 1 and 2 threads, each run in a fresh process, one after the other; plus
// PyTorch's fp32 decode (bench/torch_lm.py, threads 1 and 2). Writes the "llama" section of
// bench/RESULTS.md (between <!-- llama:begin --> and <!-- llama:end -->) and the raw JSON to
// .bench-tmp/llama.json.
//
//   npm run build && node bench/llama.mjs [--llama-src DIR | --llama-bench PATH [--llama-quantize PATH]]
//       [--quick] [--threads 1,2] [--formats f32,f16,bf16,q8_0,q4_0] [--reps N] [--run-timeout S] [--no-torch] [--keep] [--no-write]
//   node bench/llama.mjs --render .bench-tmp/llama.json    (rewrite the section from a run's raw JSON, measuring nothing)
//
// --quick: 1 repeat per measurement (default 3); --run-timeout: seconds before one measuring
// process is killed and its cells say "timed out" (default 180); --keep: keep the GGUF files in
// .bench-tmp/llama/ (deleted otherwise).
//
// llama.cpp: --llama-src DIR uses DIR/build/bin (building llama-bench and llama-quantize there with
// cmake when they are missing); --llama-bench / --llama-quantize name the binaries; otherwise
// llama-bench / llama-quantize on PATH. Without any, icld and PyTorch are still measured and the
// section says "llama.cpp not available". llama.cpp's source is never copied into this repository.
//
// Goals (issue 14): icld ≥ llama.cpp in every format and thread count; on the issue's figures
// decode F32 ≥ 64, Q8_0 ≥ 167, Q4_0 ≥ 250 tok/s and prefill F32 ≥ 699 tok/s (2 threads); fp32
// decode ≥ 2× PyTorch at its best thread count. Peak RSS: each process's maxrss (through
// /usr/bin/time; llama-bench mmaps its model file, so mapped pages count); icld runs load model
// directories written once by `icld quantize`, so they never hold the f32 model.

import { spawnSync, execSync } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve, delimiter } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const KNOWN = new Set(['--llama-src', '--llama-bench', '--llama-quantize', '--quick', '--threads', '--formats', '--reps', '--run-timeout', '--no-torch', '--keep', '--no-write', '--render', '--help']);
const VALUED = new Set(['--llama-src', '--llama-bench', '--llama-quantize', '--threads', '--formats', '--reps', '--run-timeout', '--render']);
function usage(msg) { console.error(`bench/llama.mjs: ${msg}`); process.exit(2); }
for (let i = 0; i < argv.length; i++) {
  if (!KNOWN.has(argv[i])) usage(`unknown flag '${argv[i]}' (see the header of bench/llama.mjs)`);
  if (VALUED.has(argv[i])) { if (argv[i + 1] === undefined || argv[i + 1].startsWith('--')) usage(`${argv[i]} needs a value`); i++; }
}
const flag = (n) => argv.includes(n);
const opt = (n) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : undefined; };
if (flag('--help')) { console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')); process.exit(0); }
let quick = flag('--quick'), write = !flag('--no-write'), keep = flag('--keep'), withTorch = !flag('--no-torch');
let THREADS = (opt('--threads') ?? '1,2').split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 256) usage(`--threads: '${s}' is not a thread count (1..256)`);
  return n;
});
const ALL_FORMATS = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];
let FORMATS = (opt('--formats') ?? ALL_FORMATS.join(',')).split(',');
for (const f of FORMATS) if (!ALL_FORMATS.includes(f)) usage(`--formats: '${f}' is not one of ${ALL_FORMATS.join(', ')}`);
let REPS = opt('--reps') !== undefined ? Number(opt('--reps')) : quick ? 1 : 3;
if (!Number.isInteger(REPS) || REPS < 1 || REPS > 100) usage(`--reps: '${opt('--reps')}' is not a repeat count (1..100)`);
const RUN_TIMEOUT = Number(opt('--run-timeout') ?? 180);
if (!Number.isFinite(RUN_TIMEOUT) || RUN_TIMEOUT < 10) usage(`--run-timeout: '${opt('--run-timeout')}' is not a number of seconds (≥ 10)`);
const P = 64, N = 128;

// llama.cpp format name → ours. F16 has no twin of its own: our bf16 is compared with both F16 and BF16.
const LLAMA_TYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16', q8_0: 'Q8_0', q4_0: 'Q4_0' };
const OURS_OF = { f32: 'f32', f16: 'bf16', bf16: 'bf16', q8_0: 'q8_0', q4_0: 'q4_0' };
// The issue's llama.cpp figures on this machine (tok/s at 1 / 2 threads): the absolute goals.
const ISSUE = { tg: { f32: [44, 64], f16: [84, 111], q8_0: [120, 167], q4_0: [180, 250] }, pp: { f32: [381, 699] } };

const tmp = join(root, '.bench-tmp'), work = join(tmp, 'llama');
const log = (s) => console.error(`[llama] ${s}`);
function sh(cmd) { try { return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return ''; } }
function which(name) {
  for (const d of (process.env.PATH ?? '').split(delimiter)) { const p = join(d, name); if (d && existsSync(p)) return p; }
  return null;
}
function lastJson(text) {
  for (const l of text.trim().split('\n').reverse()) { const s = l.trim(); if (s.startsWith('{')) { try { return JSON.parse(s); } catch { /* next */ } } }
  return null;
}
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;
const TIMEOUT = which('timeout');

for (const f of ['dist/src/cli/main.js', 'dist/bench/gguf.js', 'dist/src/io/atomic.js']) {
  if (!existsSync(join(root, f))) { console.error(`bench/llama.mjs: ${f} is missing — run \`npm run build\` first`); process.exit(1); }
}
const { ggufSummary } = await import(pathToFileURL(join(root, 'dist/bench/gguf.js')).href);
const { writeFileAtomic } = await import(pathToFileURL(join(root, 'dist/src/io/atomic.js')).href);

// ---- find (or build) llama.cpp
function findLlama() {
  const src = opt('--llama-src');
  let bench = opt('--llama-bench') ?? null, quant = opt('--llama-quantize') ?? null, note = '';
  if (bench && !existsSync(bench)) usage(`--llama-bench: ${bench} does not exist`);
  if (quant && !existsSync(quant)) usage(`--llama-quantize: ${quant} does not exist`);
  if (src && !bench) {
    if (!existsSync(join(src, 'CMakeLists.txt'))) usage(`--llama-src: ${src} has no CMakeLists.txt (not a llama.cpp source tree)`);
    const bin = join(src, 'build', 'bin');
    if (!existsSync(join(bin, 'llama-bench')) || !existsSync(join(bin, 'llama-quantize'))) {
      mkdirSync(work, { recursive: true });
      const blog = join(work, 'llama-build.log');
      log(`building llama-bench and llama-quantize in ${join(src, 'build')} (log ${blog})`);
      const cmd = `cmake -S '${src}' -B '${join(src, 'build')}' -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF > '${blog}' 2>&1 && cmake --build '${join(src, 'build')}' -j --target llama-bench llama-quantize >> '${blog}' 2>&1`;
      const r = spawnSync('sh', ['-c', cmd], { stdio: 'inherit' });
      if (r.status !== 0) return { bench: null, quant: null, note: `llama.cpp not available (the build in ${src} failed; see ${blog})` };
    }
    bench = join(bin, 'llama-bench');
    quant ??= join(bin, 'llama-quantize');
    // Source trees without git report build "unknown": gguf-py's version dates the release instead.
    const py = join(src, 'gguf-py', 'pyproject.toml');
    const ver = existsSync(py) ? /^version\s*=\s*"([^"]+)"/m.exec(readFileSync(py, 'utf8'))?.[1] : undefined;
    note = `source ${src}${ver ? ` (its gguf-py ${ver})` : ''}`;
  }
  bench ??= which('llama-bench');
  if (bench && !quant) quant = existsSync(join(dirname(bench), 'llama-quantize')) ? join(dirname(bench), 'llama-quantize') : which('llama-quantize');
  if (!bench) return { bench: null, quant: null, note: 'llama.cpp not available (no --llama-src, --llama-bench, or llama-bench on PATH)' };
  return { bench, quant, note: note || `binary ${bench}` };
}

/**
 * Run `cmd args` in a fresh process, killed after --run-timeout seconds (coreutils timeout, so the
 * measured process itself dies); { stdout, stderr, status, timedOut, maxRssMb (getrusage via /usr/bin/time, else null) }.
 */
function runMeasured(cmd, args) {
  const rssFile = join(work, `rss-${process.pid}.txt`);
  const inner = TIMEOUT ? [TIMEOUT, String(RUN_TIMEOUT), cmd, ...args] : [cmd, ...args];
  const full = TIME ? [TIME, '-f', '%M', '-o', rssFile, ...inner] : inner;
  const t = Date.now();
  const r = spawnSync(full[0], full.slice(1), { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26,
    ...(TIMEOUT ? {} : { timeout: RUN_TIMEOUT * 1000, killSignal: 'SIGKILL' }) });
  const timedOut = TIMEOUT ? r.status === 124 : r.signal === 'SIGKILL';
  let maxRssMb = null;
  if (TIME && existsSync(rssFile)) { const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()); if (Number.isFinite(kb)) maxRssMb = kb / 1024; rmSync(rssFile, { force: true }); }
  return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', status: r.status, timedOut, maxRssMb, wallS: (Date.now() - t) / 1000 };
}

/** Every measurement of a run, as the raw JSON keeps it. */
function measure() {
  mkdirSync(work, { recursive: true });
  const t0 = Date.now(), load0 = os.loadavg()[0];
  const llama = findLlama();
  log(llama.bench ? `llama.cpp: ${llama.bench}${llama.quant ? '' : ' (no llama-quantize: F32 only)'}` : llama.note);

  // ---- the model as GGUF, and its quantized twins
  const files = {}, quantInfo = {};
  if (llama.bench) {
    const f32 = join(work, 'gpt2-124m-f32.gguf');
    log('writing the random GPT-2 124M (seed 0) as f32 GGUF');
    const w = spawnSync(process.execPath, ['dist/bench/gguf.js', 'write', f32, '--config', 'gpt2-124m'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (w.status !== 0) { console.error(`bench/llama.mjs: writing ${f32} failed (exit ${w.status})`); process.exit(1); }
    files.f32 = f32;
    quantInfo.f32 = { types: ggufSummary(f32).types, bytes: statSync(f32).size };
    for (const f of FORMATS.filter((x) => x !== 'f32')) {
      if (!llama.quant) { quantInfo[f] = { skipped: 'no llama-quantize' }; continue; }
      const out = join(work, `gpt2-124m-${LLAMA_TYPE[f]}.gguf`);
      log(`llama-quantize → ${LLAMA_TYPE[f]}`);
      const q = spawnSync(llama.quant, [f32, out, LLAMA_TYPE[f]], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
      if (q.status !== 0) { quantInfo[f] = { error: `llama-quantize exit ${q.status}: ${(q.stderr || q.stdout).trim().split('\n').pop()}` }; continue; }
      files[f] = out;
      // llama-quantize's choice per tensor (tied GPT-2: output.weight may be kept wider), read back from the file.
      quantInfo[f] = { types: ggufSummary(out).types, bytes: statSync(out).size };
    }
  }

  // ---- llama-bench
  function llamaRun(f, t) {
    const args = ['-m', files[f], '-p', String(P), '-n', String(N), '-t', String(t), '-r', String(REPS), '-ngl', '0', '-o', 'json'];
    const r = runMeasured(llama.bench, args);
    let rows = null;
    try { rows = JSON.parse(r.stdout); } catch { /* below */ }
    if (r.status !== 0 || !Array.isArray(rows)) return { error: r.timedOut ? `timed out after ${RUN_TIMEOUT} s` : `llama-bench exit ${r.status}: ${r.stderr.trim().split('\n').pop() ?? ''}`, command: `${llama.bench} ${args.join(' ')}` };
    const pp = rows.find((x) => x.n_prompt === P && x.n_gen === 0), tg = rows.find((x) => x.n_gen === N && x.n_prompt === 0);
    const info = rows[0] ?? {};
    return { pp: pp?.avg_ts ?? null, tg: tg?.avg_ts ?? null, pp_sd: pp?.stddev_ts ?? null, tg_sd: tg?.stddev_ts ?? null, max_rss_mb: r.maxRssMb,
      wall_s: r.wallS, model_type: info.model_type, model_size: info.model_size, build: `build_commit ${info.build_commit ?? '?'}, build_number ${info.build_number ?? '?'}`, cpu_info: info.cpu_info,
      command: `${llama.bench} ${args.join(' ')}` };
  }

  // ---- ours: the same random model saved once and quantized with `icld quantize`, each run loading its directory
  // (so peak RSS is that of a process that never held the f32 model, as llama-bench loading a GGUF file)
  const oursDirs = {};
  {
    const f32dir = join(work, 'icld-f32');
    rmSync(f32dir, { recursive: true, force: true });
    const w = spawnSync(process.execPath, ['dist/src/cli/main.js', 'bench', 'generate', '--config', 'gpt2-124m', '--save-model', f32dir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    if (w.status !== 0) { console.error(`bench/llama.mjs: saving the icld model to ${f32dir} failed (exit ${w.status})`); process.exit(1); }
    oursDirs.f32 = f32dir;
    for (const d of [...new Set(FORMATS.map((f) => OURS_OF[f]))].filter((x) => x !== 'f32')) {
      const out = join(work, `icld-${d}`);
      rmSync(out, { recursive: true, force: true });
      const q = spawnSync(process.execPath, ['dist/src/cli/main.js', 'quantize', '--model', f32dir, '--dtype', d, '--out', out], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (q.status !== 0) { console.error(`bench/llama.mjs: icld quantize → ${d} failed (exit ${q.status})`); process.exit(1); }
      oursDirs[d] = out;
    }
  }
  function oursRun(dtype, t) {
    const args = ['dist/src/cli/main.js', 'bench', 'generate', '--config', 'gpt2-124m', '--model', oursDirs[dtype], '--threads', String(t), '--prompt', String(P), '--new', String(N), '--reps', String(REPS), '--json'];
    const r = runMeasured(process.execPath, args);
    const j = r.status === 0 ? lastJson(r.stdout) : null;
    if (!j) return { error: r.timedOut ? `timed out after ${RUN_TIMEOUT} s` : `exit ${r.status}: ${r.stderr.trim().split('\n').pop() ?? ''}`, command: `node ${args.join(' ')}` };
    // rss_mb: the peak sampled during generation; max_rss_mb: the process's whole-life peak (getrusage).
    return { pp: j.prefill_tokens_per_s, tg: j.decode_tokens_per_s, rss_mb: j.peak_rss_mb, max_rss_mb: r.maxRssMb ?? j.max_rss_mb, wall_s: r.wallS, raw: j, command: `node ${args.join(' ')}` };
  }

  const ours = {}, theirs = {};
  for (const t of THREADS) {
    for (const d of [...new Set(FORMATS.map((f) => OURS_OF[f]))]) {
      log(`icld ${d}, ${t} thread(s)`);
      ours[`${d}/${t}`] = oursRun(d, t);
      if (ours[`${d}/${t}`].error) log(`  icld failed: ${ours[`${d}/${t}`].error}`);
    }
    for (const f of FORMATS) {
      if (!files[f]) continue;
      log(`llama.cpp ${LLAMA_TYPE[f]}, ${t} thread(s)`);
      theirs[`${f}/${t}`] = llamaRun(f, t);
      if (theirs[`${f}/${t}`].error) log(`  llama-bench failed: ${theirs[`${f}/${t}`].error}`);
    }
  }

  // ---- PyTorch fp32 decode
  let torch = null;
  if (withTorch && FORMATS.includes('f32')) {
    log(`PyTorch fp32 generate (threads ${THREADS.join(', ')})`);
    const args = ['bench/torch_lm.py', 'generate', '--config', 'gpt2-124m', '--threads', THREADS.join(','), '--reps', String(REPS), '--prompt', String(P), '--new', String(N)];
    const r = spawnSync('/usr/bin/python3', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
    const j = r.status === 0 ? lastJson(r.stdout) : null;
    if (!j) torch = { error: `exit ${r.status}`, command: `/usr/bin/python3 ${args.join(' ')}` };
    else {
      const best = Object.keys(j.threads).reduce((a, b) => (j.threads[b].decode_tokens_per_s > j.threads[a].decode_tokens_per_s ? b : a));
      torch = { version: j.torch, best, decode: j.threads[best].decode_tokens_per_s, pp: j.threads[best].prompt_tokens / (j.threads[best].prefill_ms / 1000), max_rss_mb: j.threads[best].max_rss_mb, all: j.threads, command: `/usr/bin/python3 ${args.join(' ')}` };
    }
  }
  const load1 = os.loadavg()[0];
  if (!keep) for (const f of Object.values(files)) rmSync(f, { force: true });
  return { date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), llama, load: [load0, load1], wall_s: (Date.now() - t0) / 1000, argv, formats: FORMATS, threads: THREADS, reps: REPS, quick, quantize: quantInfo, torch, ours, theirs };
}

const renderFrom = opt('--render');
let M;
if (renderFrom) {
  try { M = JSON.parse(readFileSync(renderFrom, 'utf8')); } catch (e) { console.error(`bench/llama.mjs: --render ${renderFrom}: ${e.message.split('\n')[0]}`); process.exit(1); }
  if (!M || typeof M.ours !== 'object' || typeof M.theirs !== 'object') { console.error(`bench/llama.mjs: --render ${renderFrom}: not a bench/llama.mjs raw JSON (no ours/theirs)`); process.exit(1); }
  FORMATS = M.formats ?? [...new Set(M.rows.map((r) => r.format))];
  THREADS = M.threads ?? [...new Set(M.rows.map((r) => r.threads))];
  REPS = M.reps; quick = M.quick;
} else M = measure();
const { llama, quantize: quantInfo, ours, theirs, torch } = M;
const [load0, load1] = M.load;
for (const o of Object.values(ours)) o.rss_mb ??= o.raw?.peak_rss_mb; // raw JSON of older runs

// ---- table
const fmt = (x, d = 1) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const rows = [];
for (const f of FORMATS) for (const t of THREADS) {
  const o = ours[`${OURS_OF[f]}/${t}`] ?? {}, l = theirs[`${f}/${t}`] ?? null;
  const ti = t === 1 ? 0 : t === 2 ? 1 : -1;
  const issueTg = ISSUE.tg[f]?.[ti] ?? null, issuePp = ISSUE.pp[f]?.[ti] ?? null;
  const rPp = l && o.pp && l.pp ? o.pp / l.pp : null, rTg = l && o.tg && l.tg ? o.tg / l.tg : null;
  const checks = [];
  if (rPp !== null) checks.push(rPp >= 1); if (rTg !== null) checks.push(rTg >= 1);
  if (issueTg !== null && o.tg) checks.push(o.tg >= issueTg); if (issuePp !== null && o.pp) checks.push(o.pp >= issuePp);
  const met = o.error || checks.length === 0 ? null : checks.every(Boolean);
  rows.push({ format: f, ours_format: OURS_OF[f], llama_format: LLAMA_TYPE[f], threads: t, ours: o, llama: l, ratio_pp: rPp, ratio_tg: rTg, issue_tg: issueTg, issue_pp: issuePp, met });
}
let torchLine = null;
if (torch && !torch.error) {
  const bestOurs = THREADS.map((t) => ours[`f32/${t}`]).filter((o) => o && !o.error).sort((a, b) => b.tg - a.tg)[0];
  const ratio = bestOurs ? bestOurs.tg / torch.decode : null;
  torchLine = { ...torch, ours_decode: bestOurs?.tg ?? null, ours_threads: bestOurs?.raw.threads ?? null, ratio, met: ratio !== null && ratio >= 2 };
}

const flagsAll = sh("grep -m1 '^flags' /proc/cpuinfo").split(/\s+/);
const isa = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx_vnni', 'amx_tile'].filter((f) => flagsAll.includes(f)).join(' ');
const cpuModel = sh("lscpu | sed -n 's/^Model name:[ \\t]*//p'") || os.cpus()[0]?.model || 'unknown';
const machine = M.machine ?? `${cpuModel}, ${os.cpus().length} vCPUs (${isa || 'no AVX2'}), Linux ${os.release()}, Node ${process.version}${torch?.version ? `, PyTorch ${torch.version}` : ''}`;
const date = M.date;
const anyL = Object.values(theirs).find((x) => !x.error);
const llamaVersion = llama.bench ? `llama-bench ${anyL?.build ?? '(no successful run)'}; ${llama.note}` : llama.note;

// ---- print
for (const r of rows) {
  const l = r.llama;
  console.log(`${r.ours_format.padEnd(5)} vs ${r.llama_format.padEnd(5)} ${r.threads}t  pp ${fmt(r.ours.pp).padStart(7)} vs ${fmt(l?.pp).padStart(7)} (×${fmt(r.ratio_pp, 2)})  tg ${fmt(r.ours.tg).padStart(6)} vs ${fmt(l?.tg).padStart(6)} (×${fmt(r.ratio_tg, 2)})  goal ${r.met === null ? '–' : r.met ? 'met' : 'NOT met'}  RSS ${fmt(r.ours.max_rss_mb ?? r.ours.rss_mb, 0)} vs ${fmt(l?.max_rss_mb, 0)} MiB${r.ours.error ? `  icld error: ${r.ours.error}` : ''}${l?.error ? `  llama error: ${l.error}` : ''}`);
}
if (torchLine) console.log(`fp32 decode: icld ${fmt(torchLine.ours_decode)} tok/s (${torchLine.ours_threads}t) vs PyTorch ${fmt(torchLine.decode)} tok/s (${torchLine.best}t): ×${fmt(torchLine.ratio, 2)} (goal ×2: ${torchLine.met ? 'met' : 'NOT met'})`);
else if (torch?.error) console.log(`PyTorch failed: ${torch.error}`);

// ---- RESULTS.md
const md = [];
md.push('## GPT-2 124M inference vs llama.cpp (bf16 / q8_0 / q4_0 weights)', '');
md.push(`Date: ${date}. Machine: ${machine}.`);
md.push(`llama.cpp: ${llamaVersion}.`);
md.push(`Load average (1 min) before/after: ${load0.toFixed(2)} / ${load1.toFixed(2)}; wall ${M.wall_s ? M.wall_s.toFixed(0) : '?'} s; ${REPS} repeat(s) per measurement${quick ? ' (**--quick**)' : ''}.`);
if (Math.max(load0, load1) > 1.5) md.push('', `> **Warning:** the 1-min load average exceeded 1.5 (${load0.toFixed(2)} / ${load1.toFixed(2)}): other processes shared the CPUs during this run, so the rates and ratios are noisy. Re-run on an idle machine for numbers to quote.`);
const runArgv = M.argv ?? (renderFrom ? null : argv);
md.push('', runArgv ? 'Command: `npm run build && node bench/llama.mjs' + (runArgv.length ? ' ' + runArgv.filter((a) => a !== '--no-write').join(' ') : '') + '`' : 'Command: not recorded in the raw JSON.', '');
md.push(`The model: \`icld bench generate --config gpt2-124m\`'s random GPT-2 (d768 L12 H12, vocabulary 50257, seed 0), written to GGUF by bench/gguf.ts as llama.cpp's \`gpt2\` architecture in f32 (the tied head duplicated as \`output.weight\`, as llama.cpp requires) and quantized by \`llama-quantize\`; icld saves the same weights as a model directory (\`bench generate --save-model\`) and quantizes it with \`icld quantize\`; each icld run loads its directory (\`bench generate --model\`). pp = prompt tokens/s of a ${P}-token prefill (llama-bench pp${P}; icld: prompt forward + first argmax), tg = decode tokens/s (llama-bench tg${N} from an empty context; icld: the ${N - 1} tokens after the first, context ${P}→${P + N}). Each (format, threads) runs in a fresh process; ${REPS} repeat(s), llama-bench's mean and icld's median. Peak RSS: each process's maxrss (getrusage through /usr/bin/time, whole process; llama-bench mmaps the model, so mapped pages count).`, '');
const types = Object.entries(quantInfo).map(([f, q]) => `${LLAMA_TYPE[f]}: ${q.types ? Object.entries(q.types).map(([k, n]) => `${n} ${k}`).join(' + ') + ` (${(q.bytes / 2 ** 20).toFixed(0)} MiB)` : q.error ?? q.skipped}`);
if (types.length) md.push(`llama-quantize's tensor types (default mixture, as users get it): ${types.join('; ')}.`, '');
const ourTypes = [...new Set(FORMATS.map((f) => OURS_OF[f]))].map((d) => { const o = THREADS.map((t) => ours[`${d}/${t}`]).find((x) => x?.raw); return o ? `${d}: ${Object.entries(o.raw.weight_formats).map(([k, n]) => `${n} ${k}`).join(' + ')} (${(o.raw.weight_bytes / 2 ** 20).toFixed(0)} MiB)` : null; }).filter(Boolean);
if (ourTypes.length) md.push(`icld's tensor formats (quantizeModel's policy; f32 = the parameters left f32, norms and biases included): ${ourTypes.join('; ')}.`, '');
md.push(`Goal: icld ≥ llama.cpp in every row (pp and tg); also at least the issue's llama.cpp figures (tg F32 44/64, F16 84/111, Q8_0 120/167, Q4_0 180/250; pp F32 381/699 tok/s at 1/2 threads).`, '');
md.push('| icld / llama.cpp format | threads | icld pp | llama.cpp pp | ratio | icld tg | llama.cpp tg | ratio | issue figure (tg / pp) | goal | peak RSS MiB icld / llama.cpp |');
md.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|');
const bad = (x) => (x.error.startsWith('timed out') ? 'timed out' : 'failed');
for (const r of rows) {
  const l = r.llama;
  const lpp = l ? (l.error ? bad(l) : fmt(l.pp)) : 'n/a', ltg = l ? (l.error ? bad(l) : fmt(l.tg)) : 'n/a';
  const issue = r.issue_tg !== null || r.issue_pp !== null ? `${r.issue_tg ?? '–'} / ${r.issue_pp ?? '–'}` : '–';
  md.push(`| ${r.ours_format} / ${r.llama_format} | ${r.threads} | ${r.ours.error ? bad(r.ours) : fmt(r.ours.pp)} | ${lpp} | ${r.ratio_pp === null ? '–' : '×' + fmt(r.ratio_pp, 2)} | ${r.ours.error ? bad(r.ours) : fmt(r.ours.tg)} | ${ltg} | ${r.ratio_tg === null ? '–' : '×' + fmt(r.ratio_tg, 2)} | ${issue} | ${r.met === null ? '–' : r.met ? 'met' : '**not met**'} | ${fmt(r.ours.max_rss_mb ?? r.ours.rss_mb, 0)} / ${l && !l.error ? fmt(l.max_rss_mb, 0) : '–'} |`);
}
md.push('');
if (torchLine) md.push(`fp32 decode vs PyTorch ${torchLine.version} (eager twin bench/torch_lm.py, best of threads ${THREADS.join('/')}: ${torchLine.best}): icld ${fmt(torchLine.ours_decode)} tok/s (${torchLine.ours_threads} thread(s)) vs ${fmt(torchLine.decode)} tok/s — ×${fmt(torchLine.ratio, 2)} (goal ≥ ×2: ${torchLine.met ? 'met' : '**not met**'}); PyTorch peak RSS ${fmt(torchLine.max_rss_mb, 0)} MiB.`, '');
else md.push(withTorch ? `PyTorch: ${torch?.error ? `failed (${torch.command}: ${torch.error})` : 'not run (f32 not among --formats)'}.` : 'PyTorch: skipped (--no-torch).', '');
const fused = Object.values(ours).find((o) => o.raw)?.raw;
if (fused) md.push(`icld: \`${fused.backend}\` backend, gemm \`${fused.gemm}\`${fused.kernel_paths ? `, kernel paths ${Object.entries(fused.kernel_paths).map(([k, v]) => `${k} ${v}`).join(', ')}` : ''}; fused inference runtime ${fused.fused_runtime ? 'offered by the model' : '**not** offered (module forward; quantized weights only matter where the layers use them)'}.`, '');
const section = ['<!-- llama:begin -->', ...md, '<!-- llama:end -->'].join('\n');

const raw = { ...M, machine, llama: { ...llama, version: llamaVersion }, rows, torch_vs: torchLine };
mkdirSync(tmp, { recursive: true });
if (!renderFrom) writeFileAtomic(join(tmp, 'llama.json'), JSON.stringify(raw, null, 1) + '\n');
if (write) {
  const path = join(root, 'bench/RESULTS.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n';
  const re = /<!-- llama:begin -->[\s\S]*?<!-- llama:end -->/;
  text = re.test(text) ? text.replace(re, () => section) : text.replace(/\s*$/, '\n\n') + section + '\n';
  writeFileAtomic(path, text);
  console.log('\nwrote bench/RESULTS.md (llama section) and .bench-tmp/llama.json');
} else if (!renderFrom) console.log('\nwrote .bench-tmp/llama.json');

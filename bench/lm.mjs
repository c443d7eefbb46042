#!/usr/bin/env node
// GPT-2 speed and memory against PyTorch, in one run: `icld bench train` (small, gpt2s) and
// `icld bench generate` (small, gpt2-124m), each in a fresh process, and their twin
// bench/torch_lm.py (threads 1 and 2, each in a fresh process; PyTorch's best thread count is
// the yardstick). Writes the "lm" section of bench/RESULTS.md (between <!-- lm:begin --> and
// <!-- lm:end -->; other sections are left alone) and the raw JSON to .bench-tmp/lm.json.
//
//   npm run build && node bench/lm.mjs [--quick] [--only train,generate] [--configs small,gpt2s,gpt2-124m] [--no-write]
//
// Goals (DESIGN.md §5): training throughput ≥1.5× PyTorch on `small` and ≥1.2× on `gpt2s`;
// greedy KV-cache decoding ≥2× PyTorch eager; peak RSS (the kernel's high-water mark,
// getrusage maxrss, whole process) no higher than PyTorch's. The two sides run one after the
// other, never concurrently (the 2 vCPUs share one core's FP units).

import { spawnSync, execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const flag = (n) => argv.includes(n);
const opt = (n) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : undefined; };
const quick = flag('--quick'), write = !flag('--no-write');
const only = (opt('--only') ?? 'train,generate').split(',');
const configs = opt('--configs')?.split(',');

const CASES = [
  { kind: 'train', config: 'small', goal: 1.5, metric: 'tokens_per_s' },
  { kind: 'train', config: 'gpt2s', goal: 1.2, metric: 'tokens_per_s' },
  { kind: 'generate', config: 'small', goal: 2.0, metric: 'tokens_per_s' },
  { kind: 'generate', config: 'gpt2-124m', goal: 2.0, metric: 'tokens_per_s' },
].filter((c) => only.includes(c.kind) && (!configs || configs.includes(c.config)));

function sh(cmd) { try { return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return ''; } }
function lastJson(text) {
  for (const l of text.trim().split('\n').reverse()) { const s = l.trim(); if (s.startsWith('{')) { try { return JSON.parse(s); } catch { /* next */ } } }
  return null;
}
function sizeArgs(kind, config) {
  if (!quick) return [];
  if (kind === 'train') return config === 'small' ? ['--steps', '3', '--warmup', '1'] : ['--steps', '1', '--warmup', '1'];
  return ['--reps', '1'];
}

function runOurs(c) {
  const args = ['dist/src/cli/main.js', 'bench', c.kind, '--config', c.config, '--json', ...sizeArgs(c.kind, c.config)];
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const j = r.status === 0 ? lastJson(r.stdout) : null;
  if (!j) throw new Error(`ours: node ${args.join(' ')} failed (exit ${r.status})`);
  return { result: j, command: `node ${args.join(' ')}` };
}
function runTorch(c) {
  const args = ['bench/torch_lm.py', c.kind, '--config', c.config, '--threads', '1,2', ...sizeArgs(c.kind, c.config)];
  const r = spawnSync('/usr/bin/python3', args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const j = r.status === 0 ? lastJson(r.stdout) : null;
  if (!j) throw new Error(`torch: /usr/bin/python3 ${args.join(' ')} failed (exit ${r.status})`);
  return { result: j, command: `/usr/bin/python3 ${args.join(' ')}` };
}

const load0 = os.loadavg()[0];
const t0 = Date.now();
const rows = [];
let torchVersion = '', ourInfo = null;
for (const c of CASES) {
  console.error(`[lm] ${c.kind} ${c.config}: ours`);
  const o = runOurs(c);
  console.error(`[lm] ${c.kind} ${c.config}: PyTorch (threads 1, 2)`);
  const t = runTorch(c);
  torchVersion = t.result.torch;
  ourInfo ??= o.result;
  const tb = t.result.threads[t.result.best_threads];
  const ratio = o.result[c.metric] / tb[c.metric];
  const rss = o.result.max_rss_mb / tb.max_rss_mb;
  rows.push({ ...c, ours: o.result, torch: tb, torchAll: t.result.threads, torchBest: t.result.best_threads, ratio, met: ratio >= c.goal,
    rssRatio: rss, rssMet: rss <= 1, ourCmd: o.command, torchCmd: t.command });
}
const load1 = os.loadavg()[0];

const fmt = (x, d = 2) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const flags = sh("grep -m1 '^flags' /proc/cpuinfo").split(/\s+/);
const isa = ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile'].filter((f) => flags.includes(f)).join(' ');
const model = sh("lscpu | sed -n 's/^Model name:[ \\t]*//p'") || os.cpus()[0]?.model || 'unknown';
const machine = `${model}, ${os.cpus().length} vCPUs (${isa || 'no AVX2'}), Linux ${os.release()}, Node ${process.version}, PyTorch ${torchVersion}`;
const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

// ---- print
for (const r of rows) {
  const unit = r.kind === 'train' ? `${fmt(r.ours.step_s, 3)} s/step vs ${fmt(r.torch.step_s, 3)}` : `prefill ${fmt(r.ours.prefill_ms, 1)} vs ${fmt(r.torch.prefill_ms, 1)} ms, ${fmt(r.ours.per_token_ms)} vs ${fmt(r.torch.per_token_ms)} ms/token`;
  console.log(`${r.kind.padEnd(8)} ${r.config.padEnd(10)} ours ${fmt(r.ours.tokens_per_s, 1).padStart(8)} tok/s  torch(${r.torchBest}t) ${fmt(r.torch.tokens_per_s, 1).padStart(8)} tok/s  ×${fmt(r.ratio)} (goal ×${r.goal}: ${r.met ? 'met' : 'NOT met'})  ${unit}  maxRSS ${fmt(r.ours.max_rss_mb, 0)} vs ${fmt(r.torch.max_rss_mb, 0)} MiB (${r.rssMet ? 'ok' : 'higher'})`);
}

// ---- RESULTS.md
const md = [];
md.push('## GPT-2 training step and KV-cache decoding vs PyTorch', '');
md.push(`Date: ${date}. Machine: ${machine}.`);
if (ourInfo) md.push(`Ours: \`${ourInfo.backend}\` backend, gemm \`${ourInfo.gemm}\`, ${ourInfo.threads} thread(s). PyTorch: eager GPT-2 twin (bench/torch_lm.py), best of 1 and 2 threads, each in a fresh process with OMP/OPENBLAS/MKL_NUM_THREADS set.`);
md.push(`Load average (1 min) before/after: ${load0.toFixed(2)} / ${load1.toFixed(2)}; wall ${((Date.now() - t0) / 1000).toFixed(0)} s${quick ? '; **--quick** run (fewer steps / repeats)' : ''}.`);
if (Math.max(load0, load1) > 1.5) md.push('', `> **Warning:** the 1-min load average exceeded 1.5 (${load0.toFixed(2)} / ${load1.toFixed(2)}): other processes shared the 2 vCPUs during this run, so absolute times and ratios are noisy. Re-run on an idle machine for numbers to quote.`);
md.push('', 'Command: `npm run build && node bench/lm.mjs' + (argv.length ? ' ' + argv.filter((a) => a !== '--no-write').join(' ') : '') + '`');
for (const r of rows) md.push(`- ${r.kind} ${r.config}: ours \`${r.ourCmd}\`; torch \`${r.torchCmd}\``);
md.push('');
md.push('Train: full step on random tokens (forward, causal-LM cross-entropy, backward, clip-grad-norm 1.0, AdamW with decay/no-decay groups, zero-grad), dropout 0.1, median over the timed steps after warm-up; tokens/s = batch·T / step time. Generate: greedy, batch 1, 64-token random prompt, 128 new tokens, KV cache, median of the repeats; tok/s = 128 / (prefill + decode). Peak RSS: getrusage maxrss of the measuring process (whole lifetime, MiB).', '');
md.push('| bench | shape | ours | PyTorch (best) | PyTorch 1t / 2t | ratio | goal | ours / torch maxRSS MiB | RSS goal |');
md.push('|---|---|---:|---:|---:|---:|:---:|---:|:---:|');
for (const r of rows) {
  const s = r.ours.shape;
  const shape = r.kind === 'train' ? `d${s.d} L${s.L} H${s.H} T${s.T} B${s.batch} V${s.vocab} (${(r.ours.params / 1e6).toFixed(1)}M)` : `d${s.d} L${s.L} H${s.H} V${s.vocab} (${(r.ours.params / 1e6).toFixed(1)}M)`;
  const ours = r.kind === 'train' ? `${fmt(r.ours.step_s, 3)} s/step, ${fmt(r.ours.tokens_per_s, 0)} tok/s` : `${fmt(r.ours.tokens_per_s, 1)} tok/s (prefill ${fmt(r.ours.prefill_ms, 1)} ms, ${fmt(r.ours.per_token_ms)} ms/tok)`;
  const torch = r.kind === 'train' ? `${fmt(r.torch.step_s, 3)} s/step, ${fmt(r.torch.tokens_per_s, 0)} tok/s (${r.torchBest}t)` : `${fmt(r.torch.tokens_per_s, 1)} tok/s (prefill ${fmt(r.torch.prefill_ms, 1)} ms, ${fmt(r.torch.per_token_ms)} ms/tok) (${r.torchBest}t)`;
  const all = Object.values(r.torchAll).map((x) => r.kind === 'train' ? fmt(x.step_s, 3) + ' s' : fmt(x.tokens_per_s, 1)).join(' / ');
  md.push(`| ${r.kind} \`${r.config}\` | ${shape} | ${ours} | ${torch} | ${all} | ×${fmt(r.ratio)} | ≥×${r.goal}: ${r.met ? 'met' : '**not met**'} | ${fmt(r.ours.max_rss_mb, 0)} / ${fmt(r.torch.max_rss_mb, 0)} | ${r.rssMet ? 'met' : '**not met**'} |`);
}
md.push('');
const section = ['<!-- lm:begin -->', ...md, '<!-- lm:end -->'].join('\n');

if (write) {
  const path = join(root, 'bench/RESULTS.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n\nMeasured ratios against PyTorch on the same machine, in one run (see DESIGN.md §5).\n';
  const re = /<!-- lm:begin -->[\s\S]*?<!-- lm:end -->/;
  text = re.test(text) ? text.replace(re, section) : text.replace(/\s*$/, '\n\n') + section + '\n';
  writeFileSync(path, text);
  mkdirSync(join(root, '.bench-tmp'), { recursive: true });
  writeFileSync(join(root, '.bench-tmp/lm.json'), JSON.stringify({ date, machine, load: [load0, load1], rows }, null, 1));
  console.log(`\nwrote bench/RESULTS.md (lm section) and .bench-tmp/lm.json`);
}

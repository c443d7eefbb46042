#!/usr/bin/env node
// Inference matmul kernels (native/quant.c): GB/s of weight bytes streamed per format for the
// matmuls of one GPT-2-124M token (12 × {768→2304, 768→768, 768→3072, 3072→768} + the tied
// 50257×768 head), M = 1 (decode) and M = 4 (batched decode), at 1 and 2 threads, on the path
// chosen at start-up (ICLD_KERNEL_PATH or --path caps it). Weights are random bytes in each
// format (the speed does not depend on the values); 12 separate layer copies so nothing fits in
// cache, as in a real model. Writes the "quant-kernels" section of bench/RESULTS.md (between
// <!-- quant-kernels:begin --> and <!-- quant-kernels:end -->) unless --no-write.
//
//   npx tsc -p tsconfig.json && node bench/quant-kernels.mjs [--reps N] [--path P] [--no-write]

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (n) => { const i = argv.indexOf(n); return i >= 0 ? argv[i + 1] : undefined; };
const reps = Number(opt('--reps') ?? 8);
// --formats / --ms / --threads pick a subset (for tuning one kernel); a subset never writes RESULTS.md
const onlyFormats = opt('--formats')?.split(','), onlyMs = opt('--ms')?.split(',').map(Number), onlyThreads = opt('--threads')?.split(',').map(Number);
const write = !argv.includes('--no-write') && !onlyFormats && !onlyMs && !onlyThreads;
const nativePath = join(root, 'dist', 'src', 'engine', 'backend', 'native.js');
if (!existsSync(nativePath)) { console.error('bench/quant-kernels.mjs: run `npx tsc -p tsconfig.json` first (dist/ missing)'); process.exit(1); }
const native = await import(pathToFileURL(nativePath).href);
const be = native.loadNative();
if (!be) { console.error(`bench/quant-kernels.mjs: ${native.nativeLoadError()}`); process.exit(1); }
if (opt('--path')) native.setKernelPath(opt('--path'));

const C = 768, V = 50257, LAYERS = 12;
const SHAPES = [[3 * C, C], [C, C], [4 * C, C], [C, 4 * C]]; // [N out, K in]
const F16_SMALL = 0x211f; // ~0.01: keeps outputs finite

function weight(format, N, K, layout) {
  const n = N * K;
  switch (format) {
    case 'f32': { const d = new Float32Array(n); for (let i = 0; i < n; i++) d[i] = Math.random() - 0.5; return { format, N, K, layout, data: d, scales: null }; }
    case 'bf16': { const d = new Uint16Array(n); for (let i = 0; i < n; i++) d[i] = 0x3c00 + (Math.random() * 0x800 | 0) | (i & 1 ? 0x8000 : 0); return { format, N, K, layout: 'out_in', data: d, scales: null }; }
    default: {
      const d = new Uint8Array(format === 'q8_0' ? n : n / 2);
      for (let i = 0; i < d.length; i += 65536) { const c = d.subarray(i, i + 65536); crypto.getRandomValues(c); }
      const d2 = format === 'q8_0' ? new Int8Array(d.buffer) : d;
      return { format, N, K, layout: 'out_in', data: d2, scales: new Uint16Array(N * K / 32).fill(F16_SMALL) };
    }
  }
}
const bytesOf = (w) => w.data.byteLength + (w.scales ? w.scales.byteLength : 0);

function model(format, layout) {
  const layers = [];
  for (let l = 0; l < LAYERS; l++) for (const [N, K] of SHAPES) layers.push(weight(format, N, K, layout));
  return { layers, head: weight(format, V, C, 'out_in') };
}

function run({ layers, head }, format, layout, M, threads) {
  be.setThreads(threads);
  const all = [...layers, head];
  const x = new Float32Array(M * 4 * C).map(() => Math.random() - 0.5), out = new Float32Array(M * V);
  const token = () => { for (const w of all) be.qmatmul(w, M, x, 0, w.K, out, 0, w.N, null, false); };
  token();
  // wall time, and CPU time (user+sys of this process): on a shared machine the 1-thread CPU time
  // still says how fast the kernel runs when it does run
  let best = Infinity, bestCpu = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = process.hrtime.bigint(), c = process.cpuUsage();
    token();
    const u = process.cpuUsage(c);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
    bestCpu = Math.min(bestCpu, (u.user + u.system) / 1e3);
  }
  // per shape too (the layer set and the head), best of reps
  const part = (ws) => { let b = Infinity; for (let r = 0; r < reps; r++) { const t = process.hrtime.bigint(); for (const w of ws) be.qmatmul(w, M, x, 0, w.K, out, 0, w.N, null, false); b = Math.min(b, Number(process.hrtime.bigint() - t) / 1e6); } return b; };
  const layerMs = part(layers), headMs = part([head]);
  const bytes = all.reduce((s, w) => s + bytesOf(w), 0), lbytes = layers.reduce((s, w) => s + bytesOf(w), 0);
  return { format, layout, M, threads, ms: best, cpu_ms: bestCpu, cpu_gbps: threads === 1 ? bytes / bestCpu / 1e6 : null, gbps: bytes / best / 1e6, layers_gbps: lbytes / layerMs / 1e6, head_gbps: bytesOf(head) / headMs / 1e6, mbytes: bytes / 1e6 };
}

const cpu = be.cpu();
const cpuModel = (os.cpus()[0]?.model ?? 'unknown CPU').trim();
const rows = [];
for (const [format, layout] of [['f32', 'in_out'], ['f32', 'out_in'], ['bf16', 'out_in'], ['q8_0', 'out_in'], ['q4_0', 'out_in']]) {
  if (onlyFormats && !onlyFormats.includes(format)) continue;
  const m = model(format, layout);
  for (const M of onlyMs ?? [1, 4]) for (const threads of onlyThreads ?? [1, 2]) {
    const r = run(m, format, layout, M, threads);
    rows.push(r);
    console.log(`${format.padEnd(4)} ${layout} M=${M} threads=${threads}: ${r.ms.toFixed(2)} ms/token-set, ${r.gbps.toFixed(1)} GB/s (layers ${r.layers_gbps.toFixed(1)}, head ${r.head_gbps.toFixed(1)})${r.cpu_gbps ? `; per CPU-second ${r.cpu_gbps.toFixed(1)} GB/s` : ''}`);
  }
}

if (write) {
  const path = cpu.paths;
  const lines = [
    '<!-- quant-kernels:begin -->',
    '### Inference matmul kernels (weight GB/s)',
    '',
    `\`npx tsc -p tsconfig.json && node bench/quant-kernels.mjs\` on ${cpuModel}, ${os.cpus().length} vCPUs; features: ${cpu.features.join(' ')}.`,
    `Paths: f32 ${path.f32}, bf16 ${path.bf16}, q8_0 ${path.q8_0}, q4_0 ${path.q4_0}. One "token-set" = the matmuls of one GPT-2 124M token`,
    '(12 layers × 768→2304, 768→768, 768→3072, 3072→768, plus the 50257×768 head), best of ' + reps + ' runs; GB/s = weight bytes (scales included) / time.',
    'f32 in_out = GPT-2 Conv1D [K,N] layers (the head is always [N,K]). M = 4 reads the weights once for 4 rows.',
    `Load average at the end of the run: ${os.loadavg()[0].toFixed(1)} (${os.cpus().length} vCPUs). With other jobs running, threads=2 rows mostly time the OS scheduler (each`,
    'parallel region waits for both threads to get a CPU): rerun on a quiet machine for real figures.',
    '',
    '"GB/s per CPU-s" (1 thread only) divides by the process CPU time instead of wall time: steadier on a busy machine.',
    '',
    '| format | M | threads | ms / token-set | GB/s all | GB/s layers | GB/s head | GB/s per CPU-s |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.format}${r.format === 'f32' ? ` ${r.layout}` : ''} | ${r.M} | ${r.threads} | ${r.ms.toFixed(2)} | ${r.gbps.toFixed(1)} | ${r.layers_gbps.toFixed(1)} | ${r.head_gbps.toFixed(1)} | ${r.cpu_gbps ? r.cpu_gbps.toFixed(1) : '–'} |`),
    '<!-- quant-kernels:end -->',
  ];
  const file = join(root, 'bench', 'RESULTS.md');
  let text = readFileSync(file, 'utf8');
  const re = /<!-- quant-kernels:begin -->[\s\S]*?<!-- quant-kernels:end -->/;
  text = re.test(text) ? text.replace(re, lines.join('\n')) : `${text.trimEnd()}\n\n${lines.join('\n')}\n`;
  writeFileSync(file, text);
  console.log('wrote the quant-kernels section of bench/RESULTS.md');
}

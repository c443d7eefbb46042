// `icld bench ops`: per-kernel timings of the engine on the current backend, through the public
// ops (so TypeScript-side overhead — views, pooling, the autograd tape — is included). The
// PyTorch twin is bench/torch_ops.py; bench/ops.mjs runs both and writes bench/RESULTS.md.
//
// Every case creates its tensors once; each timed iteration runs inside tidy() so its
// temporaries go back to the pool. Timing: warm-up, then repeats until at least MIN_REPS reps
// and MIN_SECONDS of total time (capped), reporting the median.

import { performance } from 'node:perf_hooks';
import {
  Tensor, tidy, noGrad, backend, randn, param, matmul, attention, layerNorm, crossEntropy, gelu,
  add, sum, Rng, empty,
} from '../engine/index.js';

export interface BenchOpsCase {
  name: string;
  shape: string;
  /** Median wall time of one iteration in milliseconds. */
  ms: number;
  /** Useful floating-point rate (GEMM cases only): 2·M·K·N / time. */
  gflops?: number;
  reps: number;
}

export interface BenchOpsResult {
  backend: string;
  gemm: string;
  threads: number;
  cases: BenchOpsCase[];
}

export interface BenchOpsOptions {
  /** Accepted for the CLI's sake; the caller prints the result (JSON or a table). */
  json: boolean;
  /** Fewer repeats (smoke test). */
  quick?: boolean;
  /** Only cases whose name contains this substring (comma-separated alternatives). */
  filter?: string;
  /** Set the backend's thread count before timing. */
  threads?: number;
  /** One progress line per case on stderr unless false (stdout is left to the caller). */
  progress?: boolean;
  /** Called with each finished case (the CLI prints its table this way, once). */
  onCase?: (c: BenchOpsCase) => void;
}

/** One table row: name, median ms, GFLOP/s for GEMM cases. */
export function formatOpsRow(c: BenchOpsCase): string {
  return `${c.name.padEnd(40)} ${c.ms.toFixed(3).padStart(10)} ms${c.gflops ? `  ${c.gflops.toFixed(1)} GFLOP/s` : ''}`;
}

interface CaseDef {
  name: string;
  shape: string;
  flops?: number;
  /** Builds inputs once and returns the timed body plus a cleanup. */
  setup: () => { run: () => void; cleanup: () => void };
}

function timeIt(run: () => void, quick: boolean): { ms: number; reps: number } {
  const minReps = quick ? 3 : 5, minSec = quick ? 0.1 : 0.3, maxSec = quick ? 1 : 3, maxReps = 1000;
  // Warm-up: one call (pool fills, JIT compiles, kernels page in), a second when it is fast.
  let t0 = performance.now();
  run();
  if (performance.now() - t0 < 200) run();
  const times: number[] = [];
  const start = performance.now();
  for (;;) {
    t0 = performance.now();
    run();
    const t1 = performance.now();
    times.push(t1 - t0);
    const total = (t1 - start) / 1000;
    if (times.length >= maxReps) break;
    if (times.length >= minReps && (total >= minSec)) break;
    if (total >= maxSec && times.length >= 3) break;
  }
  times.sort((a, b) => a - b);
  const n = times.length;
  const ms = n % 2 ? times[(n - 1) >> 1] : (times[n / 2 - 1] + times[n / 2]) / 2;
  return { ms, reps: n };
}

function disposeAll(...ts: Tensor[]): void { for (const t of ts) t.dispose(); }
function zeroGrad(...ts: Tensor[]): void {
  for (const t of ts) { if (t.grad) { t.grad.dispose(); t.grad = null; } }
}

function randInts(n: number, hi: number, rng: Rng): Tensor {
  const t = empty([n], 'int32', false).keep();
  const d = t.i32;
  for (let i = 0; i < n; i++) d[i] = Math.floor(rng.next() * hi) % hi;
  return t;
}

function cases(): CaseDef[] {
  const rng = new Rng(1234);
  const out: CaseDef[] = [];

  // -- GEMM forward
  const mm = (M: number, K: number, N: number): CaseDef => ({
    name: `matmul ${M}x${K}x${N}`,
    shape: `[${M},${K}]@[${K},${N}]`,
    flops: 2 * M * K * N,
    setup: () => {
      const a = randn([M, K], rng).keep(), b = randn([K, N], rng, 0.05).keep();
      return { run: () => noGrad(() => tidy(() => { matmul(a, b); })), cleanup: () => disposeAll(a, b) };
    },
  });
  out.push(mm(512, 512, 512), mm(1024, 1024, 1024), mm(2048, 768, 768), mm(2048, 768, 3072));
  {
    const Bt = 48, M = 128, K = 64, N = 128;
    out.push({
      name: 'bmm 48x128x64x128',
      shape: `[${Bt},${M},${K}]@[${Bt},${K},${N}]`,
      flops: 2 * Bt * M * K * N,
      setup: () => {
        const a = randn([Bt, M, K], rng).keep(), b = randn([Bt, K, N], rng, 0.1).keep();
        return { run: () => noGrad(() => tidy(() => { matmul(a, b); })), cleanup: () => disposeAll(a, b) };
      },
    });
  }

  // -- causal attention
  const att = (B: number, H: number, T: number, D: number, bwd: boolean): CaseDef => ({
    name: `attention ${bwd ? 'fwd+bwd' : 'fwd'} B${B} H${H} T${T} D${D}`,
    shape: `[${B},${H},${T},${D}] causal`,
    setup: () => {
      const q = param(randn([B, H, T, D], rng)).keep(), k = param(randn([B, H, T, D], rng)).keep();
      const v = param(randn([B, H, T, D], rng)).keep(), g = randn([B, H, T, D], rng).keep();
      const run = bwd
        ? () => { tidy(() => { attention(q, k, v, { causal: true }).backward(g); }); zeroGrad(q, k, v); }
        : () => noGrad(() => tidy(() => { attention(q, k, v, { causal: true }); }));
      return { run, cleanup: () => { zeroGrad(q, k, v); disposeAll(q, k, v, g); } };
    },
  });
  out.push(att(16, 4, 128, 64, false), att(16, 4, 128, 64, true), att(4, 12, 256, 64, false), att(4, 12, 256, 64, true));

  // -- layer norm
  const ln = (bwd: boolean): CaseDef => ({
    name: `layerNorm ${bwd ? 'fwd+bwd' : 'fwd'}`,
    shape: '[2048,768]',
    setup: () => {
      const x = param(randn([2048, 768], rng)).keep(), g = randn([2048, 768], rng).keep();
      const w = param(randn([768], rng, 0.1)).keep(), b = param(randn([768], rng, 0.1)).keep();
      const run = bwd
        ? () => { tidy(() => { layerNorm(x, w, b).backward(g); }); zeroGrad(x, w, b); }
        : () => noGrad(() => tidy(() => { layerNorm(x, w, b); }));
      return { run, cleanup: () => { zeroGrad(x, w, b); disposeAll(x, g, w, b); } };
    },
  });
  out.push(ln(false), ln(true));

  // -- softmax + cross-entropy (fused), forward + backward
  const ce = (R: number, V: number): CaseDef => ({
    name: `crossEntropy fwd+bwd ${R}x${V}`,
    shape: `[${R},${V}]`,
    setup: () => {
      const z = param(randn([R, V], rng)).keep(), t = randInts(R, V, rng);
      const run = () => { tidy(() => { crossEntropy(z, t).backward(); }); zeroGrad(z); };
      return { run, cleanup: () => { zeroGrad(z); disposeAll(z, t); } };
    },
  });
  out.push(ce(2048, 2048), ce(1024, 8192));

  // -- GELU (tanh approximation, GPT-2's)
  out.push({
    name: 'gelu fwd+bwd',
    shape: '[2048,3072]',
    setup: () => {
      const x = param(randn([2048, 3072], rng)).keep(), g = randn([2048, 3072], rng).keep();
      const run = () => { tidy(() => { gelu(x).backward(g); }); zeroGrad(x); };
      return { run, cleanup: () => { zeroGrad(x); disposeAll(x, g); } };
    },
  });

  // -- MLP block through autograd: x[16,128,256] → Linear(256,1024) → GELU → Linear(1024,256) → sum
  {
    const B = 16, T = 128, C = 256, Hd = 1024, tok = B * T;
    out.push({
      name: 'mlp fwd+bwd',
      shape: `x[${B},${T},${C}] ${C}→${Hd}→${C}`,
      flops: 3 * 2 * (2 * tok * C * Hd), // two linears, forward + two backward GEMMs each
      setup: () => {
        const x = param(randn([B, T, C], rng)).keep();
        const w1 = param(randn([C, Hd], rng, 0.02)).keep(), b1 = param(randn([Hd], rng, 0.02)).keep();
        const w2 = param(randn([Hd, C], rng, 0.02)).keep(), b2 = param(randn([C], rng, 0.02)).keep();
        const ps = [x, w1, b1, w2, b2];
        const run = () => {
          tidy(() => { sum(add(matmul(gelu(add(matmul(x, w1), b1)), w2), b2)).backward(); });
          zeroGrad(...ps);
        };
        return { run, cleanup: () => { zeroGrad(...ps); disposeAll(...ps); } };
      },
    });
  }
  return out;
}

export async function benchOps(opts: BenchOpsOptions): Promise<BenchOpsResult> {
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const filters = opts.filter ? opts.filter.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean) : [];
  const selected = cases().filter((c) => filters.length === 0 || filters.some((f) => c.name.toLowerCase().includes(f)));
  const result: BenchOpsResult = { backend: be.name, gemm: be.gemmProvider, threads: be.threads(), cases: [] };
  const progress = opts.progress ?? true;
  for (const c of selected) {
    const { run, cleanup } = c.setup();
    let r: { ms: number; reps: number };
    try { r = timeIt(run, !!opts.quick); } finally { cleanup(); }
    const row: BenchOpsCase = { name: c.name, shape: c.shape, ms: round(r.ms, 4), reps: r.reps };
    if (c.flops) row.gflops = round(c.flops / (r.ms * 1e6), 2);
    result.cases.push(row);
    if (progress) process.stderr.write(`${formatOpsRow(row)}  (${r.reps} reps)\n`);
    opts.onCase?.(row);
    // Let the event loop breathe between cases (stdout flushes, signals).
    await new Promise((res) => setImmediate(res));
  }
  return result;
}

function round(x: number, d: number): number { const p = 10 ** d; return Math.round(x * p) / p; }

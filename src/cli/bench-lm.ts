// `icld bench train` / `icld bench generate`: GPT-2 speed and memory on this machine, at the
// reference shapes below (TRAIN_CONFIGS, GENERATE_CONFIGS). The PyTorch twin is bench/torch_lm.py; bench/lm.mjs runs
// both and writes the "lm" section of bench/RESULTS.md.
//
// train: the full optimizer step on random tokens — forward, causal-LM cross-entropy, backward,
// clipGradNorm(1.0), AdamW (decay / no-decay groups), zeroGrad — all inside one tidy(), in train
// mode with GPT-2's dropout 0.1. Warm-up steps are excluded; the median step time is reported.
// Peak RSS is the max of process.memoryUsage.rss() sampled after backward and after the update
// of every step (process.resourceUsage().maxRSS, the kernel's high-water mark, is reported too).
//
// generate: greedy decoding with the KV cache through generate() (batch 1, a 64-token random
// prompt, 128 new tokens). prefill_ms is the time to the first new token (prompt forward +
// argmax); per_token_ms is the mean time of the remaining tokens; tokens_per_s counts all new
// tokens over the whole call (prefill included). Median over the repeats.

import { performance } from 'node:perf_hooks';
import { tidy, backend, Rng, empty, type Tensor } from '../engine/index.js';
import { createModel, type LanguageModel } from '../models/index.js';
import { generate } from '../models/generate.js';
import { AdamW, clipGradNorm } from '../optim/adamw.js';
import { paramGroups } from '../train/trainer.js';

export type TrainBenchConfig = 'small' | 'gpt2s';
export type GenerateBenchConfig = 'small' | 'gpt2-124m';

interface Shape { d: number; L: number; H: number; T: number; batch: number; vocab: number; nPositions: number; }

export const TRAIN_CONFIGS: Record<TrainBenchConfig, Shape> = {
  small: { d: 256, L: 4, H: 4, T: 128, batch: 16, vocab: 2048, nPositions: 128 },
  gpt2s: { d: 768, L: 12, H: 12, T: 256, batch: 4, vocab: 8192, nPositions: 256 },
};
export const GENERATE_CONFIGS: Record<GenerateBenchConfig, Shape> = {
  small: { d: 256, L: 4, H: 4, T: 0, batch: 1, vocab: 2048, nPositions: 1024 },
  'gpt2-124m': { d: 768, L: 12, H: 12, T: 0, batch: 1, vocab: 50257, nPositions: 1024 },
};

export interface BenchTrainOptions {
  config: TrainBenchConfig;
  /** Timed steps (default: 10 for small, 4 for gpt2s). */
  steps?: number;
  /** Untimed warm-up steps (default: 2 for small, 1 for gpt2s). */
  warmup?: number;
  threads?: number;
  json: boolean;
  /** One line per step on stderr unless false. */
  progress?: boolean;
}

export interface BenchTrainResult {
  config: TrainBenchConfig;
  shape: Shape;
  params: number;
  steps: number;
  warmup: number;
  /** Median seconds per optimizer step. */
  step_s: number;
  step_s_all: number[];
  tokens_per_s: number;
  /** Max of process.memoryUsage.rss() sampled during the steps (MiB). */
  peak_rss_mb: number;
  /** process.resourceUsage().maxRSS at the end (MiB; whole process lifetime). */
  max_rss_mb: number;
  backend: string;
  gemm: string;
  threads: number;
  final_loss: number;
}

export interface BenchGenerateOptions {
  config: GenerateBenchConfig;
  promptTokens?: number;
  newTokens?: number;
  /** Timed repeats (default 3); one short untimed warm-up run precedes them. */
  reps?: number;
  threads?: number;
  json: boolean;
  progress?: boolean;
}

export interface BenchGenerateResult {
  config: GenerateBenchConfig;
  shape: Shape;
  params: number;
  prompt_tokens: number;
  new_tokens: number;
  reps: number;
  tokens_per_s: number;
  /** New tokens per second excluding the prefill (1000 / per_token_ms). */
  decode_tokens_per_s: number;
  prefill_ms: number;
  per_token_ms: number;
  peak_rss_mb: number;
  max_rss_mb: number;
  backend: string;
  gemm: string;
  threads: number;
}

const MiB = 1024 * 1024;
function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b), n = s.length;
  return n % 2 ? s[(n - 1) >> 1] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
function round(x: number, d: number): number { const p = 10 ** d; return Math.round(x * p) / p; }
function maxRssMb(): number { return process.resourceUsage().maxRSS / 1024; } // maxRSS is in KiB

function randomIds(B: number, T: number, vocab: number, rng: Rng): Tensor {
  const t = empty([B, T], 'int32', false);
  const d = t.i32;
  for (let i = 0; i < d.length; i++) d[i] = rng.nextU32() % vocab;
  return t;
}

function buildModel(s: Shape, seed = 0): LanguageModel {
  return createModel('gpt2', { vocab_size: s.vocab, n_positions: s.nPositions, n_embd: s.d, n_layer: s.L, n_head: s.H }, seed);
}

export function benchTrain(opts: BenchTrainOptions): BenchTrainResult {
  const s = TRAIN_CONFIGS[opts.config];
  if (!s) throw new Error(`bench train: unknown config '${String(opts.config)}' (small, gpt2s)`);
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const steps = Math.max(1, opts.steps ?? (opts.config === 'small' ? 10 : 4));
  const warmup = Math.max(0, opts.warmup ?? (opts.config === 'small' ? 2 : 1));
  const progress = opts.progress ?? true;
  const model = buildModel(s);
  model.train();
  const params = model.parameters();
  const opt = new AdamW(paramGroups(model, 0.1), { lr: 3e-4, betas: [0.9, 0.95], eps: 1e-8 });
  const rng = new Rng(1234);
  let peak = process.memoryUsage.rss();
  const sample = (): void => { const r = process.memoryUsage.rss(); if (r > peak) peak = r; };
  const times: number[] = [];
  let lastLoss = NaN;
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      lastLoss = tidy(() => {
        const ids = randomIds(s.batch, s.T, s.vocab, rng);
        const { loss } = model.loss(ids);
        loss.backward();
        sample();
        const l = loss.item();
        clipGradNorm(params, 1.0);
        opt.update();
        opt.zeroGrad();
        return l;
      });
      const dt = performance.now() - t0;
      sample();
      if (i >= warmup) times.push(dt / 1000);
      if (progress) process.stderr.write(`[bench train ${opts.config}] ${i < warmup ? 'warm-up' : 'step'} ${i < warmup ? i + 1 : i - warmup + 1}: ${(dt / 1000).toFixed(3)} s  loss ${lastLoss.toFixed(4)}  rss ${(process.memoryUsage.rss() / MiB).toFixed(0)} MiB\n`);
    }
  } finally {
    opt.dispose();
    model.dispose();
  }
  const stepS = median(times);
  return {
    config: opts.config, shape: s, params: params.reduce((a, p) => a + p.size, 0), steps, warmup,
    step_s: round(stepS, 4), step_s_all: times.map((t) => round(t, 4)),
    tokens_per_s: round((s.batch * s.T) / stepS, 1),
    peak_rss_mb: round(peak / MiB, 1), max_rss_mb: round(maxRssMb(), 1),
    backend: be.name, gemm: be.gemmProvider, threads: be.threads(), final_loss: round(lastLoss, 4),
  };
}

export function benchGenerate(opts: BenchGenerateOptions): BenchGenerateResult {
  const s = GENERATE_CONFIGS[opts.config];
  if (!s) throw new Error(`bench generate: unknown config '${String(opts.config)}' (small, gpt2-124m)`);
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const P = opts.promptTokens ?? 64, N = opts.newTokens ?? 128, reps = Math.max(1, opts.reps ?? 3);
  const progress = opts.progress ?? true;
  const model = buildModel(s);
  model.eval();
  const nParams = model.numParameters();
  const rng = new Rng(4321);
  const prompt = Array.from({ length: P }, () => rng.nextU32() % s.vocab);
  const codec = { encode: (): number[] => [], decode: (): string => '' };
  let peak = process.memoryUsage.rss();
  const runOnce = (n: number): { total: number; prefill: number } => {
    let first = 0;
    const t0 = performance.now();
    const r = generate(model, codec, prompt, {
      maxNewTokens: n, temperature: 0, eosTokenId: null,
      onToken: () => { if (first === 0) first = performance.now(); const m = process.memoryUsage.rss(); if (m > peak) peak = m; },
    });
    const total = performance.now() - t0;
    if (r.tokens.length !== n) throw new Error(`bench generate: produced ${r.tokens.length} tokens, expected ${n}`);
    return { total, prefill: first - t0 };
  };
  const totals: number[] = [], prefills: number[] = [], perTok: number[] = [];
  try {
    runOnce(Math.min(8, N)); // warm-up: pool fills, JIT compiles
    for (let i = 0; i < reps; i++) {
      const { total, prefill } = runOnce(N);
      totals.push(total); prefills.push(prefill); perTok.push(N > 1 ? (total - prefill) / (N - 1) : 0);
      if (progress) process.stderr.write(`[bench generate ${opts.config}] rep ${i + 1}: ${(N / (total / 1000)).toFixed(1)} tok/s, prefill ${prefill.toFixed(1)} ms, ${perTok[i].toFixed(2)} ms/token\n`);
    }
  } finally {
    model.dispose();
  }
  const total = median(totals), perToken = median(perTok);
  return {
    config: opts.config, shape: s, params: nParams, prompt_tokens: P, new_tokens: N, reps,
    tokens_per_s: round(N / (total / 1000), 2), decode_tokens_per_s: round(perToken > 0 ? 1000 / perToken : 0, 2),
    prefill_ms: round(median(prefills), 2), per_token_ms: round(perToken, 3),
    peak_rss_mb: round(peak / MiB, 1), max_rss_mb: round(maxRssMb(), 1),
    backend: be.name, gemm: be.gemmProvider, threads: be.threads(),
  };
}

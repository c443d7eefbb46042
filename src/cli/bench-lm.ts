// `icld bench train` / `icld bench generate` / `icld bench fill-mask`: GPT-2 and BERT speed and
// memory on this machine, at the reference shapes below (TRAIN_CONFIGS, GENERATE_CONFIGS). The
// PyTorch twins are bench/torch_lm.py (GPT-2) and bench/torch_bert.py (BERT); bench/lm.mjs and
// bench/bert.mjs run both sides and write their sections of bench/RESULTS.md.
//
// train (bert-small): the same step with the masked-LM objective: random non-special tokens
// masked by MlmCollator (15%; 80% [MASK], 10% random, 10% kept) inside the timed step, as the
// PyTorch twin does; dropout 0.1. The loss is pretrain's mlmLoss (LM head at the masked rows
// only); fullHead computes logits at every position first, as BertForMaskedLM and the twin do.
//
// fill-mask: one 12-token sentence ([CLS] … [MASK] … [SEP]) through the eval-mode BERT (no
// gradients), the LM head at the mask row only, softmax and the top 5; median milliseconds over
// the repeats after 3 untimed runs.
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
// --dtype quantizes the random model's weights in-process first (bf16 / q8_0 / q4_0, as `icld
// quantize` would). prefill_tokens_per_s = prompt tokens / prefill time and decode_tokens_per_s =
// 1 / per-token time are the twins of llama-bench's pp<prompt> and tg<new> (bench/llama.mjs).

import { performance } from 'node:perf_hooks';
import { tidy, noGrad, backend, Rng, empty, type Tensor } from '../engine/index.js';
import { createModel, generate, quantizeModel, loadModel, modelDtype, quantizationOf, type LanguageModel } from '../models/index.js';
import { MlmCollator } from '../data/mlm.js';
import { mlmLoss } from '../train/pretrain.js';
import * as O from '../engine/ops.js';
import { AdamW, clipGradNorm } from '../optim/adamw.js';
import { paramGroups } from '../train/trainer.js';
import { weightBytes, type QWeight, type WeightFormat } from '../engine/quant.js';

export type TrainBenchConfig = 'small' | 'gpt2s' | 'bert-small';
export type GenerateBenchConfig = 'small' | 'gpt2-124m';
export type FillMaskBenchConfig = 'bert-small';

interface Shape { arch?: 'gpt2' | 'bert'; d: number; L: number; H: number; ff?: number; T: number; batch: number; vocab: number; nPositions: number; }

/** BERT-small: hidden 512, 4 layers, 8 heads, FFN 2048, vocab 28996 (bert-base-cased's): 28.0M parameters with embeddings. */
const BERT_SMALL: Shape = { arch: 'bert', d: 512, L: 4, H: 8, ff: 2048, T: 128, batch: 16, vocab: 28996, nPositions: 512 };

export const TRAIN_CONFIGS: Record<TrainBenchConfig, Shape> = {
  small: { d: 256, L: 4, H: 4, T: 128, batch: 16, vocab: 2048, nPositions: 128 },
  gpt2s: { d: 768, L: 12, H: 12, T: 256, batch: 4, vocab: 8192, nPositions: 256 },
  'bert-small': BERT_SMALL,
};
export const FILL_MASK_CONFIGS: Record<FillMaskBenchConfig, Shape> = { 'bert-small': { ...BERT_SMALL, T: 12, batch: 1 } };
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
  /** bert-small: LM head at every position (HF BertForMaskedLM's way) instead of the masked ones. */
  fullHead?: boolean;
}

export interface BenchTrainResult {
  /** bert-small: where the LM head ran ('masked' rows only, or 'full'). */
  mlm_head?: 'masked' | 'full';
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
  /** Weight format of the matmuls and the tied embedding / LM head (default f32). */
  dtype?: WeightFormat;
  /**
   * A saved model directory of the config's shape (e.g. written by `icld quantize`) instead of the
   * in-process random model: its weights' format is whatever the directory holds, and peak RSS is
   * that of a process that never held the f32 model (as llama.cpp loading a GGUF file).
   */
  modelDir?: string;
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
  dtype: WeightFormat;
  /** Tensors per weight format after quantizeModel's per-tensor policy (f32: parameters left f32). */
  weight_formats: Partial<Record<WeightFormat, number>>;
  /** Bytes of all the model's weights as inference holds them (scales included). */
  weight_bytes: number;
  /** Seconds spent quantizing the random model (not timed in the rates). */
  quantize_s: number;
  /** Whether the model offers the fused inference runtime that generate() prefers (else the module forward runs). */
  fused_runtime: boolean;
  tokens_per_s: number;
  /** Prompt tokens per second of the prefill (prompt forward + first argmax), like llama-bench's pp. */
  prefill_tokens_per_s: number;
  /** New tokens per second excluding the prefill (1000 / per_token_ms). */
  decode_tokens_per_s: number;
  prefill_ms: number;
  per_token_ms: number;
  peak_rss_mb: number;
  max_rss_mb: number;
  backend: string;
  gemm: string;
  threads: number;
  /** Kernel path per family the backend chose at start-up (backend.cpu().paths). */
  kernel_paths?: Record<string, string>;
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

/** A model of the bench shape (random weights). */
export function buildModel(s: Shape, seed = 0): LanguageModel {
  if (s.arch === 'bert') {
    return createModel('bert', { vocab_size: s.vocab, hidden_size: s.d, num_hidden_layers: s.L, num_attention_heads: s.H, intermediate_size: s.ff ?? 4 * s.d, max_position_embeddings: s.nPositions, pad_token_id: 0 }, seed);
  }
  return createModel('gpt2', { vocab_size: s.vocab, n_positions: s.nPositions, n_embd: s.d, n_layer: s.L, n_head: s.H }, seed);
}

/** Save the random model of a generate shape (seed 0, as benchGenerate builds it) as a model directory. */
export function saveBenchModel(config: GenerateBenchConfig, dir: string): string {
  const s = GENERATE_CONFIGS[config];
  if (!s) throw new Error(`bench generate: unknown config '${String(config)}' (small, gpt2-124m)`);
  const model = buildModel(s);
  try { model.savePretrained(dir); } finally { model.dispose(); }
  return dir;
}

/** Ids 0..4 play [PAD] [UNK] [CLS] [SEP] [MASK] in the BERT benches (random weights, no real vocabulary). */
const SPECIALS = 5, MASK_ID = 4;
function benchCollator(vocab: number): MlmCollator {
  return new MlmCollator({ type: 'wordpiece', vocabSize: vocab, maskTokenId: MASK_ID, padTokenId: 0, isSpecialId: (id) => id < SPECIALS, idToToken: (id) => `t${id}` });
}

/**
 * The training step's forward for a bench shape: the loss on one fresh random batch drawn from
 * `rng` — causal LM loss, or (BERT) MLM on masked random tokens with the LM head at the masked rows
 * (`fullHead`: at every position, as BertForMaskedLM). Shared by `bench train` and bench/lm-profile.mjs.
 */
export function benchLoss(model: LanguageModel, s: Shape, fullHead = false): (rng: Rng) => Tensor {
  if (s.arch !== 'bert') return (rng) => model.loss(randomIds(s.batch, s.T, s.vocab, rng)).loss;
  const col = benchCollator(s.vocab);
  const ids32 = new Int32Array(s.batch * s.T), lab32 = new Int32Array(s.batch * s.T);
  return (rng) => {
    const raw = randomIds(s.batch, s.T, s.vocab - SPECIALS, rng).i32.map((x) => x + SPECIALS);
    col.apply(raw, s.T, rng, ids32, lab32);
    const ids = O.fromData(ids32, [s.batch, s.T]);
    return fullHead ? model.loss(ids, O.fromData(lab32, [s.batch, s.T])).loss : mlmLoss(model, ids, lab32);
  };
}

export function benchTrain(opts: BenchTrainOptions): BenchTrainResult {
  const s = TRAIN_CONFIGS[opts.config];
  if (!s) throw new Error(`bench train: unknown config '${String(opts.config)}' (small, gpt2s, bert-small)`);
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const steps = Math.max(1, opts.steps ?? (opts.config === 'small' ? 10 : opts.config === 'bert-small' ? 6 : 4));
  const warmup = Math.max(0, opts.warmup ?? (opts.config === 'gpt2s' ? 1 : 2));
  const progress = opts.progress ?? true;
  const model = buildModel(s);
  model.train();
  const params = model.parameters();
  const opt = new AdamW(paramGroups(model, 0.1), { lr: 3e-4, betas: [0.9, 0.95], eps: 1e-8 });
  const rng = new Rng(1234);
  const lossOf = benchLoss(model, s, opts.fullHead);
  let peak = process.memoryUsage.rss();
  const sample = (): void => { const r = process.memoryUsage.rss(); if (r > peak) peak = r; };
  const times: number[] = [];
  let lastLoss = NaN;
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const t0 = performance.now();
      lastLoss = tidy(() => {
        const loss = lossOf(rng);
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
    config: opts.config, ...(s.arch === 'bert' ? { mlm_head: opts.fullHead ? 'full' as const : 'masked' as const } : {}), shape: s, params: params.reduce((a, p) => a + p.size, 0), steps, warmup,
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
  let dtype = opts.dtype ?? 'f32';
  let model: LanguageModel, q: { tensors: Record<string, number>; bytes_after: number } | null = null, quantizeS = 0, nParams: number;
  if (opts.modelDir) {
    model = loadModel(opts.modelDir);
    const c = model.config as Record<string, unknown>;
    const want: Record<string, number> = { n_embd: s.d, n_layer: s.L, n_head: s.H, vocab_size: s.vocab };
    for (const [k, v] of Object.entries(want)) if (c[k] !== v) throw new Error(`bench generate: ${opts.modelDir} has ${k} ${String(c[k])}, the ${opts.config} shape needs ${v}`);
    dtype = modelDtype(model);
    // Count what the loaded model holds: quantized tensors by format, the rest as f32 parameters.
    const tensors: Record<string, number> = {};
    let bytes = 0, n = 0;
    for (const [, m] of model.namedModules()) {
      const w = (m as { quantized?: QWeight | null }).quantized;
      if (w) { tensors[w.format] = (tensors[w.format] ?? 0) + 1; bytes += weightBytes(w.format, w.N, w.K); n += w.N * w.K; }
    }
    for (const [, p] of model.namedParameters()) if (p.size > 0) { tensors.f32 = (tensors.f32 ?? 0) + 1; bytes += 4 * p.size; n += p.size; }
    nParams = n;
    if (quantizationOf(model)) q = { tensors, bytes_after: bytes };
  } else {
    model = buildModel(s);
    nParams = model.numParameters();
    const tq = performance.now();
    q = dtype === 'f32' ? null : quantizeModel(model, dtype);
    quantizeS = (performance.now() - tq) / 1000;
  }
  model.eval();
  const weightFormats = q ? Object.fromEntries(Object.entries(q.tensors).filter(([, n]) => n > 0)) : { f32: model.namedParameters().length };
  const fused = typeof model.runtime === 'function';
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
      if (progress) process.stderr.write(`[bench generate ${opts.config} ${dtype}] rep ${i + 1}: ${(N / (total / 1000)).toFixed(1)} tok/s, prefill ${prefill.toFixed(1)} ms, ${perTok[i].toFixed(2)} ms/token\n`);
    }
  } finally {
    model.dispose();
  }
  const total = median(totals), perToken = median(perTok), prefill = median(prefills);
  return {
    config: opts.config, shape: s, params: nParams, prompt_tokens: P, new_tokens: N, reps,
    dtype, weight_formats: weightFormats, weight_bytes: q ? q.bytes_after : 4 * nParams, quantize_s: round(quantizeS, 2), fused_runtime: fused,
    tokens_per_s: round(N / (total / 1000), 2), prefill_tokens_per_s: round(prefill > 0 ? P / (prefill / 1000) : 0, 1), decode_tokens_per_s: round(perToken > 0 ? 1000 / perToken : 0, 2),
    prefill_ms: round(prefill, 2), per_token_ms: round(perToken, 3),
    peak_rss_mb: round(peak / MiB, 1), max_rss_mb: round(maxRssMb(), 1),
    backend: be.name, gemm: be.gemmProvider, threads: be.threads(), kernel_paths: { ...be.cpu().paths },
  };
}

export interface BenchFillMaskOptions { config: FillMaskBenchConfig; reps?: number; threads?: number; progress?: boolean; }
export interface BenchFillMaskResult {
  config: FillMaskBenchConfig; shape: Shape; params: number; tokens: number; reps: number;
  /** Median milliseconds: forward of one sentence + softmax at the mask + top 5. */
  ms: number; ms_all: number[]; top: { id: number; prob: number }[];
  max_rss_mb: number; backend: string; gemm: string; threads: number;
}

export function benchFillMask(opts: BenchFillMaskOptions): BenchFillMaskResult {
  const s = FILL_MASK_CONFIGS[opts.config];
  if (!s) throw new Error(`bench fill-mask: unknown config '${String(opts.config)}' (bert-small)`);
  const be = backend();
  if (opts.threads !== undefined) be.setThreads(opts.threads);
  const reps = Math.max(1, opts.reps ?? 20), T = s.T, pos = T >> 1;
  const model = buildModel(s);
  model.eval();
  const nParams = model.numParameters();
  const rng = new Rng(1234);
  const ids = Int32Array.from({ length: T }, () => SPECIALS + (rng.nextU32() % (s.vocab - SPECIALS)));
  ids[0] = 2; ids[T - 1] = 3; ids[pos] = MASK_ID;
  let top: { id: number; prob: number }[] = [];
  const once = (): number => {
    const t0 = performance.now();
    top = tidy(() => noGrad(() => {
      // The LM head only at the [MASK] row: the other rows' logits are never read.
      const h = O.reshape(model.hidden(O.fromData(ids, [1, T])), [T, s.d]);
      const hm = O.embedding(h, O.fromData(Int32Array.of(pos), [1]));
      const row = O.softmax(model.lmHead(hm), -1).f32;
      const best: { id: number; prob: number }[] = [];
      for (let i = 0; i < row.length; i++) {
        if (best.length < 5 || row[i] > best[best.length - 1].prob) {
          best.push({ id: i, prob: row[i] });
          best.sort((a, b) => b.prob - a.prob);
          if (best.length > 5) best.pop();
        }
      }
      return best;
    }));
    return performance.now() - t0;
  };
  const ms: number[] = [];
  try {
    for (let i = 0; i < 3; i++) once();
    for (let i = 0; i < reps; i++) ms.push(once());
  } finally { model.dispose(); }
  if (opts.progress ?? true) process.stderr.write(`[bench fill-mask ${opts.config}] median ${median(ms).toFixed(2)} ms over ${reps}\n`);
  return {
    config: opts.config, shape: s, params: nParams, tokens: T, reps, ms: round(median(ms), 3), ms_all: ms.map((x) => round(x, 3)),
    top: top.map((t) => ({ id: t.id, prob: round(t.prob, 6) })), max_rss_mb: round(maxRssMb(), 1), backend: be.name, gemm: be.gemmProvider, threads: be.threads(),
  };
}

// The one training loop, shared by pretraining, in-context tuning, distillation and fine-tuning.
// It owns: AdamW with decay/no-decay groups, warmup + cosine/linear schedules, gradient
// accumulation and clipping, periodic evaluation, progress, atomic checkpoints
// (model + optimizer + trainer_state.json) and exact resume.
// Checkpoints are filled under .tmp-checkpoint-*, fsynced and published by one rename; an older
// one (or the one being re-saved, moved aside to .old-checkpoint-*) is deleted only after the new
// one is in place, so a kill at any moment leaves at least one complete checkpoint.

import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { backend, tidy, type Tensor } from '../engine/index.js';
import { scale, matmulPrecision, setMatmulPrecision, type MatmulPrecision } from '../engine/ops.js';
import type { LanguageModel } from '../models/index.js';

/** What the loop needs of a model. Only parameters with requiresGrad are optimised and checkpointed. */
export type TrainableModel = Pick<LanguageModel, 'namedParameters' | 'loadStateDict' | 'train' | 'eval'>;
import { AdamW, clipGradNorm, type ParamGroup } from '../optim/adamw.js';
import { learningRate, type Schedule } from '../optim/schedule.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import { loadStateDict, weightFiles } from '../io/hf.js';
import { cleanStaleTemps, crashPoint, fsyncDir, otherProcessAlive, publishDir, removeDirAtomic, tempSibling, writeJsonAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { Progress } from './progress.js';
import { writeTrainingReport } from './report.js';

export interface TrainConfig {
  steps: number;
  lr: number;
  warmupSteps: number;
  schedule: Schedule;
  /** Final lr as a fraction of lr for cosine/linear decay. */
  minLrRatio: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
  gradClip: number;
  gradAccum: number;
  evalEvery: number;
  saveEvery: number;
  /** Keep at most this many checkpoint-* dirs (oldest removed first); 0 = keep all. */
  saveTotalLimit: number;
  logEvery: number;
  seed: number;
  /**
   * Matmul precision of the training steps: 'bf16' rounds the GEMM operands (forward and
   * backward) to bf16 with fp32 accumulation; weights, optimizer state and gradients stay fp32.
   * Evaluation always runs in fp32.
   */
  precision: MatmulPrecision;
}

export const defaultTrainConfig: TrainConfig = {
  steps: 1000, lr: 3e-4, warmupSteps: 100, schedule: 'cosine', minLrRatio: 0.1, weightDecay: 0.1,
  betas: [0.9, 0.95], eps: 1e-8, gradClip: 1.0, gradAccum: 1, evalEvery: 200, saveEvery: 500,
  saveTotalLimit: 2, logEvery: 10, seed: 0, precision: 'f32',
};

/** The values `precision` takes (flags and config files). */
export const PRECISIONS: readonly MatmulPrecision[] = ['f32', 'bf16'];

export interface TrainHooks {
  /** Scalar loss for micro-batch `micro` of the current step (called inside a scope). */
  microStep(micro: number): Tensor;
  /** Held-out metrics (must include `loss`), called in eval mode without gradients. */
  evaluate?(): Record<string, number>;
  /** Write the model directory (config.json, weights, tokenizer…; an adapter run writes the adapter). */
  saveModel(dir: string): void;
  /**
   * Put back the weights saveModel wrote into `dir` (resume). Default: the HF weight files of a
   * model directory, copied into the model by name. An adapter run loads its adapter instead.
   */
  loadModel?(dir: string): void;
  /** After the step's backward passes, before clipping and the update (e.g. zero the gradient of rows that must not move). */
  afterBackward?(): void;
  /** Checkpoints only: what resuming needs beyond saveModel's files (e.g. an adapter's unfolded training weights). */
  saveCheckpointExtras?(dir: string): void;
  /** Resumable state beyond weights and optimizer (data position, RNG states). */
  getState(): Record<string, unknown>;
  setState(s: Record<string, unknown>): void;
  /** Extra figures for each log entry (e.g. DPO reward accuracy), averaged by the hook over its own window; called at log time. */
  logMetrics?(): Record<string, number>;
  /** Tokens consumed per optimizer step (for tokens/s). */
  tokensPerStep: number;
  /**
   * Model selection: after each evaluation whose `metric` beats the best so far, the model is
   * saved to <out>/best (atomically) and state.best records the step.
   */
  keepBest?: { metric: string; mode: 'max' | 'min' };
}

export interface LogEntry { step: number; loss: number; lr: number; grad_norm: number; tokens_per_s: number; elapsed_s: number; [metric: string]: number; }
export interface EvalEntry { step: number; [metric: string]: number; }

export interface TrainerState {
  global_step: number;
  config: TrainConfig;
  log_history: LogEntry[];
  eval_history: EvalEntry[];
  user_state: Record<string, unknown>;
  elapsed_s: number;
  /** The best evaluation so far when hooks.keepBest is set (its model is in <out>/best). */
  best?: { step: number; metric: string; value: number };
}

/** HF convention: no weight decay on biases and LayerNorm weights. Frozen parameters (requiresGrad false) are left out. */
export function paramGroups(model: TrainableModel, weightDecay: number): ParamGroup[] {
  const decay: Tensor[] = [], none: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (!p.requiresGrad) continue;
    if (name.endsWith('.bias') || /(^|\.)(ln_\w+|ln_f|LayerNorm|layer_norm|norm)\./.test(name)) none.push(p);
    else decay.push(p);
  }
  return [{ params: decay, weightDecay }, { params: none, weightDecay: 0 }];
}

/** TrainConfig keys that only change bookkeeping (not the weights), free to change on resume. */
const RESUME_FREE_KEYS: readonly string[] = ['steps', 'saveEvery', 'saveTotalLimit', 'logEvery', 'evalEvery', 'precision'];

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const show = (v: unknown): string => (v === undefined ? '(unset)' : JSON.stringify(v));

export class Trainer {
  readonly opt: AdamW;
  state: TrainerState;
  private readonly names: string[];

  constructor(readonly model: TrainableModel, readonly cfg: TrainConfig, readonly hooks: TrainHooks, readonly outDir: string,
    private readonly log: (s: string) => void = (s) => process.stderr.write(s + '\n')) {
    validateTrainConfig(cfg);
    const groups = paramGroups(model, cfg.weightDecay);
    if (groups.every((g) => g.params.length === 0)) throw new Error('training: the model has no trainable parameters (everything is frozen)');
    this.opt = new AdamW(groups, { lr: cfg.lr, betas: cfg.betas, eps: cfg.eps });
    const byTensor = new Map(model.namedParameters().map(([n, p]) => [p, n]));
    this.names = groups.flatMap((g) => g.params.map((p) => byTensor.get(p)!));
    this.state = { global_step: 0, config: cfg, log_history: [], eval_history: [], user_state: {}, elapsed_s: 0 };
  }

  /**
   * Load a checkpoint directory (or the newest complete checkpoint-* inside a run directory).
   * Everything is validated before anything is copied: a bad file is an error naming it, and a
   * checkpoint made with a different configuration is refused, naming the keys that differ.
   */
  resume(dir: string): void {
    const ck = resolveCheckpoint(dir, this.log);
    const stPath = join(ck, 'trainer_state.json');
    const st = readTrainerState(stPath);
    if (st.global_step > this.cfg.steps) throw new Error(`${stPath}: global_step ${st.global_step} exceeds train.steps ${this.cfg.steps}`);
    const diffs: string[] = [];
    const saved = (st.config ?? {}) as unknown as Record<string, unknown>, cur = this.cfg as unknown as Record<string, unknown>;
    for (const k of new Set([...Object.keys(cur), ...Object.keys(saved)])) {
      if (RESUME_FREE_KEYS.includes(k)) continue;
      if (JSON.stringify(saved[k]) !== JSON.stringify(cur[k])) diffs.push(`train.${snake(k)} ${show(saved[k])} → ${show(cur[k])}`);
    }
    const mcfg = (this.model as unknown as { config?: Record<string, unknown> }).config;
    if (mcfg && typeof mcfg === 'object' && existsSync(join(ck, 'config.json'))) {
      const savedM = readJsonFile(join(ck, 'config.json'), 'model config') as Record<string, unknown>;
      if (!savedM || typeof savedM !== 'object') throw new Error(`${join(ck, 'config.json')}: expected a JSON object`);
      for (const k of Object.keys(mcfg)) if (k in savedM && JSON.stringify(savedM[k]) !== JSON.stringify(mcfg[k])) diffs.push(`model.${k} ${show(savedM[k])} → ${show(mcfg[k])}`);
    }
    if (diffs.length) throw new Error(`--resume: ${ck} was made with a different configuration: ${diffs.join(', ')} (use the same config, or start again with --overwrite)`);
    // Master weights and optimizer state are fp32 either way, so a precision change is allowed; the curve changes character.
    const savedPrec = saved.precision ?? defaultTrainConfig.precision;
    if (savedPrec !== this.cfg.precision) this.log(`warning: --resume: ${ck} was trained with precision ${String(savedPrec)}, continuing in ${this.cfg.precision}`);
    // Optimizer moments: every tensor checked (present, F32, shape of its parameter) before any is copied.
    const optPath = join(ck, 'optimizer.safetensors');
    const moments: [Float32Array, Float32Array][] = [];
    const f = withFile(optPath, () => openSafetensors(optPath));
    try {
      this.names.forEach((n, i) => {
        const want = this.opt.m[i].shape;
        const pair = (['exp_avg', 'exp_avg_sq'] as const).map((kind) => {
          const key = `${kind}.${n}`;
          if (!f.has(key)) throw new Error(`${optPath}: lacks tensor '${key}'`);
          const info = f.tensors.get(key)!;
          if (info.dtype !== 'F32' || info.shape.join(',') !== want.join(',')) {
            throw new Error(`${optPath}: tensor '${key}' is ${info.dtype} [${info.shape.join(', ')}], the parameter is F32 [${want.join(', ')}]`);
          }
          const data = withFile(optPath, () => f.get(key));
          if (data.length !== this.opt.m[i].f32.length) throw new Error(`${optPath}: tensor '${key}' has ${data.length} values, expected ${this.opt.m[i].f32.length}`);
          return data;
        });
        moments.push([pair[0], pair[1]]);
      });
    } finally { f.close(); }
    // Checked everything that can be checked up front; now fill model, optimizer and hooks.
    if (this.hooks.loadModel) {
      const load = this.hooks.loadModel;
      withFile(ck, () => load(ck));
    } else {
      const weights = withFile(ck, () => loadStateDict(ck));
      this.model.loadStateDict(weights, `resume: ${ck}`, false);
    }
    moments.forEach(([m, v], i) => { this.opt.m[i].f32.set(m); this.opt.v[i].f32.set(v); });
    try { this.hooks.setState(st.user_state); } catch (e) { throw new Error(`${stPath}: user_state: ${(e as Error).message}`); }
    this.opt.step = st.global_step;
    this.state = { ...st, config: this.cfg };
    this.log(`resuming from ${ck} at step ${st.global_step} of ${this.cfg.steps}`);
  }

  run(): TrainerState {
    const cfg = this.cfg, params = [...this.opt.params()];
    if (cfg.precision === 'bf16') bf16Notice();
    mkdirSync(this.outDir, { recursive: true });
    recoverRunDir(this.outDir, this.log);
    const progress = new Progress(cfg.steps, this.state.global_step, this.log);
    const t0 = performance.now() - this.state.elapsed_s * 1000;
    let windowLoss = 0, windowSteps = 0, windowStart = performance.now();
    while (this.state.global_step < cfg.steps) {
      const step = this.state.global_step; // 0-based index of the step being taken
      this.model.train();
      let loss = 0;
      const outer = matmulPrecision();
      setMatmulPrecision(cfg.precision);
      try {
        for (let micro = 0; micro < cfg.gradAccum; micro++) {
          loss += tidy(() => {
            const l = this.hooks.microStep(micro);
            const scaled = cfg.gradAccum > 1 ? scale(l, 1 / cfg.gradAccum) : l;
            scaled.backward();
            return l.item();
          });
        }
      } finally { setMatmulPrecision(outer); }
      loss /= cfg.gradAccum;
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss is ${loss} at step ${step + 1} (lower --lr or check the data)`);
      this.hooks.afterBackward?.();
      const gradNorm = clipGradNorm(params, cfg.gradClip);
      this.opt.lr = learningRate(step, cfg);
      this.opt.update();
      this.opt.zeroGrad();
      this.state.global_step = step + 1;
      windowLoss += loss; windowSteps++;
      const now = performance.now();
      const done = this.state.global_step;
      const tps = (windowSteps * this.hooks.tokensPerStep) / Math.max(1e-9, (now - windowStart) / 1000);
      progress.update(done, { loss, tps, lr: this.opt.lr });
      if (done % cfg.logEvery === 0 || done === cfg.steps) {
        const extra = this.hooks.logMetrics ? this.hooks.logMetrics() : {};
        this.state.log_history.push({ ...extra, step: done, loss: windowLoss / windowSteps, lr: this.opt.lr, grad_norm: gradNorm, tokens_per_s: Math.round(tps), elapsed_s: +((now - t0) / 1000).toFixed(2) });
        if (Object.keys(extra).length) progress.note(`step ${done}: ${Object.entries(extra).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
        windowLoss = 0; windowSteps = 0; windowStart = now;
      }
      if (this.hooks.evaluate && cfg.evalEvery > 0 && (done % cfg.evalEvery === 0 || done === cfg.steps)) {
        this.model.eval();
        const m = this.hooks.evaluate();
        this.state.eval_history.push({ step: done, ...m });
        progress.note(`eval @ ${done}: ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
        this.keepIfBest(done, m);
      }
      this.state.elapsed_s = (performance.now() - t0) / 1000;
      if (cfg.saveEvery > 0 && done % cfg.saveEvery === 0 && done < cfg.steps) this.checkpoint();
    }
    progress.finish();
    this.state.elapsed_s = (performance.now() - t0) / 1000;
    this.checkpoint();
    crashPoint('train:before-final');
    // The run directory itself holds the final model, state and report (each file atomic; a
    // kill in between is repaired by --resume from the final checkpoint, which rewrites them).
    this.hooks.saveModel(this.outDir);
    crashPoint('train:before-final-state');
    writeJsonAtomic(join(this.outDir, 'trainer_state.json'), this.stateJson());
    writeTrainingReport(join(this.outDir, 'report.html'), this.state);
    return this.state;
  }

  /** Save the model to <out>/best when this evaluation beats state.best (ties keep the earlier step). */
  private keepIfBest(step: number, m: Record<string, number>): void {
    const kb = this.hooks.keepBest;
    if (!kb) return;
    const v = m[kb.metric];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`keep-best: evaluation gave no finite '${kb.metric}' at step ${step}`);
    const b = this.state.best;
    if (b && !(kb.mode === 'max' ? v > b.value : v < b.value)) return;
    // Filled under a temp name; the old best is moved aside before the rename and deleted after.
    const dir = join(this.outDir, 'best'), tmp = tempSibling(dir);
    mkdirSync(tmp);
    this.hooks.saveModel(tmp);
    let aside: string | null = null;
    if (existsSync(dir)) { aside = tempSibling(dir, 'trash'); renameSync(dir, aside); }
    publishDir(tmp, dir);
    if (aside) removeDirAtomic(aside);
    this.state.best = { step, metric: kb.metric, value: v };
  }

  private stateJson(): TrainerState { return { ...this.state, user_state: this.hooks.getState() }; }

  /**
   * Write checkpoint-<step>: fill a temp dir, fsync it, publish it by rename (an existing
   * checkpoint of the same step is first moved aside and deleted only afterwards), then prune.
   */
  checkpoint(): string {
    const step = this.state.global_step;
    const final = join(this.outDir, `checkpoint-${step}`);
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmp = join(this.outDir, `.tmp-checkpoint-${step}-${tag}`);
    mkdirSync(tmp);
    this.hooks.saveModel(tmp);
    this.hooks.saveCheckpointExtras?.(tmp);
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    this.names.forEach((n, i) => {
      tensors[`exp_avg.${n}`] = { dtype: 'F32', shape: this.opt.m[i].shape, data: this.opt.m[i].f32 };
      tensors[`exp_avg_sq.${n}`] = { dtype: 'F32', shape: this.opt.v[i].shape, data: this.opt.v[i].f32 };
    });
    writeSafetensors(join(tmp, 'optimizer.safetensors'), tensors, { step: String(step), optimizer: 'AdamW' });
    crashPoint('checkpoint:optimizer-written');
    writeJsonAtomic(join(tmp, 'trainer_state.json'), this.stateJson());
    crashPoint('checkpoint:tmp-complete');
    let aside: string | null = null;
    if (existsSync(final)) {
      aside = join(this.outDir, `.old-checkpoint-${step}-${tag}`);
      renameSync(final, aside);
      fsyncDir(this.outDir);
      crashPoint('checkpoint:old-moved-aside');
    }
    publishDir(tmp, final);
    crashPoint('checkpoint:published');
    if (aside) removeDirAtomic(aside);
    this.prune(step);
    return final;
  }

  /** Keep the newest saveTotalLimit checkpoints; the one just written is never removed. */
  private prune(current: number): void {
    const lim = this.cfg.saveTotalLimit;
    if (lim <= 0) return;
    const others = listCheckpoints(this.outDir).filter((s) => s !== current);
    for (const c of others.slice(0, Math.max(0, others.length - (lim - 1)))) {
      removeDirAtomic(join(this.outDir, `checkpoint-${c}`));
      crashPoint('prune:removed-one');
    }
  }
}

/**
 * Whether bf16 GEMMs run on bf16 hardware (AVX-512-BF16 vdpbf16ps) rather than emulated by
 * rounding. The kernel path name when the backend reports one, else the CPU flags.
 */
export function bf16Hardware(): boolean {
  const be = backend();
  if (be.name !== 'native') return false;
  const forced = process.env.ICLD_BF16_EMULATE;
  if (forced && forced !== '0') return false;
  const info = be.cpu();
  const path = info.paths.gemm_bf16 ?? '';
  if (/bf16/i.test(path)) return true;
  if (/emulat/i.test(path)) return false;
  if (info.features.length) return info.features.some((f) => /^avx512_?bf16$/i.test(f));
  try { return /\bavx512_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8')); } catch { return false; }
}

let bf16Noted = false;
/** One stderr line per process when bf16 training is emulated (correct, but slower than fp32). */
function bf16Notice(): void {
  if (bf16Noted || bf16Hardware()) return;
  bf16Noted = true;
  process.stderr.write(`note: --precision bf16 is emulated here (${backend().name === 'native' ? 'this CPU has no AVX-512-BF16' : 'reference backend'}): operands are rounded to bf16 and multiplied in fp32, same numbers as bf16 hardware, slower than --precision f32\n`);
}

/** Run a file read, making sure any error names the file. */
function withFile<T>(path: string, f: () => T): T {
  try { return f(); } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.includes(path) ? msg : `${path}: ${msg}`);
  }
}

/** Parse and check trainer_state.json (types only; the step range is checked against the run). */
export function readTrainerState(path: string): TrainerState {
  const st = readJsonFile(path, 'trainer state') as Partial<TrainerState> | null;
  if (!st || typeof st !== 'object' || Array.isArray(st)) throw new Error(`${path}: expected a JSON object`);
  const g = st.global_step;
  if (typeof g !== 'number' || !Number.isSafeInteger(g) || g < 0) throw new Error(`${path}: global_step must be a non-negative integer, got ${JSON.stringify(g)}`);
  if (!Array.isArray(st.log_history)) throw new Error(`${path}: log_history must be an array`);
  if (!Array.isArray(st.eval_history)) throw new Error(`${path}: eval_history must be an array`);
  if (!st.user_state || typeof st.user_state !== 'object' || Array.isArray(st.user_state)) throw new Error(`${path}: user_state must be an object`);
  if (typeof st.elapsed_s !== 'number' || !Number.isFinite(st.elapsed_s) || st.elapsed_s < 0) throw new Error(`${path}: elapsed_s must be a finite number ≥ 0, got ${JSON.stringify(st.elapsed_s)}`);
  const b = st.best as { step?: unknown; metric?: unknown; value?: unknown } | undefined;
  if (b !== undefined && (!b || typeof b !== 'object' || !Number.isSafeInteger(b.step) || typeof b.metric !== 'string' || typeof b.value !== 'number' || !Number.isFinite(b.value))) {
    throw new Error(`${path}: best must be {step, metric, value} with a finite value, got ${JSON.stringify(b)}`);
  }
  if (st.config !== undefined && (typeof st.config !== 'object' || st.config === null || Array.isArray(st.config))) throw new Error(`${path}: config must be an object`);
  return st as TrainerState;
}

/** A data position {epoch, index} from saved state: non-negative integers (else an error). */
export function checkPosition(v: unknown, what: string): { epoch: number; index: number } {
  const o = v as { epoch?: unknown; index?: unknown } | null;
  if (!o || typeof o !== 'object') throw new Error(`${what} must be an object {epoch, index}, got ${JSON.stringify(v)}`);
  for (const k of ['epoch', 'index'] as const) {
    const x = o[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new Error(`${what}.${k} must be a non-negative integer, got ${JSON.stringify(x) ?? 'nothing'}`);
  }
  return { epoch: o.epoch as number, index: o.index as number };
}

/** An Rng state from saved state: 4 integers in [0, 2^32). */
export function checkRngState(v: unknown, what: string): number[] {
  if (!Array.isArray(v) || v.length !== 4 || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 32)) {
    throw new Error(`${what} must be 4 integers in [0, 2^32), got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

export function listCheckpoints(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => a - b);
}

/** Why `dir` is not a complete checkpoint, or null when it is. */
export function checkpointProblem(dir: string): string | null {
  try {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) return 'no such directory';
    // A model checkpoint holds config.json + weights; an adapter checkpoint (PEFT layout) holds
    // adapter_config.json + adapter_model.safetensors and no base weights.
    const adapter = existsSync(join(dir, 'adapter_config.json'));
    const cfg = adapter ? 'adapter_config.json' : 'config.json';
    for (const f of ['trainer_state.json', 'optimizer.safetensors', cfg, 'tokenizer.json']) if (!existsSync(join(dir, f))) return `${f} is missing`;
    readTrainerState(join(dir, 'trainer_state.json'));
    readJsonFile(join(dir, cfg));
    readJsonFile(join(dir, 'tokenizer.json'));
    const weights = adapter ? [join(dir, 'adapter_model.safetensors')] : weightFiles(dir).files;
    for (const w of [join(dir, 'optimizer.safetensors'), ...weights]) openSafetensors(w).close();
    return null;
  } catch (e) { return (e as Error).message; }
}

/**
 * Repair a run directory after a crash: a checkpoint that was moved aside for a re-save and
 * never replaced is put back; temp, aside and trash directories of dead processes are removed.
 * Names: .tmp-checkpoint-STEP-PID-HEX, .old-checkpoint-STEP-PID-HEX, and removeDirAtomic's
 * .NAME.trash-PID-hHOST-HEX of any of these or of a checkpoint-STEP.
 */
export function recoverRunDir(dir: string, log: (s: string) => void = () => {}): void {
  if (!existsSync(dir)) return;
  for (const n of cleanStaleTemps(dir)) log(`removed ${n}, left by an interrupted write`);
  for (const name of readdirSync(dir).sort()) {
    const trash = /^\.\.?(?:tmp-|old-)?checkpoint-\d+.*\.trash-(\d+)(?:-h[0-9a-f]{6})?-[0-9a-f]+$/.exec(name);
    const tmp = /^\.tmp-checkpoint-\d+-(\d+)-[0-9a-f]+$/.exec(name);
    const old = /^\.old-checkpoint-(\d+)-(\d+)-[0-9a-f]+$/.exec(name);
    const pid = trash ? trash[1] : tmp ? tmp[1] : old ? old[2] : null;
    if (pid === null || otherProcessAlive(Number(pid))) continue;
    const p = join(dir, name);
    if (old) {
      const final = join(dir, `checkpoint-${old[1]}`);
      if (!existsSync(final) && checkpointProblem(p) === null) {
        renameSync(p, final);
        fsyncDir(dir);
        log(`recovered checkpoint-${old[1]} (a re-save of it was interrupted)`);
        continue;
      }
    }
    removeDirAtomic(p);
    log(`removed ${name}, left by an interrupted run`);
  }
}

/**
 * A checkpoint dir itself, or the newest complete checkpoint-* under a run dir (a run dir is
 * repaired first, see recoverRunDir). Incomplete ones are skipped, saying so.
 */
export function resolveCheckpoint(dir: string, log: (s: string) => void = () => {}): string {
  if (/^checkpoint-\d+$/.test(basename(dir)) && !existsSync(dir)) recoverRunDir(dirname(dir), log);
  if (existsSync(join(dir, 'trainer_state.json')) && existsSync(join(dir, 'optimizer.safetensors'))) {
    const why = checkpointProblem(dir);
    if (why) throw new Error(`--resume: ${dir} is not a complete checkpoint: ${why}`);
    return dir;
  }
  if (!existsSync(dir)) throw new Error(`--resume: ${dir} does not exist`);
  recoverRunDir(dir, log);
  const cks = listCheckpoints(dir);
  if (cks.length === 0) throw new Error(`--resume: ${dir} is neither a checkpoint nor a run directory with checkpoint-* inside (a run killed before its first checkpoint must start again: --overwrite)`);
  for (let i = cks.length - 1; i >= 0; i--) {
    const ck = join(dir, `checkpoint-${cks[i]}`);
    const why = checkpointProblem(ck);
    if (why === null) return ck;
    log(`skipping incomplete ${ck}: ${why}`);
  }
  throw new Error(`--resume: no complete checkpoint in ${dir} (${cks.map((c) => `checkpoint-${c}`).join(', ')} are all incomplete)`);
}

export function validateTrainConfig(c: TrainConfig): void {
  const pos = (k: keyof TrainConfig): void => { if (!(typeof c[k] === 'number' && (c[k] as number) > 0)) throw new Error(`training config: ${k} must be > 0, got ${JSON.stringify(c[k])}`); };
  const nonneg = (k: keyof TrainConfig): void => { if (!(typeof c[k] === 'number' && (c[k] as number) >= 0)) throw new Error(`training config: ${k} must be ≥ 0, got ${JSON.stringify(c[k])}`); };
  pos('steps'); pos('lr'); pos('gradAccum'); pos('logEvery');
  nonneg('warmupSteps'); nonneg('weightDecay'); nonneg('gradClip'); nonneg('evalEvery'); nonneg('saveEvery'); nonneg('minLrRatio'); nonneg('saveTotalLimit');
  if (!['cosine', 'linear', 'constant'].includes(c.schedule)) throw new Error(`training config: schedule must be cosine, linear or constant, got '${c.schedule}'`);
  if (!PRECISIONS.includes(c.precision)) throw new Error(`training config: precision must be ${PRECISIONS.join(' or ')}, got ${JSON.stringify(c.precision)}`);
  if (!Number.isInteger(c.steps) || !Number.isInteger(c.gradAccum)) throw new Error('training config: steps and gradAccum must be integers');
}

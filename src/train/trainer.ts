// The one training loop, shared by pretraining, in-context tuning, distillation and fine-tuning.
// It owns: AdamW with decay/no-decay groups, warmup + cosine/linear schedules, gradient
// accumulation and clipping, periodic evaluation, progress, atomic checkpoints
// (model + optimizer + trainer_state.json) and exact resume.

import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tidy, type Tensor } from '../engine/index.js';
import { scale } from '../engine/ops.js';
import type { Module } from '../nn/module.js';
import { AdamW, clipGradNorm, type ParamGroup } from '../optim/adamw.js';
import { learningRate, type Schedule } from '../optim/schedule.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { loadStateDict } from '../io/hf.js';
import { Progress } from './progress.js';
import { writeTrainingReport } from '../eval/report.js';

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
}

export const defaultTrainConfig: TrainConfig = {
  steps: 1000, lr: 3e-4, warmupSteps: 100, schedule: 'cosine', minLrRatio: 0.1, weightDecay: 0.1,
  betas: [0.9, 0.95], eps: 1e-8, gradClip: 1.0, gradAccum: 1, evalEvery: 200, saveEvery: 500,
  saveTotalLimit: 2, logEvery: 10, seed: 0,
};

export interface TrainHooks {
  /** Scalar loss for micro-batch `micro` of the current step (called inside a scope). */
  microStep(micro: number): Tensor;
  /** Held-out metrics (must include `loss`), called in eval mode without gradients. */
  evaluate?(): Record<string, number>;
  /** Write the model directory (config.json, weights, tokenizer…). */
  saveModel(dir: string): void;
  /** Resumable state beyond weights and optimizer (data position, RNG states). */
  getState(): Record<string, unknown>;
  setState(s: Record<string, unknown>): void;
  /** Tokens consumed per optimizer step (for tokens/s). */
  tokensPerStep: number;
}

export interface LogEntry { step: number; loss: number; lr: number; grad_norm: number; tokens_per_s: number; elapsed_s: number; }
export interface EvalEntry { step: number; [metric: string]: number; }

export interface TrainerState {
  global_step: number;
  config: TrainConfig;
  log_history: LogEntry[];
  eval_history: EvalEntry[];
  user_state: Record<string, unknown>;
  elapsed_s: number;
}

/** HF convention: no weight decay on biases and LayerNorm weights. */
export function paramGroups(model: Module, weightDecay: number): ParamGroup[] {
  const decay: Tensor[] = [], none: Tensor[] = [];
  for (const [name, p] of model.namedParameters()) {
    if (name.endsWith('.bias') || /(^|\.)(ln_\w+|ln_f|LayerNorm|layer_norm|norm)\./.test(name)) none.push(p);
    else decay.push(p);
  }
  return [{ params: decay, weightDecay }, { params: none, weightDecay: 0 }];
}

export class Trainer {
  readonly opt: AdamW;
  state: TrainerState;
  private readonly names: string[];

  constructor(readonly model: Module, readonly cfg: TrainConfig, readonly hooks: TrainHooks, readonly outDir: string,
    private readonly log: (s: string) => void = (s) => process.stderr.write(s + '\n')) {
    validateTrainConfig(cfg);
    const groups = paramGroups(model, cfg.weightDecay);
    this.opt = new AdamW(groups, { lr: cfg.lr, betas: cfg.betas, eps: cfg.eps });
    const byTensor = new Map(model.namedParameters().map(([n, p]) => [p, n]));
    this.names = groups.flatMap((g) => g.params.map((p) => byTensor.get(p)!));
    this.state = { global_step: 0, config: cfg, log_history: [], eval_history: [], user_state: {}, elapsed_s: 0 };
  }

  /** Load a checkpoint directory (or the newest checkpoint-* inside a run directory). */
  resume(dir: string): void {
    const ck = resolveCheckpoint(dir);
    this.model.loadStateDict(loadStateDict(ck), `resume: ${ck}`, false);
    const opt = readSafetensors(join(ck, 'optimizer.safetensors'));
    this.names.forEach((n, i) => {
      const m = opt.tensors.get(`exp_avg.${n}`), v = opt.tensors.get(`exp_avg_sq.${n}`);
      if (!m || !v) throw new Error(`resume: ${ck}/optimizer.safetensors lacks the moments of '${n}'`);
      this.opt.m[i].f32.set(m.data as Float32Array);
      this.opt.v[i].f32.set(v.data as Float32Array);
    });
    const st = JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8')) as TrainerState;
    this.opt.step = st.global_step;
    this.state = { ...st, config: this.cfg };
    this.hooks.setState(st.user_state);
    this.log(`resumed from ${ck} at step ${st.global_step}`);
  }

  run(): TrainerState {
    const cfg = this.cfg, params = [...this.opt.params()];
    mkdirSync(this.outDir, { recursive: true });
    const progress = new Progress(cfg.steps, this.state.global_step, this.log);
    const t0 = performance.now() - this.state.elapsed_s * 1000;
    let windowLoss = 0, windowSteps = 0, windowStart = performance.now();
    while (this.state.global_step < cfg.steps) {
      const step = this.state.global_step; // 0-based index of the step being taken
      this.model.train();
      let loss = 0;
      for (let micro = 0; micro < cfg.gradAccum; micro++) {
        loss += tidy(() => {
          const l = this.hooks.microStep(micro);
          const scaled = cfg.gradAccum > 1 ? scale(l, 1 / cfg.gradAccum) : l;
          scaled.backward();
          return l.item();
        });
      }
      loss /= cfg.gradAccum;
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss is ${loss} at step ${step + 1} (lower --lr or check the data)`);
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
        this.state.log_history.push({ step: done, loss: windowLoss / windowSteps, lr: this.opt.lr, grad_norm: gradNorm, tokens_per_s: Math.round(tps), elapsed_s: +((now - t0) / 1000).toFixed(2) });
        windowLoss = 0; windowSteps = 0; windowStart = now;
      }
      if (this.hooks.evaluate && cfg.evalEvery > 0 && (done % cfg.evalEvery === 0 || done === cfg.steps)) {
        this.model.eval();
        const m = this.hooks.evaluate();
        this.state.eval_history.push({ step: done, ...m });
        progress.note(`eval @ ${done}: ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
      }
      this.state.elapsed_s = (performance.now() - t0) / 1000;
      if (cfg.saveEvery > 0 && done % cfg.saveEvery === 0 && done < cfg.steps) this.checkpoint();
    }
    progress.finish();
    this.state.elapsed_s = (performance.now() - t0) / 1000;
    this.checkpoint();
    // The run directory itself holds the final model, state and report.
    this.hooks.saveModel(this.outDir);
    writeFileSync(join(this.outDir, 'trainer_state.json'), JSON.stringify(this.stateJson(), null, 2));
    writeTrainingReport(join(this.outDir, 'report.html'), this.state);
    return this.state;
  }

  private stateJson(): TrainerState { return { ...this.state, user_state: this.hooks.getState() }; }

  /** Write checkpoint-<step> atomically (temp dir + rename) and prune old ones. */
  checkpoint(): string {
    const step = this.state.global_step;
    const final = join(this.outDir, `checkpoint-${step}`);
    const tmp = join(this.outDir, `.tmp-checkpoint-${step}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    this.hooks.saveModel(tmp);
    const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    this.names.forEach((n, i) => {
      tensors[`exp_avg.${n}`] = { dtype: 'F32', shape: this.opt.m[i].shape, data: this.opt.m[i].f32 };
      tensors[`exp_avg_sq.${n}`] = { dtype: 'F32', shape: this.opt.v[i].shape, data: this.opt.v[i].f32 };
    });
    writeSafetensors(join(tmp, 'optimizer.safetensors'), tensors, { step: String(step), optimizer: 'AdamW' });
    writeFileSync(join(tmp, 'trainer_state.json'), JSON.stringify(this.stateJson(), null, 2));
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    this.prune();
    return final;
  }

  private prune(): void {
    const lim = this.cfg.saveTotalLimit;
    if (lim <= 0) return;
    const cks = listCheckpoints(this.outDir);
    for (const c of cks.slice(0, Math.max(0, cks.length - lim))) rmSync(join(this.outDir, `checkpoint-${c}`), { recursive: true, force: true });
  }
}

export function listCheckpoints(dir: string): number[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => a - b);
}

/** A checkpoint dir itself, or the newest checkpoint-* under a run dir. */
export function resolveCheckpoint(dir: string): string {
  if (existsSync(join(dir, 'trainer_state.json')) && existsSync(join(dir, 'optimizer.safetensors'))) return dir;
  const cks = listCheckpoints(dir);
  if (cks.length === 0) throw new Error(`--resume: ${dir} is neither a checkpoint nor a run directory with checkpoint-* inside`);
  return join(dir, `checkpoint-${cks[cks.length - 1]}`);
}

export function validateTrainConfig(c: TrainConfig): void {
  const pos = (k: keyof TrainConfig): void => { if (!(typeof c[k] === 'number' && (c[k] as number) > 0)) throw new Error(`training config: ${k} must be > 0, got ${JSON.stringify(c[k])}`); };
  const nonneg = (k: keyof TrainConfig): void => { if (!(typeof c[k] === 'number' && (c[k] as number) >= 0)) throw new Error(`training config: ${k} must be ≥ 0, got ${JSON.stringify(c[k])}`); };
  pos('steps'); pos('lr'); pos('gradAccum'); pos('logEvery');
  nonneg('warmupSteps'); nonneg('weightDecay'); nonneg('gradClip'); nonneg('evalEvery'); nonneg('saveEvery'); nonneg('minLrRatio'); nonneg('saveTotalLimit');
  if (!['cosine', 'linear', 'constant'].includes(c.schedule)) throw new Error(`training config: schedule must be cosine, linear or constant, got '${c.schedule}'`);
  if (!Number.isInteger(c.steps) || !Number.isInteger(c.gradAccum)) throw new Error('training config: steps and gradAccum must be integers');
}

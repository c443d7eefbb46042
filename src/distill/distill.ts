// Student training on a fixed set of in-context instances with the distillation objective.
// One trainer serves every arm of the study:
//   ICT           α ≡ 1, no teacher           Multitask-FT   ICT on instances without demos
//   ICL-D         α(t), teacher KL            ICL-D (LM)     + β·(L_LM^hard, L_LM^soft) on plain text
//   ICT (LM)      α ≡ 1, ICT + β·L_LM^hard    LM-KD          KL (+CE) on plain text only
// Objective: α(t)·(L_ICT^hard + β·L_LM^hard) + (1 − α(t))·τ²·(L_ICT^soft + β·L_LM^soft), α(t)
// linear from alpha to alphaEnd by default. The ICT teacher targets come live or from a
// TeacherCache; the LM-text targets always from the live teacher (random windows are not cached).

import { existsSync, mkdirSync } from 'node:fs';
import { removeDirAtomic, writeJsonAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import { Rng, type Tensor } from '../engine/index.js';
import type { MlmCollator } from '../data/mlm.js';
import { reloadWeights, type LanguageModel } from '../models/index.js';
import { answerLogits, makeBatch, type Instance } from '../icl/ict.js';
import { EpochOrder, type WindowLoader } from '../data/shards.js';
import { mlmLogits } from '../train/pretrain.js';
import { Trainer, checkPosition, checkRngState, defaultTrainConfig, type TrainConfig, type TrainerState } from '../train/trainer.js';
import { alphaAt, combineLoss, distillKL, teacherTarget, type KLMode, type TeacherTarget } from './loss.js';
import { TeacherCache, liveTargets } from './cache.js';

export interface DistillConfig {
  /** Hard-label weight at the first step: α(t) goes linearly from alpha to alphaEnd (default 0), or stays at alpha ('constant'). */
  alpha: number;
  alphaEnd?: number;
  /** Default 'linear' (the paper's α(t)). */
  alphaSchedule?: 'constant' | 'linear';
  temperature: number;
  kl: KLMode;
  /** Teacher tokens kept per position (0 = full vocabulary). */
  topK: number;
  /** Weight of the plain-text LM loss (0 = off). */
  beta: number;
}

export interface DistillTrainOptions {
  student: LanguageModel;
  tokenizer: { save(dir: string): unknown; eosTokenId?: number | null };
  /** Fixed ICT instances (one epoch); absent for LM-KD. */
  instances?: Instance[];
  epochs: number;
  batchSize: number;
  distill: DistillConfig;
  /** Live teacher (used when no cache is given, and always for LM-KD). */
  teacher?: LanguageModel;
  cache?: TeacherCache;
  /**
   * Plain text for β·L_LM and LM-KD (with α < 1 and β > 0 the live teacher is needed for L_LM^soft).
   * `mlm` (masked LMs): each window becomes [CLS] window [SEP], masked as in MLM pretraining; the LM
   * terms are then over the masked positions.
   */
  lm?: { loader: WindowLoader; batchSize: number; mlm?: { collator: MlmCollator; cls?: number; sep?: number } };
  /**
   * Model selection on validation data: `score(student)` (higher is better) every `every` steps
   * and at the end; the best step's weights are loaded back into the student and saved as the
   * run's model (state.best names the step).
   */
  select?: { every: number; score: (student: LanguageModel) => number };
  /** 'ict' trains on instances; 'lm-kd' distils on plain text only. */
  objective: 'ict' | 'lm-kd';
  /** Steps when objective is lm-kd (no instance epochs to count). */
  lmSteps?: number;
  train: Partial<TrainConfig>;
  out: string;
  /** Run or checkpoint directory to continue from (Trainer.resume). */
  resume?: string;
  log?: (s: string) => void;
}

export function trainDistill(o: DistillTrainOptions): TrainerState {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const d = o.distill, insts = o.instances ?? [];
  if (o.objective === 'ict' && insts.length === 0) throw new Error('distillation: no training instances');
  if (o.objective === 'lm-kd' && !o.lm) throw new Error('LM-KD needs plain-text data (lm)');
  if (d.beta > 0 && !o.lm) throw new Error('β > 0 needs plain-text data for the LM term');
  const schedule = d.alphaSchedule ?? 'linear', alphaEnd = schedule === 'constant' ? d.alpha : (d.alphaEnd ?? 0);
  const useKL = o.objective === 'lm-kd' || d.alpha < 1 || alphaEnd < 1;
  if (useKL && !o.teacher && !o.cache) throw new Error('distillation with α < 1 needs a teacher or a teacher cache');
  if (useKL && d.beta > 0 && o.objective === 'ict' && !o.teacher) throw new Error('the soft LM term (β > 0, α < 1) needs the live teacher for the plain-text windows, not only a cache');
  if (o.cache && o.cache.meta.instances !== insts.length) throw new Error(`teacher cache holds ${o.cache.meta.instances} instances, the data has ${insts.length}`);
  if (o.cache && o.cache.meta.tau !== d.temperature) throw new Error(`teacher cache was built at τ=${o.cache.meta.tau}, this run uses τ=${d.temperature}`);
  if (d.kl === 'options' && o.objective === 'lm-kd') throw new Error('KL restricted to options needs ICT instances (not LM-KD)');
  const stepsPerEpoch = Math.ceil(insts.length / o.batchSize);
  const steps = o.objective === 'lm-kd' ? (o.lmSteps ?? 100) : stepsPerEpoch * o.epochs;
  const cfg: TrainConfig = { ...defaultTrainConfig, warmupSteps: 0, schedule: 'linear', minLrRatio: 0, lr: 1e-4, weightDecay: 0, evalEvery: 0, saveEvery: 0, ...o.train, steps };
  if (o.select) cfg.evalEvery = o.select.every;
  const pad = o.tokenizer.eosTokenId ?? 0;
  // Epoch order: a seeded permutation per epoch; the last batch of an epoch may be short.
  const order = new EpochOrder(insts.length, cfg.seed);
  const nextBatch = (): { batch: Instance[]; idx: number[] } => {
    const idx: number[] = [];
    while (idx.length < o.batchSize) {
      const { item, wrapped } = order.next();
      idx.push(item);
      if (wrapped) break;
    }
    return { batch: idx.map((i) => insts[i]), idx };
  };
  const lmText = o.lm ? new LmText(o.lm, cfg.seed) : null;
  let tokens = 0;
  mkdirSync(o.out, { recursive: true });
  writeJsonAtomic(join(o.out, 'distill_config.json'), { objective: o.objective, ...d, alphaSchedule: schedule, alphaEnd, epochs: o.epochs, batch_size: o.batchSize, instances: insts.length, cached_teacher: !!o.cache });
  const trainer: Trainer = new Trainer(o.student, cfg, {
    get tokensPerStep() { return tokens; },
    microStep: () => {
      const step = trainer.state.global_step;
      const alpha = useKL ? alphaAt(step, steps, d.alpha, alphaEnd, schedule) : 1;
      let ce: Tensor | null = null, kl: Tensor | null = null, lm: Tensor | null = null, lmKl: Tensor | null = null;
      tokens = 0;
      if (o.objective === 'ict') {
        const { batch, idx } = nextBatch();
        const b = makeBatch(batch, pad);
        tokens += b.B * b.L;
        // Logits only at the answer positions (the rows the ICT loss and the KL use).
        const a = answerLogits(o.student, b);
        ce = O.crossEntropy(a.logits, a.targets);
        if (useKL && alpha < 1) {
          const targets: TeacherTarget[][] = o.cache ? idx.map((i) => o.cache!.targets(i)) : liveTargets(o.teacher!, batch, pad, d.temperature, d.topK);
          const S = a.logits;
          const cands = d.kl === 'options' ? batch.flatMap((inst) => {
            if (!inst.candidates) throw new Error(`KL over options: instance of task ${inst.task} has no options`);
            return inst.candidates;
          }) : undefined;
          kl = distillKL(S, targets.flat(), d.temperature, d.kl, cands);
        }
      } else {
        // LM-KD: match the teacher on every position of plain text (masked LMs: every masked
        // position) (+ the gold token with weight α).
        const x = lmText!.next();
        tokens += x.B * x.T;
        const st = lmLogits(o.student, x);
        ce = O.crossEntropy(st.logits, st.targets!);
        kl = distillKL(st.logits, lmTargets(o.teacher!, x, d.topK, d.temperature), d.temperature, 'full');
      }
      if (d.beta > 0 && o.objective === 'ict') {
        // β·L_LM: hard (gold next token) and, while α < 1, soft (the teacher on the same window).
        const x = lmText!.next();
        tokens += x.B * x.T;
        const st = lmLogits(o.student, x);
        lm = O.crossEntropy(st.logits, st.targets!);
        if (useKL && alpha < 1) lmKl = distillKL(st.logits, lmTargets(o.teacher!, x, d.topK, d.temperature), d.temperature, 'full');
      }
      return combineLoss({ ce, kl, lm, lmKl }, kl || lmKl ? alpha : 1, d.temperature, d.beta);
    },
    ...(o.select ? { evaluate: () => ({ dev_score: o.select!.score(o.student) }), keepBest: { metric: 'dev_score', mode: 'max' as const } } : {}),
    saveModel: (dir) => { o.student.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ pos: { ...order.state }, lm: o.lm ? { ...o.lm.loader.state } : null, dropout_rng: o.student.rng.getState(), ...(lmText?.maskRng ? { mlm_rng: lmText.maskRng.getState() } : {}) }),
    setState: (s) => {
      order.state = checkPosition(s.pos, 'pos');
      if (o.lm) o.lm.loader.state = checkPosition(s.lm, 'lm');
      if (lmText?.maskRng) lmText.maskRng.setState(checkRngState(s.mlm_rng, 'mlm_rng'));
      o.student.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
    },
  }, o.out, log);
  if (o.resume) trainer.resume(o.resume);
  log(`training ${o.objective === 'ict' ? `on ${insts.length} instances × ${o.epochs} epoch(s)` : 'on plain text (LM-KD)'}: ${steps} steps${useKL ? `, KL (${d.kl}, τ=${d.temperature}, top-k ${d.topK || 'all'}) from a ${o.cache ? 'cached' : 'live'} teacher` : ''}${d.beta > 0 ? `, β=${d.beta}` : ''}`);
  const st = trainer.run();
  if (o.select && st.best && !existsSync(join(o.out, 'best', 'config.json'))) log(`model selection: ${join(o.out, 'best')} is missing (interrupted while being replaced); keeping the last step's weights`);
  else if (o.select && st.best) {
    // The selected step's weights become the student and the run's model.
    reloadWeights(o.student, join(o.out, 'best'));
    o.student.savePretrained(o.out); o.tokenizer.save(o.out);
    removeDirAtomic(join(o.out, 'best')); // the run's model is now the selected one
    log(`model selection: step ${st.best.step} of ${steps} (dev ${(100 * st.best.value).toFixed(1)})`);
  }
  return st;
}

/** Teacher targets at every position of B plain-text windows of length T (live, no gradient). */
export function lmTextTargets(teacher: LanguageModel, ids: Int32Array, B: number, T: number, topK: number, tau: number): TeacherTarget[] {
  return lmTargets(teacher, { ids, labels: null, B, T }, topK, tau);
}

/** One batch of LM text: ids [B, T]; labels = the MLM labels (−100 = not masked), or null for next-token prediction. */
export interface LmBatch { ids: Int32Array; labels: Int32Array | null; B: number; T: number; targets?: Int32Array }

/** Plain-text windows for the LM terms: next-token targets for a causal LM, MLM-masked rows for a masked one. */
class LmText {
  readonly maskRng: Rng | null;
  private readonly raw: Int32Array; private readonly rawTg: Int32Array;
  private readonly rows: Int32Array | null; private readonly ids: Int32Array | null; private readonly labels: Int32Array | null;
  constructor(private readonly lm: NonNullable<DistillTrainOptions['lm']>, seed: number) {
    const B = lm.batchSize, W = lm.loader.T;
    this.raw = new Int32Array(B * W); this.rawTg = new Int32Array(B * W);
    const m = lm.mlm;
    // Its own stream (apart from dropout and the instance order), saved in checkpoints.
    this.maskRng = m ? new Rng((seed ^ 0x6d6c6d ^ 0xd157) >>> 0) : null;
    const T = m && m.cls !== undefined && m.sep !== undefined ? W + 2 : W;
    this.rows = m ? new Int32Array(B * T) : null; this.ids = m ? new Int32Array(B * T) : null; this.labels = m ? new Int32Array(B * T) : null;
  }
  next(): LmBatch {
    const B = this.lm.batchSize, W = this.lm.loader.T, m = this.lm.mlm;
    this.lm.loader.next(B, this.raw, this.rawTg);
    if (!m) return { ids: this.raw, labels: null, B, T: W, targets: this.rawTg };
    const wrap = m.cls !== undefined && m.sep !== undefined, T = wrap ? W + 2 : W, rows = this.rows!;
    for (let b = 0; b < B; b++) {
      if (wrap) { rows[b * T] = m.cls!; rows[b * T + T - 1] = m.sep!; }
      rows.set(this.raw.subarray(b * W, (b + 1) * W), b * T + (wrap ? 1 : 0));
    }
    // A batch with no position chosen would have no MLM term: draw again (rare: p·B·T expected positions).
    for (let tries = 0; m.collator.apply(rows, T, this.maskRng!, this.ids!, this.labels!) === 0; tries++) {
      if (tries > 100) throw new Error('LM text: MLM masking chose no position in 100 draws (windows of special tokens only?)');
    }
    return { ids: this.ids!, labels: this.labels!, B, T };
  }
}

/**
 * Logits [N, V] and gold ids [N] of an LM batch: every position (causal, next-token targets) or
 * only the masked positions (MLM labels; the LM head runs on those rows only, as in pretraining).
 */
function lmLogits(model: LanguageModel, x: LmBatch): { logits: Tensor; targets: Tensor | null } {
  const ids = O.fromData(x.ids, [x.B, x.T]);
  if (x.labels) return mlmLogits(model, ids, x.labels);
  const lg = model.forward(ids);
  return { logits: O.reshape(lg, [x.B * x.T, lg.shape[2]]), targets: x.targets ? O.fromData(x.targets, [x.B * x.T]) : null };
}

/** Teacher targets at the rows lmLogits uses (live, no gradient). */
function lmTargets(teacher: LanguageModel, x: LmBatch, topK: number, tau: number): TeacherTarget[] {
  return O.noGrad(() => {
    teacher.eval();
    const tl = O.contiguous(lmLogits(teacher, x).logits);
    const [N, V] = tl.shape, d = tl.f32.subarray(tl.offset);
    return Array.from({ length: N }, (_, r) => teacherTarget(d.subarray(r * V, (r + 1) * V), topK, tau));
  });
}

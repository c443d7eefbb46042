// Student training on a fixed set of in-context instances with the distillation objective.
// One trainer serves every arm of the study:
//   ICT           α ≡ 1, no teacher           Multitask-FT   ICT on instances without demos
//   ICL-D         α(t), teacher KL            ICL-D (LM)     + β·L_LM on plain text
//   LM-KD         KL (+CE) on plain text only, no ICT instances
// The teacher comes live (forward on each batch) or from a TeacherCache built once.

import { mkdirSync } from 'node:fs';
import { writeJsonAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import type { Tensor } from '../engine/index.js';
import type { GPT2 } from '../models/gpt2.js';
import { makeBatch, type Instance } from '../icl/ict.js';
import { EpochOrder, type WindowLoader } from '../data/shards.js';
import { Trainer, checkPosition, checkRngState, defaultTrainConfig, type TrainConfig, type TrainerState } from '../train/trainer.js';
import { alphaAt, combineLoss, distillKL, teacherTarget, type KLMode, type TeacherTarget } from './loss.js';
import { TeacherCache, answerRows, liveTargets } from './cache.js';

export interface DistillConfig {
  /** Weight of the gold cross-entropy: α(t) from alpha to alphaEnd (linear) or constant. */
  alpha: number;
  alphaEnd?: number;
  alphaSchedule?: 'constant' | 'linear';
  temperature: number;
  kl: KLMode;
  /** Teacher tokens kept per position (0 = full vocabulary). */
  topK: number;
  /** Weight of the plain-text LM loss (0 = off). */
  beta: number;
}

export interface DistillTrainOptions {
  student: GPT2;
  tokenizer: { save(dir: string): unknown; eosTokenId?: number | null };
  /** Fixed ICT instances (one epoch); absent for LM-KD. */
  instances?: Instance[];
  epochs: number;
  batchSize: number;
  distill: DistillConfig;
  /** Live teacher (used when no cache is given, and always for LM-KD). */
  teacher?: GPT2;
  cache?: TeacherCache;
  /** Plain text for β·L_LM and LM-KD. */
  lm?: { loader: WindowLoader; batchSize: number };
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
  const useKL = o.objective === 'lm-kd' || d.alpha < 1 || (d.alphaEnd ?? d.alpha) < 1;
  if (useKL && !o.teacher && !o.cache) throw new Error('distillation with α < 1 needs a teacher or a teacher cache');
  if (o.cache && o.cache.meta.instances !== insts.length) throw new Error(`teacher cache holds ${o.cache.meta.instances} instances, the data has ${insts.length}`);
  if (o.cache && o.cache.meta.tau !== d.temperature) throw new Error(`teacher cache was built at τ=${o.cache.meta.tau}, this run uses τ=${d.temperature}`);
  if (d.kl === 'options' && o.objective === 'lm-kd') throw new Error('KL restricted to options needs ICT instances (not LM-KD)');
  const stepsPerEpoch = Math.ceil(insts.length / o.batchSize);
  const steps = o.objective === 'lm-kd' ? (o.lmSteps ?? 100) : stepsPerEpoch * o.epochs;
  const cfg: TrainConfig = { ...defaultTrainConfig, warmupSteps: 0, schedule: 'linear', minLrRatio: 0, lr: 1e-4, weightDecay: 0, evalEvery: 0, saveEvery: 0, ...o.train, steps };
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
  const lmIds = o.lm ? new Int32Array(o.lm.batchSize * o.lm.loader.T) : null, lmTg = lmIds ? new Int32Array(lmIds.length) : null;
  let tokens = 0;
  mkdirSync(o.out, { recursive: true });
  writeJsonAtomic(join(o.out, 'distill_config.json'), { objective: o.objective, ...d, epochs: o.epochs, batch_size: o.batchSize, instances: insts.length, cached_teacher: !!o.cache });
  const trainer = new Trainer(o.student, cfg, {
    get tokensPerStep() { return tokens; },
    microStep: () => {
      const step = trainer.state.global_step;
      const alpha = alphaAt(step, steps, d.alpha, d.alphaEnd ?? d.alpha, d.alphaSchedule ?? 'constant');
      let ce: Tensor | null = null, kl: Tensor | null = null, lm: Tensor | null = null;
      tokens = 0;
      if (o.objective === 'ict') {
        const { batch, idx } = nextBatch();
        const b = makeBatch(batch, pad);
        tokens += b.B * b.L;
        const logits = o.student.forward(O.fromData(b.ids, [b.B, b.L]));
        ce = O.crossEntropy(logits, O.fromData(b.targets, [b.B, b.L]));
        if (useKL && alpha < 1) {
          const targets: TeacherTarget[][] = o.cache ? idx.map((i) => o.cache!.targets(i)) : liveTargets(o.teacher!, batch, pad, d.temperature, d.topK);
          const rows = batch.flatMap((inst, i) => answerRows(inst, i, b.L));
          const V = logits.shape[2];
          const S = O.embedding(O.reshape(logits, [b.B * b.L, V]), O.tensor(rows, [rows.length], 'int32'));
          const cands = d.kl === 'options' ? batch.flatMap((inst) => {
            if (!inst.candidates) throw new Error(`KL over options: instance of task ${inst.task} has no options`);
            return inst.candidates;
          }) : undefined;
          kl = distillKL(S, targets.flat(), d.temperature, d.kl, cands);
        }
      } else {
        // LM-KD: match the teacher on every position of plain text (+ the gold next token with weight α).
        o.lm!.loader.next(o.lm!.batchSize, lmIds!, lmTg!);
        const B = o.lm!.batchSize, T = o.lm!.loader.T;
        tokens += B * T;
        const logits = o.student.forward(O.fromData(lmIds!, [B, T]));
        const V = logits.shape[2];
        ce = O.crossEntropy(logits, O.fromData(lmTg!, [B, T]));
        const tl = O.noGrad(() => { o.teacher!.eval(); return o.teacher!.forward(O.fromData(lmIds!, [B, T])); });
        const targets = Array.from({ length: B * T }, (_, r) => teacherTarget(tl.f32.subarray(r * V, (r + 1) * V), d.topK, d.temperature));
        kl = distillKL(O.reshape(logits, [B * T, V]), targets, d.temperature, 'full');
      }
      if (d.beta > 0 && o.objective === 'ict') {
        o.lm!.loader.next(o.lm!.batchSize, lmIds!, lmTg!);
        const B = o.lm!.batchSize, T = o.lm!.loader.T;
        tokens += B * T;
        lm = O.crossEntropy(o.student.forward(O.fromData(lmIds!, [B, T])), O.fromData(lmTg!, [B, T]));
      }
      return combineLoss({ ce, kl, lm }, kl ? alpha : 1, d.temperature, d.beta);
    },
    saveModel: (dir) => { o.student.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ pos: { ...order.state }, lm: o.lm ? { ...o.lm.loader.state } : null, dropout_rng: o.student.rng.getState() }),
    setState: (s) => {
      order.state = checkPosition(s.pos, 'pos');
      if (o.lm) o.lm.loader.state = checkPosition(s.lm, 'lm');
      o.student.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
    },
  }, o.out, log);
  if (o.resume) trainer.resume(o.resume);
  log(`training ${o.objective === 'ict' ? `on ${insts.length} instances × ${o.epochs} epoch(s)` : 'on plain text (LM-KD)'}: ${steps} steps${useKL ? `, KL (${d.kl}, τ=${d.temperature}, top-k ${d.topK || 'all'}) from a ${o.cache ? 'cached' : 'live'} teacher` : ''}${d.beta > 0 ? `, β=${d.beta}` : ''}`);
  return trainer.run();
}

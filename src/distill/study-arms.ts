// What each arm of a study trains on, per seed, as the paper defines it:
//   Meta setting      ICT arms: episodes of the meta-training tasks (all their training data).
//   Multitask setting ICT arms: episodes of the target tasks' own few-shot data, 32 train + 32 dev
//                     per task and seed (multitaskSplits), k demonstrations sampled per instance
//                     from the 32; the dev examples select the best checkpoint.
//   Multitask-FT      (both settings) fine-tuning on the target tasks' 32 train examples with no
//                     demonstrations, evaluated with none (k = 0), selected on the dev examples.
// Instances are built in the evaluated order (direct, or channel: P(x | y, demos)).

import { restrictPools } from './task-subset.js';
import { createModel, loadModel, type LanguageModel, type LMConfig } from '../models/index.js';
import type { Example } from '../data/tasks.js';
import type { Method, Template, Tokenizer } from '../data/prompts.js';
import { episodePools, multitaskSplits, IctSampler, type Instance } from '../icl/ict.js';
import { evaluateExamples } from '../icl/evaluate.js';
import { headlineMetric } from '../eval/metrics.js';
import type { StudyConfig } from './study-config.js';
import { trainDistill, type DistillConfig, type DistillTrainOptions } from './distill.js';
import type { KLMode } from './loss.js';
import type { TeacherCache } from './cache.js';
import { rmCheckpoints } from './study-io.js';
import type { TrainerState } from '../train/trainer.js';

export interface SeedData {
  /** Episode pools of the ICT arms. */
  pools: Map<string, Example[]>;
  /** The target tasks' few-shot data of this seed. */
  fewShot: { train: Map<string, Example[]>; dev: Map<string, Example[]> };
}

export function seedData(c: StudyConfig, taskDir: string, trainTasks: string[], testTasks: string[], seed: number, dedupe: boolean, arms: readonly string[]): SeedData {
  // A Meta study reads the target tasks' few-shot data only for Multitask-FT.
  const fewShot = c.setting === 'multitask' || arms.includes('Multitask-FT')
    ? multitaskSplits(taskDir, testTasks, seed, c.train.few_shot_train ?? 32, c.train.few_shot_dev ?? 32, dedupe)
    : { train: new Map<string, Example[]>(), dev: new Map<string, Example[]>() };
  // tasks.train_subset / train_fraction (the analyses' ablations) restrict the students' meta-training pools.
  const pools = c.setting === 'meta' ? restrictPools(episodePools(taskDir, trainTasks, 'meta', c.k, [seed], dedupe), c.tasks, seed) : fewShot.train;
  return { pools, fewShot };
}

/** `n` instances from a seeded sampler (demos = false: the query alone, Multitask-FT). */
export function sampleInstances(tok: Tokenizer, pools: Map<string, Example[]>, o: { k: number; demos: boolean; method: Method; template?: Partial<Template>; maxLength: number; seed: number; n: number }): Instance[] {
  const s = new IctSampler(tok, { pools, k: o.k, demos: o.demos, method: o.method, template: o.template, maxLength: o.maxLength, seed: o.seed });
  return Array.from({ length: o.n }, () => s.next());
}

/**
 * Validation score for model selection: the mean over target tasks of the headline metric
 * (macro-F1 / accuracy) on the dev examples, with the first k train examples as demonstrations
 * (k = 0 for Multitask-FT), scored like the evaluation.
 */
export function devScorer(tok: Tokenizer & { decode(ids: number[]): string }, fewShot: SeedData['fewShot'], k: number, method: Method, batchSize: number | undefined, seed: number, template?: Partial<Template>): (m: LanguageModel) => number {
  return (model) => {
    const xs: number[] = [];
    for (const [task, dev] of fewShot.dev) {
      if (dev.length === 0) continue;
      xs.push(headlineMetric(evaluateExamples({ model, tokenizer: tok, method, template, batchSize }, task, fewShot.train.get(task)!.slice(0, k), dev, seed)));
    }
    if (xs.length === 0) throw new Error('model selection: no task has validation examples');
    return xs.reduce((a, b) => a + b, 0) / xs.length;
  };
}

/**
 * The student a cell starts from: a fresh student gets its own random initialisation per seed
 * (so seeds measure init variance too); a pretrained one — brought (student.path) or pretrained
 * by the study (student.pretrain) — is the same for all seeds.
 */
export function seedStudent(c: StudyConfig, studentBase: string, config: LMConfig, seed: number): LanguageModel {
  return c.student.path || c.student.pretrain ? loadModel(studentBase) : createModel(config.model_type, config, 1000 + seed);
}

/** What training an arm's student left to record in its cell. */
export interface ArmRun { steps: number; curve: [number, number][]; epochS: number | null; bestStep: number | null }

/**
 * Train one arm's student with the one distillation trainer (Raw trains nothing):
 *   Multitask-FT  ICT objective on `ftInstances` (no demonstrations), no teacher
 *   ICT           ICT objective, α ≡ 1            ICT (LM)   + β·L_LM^hard
 *   ICL-D         α(t) with the cached teacher     ICL-D (LM) + β·(L_LM^hard, L_LM^soft) with the live teacher
 *   LM-KD         KL (+ CE) on plain text only (full vocabulary: text has no options)
 * The run's checkpoints are dropped afterwards (the final model stays in common.out).
 */
/** The arms that learn from the teacher cache (the stage builds it for them). */
export const usesTeacherCache = (arm: string): boolean => arm === 'ICL-D' || arm === 'ICL-D (LM)';

export function trainArm(arm: string, c: StudyConfig, o: {
  common: Omit<DistillTrainOptions, 'instances' | 'distill' | 'objective' | 'epochs'>;
  instances: Instance[]; ftInstances: () => Instance[]; lm: NonNullable<DistillTrainOptions['lm']>;
  teacher: LanguageModel; cache: () => TeacherCache; kl: KLMode;
}): ArmRun {
  if (arm === 'Raw') return { steps: 0, curve: [], epochS: null, bestStep: null };
  const d = c.distill, common = { ...o.common, epochs: c.train.epochs };
  // α(t): alpha_start → alpha_end (linear by default); α ≡ 1 for the arms without a teacher.
  const dcfg = (teacherArm: boolean, beta: number): DistillConfig => teacherArm
    ? { alpha: d.alpha_start, alphaEnd: d.alpha_end ?? 0, alphaSchedule: d.alpha_schedule ?? 'linear', temperature: d.temperature, kl: o.kl, topK: d.top_k, beta }
    : { alpha: 1, alphaEnd: 1, alphaSchedule: 'constant', temperature: d.temperature, kl: o.kl, topK: d.top_k, beta };
  let st: TrainerState;
  if (arm === 'Multitask-FT') st = trainDistill({ ...common, instances: o.ftInstances(), distill: dcfg(false, 0), objective: 'ict' });
  else if (arm === 'ICT') st = trainDistill({ ...common, instances: o.instances, distill: dcfg(false, 0), objective: 'ict' });
  else if (arm === 'ICT (LM)') st = trainDistill({ ...common, instances: o.instances, distill: dcfg(false, d.beta), objective: 'ict', lm: o.lm });
  else if (arm === 'LM-KD') st = trainDistill({ ...common, select: undefined, distill: { ...dcfg(true, 0), kl: 'full' }, objective: 'lm-kd', teacher: o.teacher, lm: o.lm, lmSteps: d.lm_kd_steps });
  else if (usesTeacherCache(arm)) {
    const withLm = arm === 'ICL-D (LM)';
    // The soft LM term needs the teacher on the plain-text windows (live; the ICT targets come from the cache).
    st = trainDistill({ ...common, instances: o.instances, distill: dcfg(true, withLm ? d.beta : 0), objective: 'ict', cache: o.cache(), teacher: withLm ? o.teacher : undefined, lm: withLm ? o.lm : undefined });
  } else throw new Error(`unknown arm '${arm}'`);
  rmCheckpoints(common.out);
  return { steps: st.global_step, curve: st.log_history.map((e) => [e.step, e.loss]), epochS: arm === 'LM-KD' ? null : st.elapsed_s / c.train.epochs, bestStep: st.best?.step ?? null };
}

// In-context tuning (ICT): train a causal LM on prompts of k demonstrations + a query from the
// same task, with the loss only on the query's answer tokens (-100 elsewhere).
//   meta      : episodes from the split's training tasks (all of their training data), tested on unseen tasks
//   multitask : episodes from the target tasks' own few-shot examples (multitaskSplits: 32 train + 32 dev)
//   demos=false (Multitask-FT baseline): the same data with no demonstrations in the prompt
// Instances come from IctSampler (also used by distillation), training from the shared Trainer.

import { mkdirSync } from 'node:fs';
import { writeJsonAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import { Rng, tidy, noGrad, type Tensor } from '../engine/index.js';
import { logitsAt, assertTrainable, type LanguageModel } from '../models/index.js';
import { loadTask, trainingPool, type Example } from '../data/tasks.js';
import { buildPrompt, ContinuationTooLongError, makeTemplate, PieceEncoder, tokenizePrompt, verbalize, type Method, type Template, type Tokenizer } from '../data/prompts.js';
import { Trainer, checkRngState, defaultTrainConfig, type TrainConfig, type TrainerState } from '../train/trainer.js';

export type Setting = 'meta' | 'multitask';

export interface EpisodeSource {
  /** Task name → the examples episodes are drawn from. */
  pools: Map<string, Example[]>;
}

/**
 * Pools for a setting: meta = all training data of each task; multitask = the k-shot train files
 * of the given seeds. Identical examples across files are merged unless dedupe is false.
 */
export function episodePools(taskDir: string, tasks: string[], setting: Setting, k: number, seeds: number[], dedupe = true): Map<string, Example[]> {
  const pools = new Map<string, Example[]>();
  for (const t of tasks) {
    let pool: Example[];
    if (setting === 'meta') pool = trainingPool(taskDir, t, dedupe);
    else {
      const seen = new Set<string>();
      pool = [];
      for (const s of seeds) for (const e of loadTask(taskDir, t, Math.max(k, 1), s).train) {
        const key = `${e.input}\u0000${e.output}`;
        if (!dedupe || !seen.has(key)) { seen.add(key); pool.push(e); }
      }
    }
    if (pool.length < 2) throw new Error(`task ${t}: needs at least 2 training examples for in-context episodes, has ${pool.length}`);
    pools.set(t, pool);
  }
  return pools;
}

/**
 * Multitask-ICT data as in the paper: per target task, nTrain training + nDev validation
 * examples, disjoint, drawn from the task's shipped training data (every *_train / *_dev k-shot
 * file, identical examples merged unless dedupe is false; the test file is never read) by a
 * shuffle seeded with (seed, task name), so each seed sees its own fixed 32 + 32. A task with
 * fewer than nTrain + nDev examples gives half (at most nTrain) to training and the rest to dev.
 */
export function multitaskSplits(taskDir: string, tasks: string[], seed: number, nTrain = 32, nDev = 32, dedupe = true): { train: Map<string, Example[]>; dev: Map<string, Example[]> } {
  const train = new Map<string, Example[]>(), dev = new Map<string, Example[]>();
  for (const t of tasks) {
    const pool = new Rng(taskSeed(seed, t)).shuffle(trainingPool(taskDir, t, dedupe).slice());
    const nt = pool.length >= nTrain + nDev ? nTrain : Math.min(nTrain, Math.ceil(pool.length / 2));
    if (nt < 2) throw new Error(`task ${t}: needs at least 3 training examples under ${taskDir}/${t} for a train/dev split, has ${pool.length}`);
    train.set(t, pool.slice(0, nt));
    dev.set(t, pool.slice(nt, nt + nDev));
  }
  return { train, dev };
}

/** A 32-bit seed from (seed, task name) (FNV-1a), so a task's split does not depend on the task list. */
function taskSeed(seed: number, task: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < task.length; i++) h = Math.imul(h ^ task.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

export interface Instance {
  prefix: number[]; suffix: number[]; contStart: number; task: string; options: string[]; gold: string;
  /** Per answer token: the token ids any option could have there (options sharing the gold's earlier tokens). */
  candidates?: number[][];
  /**
   * Masked-LM instance: the answer tokens suffix[contStart, contEnd) are replaced by this [MASK] id
   * in the input and predicted in place (not shifted as a causal LM's next tokens are).
   */
  mask?: number;
  /** End of the answer in suffix (default suffix.length: a masked query's template may go on after it). */
  contEnd?: number;
}

/** The answer's positions [start, end) in prefix ++ suffix. */
export function answerSpan(inst: Instance): { start: number; end: number } {
  const P = inst.prefix.length;
  return { start: P + inst.contStart, end: P + (inst.contEnd ?? inst.suffix.length) };
}

/** The logits row (within one sequence) that predicts the token at position t: t−1 for a causal LM, t for a masked one. */
export function predictionRow(inst: Instance, t: number): number { return inst.mask === undefined ? t - 1 : t; }

export interface SamplerOptions {
  pools: Map<string, Example[]>;
  k: number;
  /** false = Multitask-FT style (query only). */
  demos: boolean;
  method: Method;
  template?: Partial<Template>;
  maxLength: number;
  maxDemoTokens?: number;
  seed: number;
}

/** Seeded episode sampler; its whole state is the RNG state (resumable). */
export class IctSampler {
  readonly rng: Rng;
  private readonly tasks: string[];
  private readonly tpl: Template;
  private readonly enc: PieceEncoder;
  constructor(tok: Tokenizer, readonly o: SamplerOptions) {
    this.rng = new Rng(o.seed);
    this.tasks = [...o.pools.keys()];
    if (this.tasks.length === 0) throw new Error('in-context tuning: no training tasks');
    this.tpl = makeTemplate(o.template);
    this.enc = new PieceEncoder(tok);
  }
  /** Draws skipped because the continuation alone exceeds the context (channel order: a long input). */
  skipped = 0;
  next(): Instance {
    for (let tries = 0; ; tries++) {
      try { return this.draw(); } catch (e) {
        if (!(e instanceof ContinuationTooLongError)) throw e;
        this.skipped++;
        if (tries >= 1000) throw new Error(`in-context tuning: 1,000 draws in a row had a continuation longer than the ${this.o.maxLength}-token context (${(e as Error).message})`);
      }
    }
  }
  private draw(): Instance {
    const task = this.tasks[this.rng.int(this.tasks.length)];
    const pool = this.o.pools.get(task)!;
    const qi = this.rng.int(pool.length);
    const query = pool[qi];
    const demos: Example[] = [];
    if (this.o.demos && this.o.k > 0) {
      // k distinct others (fewer if the pool is small), in random order.
      const others = pool.filter((_, i) => i !== qi);
      for (let i = 0; i < Math.min(this.o.k, others.length); i++) {
        const j = i + this.rng.int(others.length - i);
        [others[i], others[j]] = [others[j], others[i]];
        demos.push(others[i]);
      }
    }
    // direct: the answer is the continuation; channel: the query input is (given the answer).
    const tp = tokenizePrompt(this.enc, buildPrompt(this.tpl, demos, query, query.output, this.o.method), { maxLength: this.o.maxLength, maxDemoTokens: this.o.maxDemoTokens });
    const inst: Instance = { prefix: tp.prefix, suffix: tp.suffix, contStart: tp.contStart, task, options: query.options, gold: query.output };
    if (this.o.method === 'direct' && query.options.length > 1) inst.candidates = optionCandidates(this.enc, this.tpl, query.options, tp.suffix.slice(tp.contStart));
    return inst;
  }
}

function optionCandidates(enc: PieceEncoder, tpl: Template, options: string[], gold: number[]): number[][] {
  const toks = options.map((o) => enc.encode(verbalize(tpl, o)));
  return gold.map((_, j) => {
    const c = new Set<number>();
    for (const t of toks) if (t.length > j && t.slice(0, j).every((x, i) => x === gold[i])) c.add(t[j]);
    c.add(gold[j]);
    return [...c];
  });
}

/**
 * One causal instance in Hugging Face's causal-LM form: input_ids = prefix ++ suffix, labels =
 * the answer tokens where they stand and -100 elsewhere (the model shifts labels itself), so a
 * PyTorch Trainer computes the same answer-only loss as trainIct.
 */
export function hfCausalExample(inst: Instance): { input_ids: number[]; labels: number[] } {
  if (inst.mask !== undefined) throw new Error('hfCausalExample: a masked-LM instance has no causal-LM form');
  const ids = inst.prefix.concat(inst.suffix);
  const labels = new Array<number>(ids.length).fill(-100);
  const { start, end } = answerSpan(inst);
  for (let t = start; t < end; t++) labels[t] = ids[t];
  return { input_ids: ids, labels };
}

export interface Batch {
  ids: Int32Array; targets: Int32Array; B: number; L: number; instances: Instance[];
  /** 1 for real tokens, 0 for padding: set when the batch holds masked-LM instances (they attend both ways). */
  attention: Float32Array | null;
}

/**
 * Right-padded batch. Causal instances: targets[t−1] = ids[t] on answer tokens. Masked instances:
 * the answer tokens become [MASK] and targets[t] = the answer token. −100 elsewhere.
 */
export function makeBatch(instances: Instance[], padId: number): Batch {
  const seqs = instances.map((it) => it.prefix.concat(it.suffix));
  const B = seqs.length, L = Math.max(...seqs.map((s) => s.length));
  const ids = new Int32Array(B * L).fill(padId), targets = new Int32Array(B * L).fill(-100);
  const masked = instances.some((it) => it.mask !== undefined);
  if (masked && instances.some((it) => it.mask === undefined)) throw new Error('makeBatch: a batch mixes causal and masked-LM instances');
  const attention = masked ? new Float32Array(B * L) : null;
  seqs.forEach((s, b) => {
    const inst = instances[b];
    ids.set(s, b * L);
    attention?.fill(1, b * L, b * L + s.length);
    const { start, end } = answerSpan(inst);
    for (let t = start; t < end; t++) {
      targets[b * L + predictionRow(inst, t)] = s[t];
      if (inst.mask !== undefined) ids[b * L + t] = inst.mask;
    }
  });
  return { ids, targets, B, L, instances, attention };
}

/** A masked LM learns masked instances, a causal LM continuations: the other pairing would train the wrong objective silently. */
function checkInstanceKind(model: LanguageModel, b: Batch): void {
  const masked = b.attention !== null;
  if (model.kind === 'masked' && !masked) throw new Error(`in-context tuning a masked LM (model_type ${model.modelType}) needs masked-LM instances (the LAMA settings: study tasks.lama); task prompts answered by continuation need a causal LM`);
  if (model.kind === 'causal' && masked) throw new Error(`masked-LM instances need a masked LM; this model (model_type ${model.modelType}) is causal`);
}

/** Logits [B, L, V] of a batch (with its padding mask when it has one). */
export function forwardBatch(model: LanguageModel, b: Batch): Tensor {
  checkInstanceKind(model, b);
  return model.forward(O.fromData(b.ids, [b.B, b.L]), b.attention ? { attentionMask: O.fromData(b.attention, [b.B, b.L]) } : {});
}

/** Answer-position rows of a batch: for one instance (batch row b), the logits rows predicting its answer tokens. */
export function answerRows(inst: Instance, b: number, L: number): number[] {
  const { start, end } = answerSpan(inst);
  const rows: number[] = [];
  for (let t = start; t < end; t++) rows.push(b * L + predictionRow(inst, t));
  return rows;
}

/**
 * Logits [N, V] at the batch's N answer positions (instance by instance, in answer order) and
 * their gold ids [N]. Only those rows go through the LM head: with a large vocabulary the head
 * over every position would cost more than the rest of the model. Same values as gathering rows
 * of forwardBatch's logits.
 */
export function answerLogits(model: LanguageModel, b: Batch): { logits: Tensor; targets: Tensor; rows: number[] } {
  checkInstanceKind(model, b);
  const rows = b.instances.flatMap((inst, i) => answerRows(inst, i, b.L));
  const logits = logitsAt(model, O.fromData(b.ids, [b.B, b.L]), rows, b.attention ? { attentionMask: O.fromData(b.attention, [b.B, b.L]) } : {});
  return { logits, targets: O.tensor(rows.map((r) => b.targets[r]), [rows.length], 'int32'), rows };
}

export interface IctTrainOptions {
  model: LanguageModel;
  tokenizer: Tokenizer & { save(dir: string): unknown; eosTokenId?: number | null };
  pools: Map<string, Example[]>;
  setting: Setting;
  k: number;
  demos: boolean;
  method: Method;
  template?: Partial<Template>;
  batchSize: number;
  train: Partial<TrainConfig>;
  out: string;
  resume?: string;
  evalInstances?: number;
  log?: (s: string) => void;
  /** Extra metadata written to ict_config.json. */
  meta?: Record<string, unknown>;
}

export function trainIct(o: IctTrainOptions): TrainerState {
  assertTrainable(o.model, typeof o.meta?.base_model === 'string' ? o.meta.base_model : undefined);
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const cfg: TrainConfig = { ...defaultTrainConfig, warmupSteps: 0, schedule: 'linear', minLrRatio: 0, lr: 1e-4, weightDecay: 0.0, evalEvery: 0, saveEvery: 0, ...o.train };
  const maxLength = o.model.maxPositions;
  const sampler = new IctSampler(o.tokenizer, { pools: o.pools, k: o.k, demos: o.demos, method: o.method, template: o.template, maxLength, seed: cfg.seed });
  // A fixed held-out set of episodes (different RNG stream) for the eval loss.
  const evalSampler = new IctSampler(o.tokenizer, { pools: o.pools, k: o.k, demos: o.demos, method: o.method, template: o.template, maxLength, seed: cfg.seed + 7919 });
  const evalSet = Array.from({ length: o.evalInstances ?? 32 }, () => evalSampler.next());
  const pad = o.tokenizer.eosTokenId ?? 0;
  mkdirSync(o.out, { recursive: true });
  writeJsonAtomic(join(o.out, 'ict_config.json'), { setting: o.setting, k: o.k, demos: o.demos, method: o.method, tasks: [...o.pools.keys()], batch_size: o.batchSize, ...o.meta });
  let tokens = 0;
  const trainer = new Trainer(o.model, cfg, {
    get tokensPerStep() { return tokens * cfg.gradAccum; },
    microStep: () => {
      const b = makeBatch(Array.from({ length: o.batchSize }, () => sampler.next()), pad);
      tokens = b.B * b.L;
      const a = answerLogits(o.model, b);
      return O.crossEntropy(a.logits, a.targets);
    },
    evaluate: () => ({ loss: batchedLoss(o.model, evalSet, pad, o.batchSize) }),
    saveModel: (dir) => { o.model.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ sampler_rng: sampler.rng.getState(), dropout_rng: o.model.rng.getState() }),
    setState: (s) => { sampler.rng.setState(checkRngState(s.sampler_rng, 'sampler_rng')); o.model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng')); },
  }, o.out, log);
  if (o.resume) trainer.resume(o.resume);
  return trainer.run();
}

/** Mean answer-token loss over a fixed set of instances. */
export function batchedLoss(model: LanguageModel, set: Instance[], pad: number, B: number): number {
  let sum = 0, n = 0;
  for (let i = 0; i < set.length; i += B) {
    const b = makeBatch(set.slice(i, i + B), pad);
    const cnt = b.targets.reduce((a, t) => a + (t !== -100 ? 1 : 0), 0);
    sum += tidy(() => noGrad(() => { const a = answerLogits(model, b); return O.crossEntropy(a.logits, a.targets, { reduction: 'sum' }).item(); }));
    n += cnt;
  }
  return n > 0 ? sum / n : 0;
}

// A teacher-training option (not the paper's method): a first stage of LM training on bursty copy
// text, "random string, gap, the same string again", with the loss only on the repeat. Copying a
// string seen earlier in the context is what induction heads do, and it is the skill a few-shot
// task of the synthetic suite needs (find the query key among the demonstrations, copy its
// label); in-context tuning alone was measured not to find it on a balanced 4-label suite, while
// this stage followed by in-context tuning did. Training runs through the one Trainer.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import { Rng } from '../engine/index.js';
import type { LanguageModel } from '../models/index.js';
import type { Example } from '../data/tasks.js';
import { makeTemplate, PieceEncoder, verbalize, type Template, type Tokenizer } from '../data/prompts.js';
import { Trainer, checkRngState, defaultTrainConfig, type TrainConfig, type TrainerState } from '../train/trainer.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { IctSampler, makeBatch, type IctTrainOptions } from './ict.js';

export interface CopyBatch { ids: Int32Array; targets: Int32Array; B: number; L: number; }

/**
 * B rows of `s gap s pad`: s is `length` tokens drawn from `vocab` (distinct when the vocabulary
 * allows), the gap 1..maxGap random tokens from `vocab` (a random length, so the repeat sits at a
 * different distance in every row and only a content match, not a fixed offset, can find it),
 * pad fills the row to L = 2·length + maxGap. targets[t] = ids[t+1] where t+1 is a repeat token
 * after the first (the first follows a random gap and cannot be predicted), -100 elsewhere.
 */
export function copyBatch(rng: Rng, vocab: readonly number[], B: number, length: number, maxGap: number, pad: number): CopyBatch {
  if (vocab.length < 2) throw new Error(`copy pretraining: needs at least 2 distinct tokens, got ${vocab.length}`);
  if (length < 2) throw new Error(`copy pretraining: length must be ≥ 2, got ${length}`);
  if (maxGap < 1) throw new Error(`copy pretraining: the gap must allow ≥ 1 token, got ${maxGap}`);
  const L = 2 * length + maxGap;
  const ids = new Int32Array(B * L).fill(pad), targets = new Int32Array(B * L).fill(-100);
  const distinct = vocab.length >= length;
  for (let b = 0; b < B; b++) {
    const row = b * L;
    const s = distinct ? rng.shuffle(vocab.slice()).slice(0, length) : Array.from({ length }, () => vocab[rng.int(vocab.length)]);
    const g = 1 + rng.int(maxGap);
    ids.set(s, row);
    for (let i = 0; i < g; i++) ids[row + length + i] = vocab[rng.int(vocab.length)];
    const rep = row + length + g;
    ids.set(s, rep);
    for (let i = 1; i < length; i++) targets[rep + i - 1] = s[i];
  }
  return { ids, targets, B, L };
}

/**
 * The token ids a suite's prompts are made of: every example's input and (verbalized) output as
 * the template shows them, and the template's separators (ioSep, demoSep). These are what the copy text is drawn from.
 */
export function suiteTokens(tok: Tokenizer, examples: Iterable<Example>, template: Partial<Template> = {}): number[] {
  const tpl = makeTemplate(template), enc = new PieceEncoder(tok);
  const ids = new Set<number>();
  const add = (s: string): void => { for (const t of enc.encode(s)) ids.add(t); };
  const seen = new Set<string>();
  for (const sep of [tpl.ioSep, tpl.demoSep]) add(sep); // the prompt's separators are part of every prompt
  for (const e of examples) {
    for (const s of [tpl.inputPrefix + e.input, tpl.outputPrefix + verbalize(tpl, e.output), ...e.options.map((o) => tpl.outputPrefix + verbalize(tpl, o))]) {
      if (!seen.has(s)) { seen.add(s); add(s); }
    }
  }
  return [...ids].sort((a, b) => a - b);
}

export interface CopyPretrainOptions {
  model: LanguageModel;
  tokenizer: Tokenizer & { save(dir: string): unknown };
  vocab: number[];
  /** Padding token (after the repeat, never a target). */
  pad: number;
  length: number;
  /** Longest gap; default: what fits n_positions, at most `length`. */
  maxGap?: number;
  batchSize: number;
  train: Partial<TrainConfig>;
  out: string;
  log?: (s: string) => void;
}

export function copyPretrain(o: CopyPretrainOptions): TrainerState {
  const room = o.model.maxPositions - 2 * o.length;
  if (room < 1) throw new Error(`teacher.copy_pretrain.length ${o.length}: two copies and a gap (2·length + 1 = ${2 * o.length + 1} tokens) exceed the teacher's n_positions ${o.model.maxPositions}`);
  const maxGap = o.maxGap ?? Math.min(o.length, room);
  if (maxGap > room) throw new Error(`teacher.copy_pretrain.max_gap ${maxGap}: 2·length + max_gap = ${2 * o.length + maxGap} tokens exceed the teacher's n_positions ${o.model.maxPositions}`);
  const L = 2 * o.length + maxGap;
  const cfg: TrainConfig = { ...defaultTrainConfig, warmupSteps: 50, schedule: 'cosine', minLrRatio: 0.1, weightDecay: 0, evalEvery: 0, saveEvery: 0, ...o.train };
  const rng = new Rng(cfg.seed + 31337);
  // A fixed held-out batch (its own RNG stream) for the eval loss.
  const evalB = copyBatch(new Rng(cfg.seed + 4242), o.vocab, o.batchSize, o.length, maxGap, o.pad);
  mkdirSync(o.out, { recursive: true });
  writeJsonAtomic(join(o.out, 'copy_pretrain_config.json'), { vocab: o.vocab, length: o.length, max_gap: maxGap, batch_size: o.batchSize });
  const trainer = new Trainer(o.model, cfg, {
    tokensPerStep: o.batchSize * L * cfg.gradAccum,
    microStep: () => {
      const b = copyBatch(rng, o.vocab, o.batchSize, o.length, maxGap, o.pad);
      return O.crossEntropy(o.model.forward(O.fromData(b.ids, [b.B, b.L])), O.fromData(b.targets, [b.B, b.L]));
    },
    evaluate: () => ({ loss: O.crossEntropy(o.model.forward(O.fromData(evalB.ids, [evalB.B, evalB.L])), O.fromData(evalB.targets, [evalB.B, evalB.L])).item() }),
    saveModel: (dir) => { o.model.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ copy_rng: rng.getState(), dropout_rng: o.model.rng.getState() }),
    setState: (s) => { rng.setState(checkRngState(s.copy_rng, 'copy_rng')); o.model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng')); },
  }, o.out, o.log);
  return trainer.run();
}

/** trainIct's options (direct order, with demonstrations) plus the copy text mixed into every step. */
export interface MixedIctOptions extends Pick<IctTrainOptions, 'model' | 'tokenizer' | 'pools' | 'setting' | 'k' | 'template' | 'batchSize' | 'train' | 'out' | 'log'> {
  /** Copy text mixed into every step: loss = L_ICT + weight · L_copy. */
  copy: { vocab: number[]; length: number; maxGap?: number; batchSize: number; weight: number };
}

/**
 * In-context tuning (direct, with demonstrations) with the copy loss mixed in, so tuning on the
 * suite does not wear away the copying skill of stage 1. The same instances as trainIct
 * (IctSampler, makeBatch); only the extra loss term differs.
 */
export function trainIctWithCopy(o: MixedIctOptions): TrainerState {
  const cfg: TrainConfig = { ...defaultTrainConfig, warmupSteps: 0, schedule: 'linear', minLrRatio: 0, lr: 1e-4, weightDecay: 0, evalEvery: 0, saveEvery: 0, ...o.train };
  const maxLength = o.model.maxPositions;
  const room = maxLength - 2 * o.copy.length;
  if (room < 1) throw new Error(`teacher.copy_pretrain.length ${o.copy.length}: 2·length + 1 tokens exceed the teacher's n_positions ${maxLength}`);
  const maxGap = Math.min(o.copy.maxGap ?? Math.min(o.copy.length, room), room);
  const sampler = new IctSampler(o.tokenizer, { pools: o.pools, k: o.k, demos: true, method: 'direct', template: o.template, maxLength, seed: cfg.seed });
  const rng = new Rng(cfg.seed + 31337);
  const pad = o.tokenizer.eosTokenId ?? 0;
  mkdirSync(o.out, { recursive: true });
  writeJsonAtomic(join(o.out, 'ict_config.json'), { setting: o.setting, k: o.k, demos: true, method: 'direct', tasks: [...o.pools.keys()], batch_size: o.batchSize, copy_mix: { weight: o.copy.weight, length: o.copy.length, max_gap: maxGap, batch_size: o.copy.batchSize } });
  let tokens = 0;
  const trainer = new Trainer(o.model, cfg, {
    get tokensPerStep() { return tokens * cfg.gradAccum; },
    microStep: () => {
      const b = makeBatch(Array.from({ length: o.batchSize }, () => sampler.next()), pad);
      const c = copyBatch(rng, o.copy.vocab, o.copy.batchSize, o.copy.length, maxGap, pad);
      tokens = b.B * b.L + c.B * c.L;
      const ict = O.crossEntropy(o.model.forward(O.fromData(b.ids, [b.B, b.L])), O.fromData(b.targets, [b.B, b.L]));
      const cp = O.crossEntropy(o.model.forward(O.fromData(c.ids, [c.B, c.L])), O.fromData(c.targets, [c.B, c.L]));
      return O.add(ict, O.mul(cp, o.copy.weight));
    },
    saveModel: (dir) => { o.model.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ sampler_rng: sampler.rng.getState(), copy_rng: rng.getState(), dropout_rng: o.model.rng.getState() }),
    setState: (s) => { sampler.rng.setState(checkRngState(s.sampler_rng, 'sampler_rng')); rng.setState(checkRngState(s.copy_rng, 'copy_rng')); o.model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng')); },
  }, o.out, o.log);
  return trainer.run();
}

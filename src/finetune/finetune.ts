// `icld finetune`: adapt a model to conversations (supervised, loss on assistant turns only) or to
// preference pairs (DPO), with a PEFT adapter (LoRA, P-Tuning v2 / prefix, prompt tuning,
// bottleneck adapters) or all weights, through the one training loop (accumulation, schedules,
// evaluation, atomic checkpoints, exact resume). An adapter run writes PEFT's layout; a full run a
// plain model directory; both keep the tokenizer (with its chat template) next to the weights.

import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as O from '../engine/ops.js';
import { Rng, noGrad, tidy, type Tensor } from '../engine/index.js';
import { loadModel, modelFamily, assertTrainableDir, type LanguageModel } from '../models/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { readChatFile } from '../data/chat.js';
import { encodeChatDataset, ensureChatTokens, type ChatExample } from '../data/chat-encode.js';
import { MlmCollator, IGNORE_INDEX } from '../data/mlm.js';
import { Trainer, checkPosition, checkRngState, defaultTrainConfig, resolveCheckpoint, type TrainConfig, type TrainerState, type TrainHooks } from '../train/trainer.js';
import { prepareOut } from '../train/pretrain.js';
import type { Schedule } from '../optim/schedule.js';
import { PeftModel, tunerForMethod, readAdapterConfig, trainableLine } from '../tuners/index.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { trainablePreference } from './preference-run.js';

export const FINETUNE_METHODS = ['lora', 'ptuning-v2', 'prefix', 'prompt', 'adapter', 'full'] as const;
export type FinetuneMethod = (typeof FINETUNE_METHODS)[number];
export type FinetuneObjective = 'sft' | 'dpo';

/** Every default of a fine-tuning run, in one place (the CLI's help and the library read it). */
export const FINETUNE_DEFAULTS = {
  batchSize: 8,
  epochs: 3,
  maxLength: 512,
  /** Share of the steps spent warming up. */
  warmupRatio: 0.05,
  schedule: 'cosine' as Schedule,
  minLrRatio: 0,
  weightDecay: 0,
  betas: [0.9, 0.999] as [number, number],
  gradClip: 1,
  gradAccum: 1,
  logEvery: 5,
  saveTotalLimit: 1,
  seed: 0,
  /** Learning rate per method: adapters take far larger steps than full fine-tuning (PEFT/TRL practice). */
  lr: { lora: 1e-3, adapter: 1e-3, 'ptuning-v2': 1e-2, prefix: 1e-2, prompt: 3e-2, full: 1e-4 } as Record<FinetuneMethod, number>,
  /** DPO's β and the masked-LM share for BERT-style models. */
  beta: 0.1,
  mlmProbability: 0.15,
};

export interface FinetuneOptions {
  method: FinetuneMethod;
  objective?: FinetuneObjective;
  /** Base model directory. */
  model: string;
  /** Conversations (SFT) or preference pairs (DPO). */
  data: string;
  evalData?: string;
  out: string;
  resume?: string;
  overwrite?: boolean;
  /** adapter_config.json keys for the method (r, lora_alpha, target_modules, num_virtual_tokens, …). */
  peft?: Record<string, unknown>;
  steps?: number;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  maxLength?: number;
  gradAccum?: number;
  warmupSteps?: number;
  schedule?: Schedule;
  evalEvery?: number;
  saveEvery?: number;
  logEvery?: number;
  seed?: number;
  /** Matmul precision of training (default: the trainer's, f32). */
  precision?: TrainConfig['precision'];
  /**
   * Adapter methods: 'new' trains only the rows of tokens added for the chat template (the default
   * when the vocabulary grew; PEFT's trainable_token_indices), 'all' the whole input embedding
   * (and the tied head), 'none' neither. A grown embedding is saved with the adapter either way.
   */
  trainEmbeddings?: 'new' | 'all' | 'none';
  /** A Jinja chat template overriding the tokenizer's and the family's. */
  chatTemplate?: string;
  /** DPO. */
  beta?: number;
  labelSmoothing?: number;
  lossType?: 'sigmoid' | 'ipo';
  log?: (s: string) => void;
}

export interface FinetuneResult {
  out: string;
  method: FinetuneMethod;
  objective: FinetuneObjective;
  trainable_params: number;
  all_params: number;
  examples: number;
  eval_examples: number;
  truncated: number;
  dropped: number;
  added_tokens: number;
  steps: number;
  final_loss: number;
  final_eval: Record<string, number> | null;
  state: TrainerState;
}

/** Files a finished fine-tuning run leaves (removed by --overwrite). */
const FT_RUN_FILES = ['adapter_config.json', 'adapter_model.safetensors', 'model.safetensors', 'config.json', 'generation_config.json',
  'tokenizer.json', 'tokenizer_config.json', 'vocab.txt', 'special_tokens_map.json', 'trainer_state.json', 'report.html'];

/** The model and tokenizer a run trains: the base, grown for the chat tokens, wrapped in an adapter unless `full`. */
export interface PreparedModel {
  model: LanguageModel;
  base: LanguageModel;
  peft: PeftModel | null;
  tokenizer: Tokenizer;
  template: string;
  addedTokens: number;
  /** Embedding rows below this index get no update (only the added tokens' rows train); null = no such limit. */
  frozenRows: number | null;
}

/**
 * Load the base, settle the chat template (--chat-template, else the tokenizer's, else the
 * family's, whose special tokens are added and the embeddings resized) and attach the adapter.
 * `tokenizerDir` is where the tokenizer comes from (a resumed checkpoint keeps its added tokens).
 */
export function prepareModel(o: FinetuneOptions, tokenizerDir: string, log: (s: string) => void): PreparedModel {
  if (!existsSync(o.model) || !statSync(o.model).isDirectory()) throw new Error(`--model directory not found: ${o.model}`);
  assertTrainableDir(o.model);
  const base = loadModel(o.model);
  const tok = loadTokenizer(tokenizerDir);
  const fam = modelFamily(base.modelType);
  let template = o.chatTemplate ?? tok.chatTemplate;
  let added = 0;
  if (!template) {
    template = fam.chat.template;
    added = ensureChatTokens(tok, fam.chat.specialTokens).added;
    if (added) log(`added ${added} chat token(s) to the tokenizer: ${fam.chat.specialTokens.join(' ')}`);
  }
  tok.chatTemplate = template;
  // The vocabulary grew (now, or in the run being resumed): the embedding goes with the adapter.
  const oldVocab = base.vocabSize;
  const grew = tok.vocabSize > oldVocab;
  if (grew) {
    log(`resizing the token embeddings ${base.vocabSize} → ${tok.vocabSize}`);
    base.resizeTokenEmbeddings(tok.vocabSize);
  }
  const seed = o.seed ?? FINETUNE_DEFAULTS.seed;
  if (o.method === 'full' && o.trainEmbeddings !== undefined) throw new Error('--train-embeddings applies to adapter methods (--method full trains every weight)');
  if (o.method === 'full' && o.peft && Object.keys(o.peft).length) throw new Error(`--method full takes no adapter settings (got ${Object.keys(o.peft).join(', ')})`);
  if (o.method === 'full') {
    base.requiresGrad(true);
    return { model: base, base, peft: null, tokenizer: tok, template, addedTokens: added, frozenRows: null };
  }
  const peft = new PeftModel(base);
  const tuner = tunerForMethod(o.method, '--method');
  const user: Record<string, unknown> = { ...(o.peft ?? {}), base_model_name_or_path: resolve(o.model) };
  if (user.prompt_tuning_init === 'TEXT') {
    const text = user.prompt_tuning_init_text;
    if (typeof text !== 'string' || text === '') throw new Error('--prompt-init-text: prompt_tuning_init TEXT needs a non-empty text');
    user.prompt_tuning_init_ids = tok.encode(text, { addSpecialTokens: false });
    user.tokenizer_name_or_path = resolve(o.model);
  }
  const cfg = tuner.config(user, base, '--peft', o.method);
  peft.addAdapter('default', cfg, seed);
  const emb = o.trainEmbeddings ?? (grew ? 'new' : 'none');
  if (emb === 'new' && !grew) throw new Error('--train-embeddings new: no tokens were added to the vocabulary (use all or none)');
  if (grew || emb !== 'none') peft.trainEmbeddings(emb !== 'none');
  return { model: peft, base, peft, tokenizer: tok, template, addedTokens: added, frozenRows: emb === 'new' ? oldVocab : null };
}

/** Parameter counts; with `frozenRows` the input embedding counts only its rows from there on as trainable. */
export function countParams(m: LanguageModel, frozenRows: number | null = null): { trainable: number; all: number } {
  let trainable = 0, all = 0;
  const emb = frozenRows === null ? null : m.inputEmbeddings();
  for (const [, p] of m.namedParameters()) {
    all += p.size;
    if (p.requiresGrad) trainable += p === emb ? p.size - frozenRows! * p.shape[1] : p.size;
  }
  return { trainable, all };
}

/** PEFT's print_trainable_parameters line, also for a full fine-tune. */
export function trainableSummary(m: LanguageModel, frozenRows: number | null = null): string {
  const c = countParams(m, frozenRows);
  return trainableLine(c.trainable, c.all);
}

/**
 * How a fine-tuning run saves and restores its weights: the adapter (PEFT layout; checkpoints add
 * the unfolded trainable tensors) or the whole model, the tokenizer with its chat template, and
 * the frozen embedding rows kept still.
 */
export function weightHooks(prep: PreparedModel): Pick<TrainHooks, 'saveModel' | 'loadModel' | 'saveCheckpointExtras' | 'afterBackward'> {
  const { model, peft, tokenizer: tok, frozenRows } = prep;
  return {
    saveModel: (dir) => {
      if (peft) peft.saveAdapter(dir); else model.savePretrained(dir);
      tok.save(dir);
    },
    loadModel: peft ? (dir) => loadTrainableState(model, dir) : undefined,
    saveCheckpointExtras: peft ? (dir) => saveTrainableState(model, dir) : undefined,
    afterBackward: frozenRows !== null ? () => freezeEmbeddingRows(model, frozenRows) : undefined,
  };
}

/** Zero the embedding gradient of rows below `rows`: with AdamW (no decay on them) they stay exactly as they were. */
export function freezeEmbeddingRows(m: LanguageModel, rows: number): void {
  const g = m.inputEmbeddings().grad;
  if (g) g.f32.fill(0, 0, rows * m.inputEmbeddings().shape[1]);
}

/**
 * An adapter checkpoint keeps the trainable tensors as they are trained (a prefix adapter's
 * reparameterisation MLP, which the PEFT file folds away), so that resuming is exact.
 */
export const TRAINABLE_STATE = 'adapter_trainable.safetensors';

export function saveTrainableState(m: LanguageModel, dir: string): void {
  const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const [n, p] of m.namedParameters()) if (p.requiresGrad) t[n] = { dtype: 'F32', shape: p.shape.slice(), data: p.f32 };
  writeSafetensors(join(dir, TRAINABLE_STATE), t, { format: 'pt' });
}

export function loadTrainableState(m: LanguageModel, dir: string): void {
  const path = join(dir, TRAINABLE_STATE);
  if (!existsSync(path)) throw new Error(`${path} is missing (an adapter checkpoint keeps its training weights there)`);
  const { tensors } = readSafetensors(path);
  const want = m.namedParameters().filter(([, p]) => p.requiresGrad);
  for (const [n, p] of want) {
    const t = tensors.get(n);
    if (!t) throw new Error(`${path}: lacks tensor '${n}'`);
    if (t.dtype !== 'F32' || t.shape.join(',') !== p.shape.join(',')) throw new Error(`${path}: tensor '${n}' is ${t.dtype} [${t.shape.join(', ')}], the model has F32 [${p.shape.join(', ')}]`);
  }
  if (tensors.size !== want.length) {
    const names = new Set(want.map(([n]) => n));
    throw new Error(`${path}: tensor '${[...tensors.keys()].find((k) => !names.has(k))}' is not a trainable parameter of this run`);
  }
  for (const [n, p] of want) p.f32.set(tensors.get(n)!.data as Float32Array);
}

export function trainConfigFor(o: FinetuneOptions, steps: number, stepsPerEpoch: number, hasEval: boolean): TrainConfig {
  const D = FINETUNE_DEFAULTS;
  return {
    ...defaultTrainConfig,
    steps,
    lr: o.lr ?? D.lr[o.method],
    warmupSteps: o.warmupSteps ?? Math.round(D.warmupRatio * steps),
    schedule: o.schedule ?? D.schedule,
    minLrRatio: D.minLrRatio,
    weightDecay: D.weightDecay,
    betas: D.betas,
    gradClip: D.gradClip,
    gradAccum: o.gradAccum ?? D.gradAccum,
    evalEvery: hasEval ? (o.evalEvery ?? stepsPerEpoch) : 0,
    saveEvery: o.saveEvery ?? stepsPerEpoch,
    saveTotalLimit: D.saveTotalLimit,
    logEvery: o.logEvery ?? D.logEvery,
    seed: o.seed ?? D.seed,
    precision: o.precision ?? defaultTrainConfig.precision,
  };
}

/** Examples in a seeded order per epoch; the position {epoch, index} is checkpointed. */
export class EpochOrder {
  state = { epoch: 0, index: 0 };
  private order: number[] = [];
  private orderEpoch = -1;
  constructor(readonly n: number, readonly seed: number) {
    if (n < 1) throw new Error('no training examples');
  }
  private perm(epoch: number): number[] {
    if (this.orderEpoch === epoch) return this.order;
    const rng = new Rng((this.seed * 1_000_003 + epoch) >>> 0);
    const a = Array.from({ length: this.n }, (_, i) => i);
    for (let i = a.length - 1; i > 0; i--) { const j = rng.int(i + 1); [a[i], a[j]] = [a[j], a[i]]; }
    this.order = a; this.orderEpoch = epoch;
    return a;
  }
  /** The next k example indices (crossing into the next epoch when this one runs out). */
  next(k: number): number[] {
    const out: number[] = [];
    while (out.length < k) {
      const p = this.perm(this.state.epoch);
      out.push(p[this.state.index++]);
      if (this.state.index >= this.n) this.state = { epoch: this.state.epoch + 1, index: 0 };
    }
    return out;
  }
}

/** Right-padded batch: ids, labels (−100 on padding) and the attention mask. */
export function padBatch(rows: { ids: number[]; labels: number[] }[], padId: number): { ids: Tensor; labels: Tensor; mask: Tensor; T: number } {
  const B = rows.length, T = Math.max(...rows.map((r) => r.ids.length));
  const ids = O.empty([B, T], 'int32', false), labels = O.empty([B, T], 'int32', false), mask = O.zeros([B, T]);
  for (let b = 0; b < B; b++) {
    const r = rows[b];
    for (let t = 0; t < T; t++) {
      const real = t < r.ids.length;
      ids.i32[b * T + t] = real ? r.ids[t] : padId;
      labels.i32[b * T + t] = real ? r.labels[t] : IGNORE_INDEX;
      mask.f32[b * T + t] = real ? 1 : 0;
    }
  }
  return { ids, labels, mask, T };
}

/**
 * Masked LMs learn the assistant turns as masked-token prediction: positions are drawn (HF's
 * 15% / 80-10-10) among the assistant tokens only, at least one per row.
 */
function maskAssistant(mlm: MlmCollator, ids: Tensor, labels: Tensor, T: number, rng: Rng): void {
  const n = ids.size, src = Int32Array.from(ids.i32), lab = labels.i32;
  const out = new Int32Array(n), drawn = new Int32Array(n);
  mlm.apply(src, T, rng, out, drawn);
  for (let b = 0; b < n / T; b++) {
    let any = false;
    for (let t = b * T; t < (b + 1) * T; t++) {
      if (lab[t] !== IGNORE_INDEX && drawn[t] !== IGNORE_INDEX) { any = true; ids.i32[t] = out[t]; } else { drawn[t] = IGNORE_INDEX; ids.i32[t] = src[t]; }
    }
    if (!any) {
      // Too short to draw from: mask one assistant token (chosen by the same rng).
      const cand: number[] = [];
      for (let t = b * T; t < (b + 1) * T; t++) if (lab[t] !== IGNORE_INDEX && mlm.maskable(src[t])) cand.push(t);
      if (cand.length) { const t = cand[rng.int(cand.length)]; drawn[t] = src[t]; ids.i32[t] = mlm.maskId; }
    }
  }
  lab.set(drawn);
}

export function finetune(o: FinetuneOptions): FinetuneResult {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const objective = o.objective ?? 'sft';
  if (!(FINETUNE_METHODS as readonly string[]).includes(o.method)) throw new Error(`--method must be one of ${FINETUNE_METHODS.join(', ')}; got '${o.method}'`);
  prepareOut(o, log, FT_RUN_FILES);
  const resumeDir = o.resume ? resolveCheckpoint(o.resume, log) : null;
  if (resumeDir && o.method !== 'full') {
    // The checkpoint's adapter must be the one this command would build.
    const saved = readAdapterConfig(resumeDir);
    const want = tunerForMethod(o.method, '--method').peftType;
    if (saved.peft_type !== want) throw new Error(`--resume: ${resumeDir} holds a ${saved.peft_type} adapter, --method ${o.method} trains ${want}`);
  }
  const prep = prepareModel(o, resumeDir ?? o.model, log);
  const { model, tokenizer: tok, template } = prep;
  if (objective === 'dpo') return trainablePreference(o, prep, resumeDir, log);
  const masked = model.kind === 'masked';
  const maxLength = Math.min(o.maxLength ?? FINETUNE_DEFAULTS.maxLength, model.maxPositions);
  const encode = (path: string, what: string): { examples: ChatExample[]; truncated: number; dropped: number } => {
    const records = readChatFile(path);
    const { examples, stats } = encodeChatDataset(tok, template, records, { maxLength });
    log(`${what} ${path}: ${stats.records} conversations → ${examples.length} examples, ${stats.labelTokens} of ${stats.tokens} tokens learned; ${stats.truncated} truncated to ${maxLength} tokens, ${stats.droppedNoLabel} dropped (no assistant token left)`);
    if (examples.length === 0) throw new Error(`${path}: no example keeps an assistant token within --max-length ${maxLength}`);
    return { examples, truncated: stats.truncated, dropped: stats.droppedNoLabel };
  };
  const train = encode(o.data, 'data');
  const evalSet = o.evalData ? encode(o.evalData, 'eval data') : null;
  const B = o.batchSize ?? FINETUNE_DEFAULTS.batchSize;
  const accum = o.gradAccum ?? FINETUNE_DEFAULTS.gradAccum;
  const stepsPerEpoch = Math.max(1, Math.ceil(train.examples.length / (B * accum)));
  const steps = o.steps ?? (o.epochs ?? FINETUNE_DEFAULTS.epochs) * stepsPerEpoch;
  const cfg = trainConfigFor(o, steps, stepsPerEpoch, !!evalSet);
  const counts = countParams(model, prep.frozenRows);
  log(trainableSummary(model, prep.frozenRows));
  if (prep.frozenRows !== null) log(`training the ${model.vocabSize - prep.frozenRows} added token embedding row(s) too (--train-embeddings new)`);
  const padId = tok.padTokenId ?? model.eosTokenId ?? 0;
  const order = new EpochOrder(train.examples.length, cfg.seed);
  const mlm = masked ? new MlmCollator(tok, { mlmProbability: FINETUNE_DEFAULTS.mlmProbability }) : null;
  const maskRng = new Rng(cfg.seed + 17);
  const lossOf = (rows: ChatExample[], rng: Rng): Tensor => {
    const { ids, labels, mask, T } = padBatch(rows, padId);
    if (mlm) maskAssistant(mlm, ids, labels, T, rng);
    return model.loss(ids, labels, { attentionMask: mask }).loss;
  };
  const meanLen = train.examples.reduce((s, e) => s + e.ids.length, 0) / train.examples.length;
  const trainer = new Trainer(model, cfg, {
    tokensPerStep: Math.round(B * accum * meanLen),
    microStep: () => lossOf(order.next(B).map((i) => train.examples[i]), maskRng),
    evaluate: evalSet ? () => evalChatLoss(evalSet.examples, B, (rows, rng) => lossOf(rows, rng), cfg.seed) : undefined,
    ...weightHooks(prep),
    getState: () => ({ data: { ...order.state }, dropout_rng: model.rng.getState(), mask_rng: maskRng.getState() }),
    setState: (s) => {
      order.state = checkPosition(s.data, 'data');
      model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
      maskRng.setState(checkRngState(s.mask_rng, 'mask_rng'));
    },
  }, o.out, log);
  if (resumeDir) trainer.resume(resumeDir);
  const state = trainer.run();
  const lastLog = state.log_history[state.log_history.length - 1];
  return {
    out: o.out, method: o.method, objective, trainable_params: counts.trainable, all_params: counts.all,
    examples: train.examples.length, eval_examples: evalSet?.examples.length ?? 0, truncated: train.truncated, dropped: train.dropped,
    added_tokens: prep.addedTokens, steps: state.global_step, final_loss: lastLog?.loss ?? NaN,
    final_eval: state.eval_history.length ? state.eval_history[state.eval_history.length - 1] : null, state,
  };
}

/** Token-weighted mean loss over every eval example (fixed masking seed for masked LMs), and its perplexity. */
function evalChatLoss(examples: ChatExample[], B: number, lossOf: (rows: ChatExample[], rng: Rng) => Tensor, seed: number): Record<string, number> {
  const rng = new Rng(seed + 991);
  let sum = 0, n = 0;
  noGrad(() => {
    for (let i = 0; i < examples.length; i += B) {
      const rows = examples.slice(i, i + B);
      const w = rows.reduce((s, r) => s + r.labels.filter((l, t) => l !== IGNORE_INDEX && t > 0).length, 0);
      const l = tidy(() => lossOf(rows, rng).item());
      if (Number.isFinite(l)) { sum += l * w; n += w; }
    }
  });
  const loss = n ? sum / n : NaN;
  return { loss, ppl: Math.exp(loss) };
}


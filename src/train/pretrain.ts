// Pretraining pipeline: tokenizer (load or train) → cached token shards → train/val split →
// a model of the chosen family (--arch) → the shared Trainer. Config is one JSON file with
// "model" (that family's keys), "tokenizer" and "train". Causal families train on next-token
// prediction; masked families (BERT) on MLM: each window of seq_len − 2 shard tokens is wrapped
// as [CLS] … [SEP] (windows run across document boundaries, as the causal ones do) and masked
// afresh every step by MlmCollator, whose Rng state is checkpointed.

import { existsSync, readFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import { tidy, noGrad, Rng } from '../engine/index.js';
import { createModel, logitsAt, modelConfig, modelFamily, type ForwardOptions, type LanguageModel } from '../models/index.js';
import type { Tensor } from '../engine/index.js';
import { BPETokenizer } from '../tokenizers/bpe.js';
import { loadTokenizer, WordPieceTokenizer } from '../tokenizers/index.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { MlmCollator, IGNORE_INDEX } from '../data/mlm.js';
import { Trainer, PRECISIONS, checkPosition, checkRngState, defaultTrainConfig, listCheckpoints, recoverRunDir, resolveCheckpoint, type TrainConfig, type TrainerState } from './trainer.js';
import { removeDirAtomic } from '../io/atomic.js';
import { readJsonFile, checkSchema, type Schema } from '../io/json.js';

export interface PretrainConfig {
  model: Record<string, unknown> & { vocab_size?: number; bos_token_id?: number | null; eos_token_id?: number | null };
  tokenizer: { path?: string; vocab_size?: number; special_tokens?: string[]; min_frequency?: number; lowercase?: boolean };
  train: {
    steps?: number; batch_size?: number; seq_len?: number; lr?: number; warmup_steps?: number;
    schedule?: 'cosine' | 'linear' | 'constant'; min_lr_ratio?: number; weight_decay?: number;
    betas?: [number, number]; grad_clip?: number; grad_accum?: number; eval_every?: number; eval_batches?: number;
    save_every?: number; save_total_limit?: number; log_every?: number; seed?: number; val_fraction?: number;
    /** Masked LMs only: share of tokens chosen for MLM (default 0.15), and whole-word choice. */
    mlm_probability?: number; whole_word_mask?: boolean;
    /** Matmul precision of training (default f32; --precision overrides it). */
    precision?: TrainConfig['precision'];
  };
}

const nonNegInt: Schema = { t: 'int', min: 0 };
const posInt: Schema = { t: 'int', min: 1 };

/** Every key a pretraining config of family `arch` may hold, with its type and range. */
const pretrainSchema = (arch: string): Schema => ({
  t: 'object', required: ['model', 'train'],
  keys: {
    model: { t: 'object', keys: { ...modelFamily(arch, '--arch').modelKeys } },
    tokenizer: {
      t: 'object', keys: {
        path: { t: 'string', nonEmpty: true },
        vocab_size: { t: 'int', min: 257, max: 4_194_304 },
        special_tokens: { t: 'array', of: { t: 'string', nonEmpty: true }, unique: true },
        min_frequency: nonNegInt,
        lowercase: { t: 'bool' },
      },
    },
    train: {
      t: 'object', keys: {
        steps: posInt, batch_size: posInt, seq_len: posInt, lr: { t: 'number', gt: 0 }, warmup_steps: nonNegInt,
        schedule: { t: 'string', enum: ['cosine', 'linear', 'constant'] }, min_lr_ratio: { t: 'number', min: 0, max: 1 },
        weight_decay: { t: 'number', min: 0 }, betas: { t: 'tuple', of: [{ t: 'number', min: 0, lt: 1 }, { t: 'number', min: 0, lt: 1 }] },
        grad_clip: { t: 'number', min: 0 }, grad_accum: posInt, eval_every: nonNegInt, eval_batches: posInt,
        save_every: nonNegInt, save_total_limit: nonNegInt, log_every: posInt, seed: nonNegInt,
        val_fraction: { t: 'number', gt: 0, lt: 1 },
        mlm_probability: { t: 'number', gt: 0, lt: 1 }, whole_word_mask: { t: 'bool' },
        precision: { t: 'string', enum: [...PRECISIONS] },
      },
    },
  },
});

/**
 * Read and check a pretraining config: every section and key known (a typo names the closest
 * valid key), types and ranges right, "model" and "train" present. One-line errors naming the file.
 */
export function readPretrainConfig(path: string, arch = 'gpt2'): PretrainConfig {
  const c = readJsonFile(path, 'config file', 16 << 20);
  try { checkSchema(c, pretrainSchema(arch), path, ''); } catch (e) {
    // A model key of another family is most often a config meant for another --arch.
    const msg = (e as Error).message;
    if (/unknown key model\./.test(msg) && !msg.includes("did you mean")) throw new Error(`${msg} (--arch ${arch} takes ${modelFamily(arch).sizeKeys.join(', ')}, …)`);
    throw e;
  }
  const cfg = c as PretrainConfig;
  cfg.tokenizer ??= {};
  const m = cfg.model;
  // The family's own checks (head divisibility, token ids, tensor sizes); vocab_size may come from the tokenizer later.
  const { bos_token_id: _b, eos_token_id: _e, ...shape } = m;
  modelConfig(arch, { ...shape, vocab_size: m.vocab_size ?? 257 }, path, 'model.');
  checkObjective(cfg, arch, path);
  return cfg;
}

/** MLM keys belong to masked families only. */
function checkObjective(c: PretrainConfig, arch: string, where: string): void {
  if (modelFamily(arch, '--arch').kind === 'masked') return;
  for (const k of ['mlm_probability', 'whole_word_mask'] as const) {
    if (c.train[k] !== undefined) throw new Error(`${where}: train.${k} applies to masked LMs only (--arch ${arch} is causal)`);
  }
}

export interface PretrainOptions {
  config: PretrainConfig; data: string[]; out: string; resume?: string;
  /** Model family (a registered model_type); default gpt2. */
  arch?: string;
  /** Allow a non-empty `out` without resume: its checkpoints and final model files are removed first. */
  overwrite?: boolean;
  log?: (s: string) => void;
}

/** Files a finished run leaves in its directory (removed by --overwrite; anything else is kept). */
const RUN_FILES = ['model.safetensors', 'model.safetensors.index.json', 'config.json', 'generation_config.json', 'tokenizer.json', 'trainer_state.json', 'report.html'];

/**
 * Like the Hugging Face Trainer's overwrite_output_dir: a non-empty run directory is only used
 * to resume or when overwriting was asked for (old checkpoints must never be picked up later).
 */
export function prepareOut(o: { out: string; resume?: string; overwrite?: boolean }, log: (s: string) => void, runFiles: readonly string[] = RUN_FILES): void {
  const out = o.out;
  if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`--out ${out} exists and is not a directory`);
  const entries = existsSync(out) ? readdirSync(out) : [];
  if (o.resume && o.overwrite) throw new Error('--resume and --overwrite exclude each other (resume continues the run, overwrite starts it again)');
  if (entries.length === 0 || o.resume) return;
  if (!o.overwrite) throw new Error(`--out ${out} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}): pass --resume ${out} to continue that run or --overwrite to start again`);
  recoverRunDir(out, log);
  const cks = listCheckpoints(out);
  for (const c of cks) removeDirAtomic(join(out, `checkpoint-${c}`));
  for (const f of runFiles) rmSync(join(out, f), { force: true });
  if (cks.length) log(`--overwrite: removed ${cks.length} old checkpoint(s) from ${out}`);
}

export interface PretrainResult { out: string; state: TrainerState; params: number; tokens: { train: number; val: number }; final_eval: Record<string, number> | null; }

export function pretrain(o: PretrainOptions): PretrainResult {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const c = o.config, t = c.train, arch = o.arch ?? 'gpt2';
  const fam = modelFamily(arch, '--arch');
  checkObjective(c, arch, 'config');
  const masked = fam.kind === 'masked';
  prepareOut(o, log);
  // Tokenizer: a resumed run must reuse its own; otherwise load the given one or train one.
  let tok: Tokenizer;
  const resumeDir = o.resume ? resolveCheckpoint(o.resume, log) : null;
  mkdirSync(o.out, { recursive: true });
  // tokenizer.path: a directory (tokenizer.json, vocab.txt, vocab.json + merges.txt) or, for BPE, a tokenizer.json file.
  const fromPath = (p: string): Tokenizer => {
    if (existsSync(p) && statSync(p).isDirectory()) return loadTokenizer(p);
    if (masked) throw new Error(`config: tokenizer.path ${p} must be a tokenizer directory (tokenizer.json or vocab.txt) for --arch ${arch}`);
    return BPETokenizer.fromTokenizerJson(p);
  };
  if (!masked && c.tokenizer.lowercase !== undefined) throw new Error('config: tokenizer.lowercase applies to WordPiece (masked LMs) only');
  if (resumeDir) tok = masked ? loadTokenizer(resumeDir) : BPETokenizer.fromTokenizerJson(join(resumeDir, 'tokenizer.json'));
  else if (c.tokenizer.path) tok = fromPath(c.tokenizer.path);
  else if (masked) {
    // Masked families get a WordPiece vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK] by default).
    const vs = c.tokenizer.vocab_size ?? c.model.vocab_size;
    if (!vs) throw new Error('config: give tokenizer.path, or tokenizer.vocab_size to train one');
    const t0 = performance.now();
    tok = WordPieceTokenizer.train(o.data.map((f) => readFileSync(f, 'utf8')), { vocabSize: vs, specialTokens: c.tokenizer.special_tokens, minFrequency: c.tokenizer.min_frequency, lowercase: c.tokenizer.lowercase });
    log(`trained a WordPiece tokenizer: ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    const vs = c.tokenizer.vocab_size ?? c.model.vocab_size;
    if (!vs) throw new Error('config: give tokenizer.path, or tokenizer.vocab_size to train one');
    const t0 = performance.now();
    tok = BPETokenizer.train(o.data.map((f) => readFileSync(f, 'utf8')), { vocabSize: vs, specialTokens: c.tokenizer.special_tokens ?? ['<|endoftext|>'], minFrequency: c.tokenizer.min_frequency });
    log(`trained a byte-level BPE tokenizer: ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  // Role ids the family's config has keys for come from the tokenizer unless the config sets them.
  const keys = fam.modelKeys, roles: Record<string, number> = {};
  const eos = masked ? null : tok.eosTokenId ?? null;
  if ('bos_token_id' in keys) roles.bos_token_id = c.model.bos_token_id ?? tok.bosTokenId ?? eos ?? 0;
  if ('eos_token_id' in keys) roles.eos_token_id = c.model.eos_token_id ?? eos ?? 0;
  if ('pad_token_id' in keys && tok.padTokenId !== undefined) roles.pad_token_id = (c.model.pad_token_id as number | undefined) ?? tok.padTokenId;
  const model = createModel(arch, { ...c.model, ...roles, vocab_size: c.model.vocab_size ?? tok.vocabSize }, t.seed ?? 0, 'config: model');
  const V = model.vocabSize, P = model.maxPositions;
  if (V < tok.vocabSize) throw new Error(`config: model.vocab_size ${V} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
  // Shards hold the bare text tokens (no [CLS]/[SEP] per file); the cache key is the saved tokenizer.
  const tokJson = tokenizerKey(tok);
  const enc = { vocabSize: tok.vocabSize, encode: (s: string) => tok.encode(s, { addSpecialTokens: false }) };
  const shardDir = buildShards(o.data, enc, tokJson, join(o.out, 'tokens'), { eos, log });
  const file = new TokenFile(shardDir);
  const T = t.seq_len ?? P, B = t.batch_size ?? 8;
  if (T > P) throw new Error(`config: train.seq_len ${T} exceeds the model's ${P} positions`);
  const wrap = masked && tok.clsTokenId !== undefined && tok.sepTokenId !== undefined;
  const W = wrap ? T - 2 : T; // shard tokens per row
  if (W < 1) throw new Error(`config: train.seq_len ${T} leaves no room for text between [CLS] and [SEP]`);
  const valFrac = t.val_fraction ?? 0.05;
  const nVal = Math.max(W + 1, Math.floor(file.length * valFrac));
  if (file.length - nVal < W + 1) throw new Error(`not enough data: ${file.length} tokens for seq_len ${T} with a validation split of ${nVal}`);
  const seed = t.seed ?? 0;
  const loader = new WindowLoader(file, 0, file.length - nVal, W, seed);
  const valLoader = new WindowLoader(file, file.length - nVal, file.length, W, seed);
  const evalBatches = Math.min(t.eval_batches ?? 8, Math.ceil(valLoader.windows / B));
  const shape = fam.sizeKeys.map((k) => `${k}=${String((model.config as Record<string, unknown>)[k])}`).join(' ');
  log(`model: ${arch} ${shape} positions=${P} vocab=${V}: ${(model.numParameters() / 1e6).toFixed(2)}M parameters; data ${file.length - nVal} train / ${nVal} val tokens${masked ? `; MLM p=${t.mlm_probability ?? 0.15}${t.whole_word_mask ? ' whole-word' : ''}` : ''}`);
  const cfg: TrainConfig = {
    ...defaultTrainConfig,
    steps: t.steps ?? defaultTrainConfig.steps, lr: t.lr ?? defaultTrainConfig.lr,
    warmupSteps: t.warmup_steps ?? defaultTrainConfig.warmupSteps, schedule: t.schedule ?? 'cosine',
    minLrRatio: t.min_lr_ratio ?? 0.1, weightDecay: t.weight_decay ?? 0.1, betas: t.betas ?? [0.9, 0.95],
    gradClip: t.grad_clip ?? 1, gradAccum: t.grad_accum ?? 1, evalEvery: t.eval_every ?? 200,
    saveEvery: t.save_every ?? 500, saveTotalLimit: t.save_total_limit ?? 2, logEvery: t.log_every ?? 10, seed,
    precision: t.precision ?? defaultTrainConfig.precision,
  };
  const common = { model, tokenizer: tok, loader, valLoader, batchSize: B, evalBatches, train: cfg, out: o.out, resume: resumeDir ?? undefined, log };
  const state = masked
    ? trainMLM({ ...common, tokenizer: tok, wrap, mlmProbability: t.mlm_probability ?? 0.15, wholeWordMask: t.whole_word_mask ?? false })
    : trainLM(common);
  file.close();
  const fin = state.eval_history.length ? state.eval_history[state.eval_history.length - 1] : null;
  return { out: o.out, state, params: model.numParameters(), tokens: { train: file.length - nVal, val: nVal }, final_eval: fin };
}

/** The saved tokenizer's tokenizer.json (the token cache key). */
export function tokenizerKey(tok: Tokenizer): string {
  const withJson = tok as Tokenizer & { toTokenizerJson?: () => unknown };
  if (typeof withJson.toTokenizerJson === 'function') return JSON.stringify(withJson.toTokenizerJson());
  const d = mkdtempSync(join(tmpdir(), 'icld-tok-'));
  try { return readFileSync(tok.save(d), 'utf8'); } finally { rmSync(d, { recursive: true, force: true }); }
}

export interface TrainLMOptions {
  model: LanguageModel;
  tokenizer: { save(dir: string): unknown };
  loader: WindowLoader;
  valLoader?: WindowLoader;
  batchSize: number;
  evalBatches?: number;
  train: TrainConfig;
  out: string;
  resume?: string;
  log?: (s: string) => void;
}

/** Causal-LM training on token windows with the shared Trainer (used by pretrain and studies). */
export function trainLM(o: TrainLMOptions): TrainerState {
  const B = o.batchSize, T = o.loader.T, model = o.model, loader = o.loader;
  const ids = O.zeros([B, T], 'int32').keep(), tg = O.zeros([B, T], 'int32').keep();
  const trainer = new Trainer(model, o.train, {
    tokensPerStep: B * T * o.train.gradAccum,
    microStep: () => {
      loader.next(B, ids.i32, tg.i32);
      return O.crossEntropy(model.forward(ids), tg);
    },
    evaluate: o.valLoader ? () => evalLoss(model, o.valLoader!, B, o.evalBatches ?? 8) : undefined,
    saveModel: (dir) => { model.savePretrained(dir); o.tokenizer.save(dir); },
    getState: () => ({ loader: { ...loader.state }, dropout_rng: model.rng.getState() }),
    setState: (s) => {
      loader.state = checkPosition(s.loader, 'loader');
      model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
    },
  }, o.out, o.log);
  if (o.resume) trainer.resume(o.resume);
  const state = trainer.run();
  ids.dispose(); tg.dispose();
  return state;
}

/** Mean token loss over the first n batches of a loader's fixed epoch-0 order. */
function evalLoss(model: LanguageModel, loader: WindowLoader, B: number, n: number): Record<string, number> {
  const saved = { ...loader.state };
  loader.state = { epoch: 0, index: 0 };
  const T = loader.T;
  const ids = new Int32Array(B * T), tg = new Int32Array(B * T);
  let tot = 0;
  for (let i = 0; i < n; i++) {
    loader.next(B, ids, tg);
    tot += tidy(() => noGrad(() => O.crossEntropy(model.forward(O.fromData(ids, [B, T])), O.fromData(tg, [B, T])).item()));
  }
  loader.state = saved;
  const loss = tot / n;
  return { loss, ppl: Math.exp(loss) };
}


export interface TrainMLMOptions extends TrainLMOptions {
  tokenizer: Tokenizer;
  /** Rows are [CLS] + loader.T tokens + [SEP]; otherwise the bare windows. */
  wrap: boolean;
  mlmProbability: number;
  wholeWordMask: boolean;
}

/**
 * The MLM loss (mean cross-entropy over labels ≠ −100, as the model's own loss) with the LM head
 * applied only at the labelled positions: the hidden rows are gathered first, so the vocabulary
 * projection costs 15% of the full one (it is ~45% of a BERT-small step otherwise). Same value and
 * gradients as `model.loss(ids, labels)` up to float rounding. `labels` is [B·T] (−100 = ignored).
 */
export function mlmLoss(model: LanguageModel, ids: Tensor, labels: Int32Array, opts?: ForwardOptions): Tensor {
  const m = mlmLogits(model, ids, labels, opts);
  return O.crossEntropy(m.logits, m.targets);
}

/** Logits [n, V] at the n labelled positions (label ≠ −100) of ids [B, T], and their labels [n]. */
export function mlmLogits(model: LanguageModel, ids: Tensor, labels: Int32Array, opts?: ForwardOptions): { logits: Tensor; targets: Tensor } {
  const rows: number[] = [], tg: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i] !== IGNORE_INDEX) { rows.push(i); tg.push(labels[i]); }
  if (rows.length === 0) throw new Error('mlmLoss: no labelled position in the batch');
  return { logits: logitsAt(model, ids, rows, opts), targets: O.tensor(tg, [tg.length], 'int32') };
}

/** Seed of the masking Rng, apart from the dropout and data-order streams. */
const MASK_SEED_SALT = 0x6d6c6d; // 'mlm'

/** Fill rows [B, T] from the loader: [CLS] window [SEP] when wrapping. */
function fillRows(loader: WindowLoader, B: number, wrap: boolean, cls: number, sep: number, raw: Int32Array, scratch: Int32Array, rows: Int32Array): void {
  const W = loader.T, T = wrap ? W + 2 : W;
  loader.next(B, raw, scratch);
  if (!wrap) { rows.set(raw); return; }
  for (let b = 0; b < B; b++) {
    rows[b * T] = cls;
    rows.set(raw.subarray(b * W, (b + 1) * W), b * T + 1);
    rows[b * T + T - 1] = sep;
  }
}

/** A masked batch with at least one label, so the mean loss is defined even on tiny batches. */
function maskBatch(col: MlmCollator, rows: Int32Array, T: number, rng: Rng, ids: Int32Array, labels: Int32Array): void {
  if (col.apply(rows, T, rng, ids, labels) > 0) return;
  const i = rows.findIndex((id) => col.maskable(id));
  if (i < 0) throw new Error('masked-LM batch has no maskable token (only special tokens)');
  labels[i] = rows[i]; ids[i] = col.maskId;
}

/**
 * Masked-LM training with the shared Trainer: fresh masks every step from a checkpointed Rng;
 * validation uses the same masks at every evaluation (an Rng reseeded each time).
 */
export function trainMLM(o: TrainMLMOptions): TrainerState {
  const B = o.batchSize, W = o.loader.T, T = o.wrap ? W + 2 : W, model = o.model, loader = o.loader, tok = o.tokenizer;
  const cls = tok.clsTokenId ?? -1, sep = tok.sepTokenId ?? -1;
  const col = new MlmCollator(tok, { mlmProbability: o.mlmProbability, wholeWordMask: o.wholeWordMask });
  const maskRng = new Rng((o.train.seed ^ MASK_SEED_SALT) >>> 0);
  const raw = new Int32Array(B * W), scratch = new Int32Array(B * W), rows = new Int32Array(B * T);
  const ids = O.zeros([B, T], 'int32').keep(), labels = O.zeros([B, T], 'int32').keep();
  const evaluate = (vl: WindowLoader): Record<string, number> => {
    const saved = { ...vl.state };
    vl.state = { epoch: 0, index: 0 };
    const rng = new Rng((o.train.seed ^ MASK_SEED_SALT ^ 0x5eed) >>> 0);
    const vi = new Int32Array(B * T), vlab = new Int32Array(B * T), vr = new Int32Array(B * W), vs = new Int32Array(B * W), vrows = new Int32Array(B * T);
    const n = o.evalBatches ?? 8;
    let tot = 0;
    for (let i = 0; i < n; i++) {
      fillRows(vl, B, o.wrap, cls, sep, vr, vs, vrows);
      maskBatch(col, vrows, T, rng, vi, vlab);
      tot += tidy(() => noGrad(() => mlmLoss(model, O.fromData(vi, [B, T]), vlab).item()));
    }
    vl.state = saved;
    const loss = tot / n;
    return { loss, ppl: Math.exp(loss) };
  };
  const trainer = new Trainer(model, o.train, {
    tokensPerStep: B * T * o.train.gradAccum,
    microStep: () => {
      fillRows(loader, B, o.wrap, cls, sep, raw, scratch, rows);
      maskBatch(col, rows, T, maskRng, ids.i32, labels.i32);
      return mlmLoss(model, ids, labels.i32);
    },
    evaluate: o.valLoader ? () => evaluate(o.valLoader!) : undefined,
    saveModel: (dir) => { model.savePretrained(dir); tok.save(dir); },
    getState: () => ({ loader: { ...loader.state }, dropout_rng: model.rng.getState(), mask_rng: maskRng.getState() }),
    setState: (s) => {
      loader.state = checkPosition(s.loader, 'loader');
      model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
      maskRng.setState(checkRngState(s.mask_rng, 'mask_rng'));
    },
  }, o.out, o.log);
  if (o.resume) trainer.resume(o.resume);
  const state = trainer.run();
  ids.dispose(); labels.dispose();
  return state;
}

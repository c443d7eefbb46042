// Pretraining pipeline: tokenizer (load or train) → cached token shards → train/val split →
// GPT-2 → the shared Trainer. Config is one JSON file with "model", "tokenizer" and "train".

import { existsSync, readFileSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as O from '../engine/ops.js';
import { tidy, noGrad } from '../engine/index.js';
import { createModel, modelConfig, modelFamily, type LanguageModel } from '../models/index.js';
import { BPETokenizer } from '../tokenizers/bpe.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { Trainer, checkPosition, checkRngState, defaultTrainConfig, listCheckpoints, recoverRunDir, resolveCheckpoint, type TrainConfig, type TrainerState } from './trainer.js';
import { removeDirAtomic } from '../io/atomic.js';
import { readJsonFile, checkSchema, type Schema } from '../io/json.js';

export interface PretrainConfig {
  model: Record<string, unknown> & { vocab_size?: number; bos_token_id?: number | null; eos_token_id?: number | null };
  tokenizer: { path?: string; vocab_size?: number; special_tokens?: string[]; min_frequency?: number };
  train: {
    steps?: number; batch_size?: number; seq_len?: number; lr?: number; warmup_steps?: number;
    schedule?: 'cosine' | 'linear' | 'constant'; min_lr_ratio?: number; weight_decay?: number;
    betas?: [number, number]; grad_clip?: number; grad_accum?: number; eval_every?: number; eval_batches?: number;
    save_every?: number; save_total_limit?: number; log_every?: number; seed?: number; val_fraction?: number;
  };
}

const nonNegInt: Schema = { t: 'int', min: 0 };
const posInt: Schema = { t: 'int', min: 1 };

/** Every key a pretraining config may hold, with its type and range. */
const PRETRAIN_SCHEMA: Schema = {
  t: 'object', required: ['model', 'train'],
  keys: {
    model: { t: 'object', keys: { ...modelFamily('gpt2').modelKeys } },
    tokenizer: {
      t: 'object', keys: {
        path: { t: 'string', nonEmpty: true },
        vocab_size: { t: 'int', min: 257, max: 4_194_304 },
        special_tokens: { t: 'array', of: { t: 'string', nonEmpty: true }, unique: true },
        min_frequency: nonNegInt,
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
      },
    },
  },
};

/**
 * Read and check a pretraining config: every section and key known (a typo names the closest
 * valid key), types and ranges right, "model" and "train" present. One-line errors naming the file.
 */
export function readPretrainConfig(path: string): PretrainConfig {
  const c = readJsonFile(path, 'config file', 16 << 20);
  checkSchema(c, PRETRAIN_SCHEMA, path, '');
  const cfg = c as PretrainConfig;
  cfg.tokenizer ??= {};
  const m = cfg.model;
  // The family's own checks (head divisibility, token ids, tensor sizes); vocab_size may come from the tokenizer later.
  const { bos_token_id: _b, eos_token_id: _e, ...shape } = m;
  modelConfig('gpt2', { ...shape, vocab_size: m.vocab_size ?? 257 }, path, 'model.');
  return cfg;
}

export interface PretrainOptions {
  config: PretrainConfig; data: string[]; out: string; resume?: string;
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
function prepareOut(o: PretrainOptions, log: (s: string) => void): void {
  const out = o.out;
  if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`--out ${out} exists and is not a directory`);
  const entries = existsSync(out) ? readdirSync(out) : [];
  if (o.resume && o.overwrite) throw new Error('--resume and --overwrite exclude each other (resume continues the run, overwrite starts it again)');
  if (entries.length === 0 || o.resume) return;
  if (!o.overwrite) throw new Error(`--out ${out} is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}): pass --resume ${out} to continue that run or --overwrite to start again`);
  recoverRunDir(out, log);
  const cks = listCheckpoints(out);
  for (const c of cks) removeDirAtomic(join(out, `checkpoint-${c}`));
  for (const f of RUN_FILES) rmSync(join(out, f), { force: true });
  if (cks.length) log(`--overwrite: removed ${cks.length} old checkpoint(s) from ${out}`);
}

export interface PretrainResult { out: string; state: TrainerState; params: number; tokens: { train: number; val: number }; final_eval: Record<string, number> | null; }

export function pretrain(o: PretrainOptions): PretrainResult {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const c = o.config, t = c.train;
  prepareOut(o, log);
  // Tokenizer: a resumed run must reuse its own; otherwise load the given one or train one.
  let tok: BPETokenizer;
  const resumeDir = o.resume ? resolveCheckpoint(o.resume, log) : null;
  mkdirSync(o.out, { recursive: true });
  if (resumeDir) tok = BPETokenizer.fromTokenizerJson(join(resumeDir, 'tokenizer.json'));
  else if (c.tokenizer.path) tok = BPETokenizer.fromTokenizerJson(c.tokenizer.path);
  else {
    const vs = c.tokenizer.vocab_size ?? c.model.vocab_size;
    if (!vs) throw new Error('config: give tokenizer.path, or tokenizer.vocab_size to train one');
    const t0 = performance.now();
    tok = BPETokenizer.train(o.data.map((f) => readFileSync(f, 'utf8')), { vocabSize: vs, specialTokens: c.tokenizer.special_tokens ?? ['<|endoftext|>'], minFrequency: c.tokenizer.min_frequency });
    log(`trained a byte-level BPE tokenizer: ${tok.vocabSize} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const eos = tok.eosTokenId ?? null;
  const model = createModel('gpt2', {
    ...c.model,
    vocab_size: c.model.vocab_size ?? tok.vocabSize,
    bos_token_id: c.model.bos_token_id ?? eos ?? 0,
    eos_token_id: c.model.eos_token_id ?? eos ?? 0,
  }, t.seed ?? 0, 'config: model');
  const mcfg = { ...model.config, vocab_size: model.vocabSize, n_positions: model.maxPositions } as unknown as Record<string, number>;
  if (mcfg.vocab_size < tok.vocabSize) throw new Error(`config: model.vocab_size ${mcfg.vocab_size} is smaller than the tokenizer's ${tok.vocabSize} tokens`);
  const tokJson = JSON.stringify(tok.toTokenizerJson());
  const shardDir = buildShards(o.data, tok, tokJson, join(o.out, 'tokens'), { eos, log });
  const file = new TokenFile(shardDir);
  const T = t.seq_len ?? mcfg.n_positions, B = t.batch_size ?? 8;
  if (T > mcfg.n_positions) throw new Error(`config: train.seq_len ${T} exceeds model.n_positions ${mcfg.n_positions}`);
  const valFrac = t.val_fraction ?? 0.05;
  const nVal = Math.max(T + 1, Math.floor(file.length * valFrac));
  if (file.length - nVal < T + 1) throw new Error(`not enough data: ${file.length} tokens for seq_len ${T} with a validation split of ${nVal}`);
  const seed = t.seed ?? 0;
  const loader = new WindowLoader(file, 0, file.length - nVal, T, seed);
  const valLoader = new WindowLoader(file, file.length - nVal, file.length, T, seed);
  const evalBatches = Math.min(t.eval_batches ?? 8, Math.ceil(valLoader.windows / B));
  log(`model: GPT-2 d=${mcfg.n_embd} L=${mcfg.n_layer} H=${mcfg.n_head} ctx=${mcfg.n_positions} vocab=${mcfg.vocab_size}: ${(model.numParameters() / 1e6).toFixed(2)}M parameters; data ${file.length - nVal} train / ${nVal} val tokens`);
  const cfg: TrainConfig = {
    ...defaultTrainConfig,
    steps: t.steps ?? defaultTrainConfig.steps, lr: t.lr ?? defaultTrainConfig.lr,
    warmupSteps: t.warmup_steps ?? defaultTrainConfig.warmupSteps, schedule: t.schedule ?? 'cosine',
    minLrRatio: t.min_lr_ratio ?? 0.1, weightDecay: t.weight_decay ?? 0.1, betas: t.betas ?? [0.9, 0.95],
    gradClip: t.grad_clip ?? 1, gradAccum: t.grad_accum ?? 1, evalEvery: t.eval_every ?? 200,
    saveEvery: t.save_every ?? 500, saveTotalLimit: t.save_total_limit ?? 2, logEvery: t.log_every ?? 10, seed,
  };
  const state = trainLM({ model, tokenizer: tok, loader, valLoader, batchSize: B, evalBatches, train: cfg, out: o.out, resume: resumeDir ?? undefined, log });
  file.close();
  const fin = state.eval_history.length ? state.eval_history[state.eval_history.length - 1] : null;
  return { out: o.out, state, params: model.numParameters(), tokens: { train: file.length - nVal, val: nVal }, final_eval: fin };
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


// Base models of a study: a checkpoint the user brings (only ever read), or one built under
// --out — freshly initialised, or pretrained here with trainLM on the config's LM text
// ("pretrain"), so the cpu-* studies start from models our own pipeline trained.

import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createModel, loadModel, modelFamily, type LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import { readLmText } from '../data/text.js';
import { tokenizerKey, trainLM, trainMLM } from '../train/pretrain.js';
import { defaultTrainConfig, listCheckpoints, readTrainerState } from '../train/trainer.js';
import { publishDir, removeDirAtomic, tempSibling, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';

export interface BasePretrain {
  /** LM text (.txt, or .jsonl with {"text"}), resolved relative to the config. */
  files: string[];
  max_bytes?: number;
  steps: number;
  batch_size: number;
  seq_len: number;
  lr: number;
  warmup_steps?: number;
  /** Masked LMs: the share of tokens chosen for MLM (default 0.15) and whole-word masking. */
  mlm_probability?: number;
  whole_word_mask?: boolean;
}

export interface BaseSpec { path?: string; model?: Record<string, unknown>; pretrain?: BasePretrain }

const HINT: Record<'teacher' | 'student', string> = {
  teacher: 'a Hugging Face checkpoint of the study\'s arch (e.g. gpt2-large, or bert-large-cased for LAMA)',
  student: 'a Hugging Face checkpoint of the study\'s arch (e.g. gpt2, or bert-base-cased for LAMA)',
};

/**
 * A user's model directory must exist with a config.json; otherwise one line naming it and what
 * to put there (no download happens at run time).
 */
export function checkUserModel(who: 'teacher' | 'student', dir: string): void {
  const what = `put ${HINT[who]} there, saved with save_pretrained(safe_serialization=True) (config.json, model.safetensors) plus its tokenizer (tokenizer.json or vocab.txt)`;
  if (!existsSync(dir)) throw new Error(`${who}.path ${dir} does not exist: ${what}`);
  if (!statSync(dir).isDirectory()) throw new Error(`${who}.path ${dir} is not a directory: ${what}`);
  if (!existsSync(join(dir, 'config.json'))) throw new Error(`${who}.path ${dir} has no config.json: ${what}`);
}

export interface EnsureBaseOptions {
  who: 'teacher' | 'student';
  spec: BaseSpec;
  out: string;
  tok: Tokenizer;
  /** model_type of a fresh base. */
  arch: string;
  seed: number;
  log: (s: string) => void;
}

/**
 * The base model's directory: spec.path as given, else OUT/<who>-base, built once and published
 * in one rename (it exists only when complete). With spec.pretrain the model is first trained
 * with trainLM in OUT/<who>-pretrain, which a killed study resumes from its last checkpoint.
 */
export function ensureBase(o: EnsureBaseOptions): string {
  const { who, spec, out, tok, log } = o;
  if (spec.path) { checkUserModel(who, spec.path); return spec.path; }
  const dir = join(out, `${who}-base`);
  if (existsSync(dir)) return dir;
  mkdirSync(out, { recursive: true });
  const fam = modelFamily(o.arch);
  const masked = fam.kind === 'masked';
  const eos = masked ? null : tok.eosTokenId ?? 0;
  // Role ids the family has config keys for come from the tokenizer.
  const roles: Record<string, number> = {};
  if ('bos_token_id' in fam.modelKeys && eos !== null) roles.bos_token_id = eos;
  if ('eos_token_id' in fam.modelKeys && eos !== null) roles.eos_token_id = eos;
  if ('pad_token_id' in fam.modelKeys && tok.padTokenId !== undefined) roles.pad_token_id = tok.padTokenId;
  const noDropout = Object.fromEntries(fam.dropoutKeys.map((k) => [k, 0]));
  const m = createModel(o.arch, { ...noDropout, ...spec.model, ...roles, vocab_size: tok.vocabSize }, o.seed, `study config: ${who}.model`);
  let summary: object | null = null;
  const p = spec.pretrain;
  if (p) {
    const T = p.seq_len;
    if (T > m.maxPositions) throw new Error(`study config: ${who}.pretrain.seq_len ${T} exceeds ${who}.model.n_positions ${m.maxPositions}`);
    // The text is written once (the config cannot change under a study directory), then tokenised into a cache.
    const textFile = join(out, `${who}-pretrain.txt`);
    if (!existsSync(textFile)) {
      let text = p.files.map((f) => readLmText(f)).join('\n\n');
      if (p.max_bytes) text = text.slice(0, p.max_bytes);
      if (!text.trim()) throw new Error(`study config: ${who}.pretrain.files give no text`);
      writeFileAtomic(textFile, text);
    }
    const enc = { vocabSize: tok.vocabSize, encode: (s: string) => tok.encode(s, { addSpecialTokens: false }) };
    const shard = new TokenFile(buildShards([textFile], enc, tokenizerKey(tok), join(out, `${who}-pretrain-tokens`), { eos }));
    // A masked LM trains on [CLS] window [SEP] rows (as `icld pretrain --arch bert`).
    const wrap = masked && tok.clsTokenId !== undefined && tok.sepTokenId !== undefined;
    const W = wrap ? T - 2 : T;
    try {
      if (W < 1) throw new Error(`study config: ${who}.pretrain.seq_len ${T} leaves no room for text between [CLS] and [SEP]`);
      if (shard.length < W + 1) throw new Error(`study config: ${who}.pretrain.files give ${shard.length} tokens, fewer than seq_len ${W} + 1`);
      const runDir = join(out, `${who}-pretrain`);
      const statePath = join(runDir, 'trainer_state.json');
      const finished = existsSync(statePath) && existsSync(join(runDir, 'config.json')) && readTrainerState(statePath).global_step === p.steps;
      let model = m;
      if (finished) { m.dispose(); model = loadModel(runDir); }
      else {
        const resume = existsSync(runDir) && listCheckpoints(runDir).length > 0 ? runDir : undefined;
        if (!resume && existsSync(runDir)) removeDirAtomic(runDir); // killed before its first checkpoint: start again
        log(`${who}: ${(m.numParameters() / 1e6).toFixed(2)}M parameters, pretraining ${p.steps} steps on ${shard.length} tokens${resume ? ' (resuming)' : ''}`);
        const common = {
          model: m, tokenizer: tok, loader: new WindowLoader(shard, 0, shard.length, W, o.seed), batchSize: p.batch_size, out: runDir, resume, log,
          train: { ...defaultTrainConfig, steps: p.steps, lr: p.lr, warmupSteps: p.warmup_steps ?? Math.min(100, Math.floor(p.steps / 10)), schedule: 'cosine' as const,
            evalEvery: 0, saveEvery: Math.max(50, Math.ceil(p.steps / 5)), saveTotalLimit: 1, logEvery: Math.max(1, Math.min(100, Math.floor(p.steps / 20))), seed: o.seed },
        };
        if (masked) trainMLM({ ...common, wrap, mlmProbability: p.mlm_probability ?? 0.15, wholeWordMask: p.whole_word_mask ?? false });
        else trainLM(common);
      }
      const st = readTrainerState(statePath);
      const last = st.log_history.slice(-5);
      summary = { steps: st.global_step, tokens: shard.length, final_loss: last.length ? +(last.reduce((s, e) => s + e.loss, 0) / last.length).toFixed(4) : null, elapsed_s: +st.elapsed_s.toFixed(1) };
      publish(model, tok, dir, summary);
      model.dispose();
      removeDirAtomic(runDir); // the published base holds the result
      log(`${who}: pretrained base → ${dir} (${JSON.stringify(summary)})`);
      return dir;
    } finally { shard.close(); }
  }
  publish(m, tok, dir, summary);
  m.dispose();
  return dir;
}

function publish(m: LanguageModel, tok: Tokenizer, dir: string, summary: object | null): void {
  const tmp = tempSibling(dir);
  m.savePretrained(tmp); tok.save(tmp);
  if (summary) writeJsonAtomic(join(tmp, 'pretrain.json'), summary);
  publishDir(tmp, dir);
}

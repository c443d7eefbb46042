// `icld distill`: one student trained with ICL-D from a user's teacher and student directories,
// through the study's own path: instances from IctSampler over episodePools, an optional teacher
// cache (TeacherCache), and trainDistill (the one Trainer: progress, checkpoints, --resume).
// The output directory is a loadable model directory (weights + tokenizer.json).

import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readJsonFile } from '../io/json.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { loadModel, assertTrainableDir } from '../models/index.js';
import { BPETokenizer } from '../tokenizers/index.js';
import { buildShards, TokenFile, WindowLoader } from '../data/shards.js';
import type { Method } from '../data/prompts.js';
import { episodePools, IctSampler, type Setting } from '../icl/ict.js';
import { trainDistill } from './distill.js';
import { TeacherCache } from './cache.js';
import type { KLMode } from './loss.js';

export interface DistillRunOptions {
  teacher: string;
  student: string;
  taskDir: string;
  /** Tasks the instances come from (meta: training tasks; multitask: the target tasks). */
  tasks: string[];
  setting: Setting;
  k: number;
  method: Method;
  /** Multitask: whose k-shot train files form the data. */
  seeds: number[];
  dedupe: boolean;
  /** Instances sampled once (the teacher cache covers them), trained for `epochs`. */
  instances: number;
  epochs: number;
  batchSize: number;
  lr: number;
  warmup: number;
  seed: number;
  saveEvery: number;
  alphaStart: number;
  alphaEnd: number;
  temperature: number;
  kl: KLMode;
  topK: number;
  beta: number;
  lmData?: string[];
  lmSeqLen: number;
  lmBatchSize: number;
  teacherCache?: string;
  out: string;
  resume?: string;
  log?: (s: string) => void;
}

export interface DistillRunSummary {
  out: string; steps: number; instances: number; epochs: number; tasks: number; examples: number;
  teacher_params: number; student_params: number; final_loss: number | null; teacher_cache: string | null; elapsed_s: number;
}

type TokJson = { model?: { vocab?: Record<string, number>; merges?: unknown[] }; added_tokens?: { id: number; content: string }[] };

/**
 * Teacher and student must read text the same way: same vocabulary, merges and added tokens in
 * their tokenizer.json files. Returns the tokenizer; otherwise a one-line error naming both dirs.
 */
export function checkSameTokenizer(teacherDir: string, studentDir: string): BPETokenizer {
  const read = (dir: string, who: string): TokJson => {
    const p = join(dir, 'tokenizer.json');
    if (!existsSync(p)) throw new Error(`--${who} ${dir} has no tokenizer.json (a model directory needs its tokenizer)`);
    return readJsonFile(p, 'tokenizer') as TokJson;
  };
  const t = read(teacherDir, 'teacher'), s = read(studentDir, 'student');
  const differ = (what: string): never => { throw new Error(`teacher ${teacherDir} and student ${studentDir} do not share a tokenizer: ${what}`); };
  const tv = t.model?.vocab ?? {}, sv = s.model?.vocab ?? {};
  const tn = Object.keys(tv).length, sn = Object.keys(sv).length;
  if (tn !== sn) differ(`vocabularies of ${tn} and ${sn} tokens`);
  for (const [tok, id] of Object.entries(tv)) if (sv[tok] !== id) differ(`token ${JSON.stringify(tok)} has id ${id} in the teacher's, ${sv[tok] ?? 'none'} in the student's`);
  const merge = (m: unknown): string => (Array.isArray(m) ? m.join(' ') : String(m));
  const tm = (t.model?.merges ?? []).map(merge), sm = (s.model?.merges ?? []).map(merge);
  if (tm.length !== sm.length) differ(`${tm.length} and ${sm.length} merges`);
  const i = tm.findIndex((m, j) => m !== sm[j]);
  if (i >= 0) differ(`merge #${i} is ${JSON.stringify(tm[i])} in the teacher's, ${JSON.stringify(sm[i])} in the student's`);
  const added = (x: TokJson): string => JSON.stringify((x.added_tokens ?? []).map((a) => [a.id, a.content]));
  if (added(t) !== added(s)) differ(`added tokens ${added(t)} vs ${added(s)}`);
  return BPETokenizer.fromTokenizerJson(join(studentDir, 'tokenizer.json'));
}

export function runDistill(o: DistillRunOptions): DistillRunSummary {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  if (o.kl === 'options' && o.method === 'channel') throw new Error('--kl options needs direct instances (a channel instance\'s answer is the input text, not an option); use --kl full');
  if (o.beta > 0 && !o.lmData?.length) throw new Error('--beta > 0 needs --lm-data FILE… (the text of the LM term)');
  // The user's models are only read; a finished or interrupted run in --out is only continued (--resume).
  for (const [who, dir] of [['teacher', o.teacher], ['student', o.student]]) if (resolve(dir) === resolve(o.out)) throw new Error(`--out ${o.out} is the ${who} directory; give a new directory (the ${who} is only read)`);
  if (!o.resume && existsSync(o.out) && readdirSync(o.out).some((f) => f === 'trainer_state.json' || /^checkpoint-\d+$/.test(f))) {
    throw new Error(`--out ${o.out} already holds a training run; continue it with --resume ${o.out}, or give a new --out`);
  }
  const tok = checkSameTokenizer(o.teacher, o.student);
  assertTrainableDir(o.student);
  const teacher = loadModel(o.teacher), student = loadModel(o.student);
  if (teacher.vocabSize !== student.vocabSize) throw new Error(`teacher ${o.teacher} has vocab_size ${teacher.vocabSize}, student ${o.student} has ${student.vocabSize}: distillation matches them token by token`);
  if (student.vocabSize < tok.vocabSize) throw new Error(`${o.student}: vocab_size ${student.vocabSize} is smaller than its tokenizer's ${tok.vocabSize} tokens`);
  // Instances as the study samples them: a fixed list (so a teacher cache and --resume see the same data).
  const pools = episodePools(o.taskDir, o.tasks, o.setting, o.k, o.seeds, o.dedupe);
  const examples = [...pools.values()].reduce((s, p) => s + p.length, 0);
  const sampler = new IctSampler(tok, { pools, k: o.k, demos: true, method: o.method, maxLength: Math.min(teacher.maxPositions, student.maxPositions), seed: o.seed });
  const instances = Array.from({ length: o.instances }, () => sampler.next());
  log(`ICL-D (${o.setting === 'meta' ? 'Meta' : 'Multitask'}-ICT, k=${o.k}, ${o.method}): ${o.tasks.length} task(s), ${examples} examples, ${o.instances} instances; teacher ${(teacher.numParameters() / 1e6).toFixed(2)}M, student ${(student.numParameters() / 1e6).toFixed(2)}M parameters`);
  const pad = tok.eosTokenId ?? 0;
  const cache = o.teacherCache ? TeacherCache.ensure(o.teacherCache, teacher, instances, { tau: o.temperature, topK: o.topK, pad, log }) : undefined;
  mkdirSync(o.out, { recursive: true });
  let lm: { loader: WindowLoader; batchSize: number } | undefined;
  if (o.beta > 0) {
    const shard = new TokenFile(buildShards(o.lmData!, tok, JSON.stringify(tok.toTokenizerJson()), join(o.out, 'lm-tokens'), { eos: tok.eosTokenId ?? null, log }));
    lm = { loader: new WindowLoader(shard, 0, shard.length, Math.min(o.lmSeqLen, student.maxPositions), o.seed), batchSize: o.lmBatchSize };
  }
  writeJsonAtomic(join(o.out, 'distill_run.json'), {
    teacher: o.teacher, student: o.student, task_dir: o.taskDir, tasks: o.tasks, setting: o.setting, k: o.k, method: o.method, seeds: o.seeds, instances: o.instances, teacher_cache: o.teacherCache ?? null,
  });
  const st = trainDistill({
    student, tokenizer: tok, instances, epochs: o.epochs, batchSize: o.batchSize, teacher, cache, lm, objective: 'ict', out: o.out, resume: o.resume, log,
    distill: { alpha: o.alphaStart, alphaEnd: o.alphaEnd, alphaSchedule: o.alphaStart === o.alphaEnd ? 'constant' : 'linear', temperature: o.temperature, kl: o.kl, topK: o.topK, beta: o.beta },
    train: { lr: o.lr, warmupSteps: o.warmup, seed: o.seed, saveEvery: o.saveEvery, logEvery: 10 },
  });
  const last = st.log_history[st.log_history.length - 1];
  return {
    out: o.out, steps: st.global_step, instances: o.instances, epochs: o.epochs, tasks: o.tasks.length, examples,
    teacher_params: teacher.numParameters(), student_params: student.numParameters(), final_loss: last ? +last.loss.toFixed(5) : null,
    teacher_cache: o.teacherCache ?? null, elapsed_s: +st.elapsed_s.toFixed(1),
  };
}

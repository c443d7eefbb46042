// `icld icl eval` and `icld ict train`: thin wrappers over src/icl.

import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadLM } from './load.js';
import { assertTrainableDir } from '../models/index.js';
import { UsageError } from './args.js';
import { evaluateIcl, fmtMetrics, type Prediction } from '../icl/evaluate.js';
import { writeIclReport, iclJson } from '../icl/report.js';
import { availableTasks, loadSplit } from '../data/tasks.js';
import { BPETokenizer } from '../tokenizers/index.js';

export const defaultTaskDir = (): string => fileURLToPath(new URL('../../../data/tasks/crossfit', import.meta.url));

/** Tasks from --tasks or a split's test (or train) list, keeping only those present in the task dir. */
export function resolveTasks(taskDir: string, tasks: string[] | undefined, split: string | undefined, which: 'train' | 'test', log: (s: string) => void, tasksFlag = '--tasks'): string[] {
  if (tasks && split) throw new UsageError(`give either ${tasksFlag} or --split, not both`);
  if (tasks) {
    const { missing } = availableTasks(taskDir, tasks);
    if (missing.length) throw new Error(`task(s) not found under ${taskDir}: ${missing.join(', ')}`);
    return tasks;
  }
  if (!split) throw new UsageError(`give ${tasksFlag} T… or --split NAME`);
  const s = loadSplit(taskDir, split);
  const { present, missing } = availableTasks(taskDir, s[which]);
  if (missing.length) log(`split ${split}: ${missing.length} ${which} task(s) not in ${taskDir}, skipped: ${missing.join(', ')}`);
  if (present.length === 0) throw new Error(`split ${split}: none of its ${which} tasks are in ${taskDir}`);
  return present;
}

export interface IclEvalArgs {
  /** A PEFT adapter directory on top of the model (--adapter). */
  adapter?: string;
  model: string | undefined; tasks?: string[]; split?: string; taskDir?: string; k: number; seeds: number[]; method: string;
  json: boolean; report?: string; predictions?: string; calibrate: boolean; meanPerToken: boolean; orders: number;
  sampleDemos: boolean; testLimit?: number; batchSize?: number; instruction?: string; maxNewTokens?: number;
  /** Write every scored sequence (JSON lines) for scoring the same prompts elsewhere (deploy/gpu/eval_student.py). */
  items?: string;
}

/**
 * One bad task never aborts the sweep: it is named on stderr and in the JSON `errors`, the other
 * tasks are evaluated, and predictions/report/JSON of the finished ones are written before the
 * command fails (exit 1). Predictions are rewritten atomically after each task.
 */
export function iclEvalCommand(a: IclEvalArgs): void {
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  if (a.method !== 'direct' && a.method !== 'channel') throw new Error(`--method must be direct or channel, got '${a.method}'`);
  const taskDir = a.taskDir ?? defaultTaskDir();
  const tasks = resolveTasks(taskDir, a.tasks, a.split, 'test', log);
  const { model, tokenizer } = loadLM(a.model, a.adapter);
  if (a.predictions) mkdirSync(dirname(a.predictions), { recursive: true });
  if (a.items) mkdirSync(dirname(a.items), { recursive: true });
  const itemLines: string[] = [];
  let pendingItems: string[] = [];
  const done: string[] = [];
  let pending: string[] = [];
  const t0 = performance.now();
  const r = evaluateIcl({
    model, tokenizer, taskDir, tasks, k: a.k, seeds: a.seeds, method: a.method, calibrate: a.calibrate, meanPerToken: a.meanPerToken,
    orders: a.orders, sampleDemos: a.sampleDemos, testLimit: a.testLimit, batchSize: a.batchSize, maxNewTokens: a.maxNewTokens,
    template: a.instruction ? { instruction: a.instruction } : undefined, log, continueOnError: true,
    onPrediction: a.predictions ? (p: Prediction) => { pending.push(JSON.stringify(p) + '\n'); } : undefined,
    // One line per scored sequence: the score is log P(input_ids[cont_start:] | input_ids[:cont_start]).
    onScoreItems: a.items ? (task, seed, xs) => {
      for (const x of xs) {
        pendingItems.push(JSON.stringify({ task, seed, example: x.example, option: x.option, order: x.order, calib: x.calib, gold: x.gold,
          input_ids: x.item.prefix.concat(x.item.suffix), cont_start: x.item.prefix.length + x.item.contStart }) + '\n');
      }
    } : undefined,
    onTaskDone: (task, err) => {
      // A failed task's partial predictions are dropped: only finished tasks are reported.
      if (err) { if (tasks.length > 1) log(`icl eval: task ${task} failed: ${err.message.replace(/\s*\n\s*/g, ' ')}`); } else { done.push(...pending); itemLines.push(...pendingItems); }
      pending = []; pendingItems = [];
      if (a.predictions) writeFileAtomic(a.predictions, done.join(''));
      if (a.items) writeFileAtomic(a.items, itemLines.join(''));
    },
  });
  const finished = Object.keys(r.tasks).length;
  if (finished > 0) {
    log(`evaluated ${finished} task(s) × ${a.seeds.length} seed(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const trunc = Object.entries(r.tasks).filter(([, t]) => t.truncated > 0);
    if (trunc.length) log(`truncated prompts (demonstrations shortened or dropped to fit ${model.config.n_positions} tokens): ${trunc.map(([n, t]) => `${n} ${t.truncated}/${t.examples}`).join(', ')}`);
    if (a.report) log(`report: ${writeIclReport(a.report, r)}`);
    if (a.json) console.log(JSON.stringify(iclJson(r)));
    else {
      for (const [t, v] of Object.entries(r.tasks)) console.log(`${t.padEnd(36)} ${fmtMetrics(v.mean)}`);
      console.log(`${'average'.padEnd(36)} ${fmtMetrics(r.average)}`);
    }
  }
  if (r.errors.length === 1 && tasks.length === 1) throw new Error(`task ${r.errors[0].task}: ${r.errors[0].error}`);
  if (r.errors.length) {
    throw new Error(`${r.errors.length} of ${tasks.length} task(s) failed (${r.errors.map((e) => e.task).join(', ')})${finished ? '; the other tasks\' results are written' : ''}`);
  }
}

export function parseSeeds(v: string[] | undefined): number[] {
  const s = (v ?? ['100', '13', '21', '42', '87']).flatMap((x) => x.split(',')).filter(Boolean).map(Number);
  if (s.length === 0 || s.some((x) => !Number.isInteger(x))) throw new UsageError(`--seeds must be integers, got ${JSON.stringify(v)}`);
  return s;
}


export interface IctExportArgs {
  /** A study config: its teacher stage's ICT data (tasks, k, method, template, seed 1, ict.steps × batch_size instances). */
  config?: string; full?: boolean;
  model?: string; setting?: string; split?: string; trainTasks?: string[]; taskDir?: string; k?: number; seeds: number[];
  method?: string; noDemos: boolean; dedupe: boolean; instances?: number; seed?: number; out: string;
}

export interface IctExportSummary {
  out: string; instances: number; tasks: number; examples: number; tokens: number; answer_tokens: number; max_length: number;
  /** From --config: the teacher's base and its teacher.ict (what train_teacher.py should be run with). */
  base?: string; ict?: { steps: number; lr: number; batch_size: number; warmup_steps: number } | null;
}

/**
 * `icld ict export`: the first N instances `icld ict train` with the same flags would train on
 * (same pools, sampler, seed and truncation to the model's n_positions), or with --config those
 * of a study's teacher stage, one JSON line each in Hugging Face's causal-LM form
 * {"task", "input_ids", "labels"}, for tuning the teacher with PyTorch elsewhere
 * (deploy/gpu/train_teacher.py). Only the tokenizer and the model's config.json are read.
 */
export async function ictExportCommand(a: IctExportArgs): Promise<IctExportSummary> {
  const { episodePools, IctSampler, hfCausalExample } = await import('../icl/ict.js');
  const { loadTokenizer } = await import('../tokenizers/index.js');
  const { readFileSync, existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  let setting: string, method: string, k: number, seed: number, dedupe: boolean, instances: number | undefined, taskDir: string, tasks: string[];
  let modelDir: string | undefined, tokPath: string | undefined, template: Record<string, string> | undefined, ict: IctExportSummary['ict'];
  if (a.config) {
    const given = ([['--setting', a.setting], ['--split', a.split], ['--train-tasks', a.trainTasks], ['--task-dir', a.taskDir], ['--k', a.k], ['--method', a.method], ['--seed', a.seed]] as const)
      .filter(([, v]) => v !== undefined).map(([f]) => f);
    if (given.length || a.noDemos || !a.dedupe) throw new UsageError(`--config takes the tasks, k, method and seed from the study; drop ${[...given, ...(a.noDemos ? ['--no-demos'] : []), ...(!a.dedupe ? ['--no-dedupe'] : [])].join(', ')}`);
    const { readStudyConfig } = await import('../distill/study-config.js');
    const c = readStudyConfig(a.config, !!a.full);
    const why = c.tasks.lama ? 'a LAMA study tunes masked-LM instances'
      : c.tasks.synthetic ? 'its synthetic tasks are made by the study under its --out (a GPU teacher is for task-folder studies such as the paper-* configs)'
        : c.setting === 'multitask' ? 'in the multitask setting the study tunes one teacher per seed on that seed\'s few-shot data'
          : c.teacher.copy_pretrain?.mix ? 'teacher.copy_pretrain.mix mixes a copy loss into the teacher\'s tuning' : null;
    if (why) throw new Error(`${a.config}: no teacher ICT data to export: ${why}`);
    if (!c.tokenizer.path) throw new Error(`${a.config}: tokenizer.path is not set (the study would train a tokenizer under its --out); point it at the teacher's tokenizer.json`);
    modelDir = a.model ?? c.teacher.path;
    if (!modelDir) throw new Error(`${a.config}: teacher.path is not set (the study would build a fresh teacher); give the base checkpoint with --model`);
    tokPath = c.tokenizer.path; template = c.tasks.template as Record<string, string> | undefined;
    setting = c.setting; method = c.eval.method ?? 'direct'; k = c.k; seed = 1; dedupe = true; // the study's teacher ICT (study.ts): seed 1, deduped task data
    const ti = c.teacher.ict ?? null;
    ict = ti ? { steps: ti.steps, lr: ti.lr, batch_size: ti.batch_size, warmup_steps: ti.warmup_steps ?? 50 } : null;
    instances = a.instances ?? (ti ? ti.steps * ti.batch_size : undefined);
    if (instances === undefined) throw new UsageError(`${a.config} has no teacher.ict (steps × batch_size instances); give --instances N`);
    const { folderTasks } = await import('../distill/study.js'); // the tasks as the study lists them
    ({ dir: taskDir, train: tasks } = folderTasks(c, (s) => log(`${a.config}: ${s}`)));
    if (tasks.length === 0) throw new Error(`${a.config}: none of the study's training tasks are in ${taskDir}`);
  } else {
    if (!a.model) throw new UsageError('give --model DIR (the base the teacher is tuned from) or --config STUDY.json');
    modelDir = a.model;
    setting = a.setting ?? 'meta'; method = a.method ?? 'direct'; k = a.k ?? 16; seed = a.seed ?? 0; dedupe = a.dedupe; instances = a.instances ?? 1000; ict = undefined;
    if (setting !== 'meta' && setting !== 'multitask') throw new UsageError(`--setting must be meta or multitask, got '${setting}'`);
    taskDir = a.taskDir ?? defaultTaskDir();
    tasks = resolveTasks(taskDir, a.trainTasks, a.split, setting === 'meta' ? 'train' : 'test', log, '--train-tasks');
  }
  if (method !== 'direct' && method !== 'channel') throw new UsageError(`--method must be direct or channel, got '${method}'`);
  const cfgPath = join(modelDir, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`${a.config ? 'teacher base' : '--model'} ${modelDir}: no config.json there (a model directory saved with save_pretrained)`);
  let cfg: Record<string, unknown>;
  try { cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>; } catch (e) { throw new Error(`${cfgPath}: not valid JSON (${(e as Error).message})`); }
  // The context the instances are fitted to, as trainIct fits them to the model's (GPT-2 n_positions).
  const maxLength = [cfg.n_positions, cfg.max_position_embeddings, cfg.n_ctx].find((v) => typeof v === 'number' && Number.isInteger(v) && v > 0) as number | undefined;
  if (maxLength === undefined) throw new Error(`${cfgPath}: no n_positions (or max_position_embeddings) to fit the prompts to`);
  const pools = episodePools(taskDir, tasks, setting as 'meta' | 'multitask', k, a.seeds, dedupe);
  const tokenizer = tokPath ? BPETokenizer.fromTokenizerJson(tokPath) : loadTokenizer(modelDir);
  const sampler = new IctSampler(tokenizer, { pools, k, demos: !a.noDemos, method, template, maxLength, seed });
  const lines: string[] = [];
  let tokens = 0, answer = 0;
  for (let i = 0; i < instances; i++) {
    const inst = sampler.next();
    const ex = hfCausalExample(inst);
    tokens += ex.input_ids.length; answer += ex.labels.filter((l) => l !== -100).length;
    lines.push(JSON.stringify({ task: inst.task, ...ex }) + '\n');
  }
  mkdirSync(dirname(a.out), { recursive: true });
  writeFileAtomic(a.out, lines.join(''));
  const n = [...pools.values()].reduce((s, p) => s + p.length, 0);
  log(`${instances} instances (${tokens} tokens, ${answer} answer tokens) from ${tasks.length} task(s), ${n} examples → ${a.out}`);
  return { out: a.out, instances, tasks: tasks.length, examples: n, tokens, answer_tokens: answer, max_length: maxLength, ...(a.config ? { base: modelDir, ict } : {}) };
}

export interface IctTrainArgs {
  model: string; setting: string; split?: string; trainTasks?: string[]; taskDir?: string; k: number; seeds: number[];
  method: string; noDemos: boolean; out: string; steps: number; batchSize: number; lr: number; warmup: number;
  seed: number; evalEvery: number; saveEvery: number; resume?: string; dedupe: boolean; json: boolean;
  /** Matmul precision of training (default: the trainer's, f32). */
  precision?: 'f32' | 'bf16';
}

export interface IctTrainSummary { out: string; steps: number; tasks: number; examples: number; final_eval_loss: number | null; elapsed_s: number; }

/** The human-readable end of `icld ict train` (--json prints the object itself). */
export function formatIctSummary(r: IctTrainSummary): string {
  return `trained ${r.steps} steps in ${r.elapsed_s.toFixed(1)} s on ${r.tasks} task(s), ${r.examples} examples; `
    + `final held-out loss ${r.final_eval_loss === null ? '– (no evaluation; see --eval-every)' : r.final_eval_loss.toFixed(4)}\nmodel: ${r.out}`;
}

export async function ictTrainCommand(a: IctTrainArgs): Promise<IctTrainSummary> {
  const { episodePools, trainIct } = await import('../icl/ict.js');
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  if (a.setting !== 'meta' && a.setting !== 'multitask') throw new UsageError(`--setting must be meta or multitask, got '${a.setting}'`);
  if (a.method !== 'direct' && a.method !== 'channel') throw new UsageError(`--method must be direct or channel, got '${a.method}'`);
  const taskDir = a.taskDir ?? defaultTaskDir();
  // Meta-ICT trains on the split's training tasks; Multitask-ICT on the target (test) tasks' k-shot data.
  const tasks = resolveTasks(taskDir, a.trainTasks, a.split, a.setting === 'meta' ? 'train' : 'test', log, '--train-tasks');
  assertTrainableDir(a.model);
  const pools = episodePools(taskDir, tasks, a.setting, a.k, a.seeds, a.dedupe);
  const { model, tokenizer } = loadLM(a.model);
  const n = [...pools.values()].reduce((s, p) => s + p.length, 0);
  log(`${a.setting === 'meta' ? 'Meta' : 'Multitask'}-${a.noDemos ? 'FT (no demonstrations)' : `ICT (k=${a.k}, ${a.method})`}: ${tasks.length} task(s), ${n} training examples, ${(model.numParameters() / 1e6).toFixed(2)}M parameters`);
  const st = trainIct({
    model, tokenizer, pools, setting: a.setting, k: a.k, demos: !a.noDemos, method: a.method, batchSize: a.batchSize, out: a.out, resume: a.resume, log,
    train: { steps: a.steps, lr: a.lr, warmupSteps: a.warmup, seed: a.seed, evalEvery: a.evalEvery, saveEvery: a.saveEvery, logEvery: 10, ...(a.precision ? { precision: a.precision } : {}) },
    meta: { base_model: a.model, task_dir: taskDir, seeds: a.seeds, split: a.split ?? null },
  });
  const last = st.eval_history[st.eval_history.length - 1];
  return { out: a.out, steps: st.global_step, tasks: tasks.length, examples: n, final_eval_loss: last?.loss ?? null, elapsed_s: +st.elapsed_s.toFixed(1) };
}

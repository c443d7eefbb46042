// Few-shot (in-context) evaluation: k demonstrations per seed, direct or channel option
// scoring (optionally length-normalised and calibrated), generation for tasks without options,
// majority vote over demonstration orders, metrics per seed, mean ± std over seeds, average over
// tasks.
//
// Context length: prompts are fitted by tokenizePrompt's rule (query and answer kept whole, long
// demonstrations shortened, then the oldest dropped). A test example whose query and answer alone
// (for any option, or the query plus --max-new-tokens for generation) exceed the context cannot be
// evaluated faithfully, so it is skipped, counted per task and reported with its line number,
// rather than scored on a cut-off query.

import { readFileSync } from 'node:fs';
import { join, basename } from 'node:path';
import { Rng } from '../engine/rng.js';
import type { LanguageModel } from '../models/index.js';
import { generate } from '../models/index.js';
import { loadTask, trainingPool, type Example } from '../data/tasks.js';
import { buildPrompt, makeTemplate, PieceEncoder, promptString, tokenizePrompt, type Method, type Template, type Tokenizer } from '../data/prompts.js';
import { scoreContinuations, type ScoreItem } from './scorer.js';
import { exactMatch, meanStd, optionTaskMetrics, tokenF1 } from '../eval/metrics.js';

export type Metrics = Record<string, number>;

export interface TaskResult {
  seeds: Record<string, Metrics>; mean: Metrics; std: Metrics;
  /** (example, seed) pairs whose prompt lost demonstration tokens to fit the context. */
  truncated: number;
  /** Evaluated (example, seed) pairs: test_examples × seeds. */
  examples: number;
  /** Test examples evaluated per seed (after --test-limit, without the skipped ones). */
  test_examples: number;
  /** Test examples skipped because the query and answer alone do not fit the context. */
  skipped: number;
  /** Their 1-based line numbers in the test file. */
  skipped_lines: number[];
}
/** A task that could not be evaluated (bad file, too few demonstrations, …). */
export interface TaskError { task: string; error: string; }
export interface IclResult { tasks: Record<string, TaskResult>; average: Metrics; config: Record<string, unknown>; errors: TaskError[]; }

export interface Prediction { task: string; seed: number; input: string; gold: string; prediction: string; scores: number[]; }

/** One scored sequence: test example `example` (its index among the seed's evaluated examples, in prediction order) with option `option`, demonstration order `order`; calib = a content-free calibration item (example and option -1). */
export interface ScoredItem { item: ScoreItem; example: number; option: number; order: number; calib: boolean; /** the option is the example's gold answer */ gold: boolean }

export interface IclEvalOptions {
  model: LanguageModel;
  tokenizer: Tokenizer & { decode(ids: number[]): string };
  taskDir: string;
  tasks: string[];
  k: number;
  seeds: number[];
  method?: Method;
  template?: Partial<Template>;
  /** Score = mean log-prob per continuation token instead of the sum. */
  meanPerToken?: boolean;
  /** Subtract each option's score given a content-free query ("N/A"); direct scoring only. */
  calibrate?: boolean;
  /** Sample the k demonstrations with the seed from all of the task's training data instead of the first k lines. */
  sampleDemos?: boolean;
  /** Majority vote over this many demonstration orders (the file order plus seeded shuffles). */
  orders?: number;
  testLimit?: number;
  batchSize?: number;
  maxNewTokens?: number;
  maxDemoTokens?: number;
  log?: (s: string) => void;
  onPrediction?: (p: Prediction) => void;
  /** The scored sequences of one task × seed (classification), before scoring: for exporting them (icl eval --items). */
  onScoreItems?: (task: string, seed: number, items: ScoredItem[]) => void;
  /** Record a failing task in `errors` and go on with the others instead of throwing. */
  continueOnError?: boolean;
  /** Called after each task (finished or failed) with the results so far. */
  onTaskDone?: (task: string, error: Error | null, soFar: IclResult) => void;
}

export function evaluateIcl(o: IclEvalOptions): IclResult {
  const method = o.method ?? 'direct', tpl = makeTemplate(o.template), orders = Math.max(1, o.orders ?? 1);
  if (o.calibrate && method !== 'direct') throw new Error('--calibrate applies to direct scoring only');
  if (!(o.k >= 0)) throw new Error(`--k must be ≥ 0, got ${o.k}`);
  const enc = new PieceEncoder(o.tokenizer);
  const tasks: Record<string, TaskResult> = {}, errors: TaskError[] = [];
  const config = { k: o.k, seeds: o.seeds, method, calibrate: !!o.calibrate, mean_per_token: !!o.meanPerToken, orders, sample_demos: !!o.sampleDemos, n_positions: o.model.maxPositions };
  const soFar = (): IclResult => ({ tasks, average: averageOver(Object.values(tasks).map((t) => t.mean)), config, errors });
  for (const task of o.tasks) {
    let err: Error | null = null;
    try {
      tasks[task] = evaluateTask(o, task, method, tpl, orders, enc);
    } catch (e) {
      if (!o.continueOnError) throw e;
      err = e instanceof Error ? e : new Error(String(e));
      errors.push({ task, error: err.message });
    }
    o.onTaskDone?.(task, err, soFar());
  }
  return soFar();
}

function evaluateTask(o: IclEvalOptions, task: string, method: Method, tpl: Template, orders: number, enc: PieceEncoder): TaskResult {
  const seeds: Record<string, Metrics> = {};
  const maxLength = o.model.maxPositions;
  let truncated = 0, examples = 0, testExamples = 0, skippedLines: number[] = [];
  for (const seed of o.seeds) {
    const data = loadTask(o.taskDir, task, o.sampleDemos ? 0 : o.k, seed, { testLimit: o.testLimit });
    const demos = o.sampleDemos ? new Rng(seed).shuffle(trainingPool(o.taskDir, task).slice()).slice(0, o.k) : data.train;
    if (demos.length < o.k) throw new Error(`task ${task}: only ${demos.length} training examples for k=${o.k}`);
    const testPath = join(o.taskDir, task, `${task}_test.jsonl`);
    if (data.test.length === 0) throw new Error(`${testPath}: no test examples`);
    // Skipping depends on the query and options only, so it is the same for every seed.
    const fits = data.test.map((ex) => fitsContext(enc, tpl, ex, method, !!o.calibrate, maxLength, ex.options.length ? 0 : genTokens(o, maxLength)));
    const test = data.test.filter((_, i) => fits[i]);
    if (seed === o.seeds[0] && fits.includes(false)) {
      const lines = exampleLines(testPath);
      skippedLines = fits.flatMap((f, i) => (f ? [] : [lines.length >= data.test.length ? lines[i] : i + 1]));
      if (skippedLines.length) {
        o.log?.(`icl eval: ${task}: skipped ${skippedLines.length} of ${data.test.length} test examples longer than the ${maxLength}-token context (first: ${basename(testPath)} line ${skippedLines[0]})`);
      }
    }
    if (test.length === 0) throw new Error(`${testPath}: all ${data.test.length} test examples are longer than the model's ${maxLength}-token context`);
    const r = evaluateSeed(o, task, seed, test, demos, method, tpl, orders, enc);
    seeds[String(seed)] = r.metrics;
    truncated += r.truncated; examples += test.length; testExamples = test.length;
    o.log?.(`${task} seed ${seed}: ${fmtMetrics(r.metrics)}${r.truncated ? ` (${r.truncated} truncated)` : ''}`);
  }
  return { seeds, ...aggregate(Object.values(seeds)), truncated, examples, test_examples: testExamples, skipped: skippedLines.length, skipped_lines: skippedLines };
}

/** Tokens kept free for the answer of a generation task (the prompt must leave room for them). */
function genTokens(o: IclEvalOptions, maxLength: number): number {
  const n = o.maxNewTokens ?? 32;
  if (n + 2 > maxLength) throw new Error(`--max-new-tokens ${n} leaves no room for a prompt in the model's ${maxLength}-token context`);
  return n;
}

/**
 * Whether the query and answer fit the context whole (demonstrations can always be dropped):
 * every option's prompt (and its content-free calibration prompt), or for generation the query
 * plus `reserve` new tokens. The same measure tokenizePrompt uses.
 */
export function fitsContext(enc: PieceEncoder, tpl: Template, ex: Example, method: Method, calibrate: boolean, maxLength: number, reserve = 0): boolean {
  const len = (p: { query: string; continuation: string }): number => enc.encode(p.query).length + enc.encode(p.continuation).length;
  if (ex.options.length === 0) return len(buildPrompt(tpl, [], ex, ' ', 'direct')) <= maxLength - reserve;
  return ex.options.every((opt) => len(buildPrompt(tpl, [], ex, opt, method)) <= maxLength &&
    (!calibrate || len(buildPrompt(tpl, [], { ...ex, input: 'N/A' }, opt, 'direct')) <= maxLength));
}

/** 1-based line numbers of a jsonl file's non-blank lines (the lines readExamples turns into examples). */
function exampleLines(path: string): number[] {
  const out: number[] = [];
  try { readFileSync(path, 'utf8').split('\n').forEach((l, i) => { if (l.trim()) out.push(i + 1); }); } catch { /* numbered by position instead */ }
  return out;
}

function evaluateSeed(o: IclEvalOptions, task: string, seed: number, test: Example[], demos: Example[], method: Method,
  tpl: Template, orders: number, enc: PieceEncoder): { metrics: Metrics; truncated: number } {
  const maxLength = o.model.maxPositions;
  const rng = new Rng(seed ^ 0x5bd1e995);
  const orderings: Example[][] = [demos];
  for (let i = 1; i < orders; i++) orderings.push(rng.shuffle(demos.slice()));
  const truncatedEx = new Set<number>();
  const classification = test.length > 0 && test[0].options.length > 0;
  if (!classification) {
    // Generation: greedy until the end of the answer line.
    const golds: string[] = [], preds: string[] = [];
    test.forEach((ex, i) => {
      const votes: string[] = [];
      for (const ord of orderings) {
        const p = buildPrompt(tpl, ord, ex, ' ', 'direct');
        const tp = tokenizePrompt(enc, p, { maxLength: maxLength - (o.maxNewTokens ?? 32), maxDemoTokens: o.maxDemoTokens });
        if (tp.truncated) truncatedEx.add(i);
        const ids = tp.prefix.concat(tp.suffix.slice(0, tp.contStart));
        const g = generate(o.model, o.tokenizer, ids, { maxNewTokens: o.maxNewTokens ?? 32, temperature: 0, stop: [tpl.ioSep.includes('\n') ? '\n' : tpl.demoSep] });
        votes.push(g.text.trim());
      }
      const pred = majority(votes, votes.map(() => 0));
      golds.push(ex.output); preds.push(pred);
      o.onPrediction?.({ task, seed, input: ex.input, gold: ex.output, prediction: pred, scores: [] });
    });
    const em = golds.map((g, i) => exactMatch(preds[i], g)), f1 = golds.map((g, i) => tokenF1(preds[i], g));
    return { metrics: { em: mean(em), f1: mean(f1) }, truncated: truncatedEx.size };
  }
  // Classification: score every option of every test example, for every demo order.
  const items: ScoreItem[] = [];
  const where: { ex: number; opt: number; ord: number; calib: boolean }[] = [];
  test.forEach((ex, i) => {
    orderings.forEach((ord, oi) => ex.options.forEach((opt, j) => {
      const tp = tokenizePrompt(enc, buildPrompt(tpl, ord, ex, opt, method), { maxLength, maxDemoTokens: o.maxDemoTokens });
      if (tp.truncated) truncatedEx.add(i);
      items.push(tp); where.push({ ex: i, opt: j, ord: oi, calib: false });
    }));
  });
  // Content-free calibration: the same demonstrations with the query input "N/A".
  const calibOpts = new Map<string, number>();
  if (o.calibrate) {
    const opts = [...new Set(test.flatMap((e) => e.options))];
    orderings.forEach((ord, oi) => opts.forEach((opt) => {
      const tp = tokenizePrompt(enc, buildPrompt(tpl, ord, { task, input: 'N/A', output: opt, options: opts }, opt, 'direct'), { maxLength, maxDemoTokens: o.maxDemoTokens });
      calibOpts.set(`${oi}\u0000${opt}`, items.length);
      items.push(tp); where.push({ ex: -1, opt: -1, ord: oi, calib: true });
    }));
  }
  o.onScoreItems?.(task, seed, items.map((item, i) => {
    const w = where[i];
    return { item, example: w.ex, option: w.opt, order: w.ord, calib: w.calib, gold: !w.calib && test[w.ex].options[w.opt] === test[w.ex].output };
  }));
  const scored = scoreContinuations(o.model, items, { batchSize: o.batchSize });
  const value = (i: number): number => (o.meanPerToken ? scored[i].logprob / scored[i].tokens : scored[i].logprob);
  // scores[ex][ord][opt]
  const scores: number[][][] = test.map((ex) => orderings.map(() => new Array(ex.options.length).fill(0)));
  where.forEach((w, i) => {
    if (w.calib) return;
    let s = value(i);
    if (o.calibrate) s -= value(calibOpts.get(`${w.ord}\u0000${test[w.ex].options[w.opt]}`)!);
    scores[w.ex][w.ord][w.opt] = s;
  });
  const golds: string[] = [], preds: string[] = [];
  test.forEach((ex, i) => {
    const votes = scores[i].map((s) => ex.options[argmaxFirst(s)]);
    const total = ex.options.map((_, j) => scores[i].reduce((a, s) => a + s[j], 0) / orderings.length);
    const pred = orderings.length === 1 ? votes[0] : majority(votes, votes.map((v) => total[ex.options.indexOf(v)]));
    golds.push(ex.output); preds.push(pred);
    o.onPrediction?.({ task, seed, input: ex.input, gold: ex.output, prediction: pred, scores: total });
  });
  return { metrics: optionTaskMetrics(golds, preds, test.map((e) => e.options)), truncated: truncatedEx.size };
}

/**
 * Score a fixed list of examples with given demonstrations (e.g. a validation split for model
 * selection): the same prompts and metrics as evaluateIcl, no task files read.
 */
export function evaluateExamples(o: { model: LanguageModel; tokenizer: Tokenizer & { decode(ids: number[]): string }; method?: Method; template?: Partial<Template>; batchSize?: number },
  task: string, demos: Example[], test: Example[], seed = 0): Metrics {
  const method = o.method ?? 'direct', tpl = makeTemplate(o.template), enc = new PieceEncoder(o.tokenizer);
  const maxLength = o.model.maxPositions;
  const fit = test.filter((ex) => fitsContext(enc, tpl, ex, method, false, maxLength, ex.options.length ? 0 : 32));
  if (fit.length === 0) throw new Error(`task ${task}: no example fits the model's ${maxLength}-token context`);
  const full: IclEvalOptions = { model: o.model, tokenizer: o.tokenizer, taskDir: '', tasks: [task], k: demos.length, seeds: [seed], method, template: o.template, batchSize: o.batchSize };
  return evaluateSeed(full, task, seed, fit, demos, method, tpl, 1, enc).metrics;
}

function argmaxFirst(xs: number[]): number { let b = 0; for (let i = 1; i < xs.length; i++) if (xs[i] > xs[b]) b = i; return b; }
function mean(xs: number[]): number { return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0; }

/** Most frequent vote; ties go to the candidate with the higher tie-break value, then the earliest. */
function majority(votes: string[], tie: number[]): string {
  const count = new Map<string, { n: number; t: number; first: number }>();
  votes.forEach((v, i) => { const c = count.get(v); if (c) c.n++; else count.set(v, { n: 1, t: tie[i], first: i }); });
  let best = votes[0], bc = count.get(best)!;
  for (const [v, c] of count) if (c.n > bc.n || (c.n === bc.n && (c.t > bc.t || (c.t === bc.t && c.first < bc.first)))) { best = v; bc = c; }
  return best;
}

export function aggregate(ms: Metrics[]): { mean: Metrics; std: Metrics } {
  const mean: Metrics = {}, std: Metrics = {};
  if (ms.length === 0) return { mean, std };
  for (const k of Object.keys(ms[0])) { const r = meanStd(ms.map((m) => m[k])); mean[k] = r.mean; std[k] = r.std; }
  return { mean, std };
}

/** Average of each metric over the tasks that report it. */
export function averageOver(ms: Metrics[]): Metrics {
  const sums = new Map<string, number[]>();
  for (const m of ms) for (const [k, v] of Object.entries(m)) { const a = sums.get(k) ?? []; a.push(v); sums.set(k, a); }
  const out: Metrics = {};
  for (const [k, v] of sums) out[k] = v.reduce((a, b) => a + b, 0) / v.length;
  return out;
}

export function fmtMetrics(m: Metrics): string { return Object.entries(m).map(([k, v]) => `${k} ${(100 * v).toFixed(1)}`).join('  '); }

export { promptString };

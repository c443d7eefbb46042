// Few-shot (in-context) evaluation: k demonstrations per seed, direct or channel option
// scoring (optionally length-normalised and calibrated), generation for tasks without options,
// majority vote over demonstration orders, metrics per seed, mean ± std over seeds, average over
// tasks.

import { Rng } from '../engine/rng.js';
import type { GPT2 } from '../models/gpt2.js';
import { generate } from '../models/generate.js';
import { loadTask, trainingPool, type Example } from '../data/tasks.js';
import { buildPrompt, makeTemplate, PieceEncoder, promptString, tokenizePrompt, type Method, type Template, type Tokenizer } from '../data/prompts.js';
import { scoreContinuations, type ScoreItem } from './scorer.js';
import { accuracy, exactMatch, macroF1, meanStd, tokenF1 } from '../eval/metrics.js';

export type Metrics = Record<string, number>;

export interface TaskResult { seeds: Record<string, Metrics>; mean: Metrics; std: Metrics; truncated: number; examples: number; }
export interface IclResult { tasks: Record<string, TaskResult>; average: Metrics; config: Record<string, unknown>; }

export interface Prediction { task: string; seed: number; input: string; gold: string; prediction: string; scores: number[]; }

export interface IclEvalOptions {
  model: GPT2;
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
}

export function evaluateIcl(o: IclEvalOptions): IclResult {
  const method = o.method ?? 'direct', tpl = makeTemplate(o.template), orders = Math.max(1, o.orders ?? 1);
  if (o.calibrate && method !== 'direct') throw new Error('--calibrate applies to direct scoring only');
  if (!(o.k >= 0)) throw new Error(`--k must be ≥ 0, got ${o.k}`);
  const enc = new PieceEncoder(o.tokenizer);
  const tasks: Record<string, TaskResult> = {};
  for (const task of o.tasks) {
    const seeds: Record<string, Metrics> = {};
    let truncated = 0, examples = 0;
    for (const seed of o.seeds) {
      const data = loadTask(o.taskDir, task, o.sampleDemos ? 0 : o.k, seed, { testLimit: o.testLimit });
      const demos = o.sampleDemos ? new Rng(seed).shuffle(trainingPool(o.taskDir, task).slice()).slice(0, o.k) : data.train;
      if (demos.length < o.k) throw new Error(`task ${task}: only ${demos.length} training examples for k=${o.k}`);
      const r = evaluateSeed(o, task, seed, data.test, demos, method, tpl, orders, enc);
      seeds[String(seed)] = r.metrics;
      truncated += r.truncated; examples += data.test.length;
      o.log?.(`${task} seed ${seed}: ${fmtMetrics(r.metrics)}${r.truncated ? ` (${r.truncated} truncated)` : ''}`);
    }
    tasks[task] = { seeds, ...aggregate(Object.values(seeds)), truncated, examples };
  }
  const average = averageOver(Object.values(tasks).map((t) => t.mean));
  return { tasks, average, config: { k: o.k, seeds: o.seeds, method, calibrate: !!o.calibrate, mean_per_token: !!o.meanPerToken, orders, sample_demos: !!o.sampleDemos } };
}

function evaluateSeed(o: IclEvalOptions, task: string, seed: number, test: Example[], demos: Example[], method: Method,
  tpl: Template, orders: number, enc: PieceEncoder): { metrics: Metrics; truncated: number } {
  const maxLength = o.model.config.n_positions;
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
  const labels = test[0].options;
  return { metrics: { accuracy: accuracy(golds, preds), macro_f1: macroF1(golds, preds, labels) }, truncated: truncatedEx.size };
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

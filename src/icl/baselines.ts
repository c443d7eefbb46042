// Model-free baselines on exactly the prompts the models are scored on (the first k lines of
// each seed's train file as demonstrations, the task's test file as queries, --test-limit
// applied the same way):
//   majority     : the label that appears most often among the demonstrations (ties: the first
//                  such label in the example's option order) — what a model scores by reading
//                  label frequencies instead of the query;
//   copy-nearest : the label of the demonstration whose input is most similar to the query
//                  (identical first; else the most shared words; ties: the demonstration nearest
//                  the query, i.e. the last one) — the ceiling of pure look-up/copy behaviour.
// A prediction is always one of the example's options (demonstrations with other outputs are ignored).

import type { Example } from '../data/tasks.js';
import { loadTask } from '../data/tasks.js';
import { accuracy, exactMatch, macroF1, tokenF1 } from '../eval/metrics.js';
import { averageOver, type Metrics } from './evaluate.js';

export type BaselineName = 'majority' | 'copy-nearest';

export function majorityPrediction(demos: readonly Example[], query: Example): string {
  const allowed = query.options.length ? query.options : [...new Set(demos.map((d) => d.output))];
  const count = new Map<string, number>();
  for (const d of demos) if (allowed.includes(d.output)) count.set(d.output, (count.get(d.output) ?? 0) + 1);
  let best = allowed[0] ?? '', bc = count.get(best) ?? 0;
  for (const l of allowed) { const n = count.get(l) ?? 0; if (n > bc) { best = l; bc = n; } }
  return best;
}

const words = (s: string): Set<string> => new Set(s.toLowerCase().split(/\s+/).filter(Boolean));

/** Jaccard similarity of the inputs' word sets; 2 for identical inputs (always preferred). */
function similarity(a: string, b: string): number {
  if (a === b) return 2;
  const wa = words(a), wb = words(b);
  let inter = 0;
  for (const w of wa) if (wb.has(w)) inter++;
  const union = wa.size + wb.size - inter;
  return union ? inter / union : 0;
}

export function copyNearestPrediction(demos: readonly Example[], query: Example): string {
  let best: Example | null = null, bs = -1;
  for (const d of demos) {
    if (query.options.length && !query.options.includes(d.output)) continue;
    const s = similarity(d.input, query.input);
    if (s >= bs) { best = d; bs = s; } // >=: a later demonstration (nearer the query) wins ties
  }
  return best ? best.output : (query.options[0] ?? '');
}

export function baselinePrediction(name: BaselineName, demos: readonly Example[], query: Example): string {
  return name === 'majority' ? majorityPrediction(demos, query) : copyNearestPrediction(demos, query);
}

/** Metrics of one task's predictions, the same ones evaluateIcl reports. */
export function baselineMetrics(name: BaselineName, demos: readonly Example[], test: readonly Example[]): Metrics {
  const golds = test.map((e) => e.output), preds = test.map((e) => baselinePrediction(name, demos, e));
  if (test.length && test[0].options.length) return { accuracy: accuracy(golds, preds), macro_f1: macroF1(golds, preds, test[0].options) };
  const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  return { em: mean(golds.map((g, i) => exactMatch(preds[i], g))), f1: mean(golds.map((g, i) => tokenF1(preds[i], g))) };
}

export interface BaselineOptions { taskDir: string; tasks: string[]; k: number; seeds: number[]; testLimit?: number; }

/** Per seed: every task's metrics and their average over tasks (the shape of the teacher row). */
export function evaluateBaseline(name: BaselineName, o: BaselineOptions): Record<string, { tasks: Record<string, Metrics>; average: Metrics }> {
  const out: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
  for (const seed of o.seeds) {
    const tasks: Record<string, Metrics> = {};
    for (const t of o.tasks) {
      const d = loadTask(o.taskDir, t, o.k, seed, { testLimit: o.testLimit });
      tasks[t] = baselineMetrics(name, d.train, d.test);
    }
    out[String(seed)] = { tasks, average: averageOver(Object.values(tasks)) };
  }
  return out;
}

export const majorityBaseline = (o: BaselineOptions) => evaluateBaseline('majority', o);
export const copyNearestBaseline = (o: BaselineOptions) => evaluateBaseline('copy-nearest', o);

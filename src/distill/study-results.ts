// A study's results: per-cell metrics grouped by task type, mean ± std over seeds, the teacher
// row, compression and speed-up, assembled into results.json.

import { join } from 'node:path';
import { readExamples } from '../data/tasks.js';
import { aggregate, type Metrics } from '../icl/evaluate.js';
import { headlineMetric } from '../eval/metrics.js';
import { ARMS, type StudyConfig } from './study-config.js';
import { evaluateClaims, type Claim } from './claims.js';

/** best_step: the step model selection kept (multitask setting and Multitask-FT, when dev_every > 0); eval_k: demonstrations at evaluation (0 for Multitask-FT); threads / kernels: the compute threads and the kernel path per family the cell ran with (a cell's result must not depend on its worker; a CPU with other kernel paths may differ in the last bits). */
export interface CellResult { arm: string; seed: number; tasks: Record<string, Metrics>; average: Metrics; train_s: number; steps: number; epoch_s: number | null; curve: [number, number][]; best_step?: number; eval_k?: number; threads?: number; kernels?: Record<string, string>; }

export function mapTasks(tasks: Record<string, { mean: Metrics }>): Record<string, Metrics> {
  const o: Record<string, Metrics> = {};
  for (const [t, v] of Object.entries(tasks)) o[t] = v.mean;
  return o;
}

export const fmtAvg = (ms: Metrics[]): string => Object.entries(aggregate(ms).mean).map(([k, v]) => `${k} ${(100 * v).toFixed(1)}`).join('  ');

/** Column groups: classification (one option set for the whole task) vs multiple-choice. */
export function taskGroups(dir: string, tasks: string[]): Record<string, string[]> {
  const g: Record<string, string[]> = {};
  for (const t of tasks) {
    const ex = readExamples(join(dir, t, `${t}_test.jsonl`)).slice(0, 50);
    const fixed = ex.every((e) => e.options.join('\u0000') === ex[0].options.join('\u0000'));
    const name = ex[0]?.options.length ? (fixed ? 'classification' : 'multiple-choice') : 'generation';
    (g[name] ??= []).push(t);
  }
  return g;
}


/** One seed's average metrics plus per-group averages. */
export type SeedRow = Record<string, number | Record<string, Metrics>> & { groups: Record<string, Metrics> };

export interface StudyResults {
  arms: Record<string, { seeds: Record<string, SeedRow>; mean: Metrics; std: Metrics; groups: Record<string, { mean: Metrics; std: Metrics }>; retained: number | null }>;
  teacher: { seeds: Record<string, SeedRow>; mean: Metrics; std: Metrics; groups: Record<string, { mean: Metrics; std: Metrics }> };
  /** Model-free baselines (src/icl/baselines.ts) on the same test prompts, in the teacher row's shape. */
  baselines: Record<string, { seeds: Record<string, SeedRow>; mean: Metrics; std: Metrics; groups: Record<string, { mean: Metrics; std: Metrics }> }>;
  student_params: number;
  teacher_params: number;
  compression: number;
  speedup: number;
  speed: { teacher_tokens_per_s: number; student_tokens_per_s: number };
  groups: Record<string, string[]>;
  epoch_cost: { ict_s: number | null; icl_d_cached_s: number | null; ratio: number | null };
  /** The paper's claims this study can test, with verdicts (src/distill/claims.ts). */
  claims: Claim[];
}

/**
 * Each task's metrics with its `headline` (macro-F1 for classification, accuracy for
 * multiple-choice, EM for generation), and the average with `headline` = their mean over tasks:
 * the study's headline metric, as the paper and MetaICL report it.
 */
export function withHeadline(r: { tasks: Record<string, Metrics>; average: Metrics }, metric: StudyConfig['metric'] = 'paper'): { tasks: Record<string, Metrics>; average: Metrics } {
  // config "metric": paper (default) as above; accuracy or macro_f1 everywhere (EM for generation; accuracy where a task has no macro-F1).
  const pick = (m: Metrics): number => metric === 'accuracy' ? m.accuracy ?? m.em ?? NaN : metric === 'macro_f1' ? m.macro_f1 ?? m.accuracy ?? m.em ?? NaN : headlineMetric(m);
  const tasks: Record<string, Metrics> = {};
  for (const [t, m] of Object.entries(r.tasks)) tasks[t] = { ...m, headline: pick(m) };
  const hs = Object.values(tasks).map((m) => m.headline).filter(Number.isFinite);
  return { tasks, average: { ...r.average, headline: hs.length ? hs.reduce((a, b) => a + b, 0) / hs.length : NaN } };
}

function groupAverages(tasks: Record<string, Metrics>, groups: Record<string, string[]>): Record<string, Metrics> {
  const out: Record<string, Metrics> = {};
  for (const [g, ts] of Object.entries(groups)) out[g] = aggregateMean(ts.map((t) => tasks[t]).filter(Boolean));
  return out;
}
function aggregateMean(ms: Metrics[]): Metrics { return aggregate(ms).mean; }

export function assemble(c: StudyConfig, cells: CellResult[], teacherRes: Record<string, { tasks: Record<string, Metrics>; average: Metrics }>, groups: Record<string, string[]>,
  tParams: number, sParams: number, speed: { teacher_tokens_per_s: number; student_tokens_per_s: number; speedup: number },
  baselineRes: Record<string, Record<string, { tasks: Record<string, Metrics>; average: Metrics }>> = {}): StudyResults {
  const main = (m: Metrics): number => m.headline ?? NaN;
  const seedRows = (raw: Record<string, { tasks: Record<string, Metrics>; average: Metrics }>) => {
    const per: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
    for (const [s, r] of Object.entries(raw)) per[s] = withHeadline(r, c.metric);
    const seeds: Record<string, SeedRow> = {};
    for (const [s, r] of Object.entries(per)) seeds[s] = { ...r.average, groups: groupAverages(r.tasks, groups) } as SeedRow;
    const agg = aggregate(Object.values(per).map((r) => r.average));
    const g: Record<string, { mean: Metrics; std: Metrics }> = {};
    for (const name of Object.keys(groups)) g[name] = aggregate(Object.values(seeds).map((s) => s.groups[name]));
    return { seeds, ...agg, groups: g };
  };
  const teacher = seedRows(teacherRes);
  const baselines: StudyResults['baselines'] = {};
  for (const [name, per] of Object.entries(baselineRes)) baselines[name] = seedRows(per);
  const arms: StudyResults['arms'] = {};
  for (const arm of c.arms ?? ARMS) {
    const per: Record<string, { tasks: Record<string, Metrics>; average: Metrics }> = {};
    for (const cell of cells.filter((x) => x.arm === arm)) per[String(cell.seed)] = cell;
    if (Object.keys(per).length === 0) continue;
    const r = seedRows(per);
    arms[arm] = { ...r, retained: main(teacher.mean) > 0 ? +(main(r.mean) / main(teacher.mean)).toFixed(4) : null };
  }
  const epoch = (arm: string): number | null => { const xs = cells.filter((x) => x.arm === arm && x.epoch_s !== null).map((x) => x.epoch_s!); return xs.length ? xs.reduce((a, b) => a + b) / xs.length : null; };
  const ict = epoch('ICT'), icld = epoch('ICL-D');
  return {
    arms, teacher: { seeds: teacher.seeds, mean: teacher.mean, std: teacher.std, groups: teacher.groups }, baselines,
    student_params: sParams, teacher_params: tParams, compression: +(tParams / sParams).toFixed(2),
    speedup: speed.speedup, speed: { teacher_tokens_per_s: speed.teacher_tokens_per_s, student_tokens_per_s: speed.student_tokens_per_s }, groups,
    epoch_cost: { ict_s: ict, icl_d_cached_s: icld, ratio: ict && icld ? +(icld / ict).toFixed(3) : null },
    claims: evaluateClaims([{ setting: c.setting, cells: cells.filter((x) => (c.arms ?? ARMS).includes(x.arm as never)).map((x) => ({ ...x, ...withHeadline(x, c.metric) })),
      teacher: Object.fromEntries(Object.entries(teacherRes).map(([s, r]) => [s, withHeadline(r, c.metric)])), compression: +(tParams / sParams).toFixed(2), speedup: speed.speedup }]),
  };
}

// report.html and JSON shaping for `icld icl eval`.

import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import { barChart, htmlPage, htmlTable } from '../eval/report.js';
import type { IclResult } from './evaluate.js';

const pct = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '–' : (100 * v).toFixed(1));

export function writeIclReport(dir: string, r: IclResult, title = 'In-context learning evaluation'): string {
  mkdirSync(dir, { recursive: true });
  const metrics = [...new Set(Object.values(r.tasks).flatMap((t) => Object.keys(t.mean)))];
  const rows = Object.entries(r.tasks).map(([task, t]) => [
    task, ...metrics.map((m) => (t.mean[m] === undefined ? '–' : `${pct(t.mean[m])} ± ${pct(t.std[m])}`)), Object.keys(t.seeds).length, t.examples, t.truncated,
  ]);
  rows.push(['average', ...metrics.map((m) => pct(r.average[m])), '', '', '']);
  const main = metrics.includes('accuracy') ? 'accuracy' : metrics[0];
  const bars = Object.entries(r.tasks).filter(([, t]) => t.mean[main] !== undefined).map(([task, t]) => ({ label: task, value: t.mean[main], err: t.std[main] }));
  const body = [
    `<p>k = ${String(r.config.k)}, seeds ${(r.config.seeds as number[]).join(', ')}, method ${String(r.config.method)}${r.config.calibrate ? ', calibrated' : ''}${(r.config.orders as number) > 1 ? `, majority vote over ${String(r.config.orders)} orders` : ''}. Values are mean ± std over seeds, in %.</p>`,
    htmlTable(['task', ...metrics, 'seeds', 'test examples / seed ×', 'truncated'], rows),
    barChart(`${main} per task (mean over seeds, ± std)`, bars),
  ].join('\n');
  const p = join(dir, 'report.html');
  writeFileAtomic(p, htmlPage(title, body));
  return p;
}

/** The --json shape: {"tasks": {t: {"seeds": {...}, "mean", "std"}}, "average"} (+ truncation counts). */
export function iclJson(r: IclResult): object {
  const tasks: Record<string, object> = {};
  for (const [t, v] of Object.entries(r.tasks)) tasks[t] = { seeds: v.seeds, mean: v.mean, std: v.std, truncated: v.truncated };
  return { tasks, average: r.average, config: r.config };
}

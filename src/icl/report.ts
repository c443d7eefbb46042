// report.html and JSON shaping for `icld icl eval`.

import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import { barChart, esc, htmlPage, htmlTable, meanStdCell, seedsCell } from '../report/html.js';
import type { IclResult } from './evaluate.js';

const pct = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '–' : (100 * v).toFixed(1));

export function iclReportHtml(r: IclResult, title = 'In-context learning evaluation'): string {
  const metrics = [...new Set(Object.values(r.tasks).flatMap((t) => Object.keys(t.mean)))];
  const rows: (string | number)[][] = Object.entries(r.tasks).map(([task, t]) => {
    const n = Object.keys(t.seeds).length;
    return [task, ...metrics.map((m) => meanStdCell(t.mean[m], t.std[m], n, pct)), seedsCell(n), t.test_examples, t.skipped, `${t.truncated} of ${t.examples}`];
  });
  rows.push(['average over tasks', ...metrics.map((m) => pct(r.average[m])), '', '', '', '']);
  const main = metrics.includes('accuracy') ? 'accuracy' : metrics[0];
  const bars = Object.entries(r.tasks).filter(([, t]) => t.mean[main] !== undefined)
    .map(([task, t]) => ({ label: task, value: t.mean[main], err: Object.keys(t.seeds).length > 1 ? t.std[main] : undefined }));
  const ctx = r.config.n_positions !== undefined ? ` longer than the model's ${String(r.config.n_positions)}-token context` : ' longer than the context';
  const body = [
    `<p>k = ${String(r.config.k)}, seeds ${(r.config.seeds as number[]).join(', ')}, method ${String(r.config.method)}${r.config.calibrate ? ', calibrated' : ''}${(r.config.orders as number) > 1 ? `, majority vote over ${String(r.config.orders)} orders` : ''}. Values are mean ± std over the task's n seeds, in % (a single value where n = 1).</p>`,
    htmlTable(['task', ...metrics, 'seeds', 'test examples', 'skipped', 'prompts truncated'], rows),
    `<p class="note"><b>test examples</b>: evaluated per seed; <b>skipped</b>: test examples${ctx} even without demonstrations (not scored); ` +
      `<b>prompts truncated</b>: (example, seed) prompts whose demonstrations were shortened or dropped to fit.</p>`,
    r.errors.length ? `<h2>Failed tasks</h2><ul>${r.errors.map((e) => `<li><b>${esc(e.task)}</b>: ${esc(e.error)}</li>`).join('')}</ul>` : '',
    bars.length ? barChart(`${main} per task (mean over seeds${bars.some((b) => b.err !== undefined) ? ', ± std' : ''})`, bars) : '',
  ].join('\n');
  return htmlPage(title, body);
}

export function writeIclReport(dir: string, r: IclResult, title = 'In-context learning evaluation'): string {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, 'report.html');
  writeFileAtomic(p, iclReportHtml(r, title));
  return p;
}

/**
 * The --json shape: {"tasks": {t: {"seeds", "mean", "std", "test_examples", "skipped", "skipped_lines",
 * "truncated"}}, "average", "config", "errors": [{"task", "error"}]}.
 */
export function iclJson(r: IclResult): object {
  const tasks: Record<string, object> = {};
  for (const [t, v] of Object.entries(r.tasks)) {
    tasks[t] = { seeds: v.seeds, mean: v.mean, std: v.std, test_examples: v.test_examples, skipped: v.skipped, skipped_lines: v.skipped_lines, truncated: v.truncated };
  }
  return { tasks, average: r.average, config: r.config, errors: r.errors };
}

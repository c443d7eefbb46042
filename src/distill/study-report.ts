// report.html for a study: the paper-style table (arms × task groups, mean ± std over seeds),
// the teacher's row, compression vs retained score, epoch cost, and training curves.

import { writeFileAtomic } from '../io/atomic.js';
import { barChart, esc, htmlPage, htmlTable, lineChart, meanStdCell, seedsCell } from '../report/html.js';
import type { StudyConfig } from './study-config.js';
import type { CellResult, StudyResults } from './study-results.js';

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1'];

const pct = (v: unknown): string => (typeof v !== 'number' || !Number.isFinite(v) ? '–' : (100 * v).toFixed(1));

export function studyReportHtml(c: StudyConfig, r: StudyResults, cells: CellResult[]): string {
  const metric = Object.keys(r.teacher.mean).includes('accuracy') ? 'accuracy' : Object.keys(r.teacher.mean)[0];
  const groups = Object.keys(r.groups);
  // n = the seeds behind the row: a single seed has no spread to show.
  const cell = (m: { mean: Record<string, number>; std: Record<string, number> } | undefined, n: number): string =>
    (m ? meanStdCell(m.mean[metric], m.std[metric], n, pct) : '–');
  const head = ['', 'seeds', ...groups.map((g) => `${g} (${r.groups[g].length})`), 'average', 'macro-F1', 'kept of teacher'];
  const tn = Object.keys(r.teacher.seeds).length;
  const rows: (string | number)[][] = [[`Teacher (${(r.teacher_params / 1e6).toFixed(2)}M)`, seedsCell(tn), ...groups.map((g) => cell(r.teacher.groups[g], tn)), cell(r.teacher, tn), pct(r.teacher.mean.macro_f1), '100%']];
  for (const [arm, a] of Object.entries(r.arms)) {
    const n = Object.keys(a.seeds).length;
    rows.push([`${arm} (student ${(r.student_params / 1e6).toFixed(2)}M)`, seedsCell(n), ...groups.map((g) => cell(a.groups[g], n)), cell(a, n), pct(a.mean.macro_f1), a.retained === null ? '–' : `${(100 * a.retained).toFixed(1)}%`]);
  }
  for (const [name, b] of Object.entries(r.baselines ?? {})) {
    const n = Object.keys(b.seeds).length;
    rows.push([`Baseline: ${name} (no model)`, seedsCell(n), ...groups.map((g) => cell(b.groups[g], n)), cell(b, n), pct(b.mean.macro_f1), '–']);
  }
  const armNames = Object.keys(r.arms);
  const firstSeed = String(c.seeds[0]);
  const curves = armNames.map((arm, i) => ({ name: arm, color: COLORS[i % COLORS.length], points: cells.find((x) => x.arm === arm && String(x.seed) === firstSeed)?.curve ?? [] })).filter((s) => s.points.length);
  const kept = armNames.filter((a) => r.arms[a].retained !== null).map((a) => ({ label: a, value: r.arms[a].retained! }));
  const body = [
    `<p>Study <b>${esc(c.name)}</b>: ${c.setting === 'meta' ? 'Meta-ICT (training tasks → unseen test tasks)' : 'Multitask-ICT (the target tasks\' few-shot data)'}, k = ${c.k}, seeds ${c.seeds.join(', ')}; ${metric} in %, mean ± std over the row's n seeds (a single value where n = 1).</p>`,
    htmlTable(head, rows),
    `<h2>Compression</h2><p>Teacher ${r.teacher_params.toLocaleString()} parameters, student ${r.student_params.toLocaleString()}: <b>${r.compression}×</b> smaller; measured inference speed-up <b>${r.speedup}×</b> (${r.speed.student_tokens_per_s} vs ${r.speed.teacher_tokens_per_s} scored tokens/s).</p>`,
    kept.length ? barChart(`Share of the teacher's ${metric} the student keeps (at ${r.compression}× compression, ${r.speedup}× faster)`, kept) : '',
    r.epoch_cost.ratio !== null ? `<p>Cost of one training epoch: ICT ${r.epoch_cost.ict_s!.toFixed(2)} s, ICL-D with the cached teacher ${r.epoch_cost.icl_d_cached_s!.toFixed(2)} s (ratio ${r.epoch_cost.ratio}).</p>` : '',
    curves.length ? lineChart(`Training loss (seed ${firstSeed})`, 'step', curves) : '',
    `<h2>Per seed</h2>` + htmlTable(['arm', ...c.seeds.map(String)], [['Teacher', ...c.seeds.map((s) => pct(r.teacher.seeds[String(s)]?.[metric]))], ...armNames.map((a) => [a, ...c.seeds.map((s) => pct(r.arms[a].seeds[String(s)]?.[metric]))]),
      ...Object.entries(r.baselines ?? {}).map(([name, b]) => [`Baseline: ${name}`, ...c.seeds.map((s) => pct(b.seeds[String(s)]?.[metric]))])]),
  ].join('\n');
  return htmlPage(`ICL distillation study: ${c.name}`, body);
}

export function writeStudyReport(path: string, c: StudyConfig, r: StudyResults, cells: CellResult[]): string {
  writeFileAtomic(path, studyReportHtml(c, r, cells));
  return path;
}

// report.html for a study: the paper-style table (arms × task groups, mean ± std over seeds),
// the teacher's row, compression vs retained score, epoch cost, and training curves.

import { writeFileAtomic } from '../io/atomic.js';
import { htmlPage, htmlTable, lineChart, barChart } from '../eval/report.js';
import type { CellResult, StudyConfig, StudyResults } from './study.js';

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1'];

export function writeStudyReport(path: string, c: StudyConfig, r: StudyResults, cells: CellResult[]): string {
  const metric = Object.keys(r.teacher.mean).includes('accuracy') ? 'accuracy' : Object.keys(r.teacher.mean)[0];
  const groups = Object.keys(r.groups);
  const cell = (m: { mean: Record<string, number>; std: Record<string, number> } | undefined): string =>
    m && m.mean[metric] !== undefined ? `${(100 * m.mean[metric]).toFixed(1)} ± ${(100 * m.std[metric]).toFixed(1)}` : '–';
  const head = ['', ...groups.map((g) => `${g} (${r.groups[g].length})`), 'average', 'macro-F1', 'kept of teacher'];
  const rows: (string | number)[][] = [[`Teacher (${(r.teacher_params / 1e6).toFixed(2)}M)`, ...groups.map((g) => cell(r.teacher.groups[g])), cell(r.teacher), r.teacher.mean.macro_f1 !== undefined ? (100 * r.teacher.mean.macro_f1).toFixed(1) : '–', '100%']];
  for (const [arm, a] of Object.entries(r.arms)) {
    rows.push([`${arm} (student ${(r.student_params / 1e6).toFixed(2)}M)`, ...groups.map((g) => cell(a.groups[g])), cell(a), a.mean.macro_f1 !== undefined ? (100 * a.mean.macro_f1).toFixed(1) : '–', a.retained === null ? '–' : `${(100 * a.retained).toFixed(1)}%`]);
  }
  const armNames = Object.keys(r.arms);
  const firstSeed = String(c.seeds[0]);
  const curves = armNames.map((arm, i) => ({ name: arm, color: COLORS[i % COLORS.length], points: cells.find((x) => x.arm === arm && String(x.seed) === firstSeed)?.curve ?? [] })).filter((s) => s.points.length);
  const body = [
    `<p>Study <b>${c.name}</b>: ${c.setting === 'meta' ? 'Meta-ICT (training tasks → unseen test tasks)' : 'Multitask-ICT (the target tasks\' few-shot data)'}, k = ${c.k}, seeds ${c.seeds.join(', ')}; ${metric} in %, mean ± std over seeds.</p>`,
    htmlTable(head, rows),
    `<h2>Compression</h2><p>Teacher ${r.teacher_params.toLocaleString()} parameters, student ${r.student_params.toLocaleString()}: <b>${r.compression}×</b> smaller; measured inference speed-up <b>${r.speedup}×</b> (${r.speed.student_tokens_per_s} vs ${r.speed.teacher_tokens_per_s} scored tokens/s).</p>`,
    barChart(`Share of the teacher's ${metric} the student keeps (at ${r.compression}× compression, ${r.speedup}× faster)`, armNames.filter((a) => r.arms[a].retained !== null).map((a) => ({ label: a, value: Math.min(1.5, r.arms[a].retained!) }))),
    r.epoch_cost.ratio !== null ? `<p>Cost of one training epoch: ICT ${r.epoch_cost.ict_s!.toFixed(2)} s, ICL-D with the cached teacher ${r.epoch_cost.icl_d_cached_s!.toFixed(2)} s (ratio ${r.epoch_cost.ratio}).</p>` : '',
    curves.length ? lineChart(`Training loss (seed ${firstSeed})`, 'step', curves) : '',
    `<h2>Per seed</h2>` + htmlTable(['arm', ...c.seeds.map(String)], [['Teacher', ...c.seeds.map((s) => pct(r.teacher.seeds[String(s)]?.[metric]))], ...armNames.map((a) => [a, ...c.seeds.map((s) => pct(r.arms[a].seeds[String(s)]?.[metric]))])]),
  ].join('\n');
  writeFileAtomic(path, htmlPage(`ICL distillation study: ${c.name}`, body));
  return path;
}

const pct = (v: unknown): string => (typeof v !== "number" ? "–" : (100 * v).toFixed(1));

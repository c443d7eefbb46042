// report.html for a study: the paper-style table (arms × task groups, mean ± std over seeds),
// the teacher's row, compression vs retained score, epoch cost, and training curves.

import { writeFileAtomic } from '../io/atomic.js';
import { barChart, esc, htmlPage, htmlTable, lineChart, meanStdCell, pointChart, seedsCell, type PointSeries } from '../report/html.js';
import type { AnalysesResults } from './analyses.js';
import type { StudyConfig } from './study-config.js';
import type { CellResult, StudyResults } from './study-results.js';
import type { Claim } from './claims.js';

const COLORS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1'];

const pct = (v: unknown): string => (typeof v !== 'number' || !Number.isFinite(v) ? '–' : (100 * v).toFixed(1));

export function studyReportHtml(c: StudyConfig, r: StudyResults, cells: CellResult[]): string {
  const metric = Object.keys(r.teacher.mean).includes('headline') ? 'headline' : Object.keys(r.teacher.mean).includes('accuracy') ? 'accuracy' : Object.keys(r.teacher.mean)[0];
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
    claimsSection(r.claims ?? []),
    `<h2>Per seed</h2>` + htmlTable(['arm', ...c.seeds.map(String)], [['Teacher', ...c.seeds.map((s) => pct(r.teacher.seeds[String(s)]?.[metric]))], ...armNames.map((a) => [a, ...c.seeds.map((s) => pct(r.arms[a].seeds[String(s)]?.[metric]))]),
      ...Object.entries(r.baselines ?? {}).map(([name, b]) => [`Baseline: ${name}`, ...c.seeds.map((s) => pct(b.seeds[String(s)]?.[metric]))])]),
  ].join('\n');
  const analyses = (r as StudyResults & { analyses?: AnalysesResults }).analyses;
  return htmlPage(`ICL distillation study: ${c.name}`, body + (analyses ? '\n' + analysesSection(analyses) : ''));
}

/** The paper's claims with the measured numbers and the verdict (rules in src/distill/claims.ts). */
export function claimsSection(claims: Claim[]): string {
  if (claims.length === 0) return '';
  const rules = [...new Map(claims.map((c) => [c.kind, c.rule])).entries()];
  const label: Record<string, string> = { greater: 'A > B', 'not-greater': 'A does not beat B', equivalent: 'A ≈ B', keeps: 'keeps ≥ r of the teacher' };
  // Long text cells wrap (the page's tables keep number cells on one line).
  const td = (x: string): string => `<td style="white-space:normal;text-align:left">${esc(x)}</td>`;
  const rows = claims.map((c) => `<tr>${td(c.claim)}${td(c.paper)}${td(c.verdict === 'not tested here' && c.reason ? `– (${c.reason})` : c.measured)}<td><b>${esc(c.verdict)}</b></td></tr>`);
  return `<h2>The paper's claims</h2><p class="note">Each difference is paired over seeds × tasks on each task's headline metric (its <code>headline</code> value where the evaluation gives one, else accuracy).</p>`
    + `<ul class="note">${rules.map(([k, r]) => `<li>${esc(label[k] ?? k)}: ${esc(r)}</li>`).join('')}</ul>`
    + `<table><tr>${['claim', 'paper', 'measured', 'verdict'].map((h) => `<th>${h}</th>`).join('')}</tr>${rows.join('')}</table>`;
}

export function writeStudyReport(path: string, c: StudyConfig, r: StudyResults, cells: CellResult[]): string {
  writeFileAtomic(path, studyReportHtml(c, r, cells));
  return path;
}

// ---- The paper's analyses (src/distill/analyses.ts): sizes and ablations, each a plot and a table.

const mStd = (m: { mean: number; std: number }, n: number): string => meanStdCell(m.mean, m.std, n, pct);
const fold = (v: number): string => `${+v.toFixed(2)}×`;

export function analysesSection(a: AnalysesResults): string {
  const M = a.metric;
  const armSeries = (f: (arm: string, i: number) => PointSeries['points']): PointSeries[] =>
    a.arms.map((arm, i) => ({ name: arm, color: COLORS[i % COLORS.length], points: f(arm, i) })).filter((s) => s.points.length);
  const parts: string[] = [`<h2>Analyses</h2><p class="note">Each point is a sub-study under analyses/ (or the main study), ${esc(M)} in %, mean ± std over seeds (and task sets).</p>`];
  if (a.student_sizes?.length) {
    const z = a.student_sizes;
    const kept = (x: (p: (typeof z)[number]) => number): PointSeries[] => armSeries((arm) => z.filter((p) => p.arms[arm]?.kept != null).map((p) => ({ x: x(p), y: p.arms[arm].kept! })));
    const ref = [{ y: 1, label: 'teacher = 100%' }];
    parts.push('<h3>Student size</h3>',
      pointChart(`Share of the teacher's ${M} the student keeps, by compression`, 'compression (teacher parameters ÷ student parameters)', kept((p) => p.compression), { yPercent: true, refs: ref }),
      pointChart(`Share of the teacher's ${M} the student keeps, by measured speed-up`, 'inference speed-up (student tokens/s ÷ teacher tokens/s)', kept((p) => p.speedup), { yPercent: true, refs: ref }),
      htmlTable(['student', 'parameters', 'compression', 'speed-up', 'teacher', ...a.arms.flatMap((x) => [x, `${x} kept`])],
        z.map((p) => [p.name, p.student_params.toLocaleString(), fold(p.compression), fold(p.speedup), pct(p.teacher.mean),
          ...a.arms.flatMap((x) => (p.arms[x] ? [mStd(p.arms[x], p.arms[x].n), p.arms[x].kept === null ? '–' : `${(100 * p.arms[x].kept!).toFixed(1)}%`] : ['–', '–']))])));
  }
  if (a.teacher_sizes?.length) {
    const z = a.teacher_sizes;
    const series = [...armSeries((arm) => z.filter((p) => p.arms[arm]).map((p) => ({ x: p.teacher_params / 1e6, y: p.arms[arm].mean, err: p.arms[arm].std }))),
      { name: 'Teacher itself', color: '#555', points: z.map((p) => ({ x: p.teacher_params / 1e6, y: p.teacher.mean })) }];
    parts.push('<h3>Teacher size</h3><p class="note">Arms that never see the teacher are run with the main study\'s teacher only.</p>',
      pointChart(`Student ${M} by teacher size`, 'teacher parameters (millions)', series, { yPercent: true }),
      htmlTable(['teacher', 'parameters', 'teacher score', ...a.arms],
        z.map((p) => [p.name, p.teacher_params.toLocaleString(), pct(p.teacher.mean), ...a.arms.map((x) => (p.arms[x] ? mStd(p.arms[x], p.arms[x].n) : '–'))])));
  }
  const abl = (title: string, xLabel: string, pts: NonNullable<AnalysesResults['meta_task_fraction']>, xName: string, sets: boolean): string[] => [
    pointChart(title, xLabel, armSeries((arm) => pts.filter((p) => p.arms[arm]).map((p) => ({ x: p.x, y: p.arms[arm].mean, err: p.arms[arm].std }))), { yPercent: true }),
    htmlTable([xName, ...(sets ? ['task sets'] : []), ...a.arms], pts.map((p) => [String(p.x), ...(sets ? [p.sources.length] : []), ...a.arms.map((x) => (p.arms[x] ? mStd(p.arms[x], p.arms[x].n) : '–'))])),
  ];
  if (a.meta_task_fraction?.length) parts.push('<h3>Examples per meta-training task</h3>', ...abl(`Student ${M} by the fraction of each meta-training task's examples`, 'fraction of examples per meta-training task', a.meta_task_fraction, 'fraction', false));
  if (a.meta_task_count?.length) parts.push('<h3>Number of meta-training tasks</h3>', ...abl(`Student ${M} by the number of meta-training tasks`, 'meta-training tasks', a.meta_task_count, 'tasks', true));
  return parts.join('\n');
}

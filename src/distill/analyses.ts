// The paper's analyses as a layer over the study's parts (study.ts): several student sizes (share
// of the teacher's score kept vs compression and measured speed-up), several teacher sizes, and the ablations over
// the fraction of examples per meta-training task and over the number of meta-training tasks.
// Each point is a sub-study (a copy of the study's config with one thing changed and fewer arms)
// run into <out>/analyses/<name>/, resumable on its own; the main study's tokenizer and trained
// teacher are reused (only read) wherever they are unchanged, and a point identical to the main
// study (all examples, all tasks) is taken from the main study's results instead of rerun.

import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { folderTasks, runStudyPart, workStudies, type StudyPart } from './study.js';
import { requireStage, STAGE } from './study-io.js';
import { ARMS, studyCells, type Arm, type StudyConfig } from './study-config.js';
import type { CellResult, StudyResults } from './study-results.js';
import { writeStudyReport } from './study-report.js';
import { taskSets } from './task-subset.js';
import { defaultSyntheticOptions, writeSyntheticSuite } from '../data/synthetic.js';
import { readJsonFile } from '../io/json.js';
import { writeJsonAtomic } from '../io/atomic.js';
import type { Metrics } from '../icl/evaluate.js';

export type AnalysisKind = 'student_sizes' | 'teacher_sizes' | 'meta_task_fraction' | 'meta_task_count';

/** One point of an analysis: a sub-study to run, or (config null) the main study itself. */
export interface SubStudy {
  kind: AnalysisKind;
  /** Directory name under <out>/analyses/ ("main" when the point is the main study). */
  name: string;
  label: string;
  /** The x value of ablation points (fraction or task count). */
  x?: number;
  /** Task-count points: which task set (0-based) of that count. */
  set?: number;
  config: StudyConfig | null;
}

export interface ArmPoint { mean: number; std: number; n: number; kept: number | null; seeds: Record<string, number> }
export interface SizePoint { name: string; source: string; teacher_params: number; student_params: number; compression: number; speedup: number; teacher: { mean: number; std: number }; arms: Record<string, ArmPoint> }
export interface AblationPoint { x: number; sources: string[]; tasks?: string[][]; arms: Record<string, { mean: number; std: number; n: number; per_set: number[] }> }
export interface AnalysesResults {
  metric: string;
  arms: string[];
  student_sizes?: SizePoint[];
  teacher_sizes?: SizePoint[];
  meta_task_fraction?: AblationPoint[];
  meta_task_count?: AblationPoint[];
}

const DEFAULT_ARMS: Arm[] = ['ICT', 'ICL-D'];
/** Arms whose student never sees the teacher (names as in ARMS; 'ICT (LM)' where that arm exists). */
const TEACHERLESS: string[] = ['Raw', 'Multitask-FT', 'ICT', 'ICT (LM)'];
const slug = (s: string): string => s.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-+|-+$/g, '').toLowerCase();

/** The directory the main study's teacher ends up in (read-only for sub-studies). */
export function mainTeacherDir(c: StudyConfig, out: string): string {
  return c.teacher.ict ? join(out, 'teacher') : (c.teacher.path ?? join(out, 'teacher-base'));
}

/** The study's fitting tasks for the meta setting, as the study itself lists them. */
export function studyTrainTasks(c: StudyConfig, out: string): string[] {
  if (c.tasks.synthetic) return writeSyntheticSuite(join(out, 'tasks'), c.tasks.synthetic).train; // already written by the study: returns its split
  return folderTasks(c, () => {}).train; // the study logs what it skips
}

/**
 * Expand the config's "analyses" section into its points. `trainTasks` are the study's
 * meta-training tasks (for the task-count sets). Student-size points and the ablations use the
 * main teacher (`teacher.path` = its directory, no tuning); teacher-size points tune their own
 * teacher like the main study does. All reuse the main study's tokenizer.
 */
export function expandAnalyses(c: StudyConfig, out: string, trainTasks: string[]): SubStudy[] {
  const a = c.analyses;
  if (!a) return [];
  const arms = a.arms ?? DEFAULT_ARMS;
  const seeds = a.seeds ?? c.seeds;
  // A point equal to the main study is read from it when the main study ran those arms on those seeds.
  const mainCovers = (c.arms ?? [...ARMS]).filter((x) => arms.includes(x)).length === arms.length && seeds.length === c.seeds.length && seeds.every((s) => c.seeds.includes(s));
  const teacherPath = mainTeacherDir(c, out);
  const sub = (label: string, edit: (s: StudyConfig) => void): StudyConfig => {
    const s = structuredClone(c);
    delete s.analyses; delete s.quick; delete s.expected_minutes;
    s.name = `${c.name}: ${label}`;
    s.arms = [...arms]; s.seeds = [...seeds];
    s.tokenizer = { path: c.tokenizer.path ?? join(out, 'tokenizer', 'tokenizer.json') };
    s.teacher = { path: teacherPath, ict: null };
    edit(s);
    return s;
  };
  const points: SubStudy[] = [];
  const names = new Set<string>();
  const add = (p: SubStudy): void => {
    if (p.config && names.has(p.name)) throw new Error(`study config: analyses gives two points named "${p.name}"; give each size a different name`);
    names.add(p.name); points.push(p);
  };
  for (const z of a.student_sizes ?? []) {
    add({ kind: 'student_sizes', name: `student-${slug(z.name)}`, label: `student ${z.name}`, config: sub(`student ${z.name}`, (s) => {
      const st = { ...s.student }; delete st.path; delete st.model;
      s.student = z.path ? { ...st, path: z.path } : { ...st, model: structuredClone(z.model) };
    }) });
  }
  // Arms without a teacher are the same under every teacher: teacher-size points run only the others.
  const taught = arms.filter((x) => !TEACHERLESS.includes(x));
  if (a.teacher_sizes && !taught.length) throw new Error(`study config: analyses.teacher_sizes needs an arm that learns from the teacher in analyses.arms (has ${arms.join(', ')})`);
  for (const z of a.teacher_sizes ?? []) {
    add({ kind: 'teacher_sizes', name: `teacher-${slug(z.name)}`, label: `teacher ${z.name}`, config: sub(`teacher ${z.name}`, (s) => {
      s.arms = [...taught];
      const t = structuredClone(c.teacher); delete t.path; delete t.model;
      s.teacher = z.path ? { ...t, path: z.path } : { ...t, model: structuredClone(z.model) };
    }) });
  }
  const needMeta = (key: string): void => { if (c.setting !== 'meta') throw new Error(`study config: analyses.${key} is an ablation over meta-training tasks and needs setting "meta" (this study is "${c.setting}")`); };
  if (a.meta_task_fraction) {
    needMeta('meta_task_fraction');
    for (const f of [...a.meta_task_fraction].sort((x, y) => x - y)) {
      const whole = f === 1 && !c.tasks.train_fraction && !c.tasks.train_subset;
      if (whole && mainCovers) { add({ kind: 'meta_task_fraction', name: 'main', label: 'all examples (main study)', x: 1, config: null }); continue; }
      add({ kind: 'meta_task_fraction', name: `fraction-${f}`, label: `${f} of each task's examples`, x: f, config: sub(`fraction ${f}`, (s) => {
        s.tasks = { ...s.tasks, train_fraction: f };
        if (f === 1) delete s.tasks.train_fraction;
      }) });
    }
  }
  if (a.meta_task_count) {
    needMeta('meta_task_count');
    const mc = a.meta_task_count;
    const tooMany = mc.counts.filter((n) => n > trainTasks.length);
    if (tooMany.length) throw new Error(`study config: analyses.meta_task_count.counts ${tooMany.join(', ')} exceed the study's ${trainTasks.length} meta-training tasks`);
    for (const { count, sets } of taskSets(trainTasks, [...mc.counts].sort((x, y) => x - y), mc.sets ?? 5, mc.seed ?? 1)) {
      sets.forEach((set, j) => {
        const whole = set.length === trainTasks.length && !c.tasks.train_fraction && !c.tasks.train_subset;
        if (whole && mainCovers) { add({ kind: 'meta_task_count', name: 'main', label: `all ${count} tasks (main study)`, x: count, set: j, config: null }); return; }
        const name = set.length === trainTasks.length ? `tasks-${count}` : `tasks-${count}-set-${j + 1}`;
        add({ kind: 'meta_task_count', name, label: `${count} tasks, set ${j + 1}`, x: count, set: j, config: sub(`${count} tasks, set ${j + 1}`, (s) => { s.tasks = { ...s.tasks, train_subset: set }; }) });
      });
    }
  }
  return points;
}

/** The headline metric: `headline` where the study reports one, else accuracy (em for generation). */
export function headlineMetric(m: Metrics): string {
  return 'headline' in m ? 'headline' : 'accuracy' in m ? 'accuracy' : ('em' in m ? 'em' : Object.keys(m)[0]);
}

function readResults(dir: string): StudyResults {
  return readJsonFile(join(dir, 'results.json'), 'study results') as StudyResults;
}

function armPoint(r: StudyResults, arm: string, metric: string): ArmPoint | null {
  const x = r.arms[arm];
  if (!x) return null;
  const t = r.teacher.mean[metric];
  const seeds: Record<string, number> = {};
  for (const [s, row] of Object.entries(x.seeds)) seeds[s] = row[metric] as number;
  return { mean: x.mean[metric], std: x.std[metric] ?? 0, n: Object.keys(x.seeds).length, kept: t > 0 ? +(x.mean[metric] / t).toFixed(4) : null, seeds };
}

function sizePoint(name: string, source: string, r: StudyResults, arms: string[], metric: string): SizePoint {
  const out: Record<string, ArmPoint> = {};
  for (const arm of arms) { const p = armPoint(r, arm, metric); if (p) out[arm] = p; }
  return { name, source, teacher_params: r.teacher_params, student_params: r.student_params, compression: r.compression, speedup: r.speedup,
    teacher: { mean: r.teacher.mean[metric], std: r.teacher.std[metric] ?? 0 }, arms: out };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const std = (xs: number[]): number => { if (xs.length < 2) return 0; const m = mean(xs); return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)); };

/** Ablation points: per x, the arm's value over every (task set, seed), and each set's mean. */
function ablation(points: { p: SubStudy; r: StudyResults }[], arms: string[], metric: string): AblationPoint[] {
  const xs = [...new Set(points.map((q) => q.p.x!))].sort((a, b) => a - b);
  return xs.map((x) => {
    const here = points.filter((q) => q.p.x === x);
    const res: AblationPoint['arms'] = {};
    for (const arm of arms) {
      const perSet = here.map((q) => armPoint(q.r, arm, metric)).filter((v): v is ArmPoint => v !== null);
      if (!perSet.length) continue;
      const all = perSet.flatMap((v) => Object.values(v.seeds));
      res[arm] = { mean: mean(all), std: std(all), n: all.length, per_set: perSet.map((v) => v.mean) };
    }
    const tasks = here.map((q) => q.p.config?.tasks.train_subset).filter((t): t is string[] => !!t);
    return { x, sources: here.map((q) => (q.p.config ? `analyses/${q.p.name}` : 'main')), ...(tasks.length ? { tasks } : {}), arms: res };
  });
}

/** Collect the points' results (the main study's for config-null points) into the analyses block. */
export function collectAnalyses(c: StudyConfig, out: string, points: SubStudy[], main: StudyResults): AnalysesResults {
  const metric = headlineMetric(main.teacher.mean);
  const arms = c.analyses?.arms ?? DEFAULT_ARMS;
  const got = points.map((p) => ({ p, r: p.config ? readResults(join(out, 'analyses', p.name)) : main }));
  const res: AnalysesResults = { metric, arms: [...arms] };
  const of = (k: AnalysisKind): { p: SubStudy; r: StudyResults }[] => got.filter((g) => g.p.kind === k);
  // The main study is a size point of its own when it ran the analysed arms.
  const mainSize = (who: string): SizePoint[] => (arms.some((a) => main.arms[a]) ? [sizePoint(`${who} of the main study`, 'main', main, arms, metric)] : []);
  if (c.analyses?.student_sizes) res.student_sizes = [...mainSize('student'), ...of('student_sizes').map((g) => sizePoint(g.p.label.replace(/^student /, ''), `analyses/${g.p.name}`, g.r, arms, metric))].sort((a, b) => a.compression - b.compression);
  if (c.analyses?.teacher_sizes) res.teacher_sizes = [...mainSize('teacher'), ...of('teacher_sizes').map((g) => sizePoint(g.p.label.replace(/^teacher /, ''), `analyses/${g.p.name}`, g.r, arms, metric))].sort((a, b) => a.teacher_params - b.teacher_params);
  if (c.analyses?.meta_task_fraction) res.meta_task_fraction = ablation(of('meta_task_fraction'), arms, metric);
  if (c.analyses?.meta_task_count) res.meta_task_count = ablation(of('meta_task_count'), arms, metric);
  return res;
}

/** Every finished cell of a study directory (for re-rendering its report). */
function readCells(out: string, arms: string[]): CellResult[] {
  const dir = join(out, 'cells'), cells: CellResult[] = [];
  if (!existsSync(dir)) return cells;
  for (const a of readdirSync(dir)) for (const s of readdirSync(join(dir, a))) {
    const p = join(dir, a, s, 'result.json');
    if (!existsSync(p)) continue;
    const cell = readJsonFile(p, 'study cell') as CellResult;
    if (arms.includes(cell.arm)) cells.push(cell);
  }
  return cells;
}

/**
 * The main study and each analysis point as a sub-study, then the `analyses` block added to the
 * main results.json and its plots to report.html. Rerunning resumes every part.
 */
export async function runStudyWithAnalyses(c: StudyConfig, out: string, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<object> {
  await runStudyWithAnalysesPart(c, out, { part: 'stage' }, log);
  await runStudyWithAnalysesPart(c, out, { part: 'worker' }, log);
  return runStudyWithAnalysesPart(c, out, { part: 'merge' }, log);
}

/**
 * One part (study.ts's StudyPart) over the main study and its analyses' sub-studies: the stage
 * makes every study's teacher-side inputs (the main one first: the sub-studies read its teacher
 * and tokenizer), workers and shards take cells from all of them, the merge merges each and adds
 * the analyses of whatever sub-studies have results, listing the missing cells of all.
 */
export async function runStudyWithAnalysesPart(c: StudyConfig, out: string, p: StudyPart, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<object> {
  if (p.part === 'all') return runStudyWithAnalyses(c, out, log);
  // A bad analyses section is refused before anything runs, not after the main study.
  if (c.analyses && c.setting === 'meta') {
    const n = c.tasks.synthetic ? (c.tasks.synthetic.trainTasks ?? defaultSyntheticOptions.trainTasks) : studyTrainTasks(c, out).length;
    expandAnalyses(c, out, Array.from({ length: n }, (_, i) => `task-${i}`));
  } else if (c.analyses) expandAnalyses(c, out, []);
  if (!c.analyses) return runStudyPart(c, out, p, log);
  if (p.part === 'stage') await runStudyPart(c, out, p, log);
  else requireStage(out); // the sub-studies are listed from the main study's tasks
  const points = expandAnalyses(c, out, c.setting === 'meta' ? studyTrainTasks(c, out) : []);
  const subs = points.flatMap((q) => (q.config ? [{ p: q, c: q.config, out: join(out, 'analyses', q.name), log: (s: string) => log(`  [${q.name}] ${s}`) }] : []));
  if (p.part === 'stage') {
    for (const [i, s] of subs.entries()) {
      log(`analysis ${i + 1}/${subs.length}: ${s.p.label} → ${s.out}`);
      // The teacher, tokenizer and test tasks are the main study's: its teacher evaluation holds here too.
      const te = join(out, 'teacher-eval.json');
      if (s.p.kind !== 'teacher_sizes' && existsSync(te) && !existsSync(join(s.out, 'teacher-eval.json'))) { mkdirSync(s.out, { recursive: true }); copyFileSync(te, join(s.out, 'teacher-eval.json')); }
      await runStudyPart(s.c, s.out, p, s.log);
    }
    const cells = [c, ...subs.map((x) => x.c)].reduce((n, k) => n + studyCells(k).length, 0);
    log(`teacher stage done for the main study and ${subs.length} analysis point(s): ${cells} cells to run`);
    return { stage: 'teacher', out, cells, studies: 1 + subs.length };
  }
  if (p.part === 'worker') return workStudies([{ c, out, log }, ...subs], p.leaseSeconds ?? 60, p.shard);
  // Merge: each study that has been staged, then the analyses of those with results.
  const main = await runStudyPart(c, out, p, log) as StudyResults & { missing_cells: string[] };
  const missing = [...main.missing_cells];
  const merged: SubStudy[] = [];
  for (const s of subs) {
    if (!existsSync(join(s.out, STAGE))) { missing.push(`analyses/${s.p.name}: not staged`); continue; }
    const r = await runStudyPart(s.c, s.out, p, s.log) as { missing_cells: string[] };
    missing.push(...r.missing_cells.map((m) => `analyses/${s.p.name}: ${m}`));
    if (r.missing_cells.length < studyCells(s.c).length) merged.push(s.p); // a point needs a finished cell
  }
  const mainResults = readResults(out);
  const analyses = collectAnalyses(c, out, points.filter((q) => !q.config || merged.includes(q)), mainResults);
  const results = { ...mainResults, analyses, missing_cells: missing };
  writeJsonAtomic(join(out, 'results.json'), results);
  const report = writeStudyReport(join(out, 'report.html'), c, results, readCells(out, c.arms ?? [...ARMS]));
  log(`analyses: ${merged.length} of ${subs.length} sub-studies merged → ${join(out, 'results.json')}`);
  return { ...results, report, out };
}

// The paper's analyses: expansion of an "analyses" section into sub-study configs, the exact and
// seeded task/example subsetting, the point chart's layout, and a tiny end-to-end run that adds
// the analyses block to results.json and its plots to report.html, reusing (never writing) the
// main study's teacher, and resuming on a rerun.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expandAnalyses, runStudyWithAnalyses, runStudyWithAnalysesPart, headlineMetric } from '../../src/distill/analyses.js';
import { restrictPools, taskSets, fractionCount } from '../../src/distill/task-subset.js';
import { readStudyConfig, type StudyConfig } from '../../src/distill/study.js';
import { pointChart, textWidth } from '../../src/report/html.js';
import type { Example } from '../../src/data/tasks.js';
import { tinyStudy } from '../helpers.js';

const config = (): StudyConfig => ({ ...tinyStudy(), seeds: [100], train: { ...tinyStudy().train, epochs: 1 }, arms: ['ICT'], threads: 1 });

const TASKS = Array.from({ length: 8 }, (_, i) => `synth-train-00${i}`);

test('analyses expand into sub-study configs: names, models, teacher, tokenizer, subsets, seeds', () => {
  const c = config();
  c.quick = { seeds: [1] }; c.expected_minutes = 3;
  c.analyses = {
    arms: ['ICT', 'ICL-D'], seeds: [100, 13],
    student_sizes: [{ name: 'S small', model: { n_embd: 8, n_head: 2 } }, { name: 'user', path: '/models/s' }],
    teacher_sizes: [{ name: 'big', model: { n_embd: 64, n_layer: 3, n_head: 4 } }],
    meta_task_fraction: [0.5, 0.125, 1],
    meta_task_count: { counts: [3, 8], sets: 2, seed: 5 },
  };
  const pts = expandAnalyses(c, '/out', TASKS);
  assert.deepEqual(pts.map((p) => p.name), ['student-s-small', 'student-user', 'teacher-big', 'fraction-0.125', 'fraction-0.5', 'fraction-1', 'tasks-3-set-1', 'tasks-3-set-2', 'tasks-8']);
  for (const p of pts) {
    const s = p.config!;
    assert.deepEqual(s.arms, p.kind === 'teacher_sizes' ? ['ICL-D'] : ['ICT', 'ICL-D'], p.name); // ICT never sees the teacher
    assert.deepEqual(s.seeds, [100, 13]);
    assert.equal(s.analyses, undefined); assert.equal(s.quick, undefined);
    assert.deepEqual(s.tokenizer, { path: '/out/tokenizer/tokenizer.json' });
    assert.deepEqual(s.tasks.synthetic, c.tasks.synthetic);
    if (p.kind === 'teacher_sizes') assert.deepEqual(s.teacher, { model: { n_embd: 64, n_layer: 3, n_head: 4 }, ict: c.teacher.ict });
    else assert.deepEqual(s.teacher, { path: '/out/teacher', ict: null }); // the main study's tuned teacher, only read
    if (p.kind !== 'student_sizes') assert.deepEqual(s.student, c.student);
  }
  assert.deepEqual(pts[0].config!.student, { model: { n_embd: 8, n_head: 2 } });
  assert.deepEqual(pts[1].config!.student, { path: '/models/s' });
  assert.deepEqual(pts.slice(3, 6).map((p) => [p.x, p.config!.tasks.train_fraction]), [[0.125, 0.125], [0.5, 0.5], [1, undefined]]);
  const sets = pts.filter((p) => p.kind === 'meta_task_count').map((p) => p.config!.tasks.train_subset);
  assert.deepEqual(sets.map((s) => s!.length), [3, 3, 8]);
  assert.deepEqual(sets[2], TASKS);
  assert.deepEqual(sets.slice(0, 2), taskSets(TASKS, [3], 2, 5)[0].sets);
  assert.notDeepEqual(sets[0], sets[1]);
  // The base config is untouched.
  assert.equal(c.tasks.train_subset, undefined); assert.equal(c.student.model!.n_embd, 16);
  // With the main study's arms and seeds, the whole-data points are the main study itself.
  const m = config(); m.arms = ['Raw', 'ICT', 'ICL-D']; m.seeds = [100, 13];
  m.teacher = { path: '/models/t', ict: null };
  m.analyses = { meta_task_fraction: [0.25, 1], meta_task_count: { counts: [8] } };
  const mp = expandAnalyses(m, '/out', TASKS);
  assert.deepEqual(mp.map((p) => [p.name, p.x, p.config === null]), [['fraction-0.25', 0.25, false], ['main', 1, true], ['main', 8, true]]);
  assert.deepEqual(mp[0].config!.teacher, { path: '/models/t', ict: null });
  // Errors name the key.
  const bad = config(); bad.setting = 'multitask'; bad.analyses = { meta_task_fraction: [0.5] };
  assert.throws(() => expandAnalyses(bad, '/out', TASKS), /analyses\.meta_task_fraction .* needs setting "meta"/);
  const many = config(); many.analyses = { meta_task_count: { counts: [3, 9] } };
  assert.throws(() => expandAnalyses(many, '/out', TASKS), /meta_task_count\.counts 9 exceed the study's 8 meta-training tasks/);
  const noTeacher = config(); noTeacher.analyses = { arms: ['Raw', 'ICT'], teacher_sizes: [{ name: 'x', model: {} }] };
  assert.throws(() => expandAnalyses(noTeacher, '/out', TASKS), /teacher_sizes needs an arm that learns from the teacher/);
  const dup = config(); dup.analyses = { student_sizes: [{ name: 'a b', model: {} }, { name: 'a-b', model: {} }] };
  assert.throws(() => expandAnalyses(dup, '/out', TASKS), /two points named "student-a-b"/);
});

test('analyses keys are checked when the config is read', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-an-cfg-'));
  const write = (extra: object): string => { const p = join(dir, 'c.json'); writeFileSync(p, JSON.stringify({ ...config(), ...extra })); return p; };
  assert.equal(readStudyConfig(write({ analyses: { meta_task_fraction: [0.5], student_sizes: [{ name: 'x', path: 'm' }] } }), true).analyses!.student_sizes![0].path, join(dir, 'm'));
  assert.throws(() => readStudyConfig(write({ analyses: { meta_task_fractions: [0.5] } }), true), /meta_task_fraction/);
  assert.throws(() => readStudyConfig(write({ analyses: { meta_task_fraction: [1.5] } }), true), /meta_task_fraction/);
  assert.throws(() => readStudyConfig(write({ analyses: { student_sizes: [{ name: 'x' }] } }), true), /analyses\.student_sizes entry "x" needs exactly one of "path" and "model"/);
  assert.throws(() => readStudyConfig(write({ tasks: { synthetic: {}, train_fraction: 0 } }), true), /train_fraction/);
});

test('task subsetting is exact, seeded and keeps file order', () => {
  const ex = (t: string, i: number): Example => ({ task: t, input: `${t} in ${i}`, output: `o${i % 3}`, options: ['o0', 'o1', 'o2'] });
  const pools = new Map(TASKS.map((t, j) => [t, Array.from({ length: 16 + j }, (_, i) => ex(t, i))]));
  assert.equal(restrictPools(pools, {}, 1), pools);
  for (const f of [0.125, 0.25, 0.5]) {
    const a = restrictPools(pools, { train_fraction: f }, 100), b = restrictPools(pools, { train_fraction: f }, 100);
    assert.deepEqual(a, b, 'not deterministic');
    for (const [t, pool] of pools) {
      const got = a.get(t)!;
      assert.equal(got.length, Math.max(2, Math.round(f * pool.length)), `${t} at ${f}`);
      const idx = got.map((e) => pool.indexOf(e));
      assert.ok(idx.every((v, i) => v >= 0 && (i === 0 || v > idx[i - 1])), 'not a subset in file order');
    }
  }
  assert.equal(fractionCount(10, 0.05), 2); assert.equal(fractionCount(1, 0.5), 1); assert.equal(fractionCount(17, 0.25), 4);
  const s13 = restrictPools(pools, { train_fraction: 0.25 }, 13), s100 = restrictPools(pools, { train_fraction: 0.25 }, 100);
  assert.notDeepEqual(s13, s100, 'the seed does not change the draw');
  // Tasks: the named subset in the pools' order, the full subset = the pools.
  const sub = restrictPools(pools, { train_subset: [TASKS[5], TASKS[1]], train_fraction: 0.5 }, 100);
  assert.deepEqual([...sub.keys()], [TASKS[1], TASKS[5]]);
  assert.deepEqual(sub.get(TASKS[1]), restrictPools(pools, { train_fraction: 0.5 }, 100).get(TASKS[1]), 'the draw of a task depends on the others');
  assert.deepEqual([...restrictPools(pools, { train_subset: [...TASKS].reverse() }, 1).entries()], [...pools.entries()]);
  assert.throws(() => restrictPools(pools, { train_subset: ['nope'] }, 1), /tasks\.train_subset names "nope", not among this study's training tasks/);
  // Task sets: exact sizes, distinct members, seeded, a count ≥ the tasks is the one full set.
  const ts = taskSets(TASKS, [3, 6, 8, 12], 5, 7);
  assert.deepEqual(ts.map((x) => [x.count, x.sets.length]), [[3, 5], [6, 5], [8, 1], [8, 1]]);
  for (const x of ts) for (const s of x.sets) { assert.equal(new Set(s).size, x.count); assert.ok(s.every((t) => TASKS.includes(t))); }
  assert.deepEqual(taskSets(TASKS, [3], 5, 7), taskSets(TASKS, [3], 5, 7));
  assert.notDeepEqual(taskSets(TASKS, [3], 5, 7), taskSets(TASKS, [3], 5, 8));
  assert.ok(new Set(ts[0].sets.map((s) => s.join())).size > 1, 'every set the same');
});

/** Every text box of every <svg> lies inside its viewBox and overlaps no other (same width estimate as the layout). */
function checkFits(html: string): number {
  const svgs = [...html.matchAll(/<svg[^>]*viewBox="0 0 (\d+) (\d+)"[^>]*>([\s\S]*?)<\/svg>/g)];
  for (const m of svgs) {
    const w = +m[1], h = +m[2];
    const boxes: { s: string; x0: number; x1: number; y0: number; y1: number }[] = [];
    for (const t of m[3].matchAll(/<text x="([-\d.]+)" y="([-\d.]+)"(?: text-anchor="(\w+)")? font-size="(\d+)"( font-weight="bold")?[^>]*>([^<]*)<\/text>/g)) {
      const x = +t[1], y = +t[2], size = +t[4];
      const s = t[6].replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
      const tw = textWidth(s, size, !!t[5]);
      const x0 = t[3] === 'end' ? x - tw : t[3] === 'middle' ? x - tw / 2 : x;
      assert.ok(x0 >= 0 && x0 + tw <= w && y - size >= 0 && y + 0.3 * size <= h, `"${s}" outside its ${w}×${h} viewBox`);
      for (const b of boxes) assert.ok(!(x0 < b.x1 && b.x0 < x0 + tw && y - size < b.y1 && b.y0 < y + 0.3 * size), `"${s}" overlaps "${b.s}"`);
      boxes.push({ s, x0, x1: x0 + tw, y0: y - size, y1: y + 0.3 * size });
    }
    assert.ok(boxes.length > 3, 'texts not found');
  }
  return svgs.length;
}

test('pointChart: points, error bars and a reference line inside the viewBox', () => {
  const svg = pointChart('A long title about the share of the teacher\'s accuracy each student keeps at every compression', 'compression (teacher parameters ÷ student parameters)', [
    { name: 'ICT', color: '#111', points: [{ x: 13.4, y: 0.914, err: 0.02 }, { x: 1, y: 0.7 }, { x: 3.4, y: 1.03, err: 0.05 }] },
    { name: 'ICL-D with a very long series name that needs cutting to fit the legend row of this chart', color: '#222', points: [{ x: 2, y: 0.5 }] },
  ], { yPercent: true, refs: [{ y: 1, label: 'teacher = 100%' }] });
  assert.equal(checkFits(svg), 1);
  assert.match(svg, /M[\d.]+,[\d.]+L/, 'points are not joined');
  assert.equal((svg.match(/<circle/g) ?? []).length, 4);
  assert.ok(svg.includes('stroke-dasharray') && svg.includes('>teacher = 100%<'));
  assert.deepEqual([...svg.matchAll(/text-anchor="end" font-size="11">([^<]*)</g)].map((m) => m[1]), ['40%', '60%', '80%', '100%', '120%'], 'y ticks are not percentages of the range');
  assert.equal(checkFits(pointChart('one', 'x', [{ name: 'a', color: '#000', points: [{ x: 5, y: 0.5 }] }])), 1);
  // A reference line at the top of the plot has its label below it, clear of the title.
  const topRef = pointChart('Kept share', 'x', [{ name: 'a', color: '#000', points: [{ x: 1, y: 0.5 }, { x: 2, y: 0.9 }] }], { yPercent: true, refs: [{ y: 1, label: 'teacher = 100%' }] });
  assert.equal(checkFits(topRef), 1);
  const refY = Number(/<line x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)" y2="[\d.]+" stroke="#777"/.exec(topRef)![1]);
  const labelY = Number(/y="([\d.]+)" text-anchor="end" font-size="11" fill="#555">teacher = 100%/.exec(topRef)![1]);
  assert.ok(labelY > refY, `label at ${labelY} is not below the line at ${refY}`);
  assert.match(pointChart('none', 'x', []), /no data/);
});

test('a bad analyses section is refused before the main study runs', async () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-analyses-bad-'));
  const c = config(); c.analyses = { meta_task_count: { counts: [4, 9] } };
  await assert.rejects(runStudyWithAnalyses(c, out, () => {}), /meta_task_count\.counts 9 exceed the study's 8 meta-training tasks/);
  const m = config(); m.setting = 'multitask'; m.analyses = { meta_task_fraction: [0.5] };
  await assert.rejects(runStudyWithAnalyses(m, out, () => {}), /needs setting "meta"/);
  assert.deepEqual(readdirSync(out), [], 'the main study ran first');
});

let e2e: { c: StudyConfig; out: string } | null = null;

test('end to end: a tiny study with student-size and ablation analyses', async () => {
  const out = mkdtempSync(join(tmpdir(), 'icld-analyses-'));
  const c = config();
  c.analyses = {
    arms: ['ICT'],
    student_sizes: [{ name: 'tiny', model: { n_positions: 64, n_embd: 8, n_layer: 1, n_head: 2 } }],
    meta_task_fraction: [0.25, 1],
    meta_task_count: { counts: [2, 8], sets: 2 },
  };
  const logs: string[] = [];
  await runStudyWithAnalyses(c, out, (s) => logs.push(s));
  e2e = { c, out };
  const teacherFiles = (): string[] => readdirSync(join(out, 'teacher')).map((f) => `${f}:${statSync(join(out, 'teacher', f)).mtimeMs}`).sort();
  const teacherBefore = teacherFiles();
  assert.deepEqual(readdirSync(join(out, 'analyses')).sort(), ['fraction-0.25', 'student-tiny', 'tasks-2-set-1', 'tasks-2-set-2']);
  for (const d of readdirSync(join(out, 'analyses'))) {
    assert.ok(!existsSync(join(out, 'analyses', d, 'teacher')) && !existsSync(join(out, 'analyses', d, 'tokenizer')), `${d} trained its own teacher or tokenizer`);
  }
  const sub = JSON.parse(readFileSync(join(out, 'analyses', 'fraction-0.25', 'study_config.json'), 'utf8'));
  assert.equal(sub.tasks.train_fraction, 0.25); assert.equal(sub.teacher.path, join(out, 'teacher'));
  const res = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  const a = res.analyses;
  assert.equal(a.metric, headlineMetric(res.teacher.mean));
  assert.equal(a.metric, 'headline');
  // Student sizes: the main student and the tiny one, by compression, numbers from each study.
  const tiny = JSON.parse(readFileSync(join(out, 'analyses', 'student-tiny', 'results.json'), 'utf8'));
  assert.deepEqual(a.student_sizes.map((p: { source: string }) => p.source), ['main', 'analyses/student-tiny']);
  const [pm, pt] = a.student_sizes;
  assert.equal(pm.compression, res.compression); assert.equal(pt.compression, tiny.compression);
  assert.ok(pt.student_params < pm.student_params && pt.teacher_params === pm.teacher_params);
  assert.equal(pt.speedup, tiny.speedup);
  assert.equal(pt.arms.ICT.mean, tiny.arms.ICT.mean.headline);
  assert.equal(pt.arms.ICT.kept, +(tiny.arms.ICT.mean.headline / tiny.teacher.mean.headline).toFixed(4));
  assert.equal(tiny.teacher.mean.headline, res.teacher.mean.headline, 'the sub-study\'s teacher is not the main one');
  // Ablations: x values, where each point comes from, per-set values.
  assert.deepEqual(a.meta_task_fraction.map((p: { x: number; sources: string[] }) => [p.x, p.sources]), [[0.25, ['analyses/fraction-0.25']], [1, ['main']]]);
  assert.equal(a.meta_task_fraction[1].arms.ICT.mean, res.arms.ICT.mean.headline);
  const [c2, c8] = a.meta_task_count;
  assert.deepEqual([c2.x, c2.sources, c2.tasks.map((t: string[]) => t.length), c8.x, c8.sources], [2, ['analyses/tasks-2-set-1', 'analyses/tasks-2-set-2'], [2, 2], 8, ['main']]);
  const setMeans = ['tasks-2-set-1', 'tasks-2-set-2'].map((d) => JSON.parse(readFileSync(join(out, 'analyses', d, 'results.json'), 'utf8')).arms.ICT.mean.headline);
  assert.deepEqual(c2.arms.ICT.per_set, setMeans);
  assert.ok(Math.abs(c2.arms.ICT.mean - (setMeans[0] + setMeans[1]) / 2) < 1e-12);
  assert.equal(c2.arms.ICT.n, 2);
  // The report has the analyses' plots, all within their viewBoxes.
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  for (const h of ['Student size', 'Examples per meta-training task', 'Number of meta-training tasks', 'by compression', 'by measured speed-up']) assert.ok(html.includes(h), h);
  assert.ok(checkFits(html) >= 4);
  // A rerun resumes every sub-study and writes the same analyses; the main teacher is never written.
  const logs2: string[] = [];
  await runStudyWithAnalyses(c, out, (s) => logs2.push(s));
  assert.ok(logs2.filter((l) => l.includes('done earlier (kept)')).length >= 5, logs2.join('\n'));
  const again = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).analyses;
  const noSpeed = (x: typeof a): unknown => ({ ...x, student_sizes: x.student_sizes.map((p: { speedup: number }) => ({ ...p, speedup: 0 })) });
  assert.deepEqual(noSpeed(again), noSpeed(a));
  assert.deepEqual(teacherFiles(), teacherBefore);
});

test('the analyses as jobs: stage, shards 0/2 and 1/2, merge equal the one-process run; a partial merge lists what is missing', async () => {
  assert.ok(e2e, 'needs the end-to-end run above');
  const { c } = e2e;
  const out = mkdtempSync(join(tmpdir(), 'icld-analyses-jobs-'));
  const quiet = (): void => {};
  await assert.rejects(runStudyWithAnalysesPart(c, out, { part: 'worker' }, quiet), /the teacher stage has not been run there/);
  const st = await runStudyWithAnalysesPart(c, out, { part: 'stage' }, quiet) as { cells: number; studies: number };
  assert.deepEqual([st.studies, st.cells], [5, 5]);
  assert.ok(!existsSync(join(out, 'cells')), 'the stage ran a cell');
  for (const d of readdirSync(join(e2e.out, 'analyses'))) assert.ok(existsSync(join(out, 'analyses', d, 'stage.json')), `${d} was not staged`);
  // Cells in order: main, student-tiny, fraction-0.25, tasks-2-set-1, tasks-2-set-2; shard 0/2 runs 0, 2, 4.
  await runStudyWithAnalysesPart(c, out, { part: 'worker', shard: { i: 0, n: 2 } }, quiet);
  const half = await runStudyWithAnalysesPart(c, out, { part: 'merge' }, quiet) as { missing_cells: string[]; analyses: { student_sizes: { source: string }[]; meta_task_count: { sources: string[] }[] } };
  assert.deepEqual(half.missing_cells, ['analyses/student-tiny: ICT seed 100', 'analyses/tasks-2-set-1: ICT seed 100']);
  assert.deepEqual(half.analyses.student_sizes.map((p) => p.source), ['main']);
  assert.deepEqual(half.analyses.meta_task_count.map((p) => p.sources), [['analyses/tasks-2-set-2'], ['main']]);
  await runStudyWithAnalysesPart(c, out, { part: 'worker', shard: { i: 1, n: 2 } }, quiet);
  const full = await runStudyWithAnalysesPart(c, out, { part: 'merge' }, quiet) as { missing_cells: string[]; analyses: unknown; arms: unknown };
  const one = JSON.parse(readFileSync(join(e2e.out, 'results.json'), 'utf8'));
  const noSpeed = (x: { student_sizes: { speedup: number }[] }): unknown => ({ ...x, student_sizes: x.student_sizes.map((p) => ({ ...p, speedup: 0 })) });
  assert.deepEqual(full.missing_cells, []);
  assert.deepEqual(noSpeed(full.analyses as never), noSpeed(one.analyses));
  assert.deepEqual(full.arms, one.arms);
  const cell = (dir: string): unknown => { const { train_s, epoch_s, ...r } = JSON.parse(readFileSync(join(dir, 'cells', 'ict', '100', 'result.json'), 'utf8')); void train_s; void epoch_s; return r; };
  for (const d of readdirSync(join(e2e.out, 'analyses'))) assert.deepEqual(cell(join(out, 'analyses', d)), cell(join(e2e.out, 'analyses', d)), d);
});

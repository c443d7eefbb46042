// Report layout: every SVG text's box (from the same width estimate the layout uses, which
// over-estimates the rendered DejaVu/Verdana width) lies inside its viewBox and overlaps no other
// text (the legend no longer sits on the title); a single seed shows n = 1, never "± 0.0"; the
// ICL table has separate seeds / test examples columns.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { barChart, lineChart, meanStdCell, niceTicks, textWidth, wrapText } from '../../src/report/html.js';
import { trainingReportHtml } from '../../src/train/report.js';
import { iclReportHtml } from '../../src/icl/report.js';
import { studyReportHtml } from '../../src/distill/study-report.js';
import type { IclResult, TaskResult } from '../../src/icl/evaluate.js';
import type { CellResult, StudyConfig, StudyResults } from '../../src/distill/study.js';

interface Box { s: string; x0: number; x1: number; y0: number; y1: number; }
interface Svg { w: number; h: number; texts: Box[]; }

const unesc = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
const attr = (tag: string, name: string): string | undefined => new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1];

/** Every <svg> of a page with its viewBox and its texts' boxes (baseline y: ascent 1 em, descent 0.3 em). */
function svgs(html: string): Svg[] {
  return [...html.matchAll(/<svg([^>]*)>([\s\S]*?)<\/svg>/g)].map((m) => {
    const vb = attr(m[1], 'viewBox');
    assert.ok(vb, 'svg without viewBox');
    const [vx, vy, w, h] = vb.split(' ').map(Number);
    assert.deepEqual([vx, vy, attr(m[1], 'width'), attr(m[1], 'height')], [0, 0, String(w), String(h)]);
    const texts = [...m[2].matchAll(/<text([^>]*)>([^<]*)<\/text>/g)].map((t) => {
      const x = Number(attr(t[1], 'x')), y = Number(attr(t[1], 'y')), size = Number(attr(t[1], 'font-size'));
      assert.ok(Number.isFinite(x) && Number.isFinite(y) && size > 0, t[0]);
      assert.equal(attr(t[1], 'transform'), undefined, 'rotated text is not measured here');
      const s = unesc(t[2]), tw = textWidth(s, size, attr(t[1], 'font-weight') === 'bold');
      const anchor = attr(t[1], 'text-anchor') ?? 'start';
      const x0 = anchor === 'end' ? x - tw : anchor === 'middle' ? x - tw / 2 : x;
      return { s, x0, x1: x0 + tw, y0: y - size, y1: y + 0.3 * size };
    });
    return { w, h, texts };
  });
}

function checkLayout(html: string, what: string): Svg[] {
  const all = svgs(html);
  assert.ok(all.length > 0, `${what}: no chart`);
  all.forEach((g, gi) => {
    for (const b of g.texts) {
      assert.ok(b.x0 >= 0 && b.x1 <= g.w && b.y0 >= 0 && b.y1 <= g.h,
        `${what} svg ${gi}: "${b.s}" box [${b.x0.toFixed(1)}, ${b.x1.toFixed(1)}] × [${b.y0.toFixed(1)}, ${b.y1.toFixed(1)}] outside 0..${g.w} × 0..${g.h}`);
    }
    for (let i = 0; i < g.texts.length; i++) for (let j = i + 1; j < g.texts.length; j++) {
      const a = g.texts[i], b = g.texts[j];
      const overlap = a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
      assert.ok(!overlap, `${what} svg ${gi}: "${a.s}" overlaps "${b.s}"`);
    }
  });
  return all;
}

const ARMS = ['Raw', 'Multitask-FT', 'ICT', 'ICL-D', 'ICL-D (LM)', 'LM-KD'];
const STD = 0.0123;

function study(seeds: number[]): string {
  const groups = { Classification: ['a', 'b'], 'Paraphrase / natural-language inference (long group name)': ['c'] };
  const n = seeds.length;
  const row = (base: number) => ({
    seeds: Object.fromEntries(seeds.map((s, i) => [String(s), { accuracy: base + 0.01 * i, groups: {} }])),
    mean: { accuracy: base, macro_f1: base - 0.05 }, std: { accuracy: n > 1 ? STD : 0, macro_f1: n > 1 ? STD : 0 },
    groups: Object.fromEntries(Object.keys(groups).map((g) => [g, { mean: { accuracy: base }, std: { accuracy: n > 1 ? STD : 0 } }])),
  });
  const r = {
    arms: Object.fromEntries(ARMS.map((a, i) => [a, { ...row(0.3 + 0.05 * i), retained: (0.3 + 0.05 * i) / 0.4 }])), teacher: row(0.4),
    student_params: 1e6, teacher_params: 4e6, compression: 4, speedup: 3.1, speed: { teacher_tokens_per_s: 100, student_tokens_per_s: 310 },
    groups, epoch_cost: { ict_s: 1, icl_d_cached_s: 0.5, ratio: 0.5 },
  } as unknown as StudyResults;
  const c = { name: 'tiny <study>', setting: 'meta', k: 4, seeds } as unknown as StudyConfig;
  const cells = ARMS.map((arm, i) => ({ arm, seed: seeds[0], curve: Array.from({ length: 30 }, (_, s) => [s * 10, 3 - 0.1 * i - 0.02 * s]) })) as unknown as CellResult[];
  return studyReportHtml(c, r, cells);
}

function icl(seeds: number[]): IclResult {
  const tasks: Record<string, TaskResult> = {};
  ['superglue-cb', 'ethos-national_origin_and_a_really_long_task_name_that_goes_on_and_on', 'wino_grande'].forEach((t, i) => {
    tasks[t] = {
      seeds: Object.fromEntries(seeds.map((s) => [String(s), { accuracy: 0.3 + 0.1 * i }])), mean: { accuracy: 0.3 + 0.1 * i },
      std: { accuracy: seeds.length > 1 ? STD : 0 }, truncated: 2, examples: 56 * seeds.length, test_examples: 56, skipped: i, skipped_lines: [],
    };
  });
  return { tasks, average: { accuracy: 0.4 }, config: { k: 16, seeds, method: 'direct', orders: 1, n_positions: 64 }, errors: [{ task: 'broken', error: '/t/broken_test.jsonl:2: invalid JSON' }] };
}

describe('chart layout', () => {
  it('line chart: long title wraps, legend rows below the plot, nothing outside the viewBox or overlapping', () => {
    const series = ARMS.map((a, i) => ({ name: `${a} student with a longer legend entry`, color: '#000', points: [[0, i], [1e5, 1e-4 * i]] as [number, number][] }));
    const [g] = checkLayout(lineChart('A rather long chart title that will not fit on one line of a narrow chart at all', 'step', series, 360), 'lineChart');
    const title = g.texts.filter((t) => t.s.startsWith('A rather') || t.s.includes('title') || t.s.includes('line')), legend = g.texts.filter((t) => ARMS.some((a) => t.s.startsWith(`${a} student`)));
    assert.ok(title.length >= 2, 'title not wrapped');
    assert.equal(legend.length, ARMS.length);
    const xLabel = g.texts.find((t) => t.s === 'step')!;
    for (const l of legend) assert.ok(l.y0 >= xLabel.y1 && l.y0 >= Math.max(...title.map((t) => t.y1)), `legend "${l.s}" not below the plot`);
    assert.ok(new Set(legend.map((l) => l.y0)).size > 1, 'legend did not wrap onto rows');
  });

  it('line chart: wide tick labels on both axes get their margins', () => {
    checkLayout(lineChart('t', 'x', [{ name: 'a', color: '#000', points: [[123456.7, -0.000123456], [223456.7, 98765.4321]] }], 300), 'ticks');
  });

  it('bar chart: long labels wrap, values above 100 % widen the axis', () => {
    const [g] = checkLayout(barChart('kept', [{ label: 'x'.repeat(10) + ' ' + 'a-very-long-category-label-without-spaces-at-all-here', value: 0.5, err: 0.1 }, { label: 'b', value: 1.37 }], 400), 'barChart');
    assert.ok(g.texts.some((t) => t.s === '150%'), 'axis does not reach the largest value');
    assert.ok(g.texts.some((t) => t.s === '137.0'));
  });

  it('wrapText keeps every line within the width; niceTicks span the data', () => {
    for (const l of wrapText('superglue-cb tweet_eval-stance_feminist ' + 'z'.repeat(80), 12, 120)) assert.ok(textWidth(l, 12) <= 120, l);
    const t = niceTicks(0.013, 1.37);
    assert.ok(t[0] <= 0.013 && t[t.length - 1] >= 1.37, t.join(','));
  });
});

describe('reports', () => {
  it('study report, 1 seed: n = 1, no "±"; charts laid out', () => {
    const html = study([100]);
    checkLayout(html, 'study 1 seed');
    assert.ok(!html.includes('±  0.0') && !/\d ± \d/.test(html), 'a ± appears for a single seed');
    assert.equal((html.match(/<td>n = 1<\/td>/g) ?? []).length, 1 + ARMS.length);
    assert.ok(html.includes('tiny &lt;study&gt;'), 'study name escaped');
  });

  it('study report, 3 seeds: mean ± the real std, n = 3', () => {
    const html = study([100, 13, 21]);
    checkLayout(html, 'study 3 seeds');
    assert.ok(html.includes(`<td>40.0 ± ${(100 * STD).toFixed(1)}</td>`), 'teacher mean ± std missing');
    assert.equal((html.match(/<td>n = 3<\/td>/g) ?? []).length, 1 + ARMS.length);
  });

  it('ICL report: separate seeds / test examples / skipped columns, n = 1 for one seed, failed tasks listed', () => {
    for (const seeds of [[100], [100, 13]]) {
      const html = iclReportHtml(icl(seeds));
      checkLayout(html, `icl ${seeds.length} seeds`);
      const head = [...html.matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1]);
      assert.deepEqual(head, ['task', 'accuracy', 'seeds', 'test examples', 'skipped', 'prompts truncated']);
      assert.ok(!html.includes('seed ×'));
      assert.ok(html.includes(`<tr><td>wino_grande</td><td>${seeds.length > 1 ? `50.0 ± ${(100 * STD).toFixed(1)}` : '50.0'}</td><td>n = ${seeds.length}</td><td>56</td><td>2</td><td>2 of ${56 * seeds.length}</td></tr>`), html);
      assert.ok(html.includes('<b>broken</b>: /t/broken_test.jsonl:2: invalid JSON'));
    }
  });

  it('training report charts fit', () => {
    const st = {
      global_step: 300, elapsed_s: 12,
      log_history: Array.from({ length: 30 }, (_, i) => ({ step: 10 * (i + 1), loss: 5 - i / 10, lr: 3e-4 * (1 - i / 30), tokens_per_s: 123456 + i })),
      eval_history: [{ step: 100, loss: 4 }, { step: 200, loss: 3.5 }],
    };
    assert.equal(checkLayout(trainingReportHtml(st), 'training').length, 3);
  });

  it('meanStdCell', () => {
    const f = (v: number): string => (100 * v).toFixed(1);
    assert.equal(meanStdCell(0.5, 0, 1, f), '50.0');
    assert.equal(meanStdCell(0.5, 0.02, 3, f), '50.0 ± 2.0');
    assert.equal(meanStdCell(undefined, 0, 3, f), '–');
  });
});

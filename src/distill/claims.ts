// The paper's claims a study can test, each with a verdict from a paired test over seeds × tasks.
// Input: one or more studies' per-cell results (a Meta and a Multitask study together also test
// the cross-setting claim). Headline metric per task: `headline` when the metrics carry one, else
// accuracy (else em, else P@1 for LAMA).
//
// Verdict rule (documented in the README; α = 0.05, equivalence margin δ = 2 points by default),
// on the paired differences d = A − B per (seed, task), with a one-sided paired t-test:
//   A > B           reproduced if d > 0 at p < α; not reproduced if d < 0 at p < α; else inconclusive.
//   A not > B       reproduced if d < δ at p < α; not reproduced if d > 0 at p < α; else inconclusive.
//   A ≈ B           reproduced if −δ < d < δ (both one-sided tests at p < α, TOST);
//                   not reproduced if d > δ or d < −δ at p < α; else inconclusive.
//   keeps ≥ r       the A > B rule on d = student − r·teacher.
// Fewer than 2 pairs: inconclusive. A claim whose arms or setting the studies lack: "not tested here".
// The Wilcoxon signed-rank and sign tests are reported beside the t-test as a check; they do not
// change the verdict.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonFile } from '../io/json.js';
import type { Metrics } from '../icl/evaluate.js';
import { pairedTTest, signTest, tQuantile, wilcoxonSignedRank } from '../eval/stats.js';
import type { CellResult } from './study-results.js';

export type Verdict = 'reproduced' | 'not reproduced' | 'inconclusive' | 'not tested here';
export type ClaimKind = 'greater' | 'not-greater' | 'equivalent' | 'keeps';

export interface ClaimStudy {
  /** Shown in the measured text when several studies are given. */
  label?: string;
  setting: 'meta' | 'multitask';
  cells: CellResult[];
  /** Teacher metrics per seed (for the compression claims). */
  teacher?: Record<string, { tasks: Record<string, Metrics> }>;
  compression?: number;
  speedup?: number;
}

export interface ClaimOptions { alpha?: number; margin?: number; }

export interface Claim {
  claim: string;
  paper: string;
  measured: string;
  verdict: Verdict;
  kind: ClaimKind;
  setting: string;
  /** Why the verdict is "not tested here" or has too few pairs. */
  reason?: string;
  a?: { what: string; mean: number };
  b?: { what: string; mean: number };
  difference?: number;
  ci95?: [number, number];
  pairs?: number;
  seeds?: number;
  tasks?: number;
  t_test?: { t: number; df: number; p_claimed: number; p_two_sided: number };
  wilcoxon?: { w_plus: number; p_claimed: number; p_two_sided: number; exact: boolean };
  sign?: { positive: number; negative: number; zeros: number; p_claimed: number };
  compression?: number;
  speedup?: number;
  rule: string;
}

/** The study's headline number for one task's metrics. */
export function headline(m: Metrics | undefined): number | undefined {
  if (!m) return undefined;
  const v = m.headline ?? m.accuracy ?? m.em ?? m.p1;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

type Scores = Map<string, number>; // "seed\u0000task" → headline

function armScores(s: ClaimStudy, arm: string): Scores | null {
  const cells = s.cells.filter((c) => c.arm === arm);
  if (cells.length === 0) return null;
  const out: Scores = new Map();
  for (const c of cells) for (const [t, m] of Object.entries(c.tasks)) { const v = headline(m); if (v !== undefined) out.set(`${c.seed}\u0000${t}`, v); }
  return out;
}

function teacherScores(s: ClaimStudy): Scores | null {
  if (!s.teacher || Object.keys(s.teacher).length === 0) return null;
  const out: Scores = new Map();
  for (const [seed, r] of Object.entries(s.teacher)) for (const [t, m] of Object.entries(r.tasks)) { const v = headline(m); if (v !== undefined) out.set(`${seed}\u0000${t}`, v); }
  return out;
}

const pts = (x: number): string => (100 * x).toFixed(1);
const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${pts(Math.abs(x))}`;
const pfmt = (p: number): string => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));

const RULES: Record<ClaimKind, (alpha: number, margin: number) => string> = {
  greater: (a) => `paired t-test over seeds × tasks, one-sided: reproduced if A > B at p < ${a}, not reproduced if A < B at p < ${a}, else inconclusive`,
  'not-greater': (a, m) => `paired t-test, one-sided: reproduced if A − B < ${pts(m)} points at p < ${a}, not reproduced if A > B at p < ${a}, else inconclusive`,
  equivalent: (a, m) => `two one-sided paired t-tests with margin ±${pts(m)} points: reproduced if the difference is within the margin at p < ${a}, not reproduced if it is outside it at p < ${a}, else inconclusive`,
  keeps: (a) => `paired t-test on student − r × teacher, one-sided: reproduced if > 0 at p < ${a}, not reproduced if < 0 at p < ${a}, else inconclusive`,
};

interface Spec { claim: string; paper: string; kind: ClaimKind; setting: string; aName: string; bName: string; ratio?: number; }

/** Compare paired scores and apply the kind's rule. */
export function judge(spec: Spec, a: Scores, b: Scores, o: Required<ClaimOptions>, extra: Partial<Claim> = {}): Claim {
  const r = spec.ratio ?? 1;
  const keys = [...a.keys()].filter((k) => b.has(k)).sort();
  const base: Claim = { claim: spec.claim, paper: spec.paper, measured: '', verdict: 'inconclusive', kind: spec.kind, setting: spec.setting, rule: RULES[spec.kind](o.alpha, o.margin), ...extra };
  if (keys.length < 2) {
    return { ...base, verdict: keys.length === 0 ? 'not tested here' : 'inconclusive', reason: `${keys.length} (seed, task) pair(s) in common; a paired test needs at least 2`, measured: `${keys.length} pair(s)`, pairs: keys.length };
  }
  const av = keys.map((k) => a.get(k)!), bv = keys.map((k) => r * b.get(k)!);
  const d = av.map((x, i) => x - bv[i]);
  const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
  const t = pairedTTest(d), w = wilcoxonSignedRank(d), sg = signTest(d);
  const half = t.se * tQuantile(0.975, t.df);
  const ci: [number, number] = [t.mean - half, t.mean + half];
  const { alpha, margin } = o;
  let verdict: Verdict = 'inconclusive', pClaimed = t.greater;
  if (spec.kind === 'greater' || spec.kind === 'keeps') {
    if (t.greater < alpha) verdict = 'reproduced'; else if (t.less < alpha) verdict = 'not reproduced';
  } else if (spec.kind === 'not-greater') {
    const below = pairedTTest(d.map((x) => x - margin)).less;
    pClaimed = below;
    if (below < alpha) verdict = 'reproduced'; else if (t.greater < alpha) verdict = 'not reproduced';
  } else {
    const below = pairedTTest(d.map((x) => x - margin)), above = pairedTTest(d.map((x) => x + margin));
    pClaimed = Math.max(below.less, above.greater);
    if (below.less < alpha && above.greater < alpha) verdict = 'reproduced';
    else if (below.greater < alpha || above.less < alpha) verdict = 'not reproduced';
  }
  const wClaimed = spec.kind === 'greater' || spec.kind === 'keeps' ? w.greater : spec.kind === 'not-greater' ? w.less : w.two_sided;
  const seeds = new Set(keys.map((k) => k.split('\u0000')[0])).size, tasks = new Set(keys.map((k) => k.split('\u0000')[1])).size;
  const bLabel = r === 1 ? spec.bName : `${(100 * r).toFixed(1)}% of ${spec.bName}`;
  const measured = `${spec.aName} ${pts(mean(av))} vs ${bLabel} ${pts(mean(bv))}: ${signed(t.mean)} points (95% CI ${signed(ci[0])} to ${signed(ci[1])}), `
    + `one-sided p for the claim: t-test ${pfmt(pClaimed)}${spec.kind === 'equivalent' ? ' (TOST)' : ''}, Wilcoxon ${spec.kind === 'equivalent' ? 'two-sided ' : ''}${pfmt(wClaimed)}; ${keys.length} pairs (${seeds} seed(s) × ${tasks} task(s))`;
  return {
    ...base, verdict, measured,
    a: { what: spec.aName, mean: mean(av) }, b: { what: bLabel, mean: mean(bv) }, difference: t.mean, ci95: ci, pairs: keys.length, seeds, tasks,
    t_test: { t: t.t, df: t.df, p_claimed: pClaimed, p_two_sided: t.two_sided },
    wilcoxon: { w_plus: w.w_plus, p_claimed: wClaimed, p_two_sided: w.two_sided, exact: w.exact },
    sign: { positive: sg.positive, negative: sg.negative, zeros: sg.zeros, p_claimed: spec.kind === 'not-greater' ? sg.less : spec.kind === 'equivalent' ? sg.two_sided : sg.greater },
  };
}

const SETTING_NAME = { meta: 'Meta-ICT', multitask: 'Multitask-ICT' } as const;

const ABSTRACT = 'Huang et al. 2022, abstract';
// Quotes are from the abstract; the rest is the paper's result as issue 10 states it (its tables are not shipped here).
const PAPER = {
  icld: `"Our method shows consistent improvements for both Meta-ICT and Multitask-ICT" (${ABSTRACT})`,
  lmMulti: `"in-context learning objectives and language modeling objectives are complementary under the Multitask-ICT paradigm" (${ABSTRACT})`,
  lmMeta: `the LM objective helps "under the Multitask-ICT paradigm" (${ABSTRACT}); under Meta-ICT adding it gives no gain (paper's result as stated in issue 10)`,
  lmkd: 'LM-KD ≈ Raw: distilling on plain text alone does not give in-context few-shot ability (paper\'s result as stated in issue 10)',
  multiMeta: `"Multitask-ICT performs better on multitask few-shot learning but also requires more computation than Meta-ICT" (${ABSTRACT})`,
  multiFt: 'Multitask-ICT > Multitask-FT, supervised fine-tuning on the same few-shot examples evaluated without demonstrations (paper\'s Table 2 as stated in issue 10)',
  keep: '"13.4× smaller keeps 91.4%" of the teacher\'s score (paper\'s result as stated in issue 10)',
  beat: '"3.4× smaller beats the teacher" (paper\'s result as stated in issue 10)',
};

/** The student arm that carries the paper's method in each setting (LM term only where the paper finds it helps). */
const methodArm = (s: ClaimStudy): string | null => {
  const has = (a: string): boolean => s.cells.some((c) => c.arm === a);
  const pref = s.setting === 'multitask' ? ['ICL-D (LM)', 'ICL-D'] : ['ICL-D', 'ICL-D (LM)'];
  return pref.find(has) ?? null;
};

/**
 * Every claim, once per setting it is stated for; claims the given studies cannot test are listed
 * with verdict "not tested here" and the reason.
 */
export function evaluateClaims(studies: ClaimStudy[], opts: ClaimOptions = {}): Claim[] {
  const o: Required<ClaimOptions> = { alpha: opts.alpha ?? 0.05, margin: opts.margin ?? 0.02 };
  const bySetting = (s: 'meta' | 'multitask'): ClaimStudy | undefined => studies.find((x) => x.setting === s);
  const out: Claim[] = [];
  const untested = (spec: Spec, reason: string): Claim => ({ claim: spec.claim, paper: spec.paper, measured: '–', verdict: 'not tested here', kind: spec.kind, setting: spec.setting, reason, rule: RULES[spec.kind](o.alpha, o.margin) });
  const within = (spec: Spec, setting: 'meta' | 'multitask'): void => {
    const s = bySetting(setting);
    if (!s) { out.push(untested(spec, `needs a ${SETTING_NAME[setting]} study`)); return; }
    const a = armScores(s, spec.aName), b = armScores(s, spec.bName);
    if (!a || !b) { out.push(untested(spec, `the ${SETTING_NAME[setting]} study has no ${[!a ? spec.aName : '', !b ? spec.bName : ''].filter(Boolean).join(' or ')} arm`)); return; }
    out.push(judge(spec, a, b, o));
  };
  for (const st of ['meta', 'multitask'] as const) {
    within({ claim: `ICL-D > ICT (${SETTING_NAME[st]})`, paper: PAPER.icld, kind: 'greater', setting: st, aName: 'ICL-D', bName: 'ICT' }, st);
  }
  within({ claim: 'ICL-D (LM) > ICL-D (Multitask-ICT)', paper: PAPER.lmMulti, kind: 'greater', setting: 'multitask', aName: 'ICL-D (LM)', bName: 'ICL-D' }, 'multitask');
  within({ claim: 'ICL-D (LM) does not beat ICL-D (Meta-ICT)', paper: PAPER.lmMeta, kind: 'not-greater', setting: 'meta', aName: 'ICL-D (LM)', bName: 'ICL-D' }, 'meta');
  for (const st of ['meta', 'multitask'] as const) {
    within({ claim: `LM-KD ≈ Raw (${SETTING_NAME[st]})`, paper: PAPER.lmkd, kind: 'equivalent', setting: st, aName: 'LM-KD', bName: 'Raw' }, st);
  }
  // Across settings: the same test tasks and seeds scored by each setting's ICT student.
  {
    const spec: Spec = { claim: 'Multitask-ICT > Meta-ICT', paper: PAPER.multiMeta, kind: 'greater', setting: 'both', aName: 'Multitask-ICT', bName: 'Meta-ICT' };
    const mt = bySetting('multitask'), me = bySetting('meta');
    if (!mt || !me) out.push(untested(spec, `needs both a Meta-ICT and a Multitask-ICT study's results (given: ${studies.map((s) => SETTING_NAME[s.setting]).join(', ') || 'none'})`));
    else {
      const a = armScores(mt, 'ICT'), b = armScores(me, 'ICT');
      if (!a || !b) out.push(untested(spec, 'both studies need an ICT arm'));
      else out.push(judge(spec, a, b, o));
    }
  }
  within({ claim: 'Multitask-ICT > Multitask-FT', paper: PAPER.multiFt, kind: 'greater', setting: 'multitask', aName: 'ICT', bName: 'Multitask-FT' }, 'multitask');
  // Compression: the method's student against its teacher, per study.
  for (const [ratio, claim, paper] of [[0.914, 'student keeps ≥ 91.4% of the teacher', PAPER.keep], [1, 'student beats the teacher', PAPER.beat]] as const) {
    if (studies.length === 0) { out.push(untested({ claim, paper, kind: 'keeps', setting: '–', aName: '', bName: '' }, 'no study results')); continue; }
    for (const s of studies) {
      const arm = methodArm(s), t = teacherScores(s);
      const spec: Spec = { claim: `${claim} (${SETTING_NAME[s.setting]}${s.label ? `, ${s.label}` : ''})`, paper, kind: 'keeps', setting: s.setting, aName: arm ?? 'ICL-D', bName: 'teacher', ratio };
      const extra = { compression: s.compression, speedup: s.speedup };
      if (!arm || !t) { out.push({ ...untested(spec, !arm ? 'no ICL-D arm' : 'no teacher scores'), ...extra }); continue; }
      const c = judge(spec, armScores(s, arm)!, t, o, extra);
      if (c.a && c.b) c.measured = `${arm} keeps ${(100 * c.a.mean / (c.b.mean / ratio)).toFixed(1)}% of the teacher at ${s.compression ?? '?'}× compression${s.speedup ? ` (${s.speedup}× faster)` : ''}; ${c.measured}`;
      out.push(c);
    }
  }
  return out;
}

/**
 * A finished study directory (`icld study --out DIR`) as claim input: its setting, every cell's
 * result.json, the teacher's per-seed scores and the compression, so that several studies (a Meta
 * and a Multitask one) can be judged together with evaluateClaims. Errors name the file.
 */
export function readClaimStudy(dir: string, label?: string): ClaimStudy {
  const cfgPath = join(dir, 'study_config.json');
  if (!existsSync(cfgPath)) throw new Error(`${dir}: not a study directory (no study_config.json)`);
  const cfg = readJsonFile(cfgPath, 'study config') as { setting?: unknown; name?: unknown };
  if (cfg?.setting !== 'meta' && cfg?.setting !== 'multitask') throw new Error(`${cfgPath}: setting must be "meta" or "multitask", got ${JSON.stringify(cfg?.setting)}`);
  const cells: CellResult[] = [];
  const cellsDir = join(dir, 'cells');
  if (existsSync(cellsDir)) {
    for (const arm of readdirSync(cellsDir).sort()) {
      for (const seed of readdirSync(join(cellsDir, arm)).sort()) {
        const p = join(cellsDir, arm, seed, 'result.json');
        if (!existsSync(p)) continue;
        const c = readJsonFile(p, 'cell result') as CellResult;
        if (!c || typeof c.arm !== 'string' || typeof c.seed !== 'number' || !c.tasks || typeof c.tasks !== 'object') throw new Error(`${p}: not a cell result (needs arm, seed, tasks)`);
        cells.push(c);
      }
    }
  }
  const tPath = join(dir, 'teacher-eval.json'), rPath = join(dir, 'results.json');
  const teacher = existsSync(tPath) ? readJsonFile(tPath, 'teacher evaluation') as ClaimStudy['teacher'] : undefined;
  const res = existsSync(rPath) ? readJsonFile(rPath, 'study results') as { compression?: number; speedup?: number } : {};
  return { label: label ?? (typeof cfg.name === 'string' ? cfg.name : undefined), setting: cfg.setting, cells, teacher, compression: res.compression, speedup: res.speedup };
}

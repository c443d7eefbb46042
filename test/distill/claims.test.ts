// Claim verdicts on crafted study results: reproduced, not reproduced, inconclusive, not tested
// here; the headline metric; pairing across studies; the compression claims.

import test from 'node:test';
import assert from 'node:assert/strict';
import { evaluateClaims, type Claim, type ClaimStudy } from '../../src/distill/claims.js';
import { pairedTTest } from '../../src/eval/stats.js';
import type { CellResult } from '../../src/distill/study-results.js';

const SEEDS = [100, 13, 21, 42, 87], TASKS = ['t0', 't1', 't2', 't3', 't4', 't5'];
// Deterministic "noise" in [-1, 1].
const noise = (seed: number, task: number, salt: number): number => Math.sin(seed * 12.9898 + task * 78.233 + salt * 37.719) % 1;
const base = (s: number, t: number): number => 0.5 + 0.2 * noise(s, t, 0);

function arm(name: string, f: (s: number, t: number) => number, metric = 'accuracy'): CellResult[] {
  return SEEDS.map((seed) => ({ arm: name, seed, tasks: Object.fromEntries(TASKS.map((t, i) => [t, { [metric]: f(seed, i), macro_f1: 0 }])), average: {}, train_s: 0, steps: 0, epoch_s: null, curve: [] }));
}
const teacher = (f: (s: number, t: number) => number): ClaimStudy['teacher'] =>
  Object.fromEntries(SEEDS.map((s) => [String(s), { tasks: Object.fromEntries(TASKS.map((t, i) => [t, { accuracy: f(s, i) }])) }]));
const find = (cs: Claim[], name: string): Claim => { const c = cs.find((x) => x.claim === name); assert.ok(c, `no claim '${name}' in ${cs.map((x) => x.claim).join(' | ')}`); return c; };

test('a Meta study: each verdict, and the claims it cannot test', () => {
  const meta: ClaimStudy = {
    setting: 'meta', compression: 4, speedup: 3,
    cells: [
      ...arm('ICT', base),
      ...arm('ICL-D', (s, t) => base(s, t) + 0.04 + 0.01 * noise(s, t, 1)), // clearly better
      ...arm('ICL-D (LM)', (s, t) => base(s, t) + 0.04 + 0.005 * noise(s, t, 2)), // same as ICL-D
      ...arm('Raw', (s, t) => base(s, t) - 0.1),
      ...arm('LM-KD', (s, t) => base(s, t) - 0.1 + 0.003 * noise(s, t, 3)), // ≈ Raw
    ],
    teacher: teacher((s, t) => base(s, t) + 0.06 + 0.01 * noise(s, t, 4)),
  };
  const cs = evaluateClaims([meta]);
  const icld = find(cs, 'ICL-D > ICT (Meta-ICT)');
  assert.equal(icld.verdict, 'reproduced');
  assert.equal(icld.pairs, 30); assert.equal(icld.seeds, 5); assert.equal(icld.tasks, 6);
  // The reported difference is the mean paired difference, with its t-test.
  const d = SEEDS.flatMap((s) => TASKS.map((_, t) => 0.04 + 0.01 * noise(s, t, 1)));
  const ref = pairedTTest(d);
  assert.ok(Math.abs(icld.difference! - ref.mean) < 1e-12);
  assert.ok(Math.abs(icld.t_test!.p_claimed - ref.greater) < 1e-12);
  assert.match(icld.measured, /ICL-D \d+\.\d vs ICT \d+\.\d: \+4\.\d points .*30 pairs \(5 seed\(s\) × 6 task\(s\)\)/);
  assert.equal(find(cs, 'ICL-D (LM) does not beat ICL-D (Meta-ICT)').verdict, 'reproduced');
  assert.equal(find(cs, 'LM-KD ≈ Raw (Meta-ICT)').verdict, 'reproduced');
  for (const name of ['ICL-D > ICT (Multitask-ICT)', 'ICL-D (LM) > ICL-D (Multitask-ICT)', 'LM-KD ≈ Raw (Multitask-ICT)', 'Multitask-ICT > Multitask-FT']) {
    const c = find(cs, name);
    assert.equal(c.verdict, 'not tested here', name);
    assert.match(c.reason!, /needs a Multitask-ICT study/);
  }
  assert.match(find(cs, 'Multitask-ICT > Meta-ICT').reason!, /needs both a Meta-ICT and a Multitask-ICT study's results \(given: Meta-ICT\)/);
  // Compression: the ICL-D student holds 90–100% of the teacher: keeps ≥ 91.4% reproduced, beats it: not.
  const keep = find(cs, 'student keeps ≥ 91.4% of the teacher (Meta-ICT)'), beat = find(cs, 'student beats the teacher (Meta-ICT)');
  assert.equal(keep.verdict, 'reproduced', keep.measured);
  assert.equal(beat.verdict, 'not reproduced', beat.measured);
  assert.match(keep.measured, /^ICL-D keeps 9\d\.\d% of the teacher at 4× compression \(3× faster\)/);
  assert.equal(keep.compression, 4);
  for (const c of cs) for (const k of ['claim', 'paper', 'measured', 'verdict']) assert.equal(typeof (c as unknown as Record<string, unknown>)[k], 'string');
});

test('not reproduced and inconclusive', () => {
  const cs = evaluateClaims([{
    setting: 'meta',
    cells: [
      ...arm('ICT', base), ...arm('ICL-D', (s, t) => base(s, t) - 0.03 + 0.01 * noise(s, t, 1)), // worse
      ...arm('ICL-D (LM)', (s, t) => base(s, t) + 0.05 + 0.01 * noise(s, t, 2)), // beats ICL-D by 8 points
      ...arm('Raw', base), ...arm('LM-KD', (s, t) => base(s, t) + 0.1 + 0.01 * noise(s, t, 3)), // far from Raw
    ],
  }]);
  assert.equal(find(cs, 'ICL-D > ICT (Meta-ICT)').verdict, 'not reproduced');
  assert.equal(find(cs, 'ICL-D (LM) does not beat ICL-D (Meta-ICT)').verdict, 'not reproduced');
  assert.equal(find(cs, 'LM-KD ≈ Raw (Meta-ICT)').verdict, 'not reproduced');
  assert.equal(find(cs, 'student beats the teacher (Meta-ICT)').verdict, 'not tested here');
  // Pure noise around zero: neither direction is shown; a 1-point shift with 20-point noise is within ±2 but not shown to be.
  const noisy = evaluateClaims([{
    setting: 'meta',
    cells: [...arm('ICT', base), ...arm('ICL-D', (s, t) => base(s, t) + 0.2 * noise(s, t, 5)), ...arm('Raw', base), ...arm('LM-KD', (s, t) => base(s, t) + 0.01 + 0.2 * noise(s, t, 6))],
  }]);
  const c = find(noisy, 'ICL-D > ICT (Meta-ICT)');
  assert.equal(c.verdict, 'inconclusive', c.measured);
  assert.ok(c.t_test!.p_claimed > 0.05 && c.t_test!.p_two_sided > 0.05);
  assert.equal(find(noisy, 'LM-KD ≈ Raw (Meta-ICT)').verdict, 'inconclusive');
  // A study without the arms: not tested, naming them.
  const none = evaluateClaims([{ setting: 'meta', cells: arm('ICT', base) }]);
  assert.match(find(none, 'ICL-D > ICT (Meta-ICT)').reason!, /has no ICL-D arm/);
});

test('two studies: the cross-setting claim pairs the same seeds × tasks; headline beats accuracy', () => {
  const meta: ClaimStudy = { setting: 'meta', cells: [...arm('ICT', base)] };
  // Multitask: accuracy says worse, the headline metric (macro-F1 for classification) says better.
  const mtCells = arm('ICT', (s, t) => base(s, t) - 0.1).map((c) => ({ ...c, tasks: Object.fromEntries(Object.entries(c.tasks).map(([t, m], i) => [t, { ...m, headline: base(c.seed, i) + 0.03 + 0.01 * noise(c.seed, i, 7) }])) }));
  const multi: ClaimStudy = { setting: 'multitask', cells: [...mtCells, ...arm('Multitask-FT', (s, t) => base(s, t) - 0.2), ...arm('ICL-D', base), ...arm('ICL-D (LM)', (s, t) => base(s, t) + 0.02 * noise(s, t, 8))] };
  const cs = evaluateClaims([meta, multi]);
  const x = find(cs, 'Multitask-ICT > Meta-ICT');
  assert.equal(x.verdict, 'reproduced', x.measured);
  assert.equal(x.pairs, 30);
  assert.ok(x.difference! > 0.02 && x.difference! < 0.04);
  assert.equal(find(cs, 'Multitask-ICT > Multitask-FT').verdict, 'reproduced');
  assert.equal(find(cs, 'ICL-D (LM) > ICL-D (Multitask-ICT)').verdict, 'inconclusive');
  // Disjoint tasks: nothing to pair.
  const other: ClaimStudy = { setting: 'meta', cells: arm('ICT', base).map((c) => ({ ...c, tasks: { other: { accuracy: 0.5 } } })) };
  const y = find(evaluateClaims([other, multi]), 'Multitask-ICT > Meta-ICT');
  assert.equal(y.verdict, 'not tested here');
  assert.match(y.reason!, /0 \(seed, task\) pair/);
});

test('assemble() puts the claims in results.json and report.html shows them', async () => {
  const { assemble } = await import('../../src/distill/study-results.js');
  const { studyReportHtml, claimsSection } = await import('../../src/distill/study-report.js');
  // assemble() judges claims on the study's headline (macro-F1 where a task has it), so these cells carry accuracy only.
  const noF1 = (cs: CellResult[]): CellResult[] => cs.map((c) => ({ ...c, tasks: Object.fromEntries(Object.entries(c.tasks).map(([t, m]) => [t, { accuracy: m.accuracy }])) }));
  const cells = noF1([...arm('ICT', base), ...arm('ICL-D', (s, t) => base(s, t) + 0.05 + 0.01 * noise(s, t, 1))]);
  const teacherRes = Object.fromEntries(SEEDS.map((s) => [String(s), { tasks: Object.fromEntries(TASKS.map((t, i) => [t, { accuracy: base(s, i) + 0.1 }])), average: { accuracy: 0.6 } }]));
  const c = { name: 'x', setting: 'meta', k: 4, seeds: SEEDS, arms: ['ICT', 'ICL-D'] } as unknown as Parameters<typeof assemble>[0];
  const r = assemble(c, cells, teacherRes, { classification: TASKS }, 4e5, 1e5, { teacher_tokens_per_s: 100, student_tokens_per_s: 300, speedup: 3 });
  const x = find(r.claims, 'ICL-D > ICT (Meta-ICT)');
  assert.equal(x.verdict, 'reproduced');
  assert.equal(find(r.claims, 'student beats the teacher (Meta-ICT)').compression, 4);
  const parsed = JSON.parse(JSON.stringify(r)); // results.json round trip
  assert.equal(parsed.claims.length, r.claims.length);
  const html = studyReportHtml(c, r, cells);
  assert.ok(html.includes('The paper&#39;s claims') || html.includes("The paper's claims"), 'no claims section');
  assert.ok(html.includes('ICL-D &gt; ICT (Meta-ICT)'), 'claim not escaped into the table');
  assert.ok(html.includes('not tested here (needs a Multitask-ICT study)') || html.includes('– (needs a Multitask-ICT study)'));
  assert.equal(claimsSection([]), '');
});

test('readClaimStudy: two study directories judged together', async () => {
  const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { readClaimStudy } = await import('../../src/distill/claims.js');
  const root = mkdtempSync(join(tmpdir(), 'icld-claims-'));
  const write = (dir: string, setting: string, cs: CellResult[]): string => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'study_config.json'), JSON.stringify({ name: setting, setting }));
    for (const c of cs) { const d = join(dir, 'cells', c.arm.toLowerCase(), String(c.seed)); mkdirSync(d, { recursive: true }); writeFileSync(join(d, 'result.json'), JSON.stringify(c)); }
    return dir;
  };
  const me = readClaimStudy(write(join(root, 'meta'), 'meta', arm('ICT', base)));
  const mt = readClaimStudy(write(join(root, 'mt'), 'multitask', arm('ICT', (s, t) => base(s, t) + 0.05 + 0.01 * noise(s, t, 9))));
  assert.equal(me.cells.length, 5); assert.equal(me.label, 'meta');
  const x = find(evaluateClaims([me, mt]), 'Multitask-ICT > Meta-ICT');
  assert.equal(x.verdict, 'reproduced');
  assert.equal(x.pairs, 30);
  writeFileSync(join(root, 'bad.json'), '');
  mkdirSync(join(root, 'bad'));
  writeFileSync(join(root, 'bad', 'study_config.json'), JSON.stringify({ setting: 'both' }));
  assert.throws(() => readClaimStudy(join(root, 'bad')), /bad\/study_config\.json: setting must be "meta" or "multitask", got "both"/);
  assert.throws(() => readClaimStudy(join(root, 'nothing')), /not a study directory/);
});

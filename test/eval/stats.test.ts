// The statistics behind the claim verdicts, against values known in closed form or from a
// reference implementation (SciPy 1.17: stats.t.cdf, stats.norm.cdf, ttest_1samp, wilcoxon, binomtest).

import test from 'node:test';
import assert from 'node:assert/strict';
import { logGamma, normalCdf, pairedTTest, regIncBeta, signTest, tCdf, tQuantile, wilcoxonSignedRank } from '../../src/eval/stats.js';

const close = (a: number, b: number, tol: number, what: string): void => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('log-gamma and the incomplete beta at closed-form points', () => {
  close(logGamma(5), Math.log(24), 1e-12, 'lnΓ(5)');
  close(logGamma(0.5), 0.5 * Math.log(Math.PI), 1e-12, 'lnΓ(1/2)');
  close(regIncBeta(0.3, 1, 1), 0.3, 1e-12, 'I_x(1,1) = x');
  close(regIncBeta(0.3, 2, 1), 0.09, 1e-12, 'I_x(2,1) = x²');
  close(regIncBeta(0.8, 1, 3), 1 - 0.2 ** 3, 1e-12, 'I_x(1,3) = 1 − (1−x)³');
});

test('t and normal CDFs', () => {
  // df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/π.
  close(tCdf(1, 1), 0.75, 1e-12, 'Cauchy at 1');
  close(tCdf(-3, 1), 0.5 + Math.atan(-3) / Math.PI, 1e-12, 'Cauchy at −3');
  // df = 2: F(t) = 1/2 + t / (2√(t² + 2)).
  close(tCdf(1.5, 2), 0.5 + 1.5 / (2 * Math.sqrt(1.5 ** 2 + 2)), 1e-12, 'df 2');
  close(tCdf(0, 7), 0.5, 1e-15, 'median');
  close(tCdf(2.0, 10), 0.9633059826146299, 1e-10, 't(10) at 2');
  close(tCdf(-1.5, 3), 0.11529193262241147, 1e-10, 't(3) at −1.5');
  close(tCdf(0.7, 2.5), 0.728297528405226, 1e-10, 't(2.5) at 0.7');
  close(tCdf(3.2, 30), 0.9983806991440234, 1e-10, 't(30) at 3.2');
  close(tQuantile(0.975, 10), 2.2281388519649385, 1e-8, 't(10) 97.5% quantile');
  close(normalCdf(1), 0.8413447460685429, 1e-12, 'Φ(1)');
  close(normalCdf(-2.5), 0.006209665325776132, 1e-12, 'Φ(−2.5)');
  close(normalCdf(0.3), 0.6179114221889526, 1e-12, 'Φ(0.3)');
  close(normalCdf(1.959963984540054), 0.975, 1e-12, 'Φ(1.96)');
});

test('paired t-test on a small example', () => {
  // By hand: d = 1..5, mean 3, sd √2.5, t = 3 / (√2.5/√5) = 3√2 ≈ 4.2426, df 4.
  const h = pairedTTest([1, 2, 3, 4, 5]);
  close(h.mean, 3, 1e-15, 'mean'); close(h.sd, Math.sqrt(2.5), 1e-12, 'sd'); close(h.t, 3 * Math.SQRT2, 1e-12, 't');
  assert.equal(h.df, 4);
  // df = 4 in closed form: F(t) = 1/2 + sinθ·(1 + cos²θ/2)/2 with θ = atan(t/2).
  const th = Math.atan(h.t / 2), cdf4 = 0.5 + 0.5 * Math.sin(th) * (1 + Math.cos(th) ** 2 / 2);
  close(h.greater, 1 - cdf4, 1e-12, 'one-sided p');
  close(h.two_sided, 2 * (1 - cdf4), 1e-12, 'two-sided p');
  const d = [0.02, -0.01, 0.05, 0.03, 0.04, 0.0, 0.06, 0.01];
  const r = pairedTTest(d);
  close(r.t, 2.8867513459481287, 1e-10, 't');
  close(r.two_sided, 0.023424636054437478, 1e-10, 'two-sided p');
  close(r.greater, 0.011712318027218739, 1e-10, 'greater p');
  close(r.less, 1 - 0.011712318027218739, 1e-10, 'less p');
  // No spread: the sign decides.
  assert.equal(pairedTTest([0.1, 0.1, 0.1]).greater, 0);
  assert.equal(pairedTTest([-0.1, -0.1]).greater, 1);
  assert.throws(() => pairedTTest([1]), /at least 2 pairs/);
});

test('sign test and Wilcoxon signed-rank (exact, with zeros and ties)', () => {
  const s = signTest([1, 2, 3, -1, 4, 5, 6, 0]);
  assert.deepEqual([s.positive, s.negative, s.zeros, s.n], [6, 1, 1, 7]);
  close(s.greater, 0.0625, 1e-12, 'P(X ≥ 6 | n 7) = 8/128');
  close(s.two_sided, 0.125, 1e-12, 'two-sided');
  // All 5 positive: W+ = 15 is the single largest of 2^5 sign patterns.
  const w5 = wilcoxonSignedRank([1, 2, 3, 4, 5]);
  assert.equal(w5.w_plus, 15);
  close(w5.greater, 1 / 32, 1e-15, 'exact p'); close(w5.two_sided, 1 / 16, 1e-15, 'two-sided');
  const w = wilcoxonSignedRank([0.02, -0.01, 0.05, 0.03, 0.04, 0.0, 0.06, 0.01]);
  assert.equal(w.n, 7); assert.equal(w.zeros, 1); assert.equal(w.w_plus, 26.5);
  close(w.two_sided, 0.046875, 1e-12, 'SciPy exact');
  // With ties the exact p is over all 2^9 sign patterns of the average ranks (brute force here;
  // SciPy's "exact" ignores ties, so it is no reference for this case).
  const d2 = [1, 2, 2, -1, 3, 3, 3, -2, 4], ranks = [1.5, 4, 4, 1.5, 7, 7, 7, 4, 9];
  const w2 = wilcoxonSignedRank(d2);
  assert.equal(w2.w_plus, 39.5);
  let ge = 0, le = 0;
  for (let m = 0; m < 512; m++) { const s2 = ranks.reduce((a, r, i) => a + ((m >> i) & 1 ? r : 0), 0); if (s2 >= 39.5) ge++; if (s2 <= 39.5) le++; }
  close(w2.greater, ge / 512, 1e-12, 'ties: exact one-sided'); close(w2.less, le / 512, 1e-12, 'ties: exact lower');
  close(w2.greater, 0.025390625, 1e-12, 'ties: 13/512');
  // Large n: normal approximation, still pointing the right way.
  const big = wilcoxonSignedRank(Array.from({ length: 80 }, (_, i) => (i % 4 === 0 ? -1 : 1) * (1 + (i % 7))));
  assert.equal(big.exact, false);
  assert.ok(big.greater < 0.001 && big.less > 0.99, `${big.greater} ${big.less}`);
});

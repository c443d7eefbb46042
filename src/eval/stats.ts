// Small statistics for paired comparisons: Student's t and normal CDFs (via the regularized
// incomplete beta and gamma functions), the paired t-test, the exact sign test and the Wilcoxon
// signed-rank test (exact distribution up to 60 pairs, ties included; normal approximation above).

/** ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative). */
export function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x); // reflection
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta (modified Lentz). */
function betaCF(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 500; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d; h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b). */
export function regIncBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbt = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lbt) * betaCF(a, b, x)) / a;
  return 1 - (Math.exp(lbt) * betaCF(b, a, 1 - x)) / b;
}

/** Regularized lower incomplete gamma P(a, x). */
export function regIncGammaP(a: number, x: number): number {
  if (x <= 0) return 0;
  const lg = logGamma(a);
  if (x < a + 1) {
    let sum = 1 / a, del = sum, ap = a;
    for (let n = 0; n < 1000; n++) { ap += 1; del *= x / ap; sum += del; if (Math.abs(del) < Math.abs(sum) * 1e-16) break; }
    return sum * Math.exp(-x + a * Math.log(x) - lg);
  }
  // Q(a, x) by continued fraction (Lentz).
  const tiny = 1e-300;
  let b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b; if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c; if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return 1 - Math.exp(-x + a * Math.log(x) - lg) * h;
}

/** Standard normal CDF Φ(z) = (1 + erf(z/√2))/2 with erf(y) = sign(y)·P(1/2, y²). */
export function normalCdf(z: number): number {
  if (!Number.isFinite(z)) return z > 0 ? 1 : z < 0 ? 0 : NaN;
  const p = regIncGammaP(0.5, (z * z) / 2);
  return z >= 0 ? 0.5 + 0.5 * p : 0.5 - 0.5 * p;
}

/** Student's t CDF with df > 0 degrees of freedom. */
export function tCdf(t: number, df: number): number {
  if (!(df > 0)) throw new Error(`t distribution: degrees of freedom must be > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  const tail = 0.5 * regIncBeta(df / (df + t * t), df / 2, 0.5); // P(T > |t|)
  return t >= 0 ? 1 - tail : tail;
}

/** Inverse of tCdf by bisection (for confidence intervals). */
export function tQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`t quantile: p must be in (0, 1), got ${p}`);
  let lo = -1e3, hi = 1e3;
  for (let i = 0; i < 200; i++) { const mid = (lo + hi) / 2; if (tCdf(mid, df) < p) lo = mid; else hi = mid; }
  return (lo + hi) / 2;
}

/** p-values of a test of "the mean (or median) difference is 0". */
export interface PValues { two_sided: number; greater: number; less: number; }

export interface PairedT extends PValues { n: number; mean: number; sd: number; se: number; t: number; df: number; }

/** Paired t-test on differences d_i = a_i − b_i. With zero spread, p is 0 or 1 by the sign of the mean (0.5 at 0). */
export function pairedTTest(diffs: number[]): PairedT {
  const n = diffs.length;
  if (n < 2) throw new Error(`paired t-test: needs at least 2 pairs, got ${n}`);
  const mean = diffs.reduce((s, x) => s + x, 0) / n;
  const sd = Math.sqrt(diffs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1));
  const se = sd / Math.sqrt(n), df = n - 1;
  if (se === 0) {
    const g = mean > 0 ? 0 : mean < 0 ? 1 : 0.5;
    return { n, mean, sd, se, t: mean === 0 ? 0 : mean > 0 ? Infinity : -Infinity, df, greater: g, less: mean === 0 ? 0.5 : 1 - g, two_sided: mean === 0 ? 1 : 0 };
  }
  const t = mean / se;
  const less = tCdf(t, df), greater = 1 - less;
  return { n, mean, sd, se, t, df, greater, less, two_sided: Math.min(1, 2 * Math.min(less, greater)) };
}

/** Binomial(n, 1/2) lower tail P(X ≤ k). */
function binomHalfCdf(k: number, n: number): number {
  if (k < 0) return 0;
  if (k >= n) return 1;
  let s = 0;
  for (let i = 0; i <= k; i++) s += Math.exp(logGamma(n + 1) - logGamma(i + 1) - logGamma(n - i + 1) - n * Math.LN2);
  return Math.min(1, s);
}

export interface SignTest extends PValues { n: number; positive: number; negative: number; zeros: number; }

/** Exact sign test (zero differences dropped). */
export function signTest(diffs: number[]): SignTest {
  const positive = diffs.filter((d) => d > 0).length, negative = diffs.filter((d) => d < 0).length;
  const n = positive + negative, zeros = diffs.length - n;
  if (n === 0) return { n, positive, negative, zeros, greater: 1, less: 1, two_sided: 1 };
  const greater = 1 - binomHalfCdf(positive - 1, n), less = binomHalfCdf(positive, n);
  return { n, positive, negative, zeros, greater, less, two_sided: Math.min(1, 2 * Math.min(greater, less)) };
}

export interface Wilcoxon extends PValues { n: number; zeros: number; w_plus: number; exact: boolean; }

/**
 * Wilcoxon signed-rank test (zeros dropped, tied |d| get their average rank). Exact: the
 * distribution of W+ over all 2^n sign assignments of the observed ranks (doubled to integers,
 * so ties are exact too). Above 60 pairs: normal approximation with tie correction and continuity correction.
 */
export function wilcoxonSignedRank(diffs: number[]): Wilcoxon {
  const nz = diffs.filter((d) => d !== 0), zeros = diffs.length - nz.length, n = nz.length;
  if (n === 0) return { n, zeros, w_plus: 0, exact: true, greater: 1, less: 1, two_sided: 1 };
  const order = nz.map((d, i) => ({ a: Math.abs(d), i })).sort((x, y) => x.a - y.a);
  const rank2 = new Array<number>(n); // doubled ranks (integers)
  const tieSizes: number[] = [];
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && order[j + 1].a === order[i].a) j++;
    for (let m = i; m <= j; m++) rank2[order[m].i] = i + j + 2; // 2 × average of ranks i+1..j+1
    tieSizes.push(j - i + 1);
    i = j + 1;
  }
  const w2 = nz.reduce((s, d, i) => s + (d > 0 ? rank2[i] : 0), 0);
  const wPlus = w2 / 2;
  if (n <= 60) {
    const total = rank2.reduce((s, r) => s + r, 0);
    let dist = new Float64Array(total + 1);
    dist[0] = 1;
    for (const r of rank2) {
      const next = new Float64Array(total + 1);
      for (let s = 0; s <= total; s++) if (dist[s]) { next[s] += dist[s] / 2; next[s + r] += dist[s] / 2; }
      dist = next;
    }
    let ge = 0, le = 0;
    for (let s = 0; s <= total; s++) { if (s >= w2) ge += dist[s]; if (s <= w2) le += dist[s]; }
    const greater = Math.min(1, ge), less = Math.min(1, le);
    return { n, zeros, w_plus: wPlus, exact: true, greater, less, two_sided: Math.min(1, 2 * Math.min(greater, less)) };
  }
  const mean = (n * (n + 1)) / 4;
  const v = (n * (n + 1) * (2 * n + 1)) / 24 - tieSizes.reduce((s, t) => s + (t ** 3 - t), 0) / 48;
  const sd = Math.sqrt(v);
  const greater = 1 - normalCdf((wPlus - mean - 0.5) / sd), less = normalCdf((wPlus - mean + 0.5) / sd);
  return { n, zeros, w_plus: wPlus, exact: false, greater, less, two_sided: Math.min(1, 2 * Math.min(greater, less)) };
}

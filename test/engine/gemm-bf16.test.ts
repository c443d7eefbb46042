// The bf16 GEMM of mixed-precision training: the native kernel (both its vdpbf16ps path and the
// rounded-f32 fallback) against the reference on odd sizes, every transpose, batches, alpha/beta;
// operands really rounded to bf16 (ties to even, NaN kept); and matmul's precision switch
// reaching the forward and backward GEMMs of a tiny GPT-2 (native bf16 gradients = reference bf16
// gradients, both clearly apart from fp32). Skipped, with the reason, without the addon.

import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../src/engine/rng.js';
import { reference as ref } from '../../src/engine/backend/reference.js';
import { loadNative, nativeLoadError } from '../../src/engine/backend/native.js';
import { setBackend } from '../../src/engine/backend/index.js';
import { roundBf16 } from '../../src/engine/quant.js';
import * as O from '../../src/engine/ops.js';
import { tidy } from '../../src/engine/tensor.js';
import { createModel } from '../../src/models/index.js';

const nat = loadNative();
const ADDON = fileURLToPath(new URL('../../../build/Release/icld_native.node', import.meta.url));
/** The raw addon, for its test hook gemmBf16Path(mode) (0 = emulated, 1 = vdpbf16ps, -1 = auto). */
const addon = nat && existsSync(ADDON) ? createRequire(import.meta.url)(ADDON) as {
  gemmBf16?: unknown; gemmBf16Path?: (mode?: number) => string;
} : null;
const skip = nat && addon ? false : `native addon not available: ${nativeLoadError() ?? ADDON}`;
const hasBf16Hw = !!addon?.gemmBf16Path && addon.gemmBf16Path(1) === 'avx512_bf16';
if (addon?.gemmBf16Path) addon.gemmBf16Path(-1);
const rng = new Rng(2024);

const rand = (n: number): Float32Array => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = 2 * rng.next() - 1; return a; };
const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)];

interface Case { tA: boolean; tB: boolean; M: number; N: number; K: number; alpha: number; beta: number; batch: number;
  A: Float32Array; aOff: number; lda: number; sA: number; B: Float32Array; bOff: number; ldb: number; sB: number;
  C: Float32Array; cOff: number; ldc: number; sC: number; }

function makeCase(M: number, N: number, K: number, tA: boolean, tB: boolean): Case {
  const batch = 1 + rng.int(3);
  const lda = (tA ? M : K) + rng.int(3), ldb = (tB ? K : N) + rng.int(3), ldc = N + rng.int(3);
  const sA = (tA ? K : M) * lda + rng.int(4), sB = (tB ? N : K) * ldb + rng.int(4), sC = M * ldc + rng.int(4);
  const aOff = rng.int(4), bOff = rng.int(4), cOff = rng.int(4);
  return { tA, tB, M, N, K, batch, lda, ldb, ldc, sA, sB, sC, aOff, bOff, cOff, alpha: pick([1, 0.5, -2]), beta: pick([0, 1, 0.25]),
    A: rand(aOff + batch * sA), B: rand(bOff + batch * sB), C: rand(cOff + batch * sC) };
}

type Gemm = typeof ref.gemmBf16;
function run(g: Gemm, c: Case, self: unknown): Float32Array {
  const C = c.C.slice();
  g.call(self, c.tA, c.tB, c.M, c.N, c.K, c.alpha, c.A, c.aOff, c.lda, c.sA, c.B, c.bOff, c.ldb, c.sB, c.beta, C, c.cOff, c.ldc, c.sC, c.batch);
  return C;
}

/**
 * |got − want| ≤ 2⁻²⁴·(K+4)·|alpha|·Σ_k|ã_ik||b̃_kj| + 2⁻²⁴·|beta·c| elementwise (ã, b̃: the
 * bf16-rounded operands): a bound on fp32 summation-order differences, far below the ~2⁻⁹ relative
 * change that unrounded operands (or any real bug) make.
 */
function checkCase(what: string, c: Case, got: Float32Array, want: Float32Array): void {
  const eps = 2 ** -24;
  for (let b = 0; b < c.batch; b++) for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) {
    let mag = 0;
    for (let k = 0; k < c.K; k++) {
      const a = c.A[c.aOff + b * c.sA + (c.tA ? k * c.lda + i : i * c.lda + k)];
      const x = c.B[c.bOff + b * c.sB + (c.tB ? j * c.ldb + k : k * c.ldb + j)];
      mag += Math.abs(roundBf16(a) * roundBf16(x));
    }
    const at = c.cOff + b * c.sC + i * c.ldc + j;
    const tol = eps * (c.K + 4) * Math.abs(c.alpha) * mag + 2 * eps * Math.abs(c.beta * c.C[at]) + 1e-30;
    if (!(Math.abs(got[at] - want[at]) <= tol)) {
      assert.fail(`${what}: ${c.tA ? 'T' : 'N'}${c.tB ? 'T' : 'N'} M=${c.M} N=${c.N} K=${c.K} batch=${c.batch} alpha=${c.alpha} beta=${c.beta}: `
        + `C[${b}][${i}][${j}] native ${got[at]} vs reference ${want[at]} (tolerance ${tol.toExponential(2)})`);
    }
  }
  // Entries of C outside the product (padding, gaps between batch items) are never written.
  const inside = new Set<number>();
  for (let b = 0; b < c.batch; b++) for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) inside.add(c.cOff + b * c.sC + i * c.ldc + j);
  for (let t = 0; t < got.length; t++) if (!inside.has(t)) assert.equal(got[t], c.C[t], `${what}: C[${t}] outside the product was written`);
}

const SIZES: [number, number, number][] = [[1, 1, 1], [1, 17, 3], [5, 1, 64], [13, 37, 29], [12, 32, 2], [25, 33, 1], [97, 65, 131], [130, 70, 401], [7, 300, 385]];

for (const [mode, label] of [[1, 'vdpbf16ps'], [0, 'emulated']] as const) {
  const why = skip || (mode === 1 && !hasBf16Hw ? 'this CPU has no AVX-512-BF16 (vdpbf16ps path not testable here)' : false);
  test(`native gemmBf16 (${label}) = reference gemmBf16: odd sizes, all transposes, batch, alpha/beta, offsets`, { skip: why }, () => {
    assert.equal(typeof addon!.gemmBf16, 'function', 'the addon exports gemmBf16');
    assert.equal(addon!.gemmBf16Path!(mode), mode === 1 ? 'avx512_bf16' : 'emulated');
    try {
      for (const [M, N, K] of SIZES) for (const tA of [false, true]) for (const tB of [false, true]) {
        const c = makeCase(M, N, K, tA, tB);
        checkCase(label, c, run(nat!.gemmBf16, c, nat), run(ref.gemmBf16, c, ref));
      }
    } finally { addon!.gemmBf16Path!(-1); }
  });
}

test('native gemmBf16, many small batch items (one thread per item) = reference', { skip }, () => {
  const M = 9, N = 11, K = 7, batch = 24, A = rand(batch * M * K), B = rand(batch * K * N);
  const c: Case = { tA: false, tB: false, M, N, K, alpha: 1, beta: 0, batch, A, aOff: 0, lda: K, sA: M * K, B, bOff: 0, ldb: N, sB: K * N, C: rand(batch * M * N), cOff: 0, ldc: N, sC: M * N };
  checkCase('batched', c, run(nat!.gemmBf16, c, nat), run(ref.gemmBf16, c, ref));
});

test('operands are rounded to bf16: nearest, ties to even, NaN kept; the result is the bf16 one, not the fp32 one', { skip }, () => {
  for (const mode of hasBf16Hw ? [1, 0] : [0]) {
    addon!.gemmBf16Path!(mode);
    try {
      // 1×K row times a K×1 column of ones, K = 4: the sum of the row's bf16 values.
      const one = (xs: number[]): number => {
        const C = new Float32Array(1);
        nat!.gemmBf16(false, false, 1, 1, xs.length, 1, Float32Array.from(xs), 0, xs.length, 0, new Float32Array(xs.length).fill(1), 0, 1, 0, 0, C, 0, 1, 0, 1);
        return C[0];
      };
      // bf16 keeps 8 significant bits: ulp(1) = 2⁻⁷.
      assert.equal(one([1 + 2 ** -10, 0, 0, 0]), 1, 'below half an ulp rounds down');
      assert.equal(one([1 + 2 ** -8, 0, 0, 0]), 1, 'a tie rounds to the even neighbour (1)');
      assert.equal(one([1 + 3 * 2 ** -8, 0, 0, 0]), 1 + 2 ** -6, 'a tie rounds to the even neighbour (1 + 2⁻⁶)');
      assert.equal(one([1 + 2 ** -8 + 2 ** -20, 0, 0, 0]), 1 + 2 ** -7, 'above half an ulp rounds up');
      assert.equal(one([-(1 + 2 ** -10), 0, 0, 0]), -1, 'negative values alike');
      assert.ok(Number.isNaN(one([Number.NaN, 1, 1, 1])), 'NaN stays NaN (not rounded into Inf)');
      assert.equal(one([3.4e38, 0, 0, 0]), Infinity, 'rounding can overflow to Inf, as bf16 does');
      // A random product: bf16 and fp32 answers are measurably apart, native sits on the bf16 one.
      const M = 40, N = 30, K = 200, A = rand(M * K), B = rand(K * N);
      const c: Case = { tA: false, tB: false, M, N, K, alpha: 1, beta: 0, batch: 1, A, aOff: 0, lda: K, sA: 0, B, bOff: 0, ldb: N, sB: 0, C: new Float32Array(M * N), cOff: 0, ldc: N, sC: 0 };
      const got = run(nat!.gemmBf16, c, nat), wantBf16 = run(ref.gemmBf16, c, ref), wantF32 = run(ref.gemm, c, ref);
      let dBf16 = 0, dF32 = 0;
      for (let i = 0; i < got.length; i++) { dBf16 = Math.max(dBf16, Math.abs(got[i] - wantBf16[i])); dF32 = Math.max(dF32, Math.abs(got[i] - wantF32[i])); }
      assert.ok(dF32 > 1e-3, `fp32 and bf16 products differ measurably (${dF32})`);
      assert.ok(dBf16 < dF32 / 100, `native is the bf16 product (max diff ${dBf16}), not the fp32 one (${dF32})`);
    } finally { addon!.gemmBf16Path!(-1); }
  }
});

/** Parameter gradients of one loss step of a tiny GPT-2 (dropout off) under a backend and precision. */
function gpt2Grads(be: 'native' | 'reference', prec: O.MatmulPrecision): Map<string, Float32Array> {
  setBackend(be);
  const model = createModel('gpt2', { vocab_size: 64, n_embd: 32, n_layer: 2, n_head: 2, n_positions: 16, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }, 7);
  const ids = O.tensor(Array.from({ length: 2 * 16 }, (_, i) => (i * 37 + 5) % 64), [2, 16], 'int32');
  O.setMatmulPrecision(prec);
  try {
    tidy(() => { model.loss(ids).loss.backward(); });
  } finally { O.setMatmulPrecision('f32'); }
  const out = new Map<string, Float32Array>();
  for (const [n, p] of model.namedParameters()) out.set(n, p.grad!.f32.slice(0, p.size));
  return out;
}
const dist = (a: Map<string, Float32Array>, b: Map<string, Float32Array>): number => {
  let s = 0, n = 0;
  for (const [k, x] of a) { const y = b.get(k)!; for (let i = 0; i < x.length; i++) { s += (x[i] - y[i]) ** 2; n += y[i] ** 2; } }
  return Math.sqrt(s / n);
};

test('matmul precision: bf16 gradients of a tiny GPT-2 step equal the reference backend\'s bf16 gradients, and differ from fp32', { skip }, () => {
  try {
    const natBf16 = gpt2Grads('native', 'bf16'), refBf16 = gpt2Grads('reference', 'bf16');
    const natF32 = gpt2Grads('native', 'f32'), refF32 = gpt2Grads('reference', 'f32');
    const same = dist(natBf16, refBf16), apart = dist(natBf16, refF32), f32Gap = dist(natF32, refF32);
    // bf16 moves the gradient by ~2⁻⁹ relative; the two backends' bf16 runs agree far more closely
    // (only fp32 summation order elsewhere, plus the rare operand that lands on the other side of a
    // bf16 rounding boundary).
    assert.ok(apart > 5e-4, `bf16 gradients differ from fp32 (relative ${apart})`);
    assert.ok(same < apart / 100, `native bf16 = reference bf16 (relative ${same}) vs fp32 (${apart})`);
    assert.ok(f32Gap < 1e-5, `fp32 backends agree (${f32Gap})`);
    // The backward GEMMs are bf16 too: every weight matrix's gradient moved, not only the forward.
    for (const [n, g] of natBf16) {
      if (!/(c_attn|c_proj|c_fc)\.weight$/.test(n)) continue;
      const f = natF32.get(n)!;
      assert.ok(g.some((v, i) => v !== f[i]), `${n}: bf16 gradient differs from fp32`);
    }
    assert.equal(O.matmulPrecision(), 'f32', 'precision restored');
  } finally { setBackend('native'); }
});

test('setMatmulPrecision refuses unknown values; a matmul\'s backward uses its forward\'s precision', () => {
  assert.throws(() => O.setMatmulPrecision('fp16' as O.MatmulPrecision), /setMatmulPrecision: expected 'f32' or 'bf16', got "fp16"/);
  setBackend('reference');
  try {
    const a = O.param(O.tensor([1 + 2 ** -10, 2, 3, 4], [2, 2])), b = O.param(O.tensor([1, 0, 0, 1 + 2 ** -9], [2, 2]));
    O.setMatmulPrecision('bf16');
    const y = O.matmul(a, b);
    O.setMatmulPrecision('f32');
    // fp32 would give [1 + 2⁻¹⁰, 2 + 2⁻⁸, 3, 4 + 2⁻⁷]: a[0][0] and b[1][1] are below half a bf16 ulp off 1.
    assert.deepEqual(y.toArray(), [1, 2, 3, 4], 'forward on rounded operands');
    O.sum(y).backward();
    // dA = 1·Bᵀ: row k of dA sums row k of B, rounded (1, not fp32's 1 + 2⁻⁹); dB = Aᵀ·1 likewise.
    assert.deepEqual(a.grad!.toArray(), [1, 1, 1, 1]);
    assert.deepEqual(b.grad!.toArray(), [4, 4, 6, 6]);
  } finally { O.setMatmulPrecision('f32'); setBackend(nat ? 'native' : 'reference'); }
});

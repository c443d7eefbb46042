// Parity of the native inference matmul (native/quant.c) with its spec, qmatmulRef
// (src/engine/quant.ts), for every weight format on every kernel path this CPU can run (each path
// forced in turn through setKernelPath), on odd sizes, with strides, bias and accumulation; and
// icld_qact's prepared activations bit-identical to quantizeActQ8 / f32ToBf16.
// Skipped, with the reason, when the addon is not built.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.js';
import { loadNative, nativeLoadError, nativeQact, runnableKernelPaths, setKernelPath } from '../../src/engine/backend/native.js';
import {
  FORMAT_CODE, QK, f32ToBf16, qmatmulRef, quantizeActQ8, quantizeWeight, roundBf16, weightAt,
  type QWeight, type WeightFormat,
} from '../../src/engine/quant.js';

const nat = loadNative();
const skip = nat ? false : `native addon not available: ${nativeLoadError()}`;
const rng = new Rng(4242);
const rand = (n: number): Float32Array => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = 2 * rng.next() - 1; return a; };

/** The path each family should report once `cap` is set, given what the CPU runs. */
function expectedPaths(cap: string, runnable: string[]): Record<string, string> {
  const has = (p: string) => runnable.includes(p);
  const order = ['scalar', 'avx2', 'avx-vnni', 'avx512', 'avx512-vnni', 'avx512-bf16'];
  const allowed = (p: string): boolean => {
    if (!has(p)) return false;
    if (cap === 'auto') return true;
    if (cap === 'scalar') return p === 'scalar';
    if (cap === 'avx-vnni') return p === 'scalar' || p === 'avx2' || p === 'avx-vnni';
    if (p === 'avx-vnni') return false;
    return order.indexOf(p) <= order.indexOf(cap);
  };
  const best = (cands: string[]) => cands.find(allowed) ?? 'scalar';
  const f32 = best(['avx512', 'avx2']);
  return {
    f32,
    bf16: best(['avx512-bf16', 'avx512', 'avx2']),
    q8_0: best(['avx512-vnni', 'avx-vnni', 'avx512', 'avx2']) === 'avx512' ? 'avx2' : best(['avx512-vnni', 'avx-vnni', 'avx512', 'avx2']),
  };
}

interface Case { w: QWeight; M: number; x: Float32Array; xOff: number; ldx: number; out0: Float32Array; outOff: number; ldo: number; bias: Float32Array | null; acc: boolean; want: Float32Array; scale: Float64Array }

function makeCase(format: WeightFormat, layout: 'in_out' | 'out_in', N: number, K: number, M: number, bias: boolean, acc: boolean): Case {
  const w = quantizeWeight(rand(N * K), N, K, layout, format);
  const xOff = rng.int(5), ldx = K + rng.int(3), outOff = rng.int(4), ldo = N + rng.int(3);
  const x = rand(xOff + (M - 1) * ldx + K);
  const out0 = rand(outOff + (M - 1) * ldo + N);
  const b = bias ? rand(N) : null;
  const want = out0.slice();
  qmatmulRef(w, M, x, xOff, ldx, want, outOff, ldo, b, acc);
  // error scale per output: Σ_k |x̃||w| (+ |bias| + |out| when accumulating)
  const scale = new Float64Array(want.length);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) {
      const xv = x[xOff + m * ldx + k];
      s += Math.abs(format === 'bf16' ? roundBf16(xv) : xv) * Math.abs(weightAt(w, n, k));
    }
    const o = outOff + m * ldo + n;
    scale[o] = s + (b ? Math.abs(b[n]) : 0) + (acc ? Math.abs(out0[o]) : 0);
  }
  return { w, M, x, xOff, ldx, out0, outOff, ldo, bias: b, acc, want, scale };
}

function check(what: string, c: Case, rtol: number): void {
  const got = c.out0.slice();
  nat!.qmatmul(c.w, c.M, c.x, c.xOff, c.ldx, got, c.outOff, c.ldo, c.bias, c.acc);
  for (let i = 0; i < got.length; i++) {
    const tol = rtol * c.scale[i] + 1e-30;
    if (!(Math.abs(got[i] - c.want[i]) <= tol)) {
      assert.fail(`${what}: element ${i}: native ${got[i]} vs reference ${c.want[i]} (tolerance ${tol.toExponential(2)})`);
    }
  }
}

const MS = [1, 2, 3, 4, 5, 8, 17];
const NS = [1, 7, 33, 129];

test('every kernel path reports itself per family once forced', { skip }, () => {
  const runnable = runnableKernelPaths();
  assert.ok(runnable.includes('scalar'), `runnable paths: ${runnable.join(', ')}`);
  const prev = setKernelPath('auto');
  try {
    for (const cap of ['auto', ...runnable]) {
      setKernelPath(cap);
      const p = nat!.cpu().paths, e = expectedPaths(cap, runnable);
      assert.equal(p.f32, e.f32, `${cap}: f32`);
      assert.equal(p.bf16, e.bf16, `${cap}: bf16`);
      assert.equal(p.q8_0, e.q8_0, `${cap}: q8_0`);
      assert.equal(p.q4_0, e.q8_0, `${cap}: q4_0`);
    }
  } finally { setKernelPath(prev); }
  const f = nat!.cpu().features;
  if (f.includes('avx2')) assert.ok(runnable.includes('avx2'), 'an AVX2 CPU runs the avx2 path');
  if (f.includes('avx512_vnni') && f.includes('avx512bw')) assert.ok(runnable.includes('avx512-vnni'));
  assert.throws(() => setKernelPath('mmx'), /unknown kernel path 'mmx'/);
  if (!f.includes('avx_vnni')) assert.throws(() => setKernelPath('avx-vnni'), /lacks \(avx_vnni\)/);
});

for (const [format, layout] of [['f32', 'in_out'], ['f32', 'out_in'], ['bf16', 'out_in'], ['q8_0', 'out_in'], ['q4_0', 'out_in']] as const) {
  test(`qmatmul ${format}${format === 'f32' ? ` (${layout})` : ''} matches qmatmulRef on every path`, { skip }, () => {
    const paths = runnableKernelPaths();
    // 768 = GPT-2's width: 24 blocks, a 16-block pass plus an 8-block tail in the VNNI kernels
    const Ks = format === 'q8_0' || format === 'q4_0' ? [32, 64, 96, 768, 800] : [1, 5, 37, 130, 800];
    // tolerances relative to Σ|x||w|: f32 summation order; q formats one f32 rounding per block
    const rtol = format === 'bf16' ? 2e-5 : 1e-5;
    const prev = setKernelPath('auto');
    try {
      let i = 0;
      for (const N of NS) for (const K of Ks) for (const M of [...MS, 37]) {
        if (K === 800 && N === 129 && M > 8 && format !== 'q4_0') continue; // keep the reference cheap
        if (K === 768 && (N > 33 || M > 8)) continue;
        if (M === 37 && (N > 33 || K > 130)) continue; // M over one 32-row block, on small shapes
        const c = makeCase(format, layout, N, K, M, i % 2 === 0, i % 4 < 2);
        i++;
        for (const p of paths) {
          setKernelPath(p);
          check(`${format} ${layout} path ${p} N=${N} K=${K} M=${M} bias=${!!c.bias} acc=${c.acc}`, c, rtol);
        }
      }
    } finally { setKernelPath(prev); }
  });
}

test('icld_qact: q8_0 activations identical to quantizeActQ8, bf16 to f32ToBf16, on every path', { skip }, () => {
  const K = 96, M = 3, ldx = 101, xOff = 2;
  const x = rand(xOff + (M - 1) * ldx + K);
  for (let m = 0; m < M; m++) {
    const r = xOff + m * ldx;
    for (let j = 0; j < QK; j++) x[r + j] = (j % 2 ? -1 : 1) * (j + 0.5); // amax 31.5: d = 31.5/127
    for (let j = 0; j < QK; j++) x[r + QK + j] = j === 0 ? 127 : (j - 16) + 0.5; // d = 1: exact ties
    x[r + 2 * QK + 3] = 0; // third block random but for one zero
  }
  const zeroRow = 1; // one all-zero block: scale 0, codes 0
  for (let j = 0; j < QK; j++) x[xOff + zeroRow * ldx + 2 * QK + j] = 0;
  x[xOff + 2 * ldx + 2 * QK + 5] = Infinity; // a non-finite block: scale inf, every code 0
  const stride = K + 4 * (K / QK);
  const wantQ = new Int8Array(M * K), wantD = new Float32Array(M * K / QK);
  for (let m = 0; m < M; m++) quantizeActQ8(x, xOff + m * ldx, K, wantQ.subarray(m * K), wantD.subarray(m * K / QK));
  // bf16: ties to even, NaN, ±inf, overflow to inf, tiny values
  const xb = rand(37);
  const specials = [1 + 2 ** -8, 1 + 3 * 2 ** -8, NaN, Infinity, -Infinity, 3.4e38, 1e-40, -0];
  specials.forEach((v, i) => { xb[i * 4] = v; });
  const prev = setKernelPath('auto');
  try {
    for (const p of runnableKernelPaths()) {
      setKernelPath(p);
      const buf = new Uint8Array(M * stride + 8);
      nativeQact(FORMAT_CODE.q8_0, M, K, x, xOff, ldx, buf);
      for (let m = 0; m < M; m++) {
        const q = new Int8Array(buf.buffer, m * stride, K);
        assert.deepEqual(Array.from(q), Array.from(wantQ.subarray(m * K, (m + 1) * K)), `${p}: int8 codes of row ${m}`);
        const d = new DataView(buf.buffer, m * stride + K);
        for (let b = 0; b < K / QK; b++) assert.equal(d.getFloat32(4 * b, true), wantD[m * K / QK + b], `${p}: scale ${b} of row ${m}`);
      }
      const bb = new Uint8Array(2 * xb.length);
      nativeQact(FORMAT_CODE.bf16, 1, xb.length, xb, 0, xb.length, bb);
      const got = new Uint16Array(bb.buffer);
      for (let k = 0; k < xb.length; k++) assert.equal(got[k], f32ToBf16(xb[k]), `${p}: bf16 of ${xb[k]}`);
    }
  } finally { setKernelPath(prev); }
  // the ties really are ties: round-half-even gives 0.5 -> 0, 1.5 -> 2, -0.5 -> 0 (not ±1)
  assert.equal(wantQ[QK + 16], 0);
  assert.equal(wantQ[QK + 17], 2);
  assert.equal(wantQ[QK + 15], 0);
});

test('qmatmul bounds: short weights, scales or activations throw RangeError', { skip }, () => {
  const w = quantizeWeight(rand(4 * 64), 4, 64, 'out_in', 'q8_0');
  const x = rand(64), out = new Float32Array(4);
  nat!.qmatmul(w, 1, x, 0, 64, out, 0, 4, null, false); // well-formed call works
  assert.throws(() => nat!.qmatmul({ ...w, data: (w.data as Int8Array).subarray(1) }, 1, x, 0, 64, out, 0, 4, null, false), RangeError);
  assert.throws(() => nat!.qmatmul({ ...w, scales: w.scales!.subarray(1) }, 1, x, 0, 64, out, 0, 4, null, false), RangeError);
  assert.throws(() => nat!.qmatmul(w, 1, x, 1, 64, out, 0, 4, null, false), /x: index range/);
  assert.throws(() => nat!.qmatmul(w, 2, x, 0, 64, out, 0, 4, null, false), RangeError);
  assert.throws(() => nat!.qmatmul(w, 1, x, 0, 64, out, 1, 4, null, false), /out: index range/);
  assert.throws(() => nat!.qmatmul({ ...w, K: 48 }, 1, x, 0, 64, out, 0, 4, null, false), /multiple of 32/);
});

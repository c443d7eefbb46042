// Parity of every native (C) kernel with its reference (TypeScript) twin, on random shapes
// including odd sizes, broadcasting, non-contiguous strides, transposes and batches.
// Skipped, with the reason, when the addon is not built.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.js';
import { reference as ref } from '../../src/engine/backend/reference.js';
import { loadNative, nativeLoadError } from '../../src/engine/backend/native.js';
import { BinOp, UnOp, type Backend } from '../../src/engine/backend/types.js';

const nat: Backend | null = loadNative();
const skip = nat ? false : `native addon not available: ${nativeLoadError()}`;
const rng = new Rng(1234);

function rand(n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.next();
  return a;
}
function pick<T>(xs: T[]): T { return xs[rng.int(xs.length)]; }
const ODD = [1, 3, 17, 65, 127];

/** |got-want| <= atol + rtol*|want| elementwise; on failure report max abs and max rel error. */
function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let maxAbs = 0, maxRel = 0, bad = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i], w = want[i];
    if (g === w || (Number.isNaN(g) && Number.isNaN(w))) continue;
    const d = Math.abs(g - w);
    if (!(d <= maxAbs)) maxAbs = d;
    const r = d / Math.max(Math.abs(w), 1e-30);
    if (r > maxRel) maxRel = r;
    if (!(d <= atol + rtol * Math.abs(w)) && bad < 0) bad = i;
  }
  if (bad >= 0) {
    assert.fail(`${what}: element ${bad}: native ${got[bad]} vs reference ${want[bad]}; ` +
      `max abs err ${maxAbs.toExponential(3)}, max rel err ${maxRel.toExponential(3)}`);
  }
}
function exact(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  close(what, got, want, 0, 0);
}

test('gemm: transposes, odd sizes, lda>K, batch, alpha/beta, offsets', { skip }, () => {
  const cases: number[][] = [];
  for (let r = 0; r < 40; r++) cases.push([pick(ODD), pick(ODD), pick(ODD)]);
  cases.push([200, 130, 300], [97, 301, 513], [1, 300, 200], [2, 77, 260], [130, 1, 70]);
  for (const [M, N, K] of cases) {
    const tA = rng.next() < 0.5, tB = rng.next() < 0.5;
    const batch = 1 + rng.int(3);
    const padA = rng.int(3), padB = rng.int(3), padC = rng.int(3);
    const lda = (tA ? M : K) + padA, ldb = (tB ? K : N) + padB, ldc = N + padC;
    const aRows = tA ? K : M, bRows = tB ? N : K;
    const sA = aRows * lda + rng.int(5), sB = bRows * ldb + rng.int(5), sC = M * ldc + rng.int(5);
    const aOff = rng.int(4), bOff = rng.int(4), cOff = rng.int(4);
    const A = rand(aOff + batch * sA), B = rand(bOff + batch * sB);
    const alpha = pick([1, 0.5, -2]), beta = pick([0, 1, 0.25]);
    const C0 = rand(cOff + batch * sC);
    if (beta === 0) C0.fill(NaN); // beta = 0 must ignore NaN in C
    // padding cells (outside the M×N blocks) must stay untouched: compare whole arrays
    const Cr = C0.slice(), Cn = C0.slice();
    ref.gemm(tA, tB, M, N, K, alpha, A, aOff, lda, sA, B, bOff, ldb, sB, beta, Cr, cOff, ldc, sC, batch);
    nat!.gemm(tA, tB, M, N, K, alpha, A, aOff, lda, sA, B, bOff, ldb, sB, beta, Cn, cOff, ldc, sC, batch);
    close(`gemm M=${M} N=${N} K=${K} tA=${tA} tB=${tB} batch=${batch} alpha=${alpha} beta=${beta}`,
      Cn, Cr, 2e-6 * Math.sqrt(K) * Math.abs(alpha), 1e-5);
  }
});

test('gemm: small M (decode paths), every transpose combination', { skip }, () => {
  for (const [M, N, K] of [[1, 1, 1], [1, 300, 200], [2, 77, 260], [3, 129, 33], [4, 65, 513], [5, 40, 17]]) {
    for (const tA of [false, true]) for (const tB of [false, true]) for (const beta of [0, 0.5]) {
      const lda = (tA ? M : K) + 1, ldb = (tB ? K : N) + 2, ldc = N + 1;
      const A = rand((tA ? K : M) * lda), B = rand((tB ? N : K) * ldb);
      const Cr = rand(M * ldc), Cn = Cr.slice();
      if (beta === 0) { Cr.fill(NaN); Cn.fill(NaN); }
      ref.gemm(tA, tB, M, N, K, 1.5, A, 0, lda, 0, B, 0, ldb, 0, beta, Cr, 0, ldc, 0, 1);
      nat!.gemm(tA, tB, M, N, K, 1.5, A, 0, lda, 0, B, 0, ldb, 0, beta, Cn, 0, ldc, 0, 1);
      close(`gemm small M=${M} N=${N} K=${K} tA=${tA} tB=${tB} beta=${beta}`, Cn, Cr, 3e-6 * Math.sqrt(K), 1e-5);
    }
  }
});

test('gemm: K=0 and alpha=0 scale C by beta', { skip }, () => {
  for (const [K, alpha] of [[0, 1], [5, 0]] as const) {
    const A = rand(15), B = rand(20);
    for (const beta of [0, 0.5]) {
      const Cr = rand(12), Cn = Cr.slice();
      ref.gemm(false, false, 3, 4, K, alpha, A, 0, Math.max(K, 1), 0, B, 0, 4, 0, beta, Cr, 0, 4, 0, 1);
      nat!.gemm(false, false, 3, 4, K, alpha, A, 0, Math.max(K, 1), 0, B, 0, 4, 0, beta, Cn, 0, 4, 0, 1);
      close(`gemm K=${K} alpha=${alpha} beta=${beta}`, Cn, Cr, 1e-7, 1e-6);
    }
  }
});

/** A random view: shape, a permutation of a contiguous buffer (transposes), optional broadcast. */
function randomStrides(shape: number[], broadcast: boolean): { str: number[]; size: number; off: number } {
  const nd = shape.length;
  const order = Array.from({ length: nd }, (_, i) => i);
  rng.shuffle(order);
  const str = new Array<number>(nd).fill(0);
  let acc = 1;
  for (let k = nd - 1; k >= 0; k--) {
    const d = order[k];
    if (broadcast && rng.next() < 0.3) { str[d] = 0; continue; }
    str[d] = acc;
    acc *= shape[d] + (rng.next() < 0.3 ? 1 : 0); // sometimes a gap between rows
  }
  const off = rng.int(3);
  return { str, size: off + acc + 1, off };
}

test('copy: strided, transposed, up to 8 dims, Float32Array and Int32Array', { skip }, () => {
  for (let r = 0; r < 60; r++) {
    const nd = 1 + rng.int(r < 50 ? 4 : 8);
    const shape = Array.from({ length: nd }, () => pick(nd > 4 ? [1, 2, 3] : [1, 2, 3, 5, 17]));
    const s = randomStrides(shape, false), d = randomStrides(shape, false);
    const useInt = rng.next() < 0.3;
    const src = useInt ? Int32Array.from(rand(s.size), (x) => Math.round(x * 1e6)) : rand(s.size);
    const dr = useInt ? new Int32Array(d.size) : new Float32Array(d.size);
    const dn = useInt ? new Int32Array(d.size) : new Float32Array(d.size);
    ref.copy(shape, src, s.off, s.str, dr, d.off, d.str);
    nat!.copy(shape, src, s.off, s.str, dn, d.off, d.str);
    exact(`copy shape=${shape} src=${s.str} dst=${d.str}`, dn, dr);
  }
});

test('binary: every op, broadcasting (stride 0), non-contiguous operands', { skip }, () => {
  for (let r = 0; r < 80; r++) {
    const nd = 1 + rng.int(4);
    const shape = Array.from({ length: nd }, () => pick([1, 2, 3, 17, 65]));
    const a = randomStrides(shape, true), b = randomStrides(shape, true);
    if (r % 4 === 0) { // classic row broadcast: a contiguous, b a row vector
      let acc = 1;
      for (let k = nd - 1; k >= 0; k--) { a.str[k] = acc; b.str[k] = k === nd - 1 ? 1 : 0; acc *= shape[k]; }
      a.size = a.off + acc + 1;
      b.size = b.off + shape[nd - 1] + 1;
    }
    const A = rand(a.size), B = rand(b.size, 0.5, 2);
    const n = shape.reduce((x, y) => x * y, 1);
    for (const op of [BinOp.Add, BinOp.Sub, BinOp.Mul, BinOp.Div]) {
      const outR = new Float32Array(n), outN = new Float32Array(n);
      ref.binary(op, shape, A, a.off, a.str, B, b.off, b.str, outR);
      nat!.binary(op, shape, A, a.off, a.str, B, b.off, b.str, outN);
      exact(`binary op=${op} shape=${shape} a=${a.str} b=${b.str}`, outN, outR);
    }
  }
});

test('unary and unaryBackward: every op, odd lengths, offsets', { skip }, () => {
  const ops: [UnOp, string, number, number, number][] = [
    // op, name, lo, hi, param
    [UnOp.Exp, 'exp', -20, 20, 0], [UnOp.Log, 'log', 1e-3, 50, 0], [UnOp.Tanh, 'tanh', -6, 6, 0],
    [UnOp.Sqrt, 'sqrt', 1e-3, 100, 0], [UnOp.Relu, 'relu', -3, 3, 0], [UnOp.GeluTanh, 'gelu_tanh', -8, 8, 0],
    [UnOp.GeluErf, 'gelu_erf', -8, 8, 0], [UnOp.Pow, 'pow', 0.1, 4, 2.5], [UnOp.Pow, 'pow-int', 0.1, 4, 3],
    [UnOp.Neg, 'neg', -5, 5, 0], [UnOp.Scale, 'scale', -5, 5, 0.125], [UnOp.AddScalar, 'add', -5, 5, 3.5],
    [UnOp.Sigmoid, 'sigmoid', -30, 30, 0],
  ];
  for (const [op, name, lo, hi, p] of ops) {
    for (const n of [1, 3, 8, 17, 65, 1000]) {
      const off = rng.int(3);
      const x = rand(off + n, lo, hi);
      if (op === UnOp.Relu && n > 3) x[off + 2] = 0; // relu'(0) = 0
      const yR = new Float32Array(n), yN = new Float32Array(n);
      ref.unary(op, x, off, n, yR, p);
      nat!.unary(op, x, off, n, yN, p);
      // float-evaluated exp/erf are within ~2e-7 relative; GELU near its zero is judged in abs terms
      close(`unary ${name} n=${n}`, yN, yR, 2e-7, 1e-6);
      const xs = x.slice(off, off + n), dy = rand(n);
      const dR = new Float32Array(n), dN = new Float32Array(n);
      ref.unaryBackward(op, xs, yR, dy, n, dR, p);
      nat!.unaryBackward(op, xs, yR, dy, n, dN, p);
      close(`unaryBackward ${name} n=${n}`, dN, dR, 2e-7, 1e-6);
    }
  }
});

test('reduceSum / reduceMax (ties -> first index)', { skip }, () => {
  for (let r = 0; r < 30; r++) {
    const outer = pick([1, 3, 5]), dim = pick(ODD), inner = pick([1, 1, 3, 17, 600]);
    const n = outer * dim * inner;
    const x = r % 3 === 0 ? Float32Array.from(rand(n), (v) => Math.round(v * 3)) : rand(n);
    const sR = new Float32Array(outer * inner), sN = sR.slice();
    ref.reduceSum(x, outer, dim, inner, sR);
    nat!.reduceSum(x, outer, dim, inner, sN);
    close(`reduceSum ${outer}x${dim}x${inner}`, sN, sR, 1e-6, 1e-6);
    const mR = new Float32Array(outer * inner), mN = mR.slice();
    const aR = new Int32Array(outer * inner), aN = aR.slice();
    ref.reduceMax(x, outer, dim, inner, mR, aR);
    nat!.reduceMax(x, outer, dim, inner, mN, aN);
    exact(`reduceMax ${outer}x${dim}x${inner}`, mN, mR);
    exact(`reduceMax arg ${outer}x${dim}x${inner}`, aN, aR);
  }
});

test('softmax / log-softmax forward and backward', { skip }, () => {
  for (let r = 0; r < 24; r++) {
    const rows = pick([1, 3, 7]), cols = pick([...ODD, 1000, 2048]);
    const x = rand(rows * cols, -10, 10);
    for (const log of [false, true]) {
      const yR = new Float32Array(rows * cols), yN = yR.slice();
      ref.softmax(x, rows, cols, yR, log);
      nat!.softmax(x, rows, cols, yN, log);
      close(`softmax log=${log} ${rows}x${cols}`, yN, yR, log ? 2e-6 : 1e-9, 2e-6);
      const dy = rand(rows * cols);
      const dR = new Float32Array(rows * cols), dN = dR.slice();
      ref.softmaxBackward(yR, dy, rows, cols, dR, log);
      nat!.softmaxBackward(yR, dy, rows, cols, dN, log);
      close(`softmaxBackward log=${log} ${rows}x${cols}`, dN, dR, 2e-6, 2e-5);
    }
  }
});

test('crossEntropy forward and backward: smoothing, ignore index', { skip }, () => {
  for (let r = 0; r < 16; r++) {
    const rows = pick([1, 3, 9]), V = pick([...ODD, 1000, 2048]);
    const logits = rand(rows * V, -8, 8);
    const ignore = -100;
    const targets = Int32Array.from({ length: rows }, (_, i) => (i % 4 === 1 ? ignore : rng.int(V)));
    for (const sm of [0, 0.1]) {
      const lR = new Float32Array(rows), lN = lR.slice(), eR = lR.slice(), eN = lR.slice();
      ref.crossEntropy(logits, rows, V, targets, ignore, sm, lR, eR);
      nat!.crossEntropy(logits, rows, V, targets, ignore, sm, lN, eN);
      close(`crossEntropy lse V=${V}`, eN, eR, 1e-6, 1e-6);
      close(`crossEntropy loss V=${V} sm=${sm}`, lN, lR, 2e-6, 1e-5);
      const dl = rand(rows, 0.5, 2);
      const gR = new Float32Array(rows * V), gN = gR.slice().fill(NaN);
      ref.crossEntropyBackward(logits, eR, targets, rows, V, ignore, sm, dl, gR);
      nat!.crossEntropyBackward(logits, eR, targets, rows, V, ignore, sm, dl, gN);
      close(`crossEntropyBackward V=${V} sm=${sm}`, gN, gR, 1e-7, 1e-5);
    }
  }
});

test('layerNorm forward and backward (dgamma/dbeta accumulate)', { skip }, () => {
  for (let r = 0; r < 16; r++) {
    const rows = pick([1, 3, 17, 65]), C = pick([...ODD, 256, 768]);
    const x = rand(rows * C, -3, 5), gamma = rand(C, 0.5, 1.5), beta = rand(C);
    const yR = new Float32Array(rows * C), yN = yR.slice();
    const mR = new Float32Array(rows), mN = mR.slice(), sR = mR.slice(), sN = mR.slice();
    ref.layerNorm(x, rows, C, gamma, beta, 1e-5, yR, mR, sR);
    nat!.layerNorm(x, rows, C, gamma, beta, 1e-5, yN, mN, sN);
    close(`layerNorm mean ${rows}x${C}`, mN, mR, 1e-6, 1e-6);
    close(`layerNorm rstd ${rows}x${C}`, sN, sR, 0, 1e-6);
    close(`layerNorm y ${rows}x${C}`, yN, yR, 1e-5, 1e-5);
    const dy = rand(rows * C);
    const dxR = new Float32Array(rows * C), dxN = dxR.slice();
    const dgR = rand(C), dgN = dgR.slice(), dbR = rand(C), dbN = dbR.slice();
    ref.layerNormBackward(x, dy, gamma, mR, sR, rows, C, dxR, dgR, dbR);
    nat!.layerNormBackward(x, dy, gamma, mR, sR, rows, C, dxN, dgN, dbN);
    close(`layerNormBackward dx ${rows}x${C}`, dxN, dxR, 1e-5, 1e-5);
    close(`layerNormBackward dgamma ${rows}x${C}`, dgN, dgR, 1e-5 * Math.sqrt(rows), 1e-5);
    close(`layerNormBackward dbeta ${rows}x${C}`, dbN, dbR, 1e-5 * Math.sqrt(rows), 1e-5);
  }
});

test('embedding forward and backward (duplicate ids accumulate)', { skip }, () => {
  for (const [V, D, n] of [[5, 1, 3], [17, 3, 40], [65, 127, 65], [100, 64, 500]]) {
    const w = rand(V * D);
    const ids = Int32Array.from({ length: n }, () => rng.int(Math.min(V, 7)));
    const oR = new Float32Array(n * D), oN = oR.slice();
    ref.embedding(w, D, ids, n, oR);
    nat!.embedding(w, D, ids, n, oN);
    exact(`embedding V=${V} D=${D}`, oN, oR);
    const dy = rand(n * D), gR = rand(V * D), gN = gR.slice();
    ref.embeddingBackward(dy, ids, n, D, gR);
    nat!.embeddingBackward(dy, ids, n, D, gN);
    exact(`embeddingBackward V=${V} D=${D}`, gN, gR);
  }
});

test('dropout: bit-identical mask and values', { skip }, () => {
  for (const n of [1, 7, 8, 17, 1000, 4099]) {
    for (const p of [0, 0.1, 0.5, 0.9]) {
      for (const seed of [0, 1, 0xdeadbeef, 123456789]) {
        const x = rand(n);
        const oR = new Float32Array(n), oN = oR.slice();
        ref.dropout(x, n, p, seed, oR);
        nat!.dropout(x, n, p, seed, oN);
        exact(`dropout n=${n} p=${p} seed=${seed}`, oN, oR);
      }
    }
  }
});

interface AttnCase { B: number; H: number; Tq: number; Tk: number; D: number; causal: boolean; mask: boolean; p: number; packed: boolean }

/** Strides of a [B,H,T,D] tensor, either plain or interleaved as packed [B,T,3,H,D] (qkv layout). */
function layout(c: AttnCase, T: number, which: number): { s: number[]; off: number; size: number } {
  const { B, H, D } = c;
  if (c.packed) {
    const s = [T * 3 * H * D, D, 3 * H * D];
    return { s, off: which * H * D, size: B * T * 3 * H * D };
  }
  const s = [H * T * D, T * D, D];
  return { s, off: 0, size: B * H * T * D };
}

test('attention forward and backward: causal Tq<Tk, key masks, dropout, strides', { skip }, () => {
  const cases: AttnCase[] = [
    { B: 1, H: 1, Tq: 1, Tk: 1, D: 1, causal: false, mask: false, p: 0, packed: false },
    { B: 2, H: 3, Tq: 17, Tk: 17, D: 8, causal: true, mask: false, p: 0, packed: true },
    { B: 2, H: 2, Tq: 5, Tk: 17, D: 16, causal: true, mask: true, p: 0, packed: false },
    { B: 3, H: 2, Tq: 17, Tk: 33, D: 7, causal: false, mask: true, p: 0.2, packed: false },
    { B: 2, H: 4, Tq: 65, Tk: 65, D: 32, causal: true, mask: true, p: 0.1, packed: true },
    { B: 1, H: 2, Tq: 1, Tk: 127, D: 64, causal: true, mask: false, p: 0, packed: false },
    { B: 2, H: 1, Tq: 9, Tk: 3, D: 5, causal: true, mask: true, p: 0.5, packed: false },
    { B: 1, H: 2, Tq: 130, Tk: 130, D: 16, causal: true, mask: false, p: 0, packed: true },
    { B: 2, H: 2, Tq: 100, Tk: 150, D: 12, causal: true, mask: true, p: 0.1, packed: false },
    { B: 1, H: 2, Tq: 150, Tk: 70, D: 8, causal: true, mask: false, p: 0.2, packed: true }, // early rows see no key
  ];
  for (const c of cases) {
    const { B, H, Tq, Tk, D, causal } = c;
    // q/k/v can share one packed buffer in the qkv layout; here each gets its own buffer so the
    // gradients can be written into packed layouts too.
    const lq = layout(c, Tq, 0), lk = layout(c, Tk, 1), lv = layout(c, Tk, 2), lo = layout(c, Tq, 0);
    const q = rand(lq.size, -2, 2), k = rand(lk.size, -2, 2), v = rand(lv.size);
    let keyMask: Float32Array | null = null;
    if (c.mask) {
      keyMask = new Float32Array(B * Tk).fill(1);
      for (let j = 0; j < B * Tk; j++) if (rng.next() < 0.3) keyMask[j] = 0;
      for (let j = 0; j < Tk; j++) keyMask[j] = 0; // batch 0 fully masked: rows out 0, lse -inf
    }
    const scale = 1 / Math.sqrt(D), seed = 77 + B * 13 + Tq;
    const oR = new Float32Array(lo.size), oN = oR.slice();
    const lseR = new Float32Array(B * H * Tq), lseN = lseR.slice().fill(NaN);
    ref.attention(q, lq.off, lq.s, k, lk.off, lk.s, v, lv.off, lv.s, oR, lo.off, lo.s, B, H, Tq, Tk, D, scale, causal, keyMask, c.p, seed, lseR);
    nat!.attention(q, lq.off, lq.s, k, lk.off, lk.s, v, lv.off, lv.s, oN, lo.off, lo.s, B, H, Tq, Tk, D, scale, causal, keyMask, c.p, seed, lseN);
    const tag = JSON.stringify(c);
    close(`attention lse ${tag}`, lseN, lseR, 1e-6, 1e-6);
    close(`attention out ${tag}`, oN, oR, 1e-6, 1e-5);
    if (c.mask) for (let i = 0; i < H * Tq; i++) assert.equal(lseN[i], -Infinity, 'fully masked rows give lse -inf');

    const dout = rand(lo.size);
    const dq = [new Float32Array(lq.size), new Float32Array(lq.size).fill(NaN)];
    const dk = [new Float32Array(lk.size), new Float32Array(lk.size).fill(NaN)];
    const dv = [new Float32Array(lv.size), new Float32Array(lv.size).fill(NaN)];
    if (c.packed) for (const g of [dq, dk, dv]) g[1].fill(0); // packed: other slots are not written
    const bes = [ref, nat!];
    for (let t = 0; t < 2; t++) {
      bes[t].attentionBackward(q, lq.off, lq.s, k, lk.off, lk.s, v, lv.off, lv.s, oR, lo.off, lo.s, dout, lo.off, lo.s, lseR,
        dq[t], lq.off, lq.s, dk[t], lk.off, lk.s, dv[t], lv.off, lv.s, B, H, Tq, Tk, D, scale, causal, keyMask, c.p, seed);
    }
    close(`attentionBackward dq ${tag}`, dq[1], dq[0], 1e-5, 1e-4);
    close(`attentionBackward dk ${tag}`, dk[1], dk[0], 1e-5, 1e-4);
    close(`attentionBackward dv ${tag}`, dv[1], dv[0], 1e-5, 1e-4);
  }
});

test('adamw', { skip }, () => {
  for (const n of [1, 3, 17, 1000, 4097]) {
    const p = rand(n), g = rand(n), m = rand(n, -0.1, 0.1), v = rand(n, 0, 0.01);
    const [pR, mR, vR] = [p.slice(), m.slice(), v.slice()];
    const [pN, mN, vN] = [p.slice(), m.slice(), v.slice()];
    const t = 7, b1 = 0.9, b2 = 0.999;
    ref.adamw(pR, g, mR, vR, n, 1e-3, b1, b2, 1e-8, 0.01, 1 - b1 ** t, 1 - b2 ** t);
    nat!.adamw(pN, g, mN, vN, n, 1e-3, b1, b2, 1e-8, 0.01, 1 - b1 ** t, 1 - b2 ** t);
    close(`adamw m n=${n}`, mN, mR, 1e-9, 1e-6);
    close(`adamw v n=${n}`, vN, vR, 1e-12, 1e-6);
    close(`adamw p n=${n}`, pN, pR, 1e-7, 1e-6);
  }
});

test('threads: setThreads/threads round-trip and results unchanged with 2 threads', { skip }, () => {
  const before = nat!.threads();
  try {
    nat!.setThreads(2);
    assert.equal(nat!.threads(), 2);
    const M = 150, N = 70, K = 90;
    const A = rand(M * K), B = rand(K * N), Cr = new Float32Array(M * N), Cn = Cr.slice();
    ref.gemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, Cr, 0, N, 0, 1);
    nat!.gemm(false, false, M, N, K, 1, A, 0, K, 0, B, 0, N, 0, 0, Cn, 0, N, 0, 1);
    close('gemm with 2 threads', Cn, Cr, 2e-5, 1e-5);
    const bt = 6, Ab = rand(bt * 33 * 20), Bb = rand(bt * 20 * 17), Cbr = new Float32Array(bt * 33 * 17), Cbn = Cbr.slice();
    ref.gemm(false, true, 33, 17, 20, 1, Ab, 0, 20, 660, Bb, 0, 20, 340, 0, Cbr, 0, 17, 561, bt);
    nat!.gemm(false, true, 33, 17, 20, 1, Ab, 0, 20, 660, Bb, 0, 20, 340, 0, Cbn, 0, 17, 561, bt);
    close('batched gemm with 2 threads', Cbn, Cbr, 2e-5, 1e-5);
    for (const tB of [false, true]) { // decode path split over threads
      const Ad = rand(2 * 1400), Bd = rand(3001 * 1400), Cdr = new Float32Array(2 * 3001), Cdn = Cdr.slice();
      ref.gemm(false, tB, 2, 3001, 1400, 1, Ad, 0, 1400, 0, Bd, 0, tB ? 1400 : 3001, 0, 0, Cdr, 0, 3001, 0, 1);
      nat!.gemm(false, tB, 2, 3001, 1400, 1, Ad, 0, 1400, 0, Bd, 0, tB ? 1400 : 3001, 0, 0, Cdn, 0, 3001, 0, 1);
      close(`small-M gemm with 2 threads tB=${tB}`, Cdn, Cdr, 2e-5, 1e-5);
    }
    const c: AttnCase = { B: 2, H: 3, Tq: 20, Tk: 20, D: 8, causal: true, mask: false, p: 0.1, packed: false };
    const l = layout(c, 20, 0);
    const q = rand(l.size), k = rand(l.size), v = rand(l.size);
    const oR = new Float32Array(l.size), oN = oR.slice(), lR = new Float32Array(120), lN = lR.slice();
    ref.attention(q, 0, l.s, k, 0, l.s, v, 0, l.s, oR, 0, l.s, 2, 3, 20, 20, 8, 0.35, true, null, 0.1, 5, lR);
    nat!.attention(q, 0, l.s, k, 0, l.s, v, 0, l.s, oN, 0, l.s, 2, 3, 20, 20, 8, 0.35, true, null, 0.1, 5, lN);
    close('attention with 2 threads', oN, oR, 1e-6, 1e-5);
  } finally {
    nat!.setThreads(before);
  }
});

test('in-place calls (out aliases input) match the reference', { skip }, () => {
  const rows = 3, cols = 37;
  for (const log of [false, true]) {
    const x = rand(rows * cols, -5, 5), xr = x.slice(), xn = x.slice();
    ref.softmax(xr, rows, cols, xr, log);
    nat!.softmax(xn, rows, cols, xn, log);
    close(`softmax in place log=${log}`, xn, xr, 2e-6, 2e-6);
  }
  const z = rand(rows * cols, -5, 5), t = Int32Array.of(0, 36, 5), l = new Float32Array(rows), e = l.slice();
  ref.crossEntropy(z, rows, cols, t, -1, 0.1, l, e);
  const zr = z.slice(), zn = z.slice(), dl = Float32Array.of(1, 0.5, 2);
  ref.crossEntropyBackward(zr, e, t, rows, cols, -1, 0.1, dl, zr);
  nat!.crossEntropyBackward(zn, e, t, rows, cols, -1, 0.1, dl, zn);
  close('crossEntropyBackward in place', zn, zr, 1e-7, 1e-5);
  const n = 100, x = rand(n), xr = x.slice(), xn = x.slice();
  ref.dropout(xr, n, 0.3, 9, xr);
  nat!.dropout(xn, n, 0.3, 9, xn);
  exact('dropout in place', xn, xr);
  const y = rand(n), yr = y.slice(), yn = y.slice();
  ref.dropout(yr, n, NaN, 9, yr);
  nat!.dropout(yn, n, NaN, 9, yn);
  exact('dropout p=NaN', yn, yr);
});

test('bad arguments throw instead of corrupting memory', { skip }, () => {
  const a = new Float32Array(4);
  assert.throws(() => nat!.gemm(false, false, 3, 3, 3, 1, a, 0, 3, 0, a, 0, 3, 0, 0, a, 0, 3, 0, 1), RangeError);
  assert.throws(() => nat!.unary(UnOp.Exp, a, 2, 4, a, 0), RangeError);
  assert.throws(() => nat!.embedding(a, 2, Int32Array.of(5), 1, a), RangeError);
});

// The fused decoder: the native twin (native/decoder.c) against the reference twin
// (src/engine/decoder-ref.ts) in every weight format, with several sequences of different
// lengths interleaved in one step, prefill of several tokens then single-token steps. The
// reference twin itself is checked against a plain dense forward (no KV cache, whole sequence).

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.js';
import { quantizeWeight, WEIGHT_FORMATS, type WeightFormat, type QWeight } from '../../src/engine/quant.js';
import type { DecoderSpec, DecoderStep } from '../../src/engine/decoder.js';
import { refDecoderCreate, refDecoderStep, refDecoderFree } from '../../src/engine/decoder-ref.js';
import { reference } from '../../src/engine/backend/index.js';
import { loadNative, nativeLoadError } from '../../src/engine/backend/native.js';

interface Sizes { C: number; H: number; I: number; V: number; P: number; L: number; maxSeqs: number; maxT: number }

/** A random decoder spec; dense float weights kept beside it (for the dense check). */
function randomSpec(z: Sizes, format: WeightFormat, seed: number, activation: DecoderSpec['activation'] = 'gelu_tanh') {
  const rng = new Rng(seed);
  const v = (n: number, std = 0.3, mean = 0) => Float32Array.from({ length: n }, () => mean + std * rng.normal());
  // in_out [K, N] floats → a QWeight in the format (f32 stays in_out, as GPT-2's Conv1D).
  const lin = (K: number, N: number): QWeight => quantizeWeight(v(K * N, 1 / Math.sqrt(K)), N, K, 'in_out', format);
  const { C, I } = z;
  const spec: DecoderSpec = {
    hidden: C, heads: z.H, inner: I, vocab: z.V, positions: z.P, eps: 1e-5, activation,
    attnScale: Array.from({ length: z.L }, (_, l) => 1 / Math.sqrt(C / z.H) / (l + 1)),
    wte: quantizeWeight(v(z.V * C, 0.5), z.V, C, 'out_in', format === 'f32' ? 'f32' : format),
    wpe: v(z.P * C, 0.1),
    layers: Array.from({ length: z.L }, () => ({
      ln1Weight: v(C, 0.1, 1), ln1Bias: v(C, 0.1),
      qkv: lin(C, 3 * C), qkvBias: v(3 * C, 0.1),
      proj: lin(C, C), projBias: v(C, 0.1),
      ln2Weight: v(C, 0.1, 1), ln2Bias: v(C, 0.1),
      fc: lin(C, I), fcBias: v(I, 0.1),
      fcProj: lin(I, C), fcProjBias: v(C, 0.1),
    })),
    lnfWeight: v(C, 0.1, 1), lnfBias: v(C, 0.1),
    maxSeqs: z.maxSeqs, maxT: z.maxT,
  };
  return spec;
}

/** A step from (slot, tokens) entries: each entry's tokens continue its slot at `lens[slot]`; output = each entry's last token. */
function makeStep(entries: [number, number[]][], lens: number[], V: number): DecoderStep {
  const ids: number[] = [], pos: number[] = [], seq: number[] = [], out: number[] = [];
  for (const [s, toks] of entries) {
    toks.forEach((t, i) => { ids.push(t); pos.push(lens[s] + i); seq.push(s); });
    lens[s] += toks.length;
    out.push(ids.length - 1);
  }
  return { n: ids.length, ids: Int32Array.from(ids), pos: Int32Array.from(pos), seq: Int32Array.from(seq), outRows: Int32Array.from(out), logits: new Float32Array(out.length * V) };
}

const relMax = (a: Float32Array, b: Float32Array): number => {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / (m || 1);
};

// Odd sizes: hidden 64 (two q blocks), 4 heads of 16, MLP 96 (three blocks), vocabulary 37.
const Z: Sizes = { C: 64, H: 4, I: 96, V: 37, P: 40, L: 2, maxSeqs: 3, maxT: 24 };
// Three sequences: prompts of 5, 1 and 3 tokens in one step, then mixed prefill/decode steps.
const SCRIPT: [number, number[]][][] = [
  [[0, [1, 5, 9, 2, 7]], [2, [3]], [1, [4, 4, 8]]],
  [[0, [11]], [1, [12]], [2, [30, 31]]],
  [[2, [6]], [0, [0]]],
  [[1, [36, 2, 2, 1]], [0, [17]], [2, [9]]],
  [[0, [3]], [1, [3]], [2, [3]]],
];

test('decoder reference twin matches a dense whole-sequence forward', () => {
  // The dense forward: each sequence run from scratch, all positions at once, its last row compared.
  const spec = randomSpec(Z, 'f32', 7);
  const h = refDecoderCreate(spec);
  const lens = [0, 0, 0];
  const hist: number[][] = [[], [], []];
  for (const entries of SCRIPT) {
    const st = makeStep(entries, lens, Z.V);
    refDecoderStep(h, st);
    entries.forEach(([s, toks], r) => {
      hist[s].push(...toks);
      const fresh = refDecoderCreate({ ...spec, maxSeqs: 1 });
      const all = makeStep([[0, hist[s]]], [0], Z.V);
      refDecoderStep(fresh, all);
      const got = st.logits.subarray(r * Z.V, (r + 1) * Z.V);
      assert.ok(relMax(got, all.logits) < 1e-5, `slot ${s} after ${hist[s].length} tokens: ${relMax(got, all.logits)}`);
    });
  }
  refDecoderFree(h);
  assert.throws(() => refDecoderStep(h, makeStep([[0, [1]]], [0], Z.V)), /freed/);
});

test('decoder reference twin: bad steps fail with one-line errors', () => {
  const h = reference.decoderCreate(randomSpec(Z, 'f32', 3));
  assert.throws(() => reference.decoderStep(h, makeStep([[0, [Z.V]]], [0], Z.V)), /id 37 outside the vocabulary/);
  assert.throws(() => reference.decoderStep(h, makeStep([[3, [1]]], [0, 0, 0, 0], Z.V)), /slot 3 outside/);
  assert.throws(() => reference.decoderStep(h, makeStep([[0, [1]]], [Z.maxT], Z.V)), /position 24 outside/);
  assert.throws(() => refDecoderCreate({ ...randomSpec(Z, 'f32', 3), maxT: Z.P + 1 }), /maxT 41 exceeds/);
});

const nat = loadNative();
for (const format of WEIGHT_FORMATS) {
  for (const activation of ['gelu_tanh', 'gelu_erf', 'relu'] as const) {
    if (activation !== 'gelu_tanh' && format !== 'f32' && format !== 'q4_0') continue;
    test(`native decoder matches the reference twin: ${format}, ${activation}`, { skip: nat ? false : `native addon not available: ${nativeLoadError()}` }, () => {
      const spec = randomSpec(Z, format, 11, activation);
      const hr = reference.decoderCreate(spec), hn = nat!.decoderCreate(spec);
      const lr = [0, 0, 0], ln = [0, 0, 0];
      // f32: float summation order only; bf16 / q formats: an activation near a rounding or
      // quantization boundary may land on the other side, so a looser bound.
      const tol = format === 'f32' ? 1e-5 : 2e-3;
      let worst = 0;
      for (const entries of SCRIPT) {
        const sr = makeStep(entries, lr, Z.V), sn = makeStep(entries, ln, Z.V);
        reference.decoderStep(hr, sr);
        nat!.decoderStep(hn, sn);
        worst = Math.max(worst, relMax(sn.logits, sr.logits));
        assert.ok(sn.logits.every(Number.isFinite));
      }
      assert.ok(worst < tol, `${format}: relative difference ${worst} ≥ ${tol}`);
      nat!.decoderFree(hn);
      assert.throws(() => nat!.decoderStep(hn, makeStep([[0, [1]]], [0], Z.V)), /freed/);
    });
  }
}

test('native decoder: a prompt longer than one internal chunk (200 tokens), outputs inside and across chunks', { skip: nat ? false : 'no native addon' }, () => {
  const z: Sizes = { C: 32, H: 2, I: 64, V: 19, P: 260, L: 1, maxSeqs: 2, maxT: 256 };
  const spec = randomSpec(z, 'q8_0', 5);
  const hr = reference.decoderCreate(spec), hn = nat!.decoderCreate(spec);
  const toks = Array.from({ length: 200 }, (_, i) => (i * 7) % z.V);
  const mk = (): DecoderStep => {
    const st = makeStep([[0, toks.slice(0, 150)], [1, toks.slice(0, 50)]], [0, 0], z.V);
    // Several outputs, not in token order, one per chunk boundary side.
    st.outRows = Int32Array.of(199, 0, 127, 128, 149);
    st.logits = new Float32Array(5 * z.V);
    return st;
  };
  const sr = mk(), sn = mk();
  reference.decoderStep(hr, sr);
  nat!.decoderStep(hn, sn);
  assert.ok(relMax(sn.logits, sr.logits) < 2e-2, `${relMax(sn.logits, sr.logits)}`);
  // Row 0 (token 0 of slot 0) is not row 1: outputs are really per token.
  assert.notDeepEqual(Array.from(sn.logits.subarray(0, z.V)), Array.from(sn.logits.subarray(z.V, 2 * z.V)));
});

test('native decoder: bad arguments throw instead of touching memory', { skip: nat ? false : 'no native addon' }, () => {
  const spec = randomSpec(Z, 'f32', 2);
  const h = nat!.decoderCreate(spec);
  assert.throws(() => nat!.decoderStep(h, makeStep([[0, [Z.V]]], [0], Z.V)), /out of range/);
  assert.throws(() => nat!.decoderStep(h, makeStep([[0, [1]]], [Z.maxT], Z.V)), /out of range/);
  const st = makeStep([[0, [1, 2]]], [0], Z.V);
  st.logits = new Float32Array(Z.V - 1);
  assert.throws(() => nat!.decoderStep(h, st), /logits/);
  st.logits = new Float32Array(Z.V); st.outRows = Int32Array.of(2);
  assert.throws(() => nat!.decoderStep(h, st), /output row/);
  const broken = { ...spec, layers: spec.layers.map((l) => ({ ...l, fcBias: new Float32Array(3) })) };
  assert.throws(() => nat!.decoderCreate(broken), /fcBias has 3 values/);
  nat!.decoderFree(h);
});

// The fused inference runtime (DecoderRuntime over GPT2.runtime()): its logits against
// model.forward() with a KV cache, generate() with and without it, batched stepMany against
// generations run alone, no per-step allocation, and the cases where a model must not use it
// (LoRA wrappers, training mode) or must rebuild it (quantized weights set afterwards).

import test from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { backend } from '../../src/engine/backend/index.js';
import { quantizeWeight } from '../../src/engine/quant.js';
import { Linear } from '../../src/nn/module.js';
import { createModel, generate, Generation, type LanguageModel, type TextCodec } from '../../src/models/index.js';
import { stepMany } from '../../src/models/generate.js';
import { PeftModel, loraTuner } from '../../src/tuners/index.js';

const codec: TextCodec = { encode: (s) => s.split(' ').map(Number), decode: (ids) => ids.join(' ') };
// Odd sizes: 48 wide (3 heads of 16), MLP 96, vocabulary 61.
const cfg = { vocab_size: 61, n_positions: 96, n_embd: 48, n_layer: 2, n_head: 3, n_inner: 96, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const make = (seed = 3, over: Record<string, unknown> = {}): LanguageModel => createModel('gpt2', { ...cfg, ...over }, seed).eval();

const relMax = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / (m || 1);
};

test('runtime logits match forward() with a KV cache, two sequences interleaved (f32, ≤ 1e-4 relative)', () => {
  for (const act of ['gelu_new', 'gelu', 'relu']) {
    const model = make(5, { activation_function: act, scale_attn_by_inverse_layer_idx: act === 'gelu' });
    const rt = model.runtime!({ maxSeqs: 2, maxT: 40 })!;
    assert.ok(rt, 'a plain GPT-2 in eval mode has a runtime');
    const a = rt.acquire()!, b = rt.acquire()!;
    const caches = [model.newCache!(1, 40), model.newCache!(1, 40)];
    const fwd = (k: number, ids: number[]): Float32Array => tidy(() => noGrad(() => {
      const l = model.forward(O.tensor(ids, [1, ids.length], 'int32'), { cache: caches[k] });
      return l.f32.slice((ids.length - 1) * 61, ids.length * 61);
    }));
    const steps: [number[], number[]][] = [[[1, 2, 3, 4, 5, 6, 7], [9]], [[8], [10, 11, 12]], [[13], [14]], [[60, 0], [59]]];
    for (const [ia, ib] of steps) {
      const got = rt.step([{ seq: b, ids: ib }, { seq: a, ids: ia }]);
      assert.equal(got.length, 2 * 61);
      const ra = fwd(0, ia), rb = fwd(1, ib);
      assert.ok(relMax(got.subarray(61, 122), ra) <= 1e-4, `${act} seq a: ${relMax(got.subarray(61, 122), ra)}`);
      assert.ok(relMax(got.subarray(0, 61), rb) <= 1e-4, `${act} seq b: ${relMax(got.subarray(0, 61), rb)}`);
    }
    assert.equal(rt.length(a), 11); assert.equal(rt.length(b), 6);
    caches.forEach((c) => c.dispose());
    rt.release(a); rt.release(b);
  }
});

test('runtime bookkeeping: slots, lengths, full slots and bad entries are one-line errors', () => {
  const model = make();
  const rt = model.runtime!({ maxSeqs: 2, maxT: 64 })!;
  assert.equal(rt.maxT, 64);
  const s0 = rt.acquire()!, s1 = rt.acquire()!;
  assert.equal(rt.acquire(), null);
  assert.throws(() => rt.step([{ seq: s0, ids: [61] }]), /outside the vocabulary/);
  assert.throws(() => rt.step([{ seq: s0, ids: [1] }, { seq: s0, ids: [2] }]), /appears twice/);
  assert.throws(() => rt.step([{ seq: s0, ids: Array(65).fill(1) }]), /more than 64/);
  rt.step([{ seq: s0, ids: [1, 2, 3] }]);
  assert.equal(rt.length(s0), 3);
  rt.release(s0);
  assert.throws(() => rt.step([{ seq: s0, ids: [1] }]), /not acquired/);
  assert.equal(rt.acquire(), s0);
  assert.equal(rt.length(s0), 0);
  rt.release(s0); rt.release(s1);
  // The same runtime comes back while it is large enough; a larger request replaces it.
  assert.equal(model.runtime!({ maxSeqs: 1, maxT: 10 }), rt);
  const big = model.runtime!({ maxSeqs: 3, maxT: 64 })!;
  assert.notEqual(big, rt);
  assert.equal(big.maxSeqs, 3);
  assert.throws(() => rt.acquire(), /after dispose/);
});

test('greedy generate() gives the same tokens with and without the runtime', () => {
  const model = make(7);
  const prompt = [5, 17, 3, 44, 12];
  const g = new Generation(model, codec, prompt, { maxNewTokens: 30, temperature: 0 });
  assert.ok(g.usesRuntime);
  while (!g.step());
  const slow = generate(model, codec, prompt, { maxNewTokens: 30, temperature: 0, runtime: false });
  assert.deepEqual(g.result().tokens, slow.tokens);
  assert.equal(g.result().tokens.length, 30);
  // Sampling, penalties and logprobs run on the same rows either way.
  const o = { maxNewTokens: 12, temperature: 0.8, topK: 20, seed: 4, frequencyPenalty: 0.5, logprobs: true, topLogprobs: 2 };
  const a = new Generation(model, codec, prompt, o), b = new Generation(model, codec, prompt, { ...o, runtime: false });
  while (!a.step());
  while (!b.step());
  assert.ok(a.usesRuntime && !b.usesRuntime);
  assert.deepEqual(a.tokens, b.tokens);
  a.logprobs.forEach((lp, i) => assert.ok(Math.abs(lp.logprob - b.logprobs[i].logprob) < 1e-4));
});

test('stepMany decodes generations sharing a runtime in one step, with the tokens each gets alone', () => {
  const model = make(9);
  const prompts = [[1, 2, 3], [40, 41, 42, 43, 44, 45, 46, 47], [7]];
  const alone = prompts.map((p, i) => generate(model, codec, p, { maxNewTokens: 8 + 3 * i, temperature: 0, runtime: false }).tokens);
  const rt = model.runtime!({ maxSeqs: 3, maxT: 32 })!;
  const gens = prompts.map((p, i) => new Generation(model, codec, p, { maxNewTokens: 8 + 3 * i, temperature: 0 }));
  assert.ok(gens.every((g) => g.runtime === rt), 'all three on the model runtime');
  let calls = 0;
  const step = rt.step.bind(rt);
  rt.step = (batch) => { calls++; return step(batch); };
  let rounds = 0;
  while (stepMany(gens) > 0) rounds++;
  rounds++;
  assert.equal(calls, rounds, 'one runtime step per stepMany round');
  gens.forEach((g, i) => assert.deepEqual(g.tokens, alone[i], `generation ${i}`));
  assert.equal(rt.acquire(), 0, 'every slot released');
  rt.release(0);
});

const nativeDecoder = backend().decoderCreate !== undefined && process.env.ICLD_BACKEND !== 'reference';
test('runtime steps allocate nothing once warm (JS heap and array buffers)', { skip: nativeDecoder ? false : 'the reference decoder allocates per step by design' }, () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  const model = make(2);
  const rt = model.runtime!({ maxSeqs: 4, maxT: 64 })!;
  const slots = [rt.acquire()!, rt.acquire()!, rt.acquire()!, rt.acquire()!];
  const one = [{ seq: slots[0], ids: [3] }];
  const four = slots.map((s) => ({ seq: s, ids: [s + 1] }));
  const run = (k: number): void => {
    for (let i = 0; i < k; i++) {
      if (rt.length(slots[0]) >= 63) { for (const s of slots) rt.release(s); for (let j = 0; j < 4; j++) rt.acquire(); }
      rt.step(i % 2 ? one : four);
    }
  };
  run(300); // warm-up: compiled code, feedback, the decoder's thread choice
  const deltas: number[] = [], bufs: number[] = [];
  for (let r = 0; r < 5; r++) {
    gc?.();
    const m0 = process.memoryUsage();
    run(300);
    const m1 = process.memoryUsage();
    deltas.push(m1.heapUsed - m0.heapUsed);
    bufs.push(m1.arrayBuffers - m0.arrayBuffers);
  }
  // A single 16-byte object per step would be 4.8 kB over 300 steps; logits are 4 × 61 floats.
  assert.ok(Math.min(...deltas) < 4096, `heap grew by ${deltas.join(', ')} bytes over 300 steps`);
  assert.ok(Math.min(...bufs) <= 0, `array buffers grew by ${bufs.join(', ')} bytes over 300 steps`);
  for (const s of slots) rt.release(s);
});

test('the native decoder picks a thread count per step shape by timing, or keeps a fixed one', { skip: nativeDecoder ? false : 'reference decoder' }, () => {
  const be = backend() as ReturnType<typeof backend> & { threads(): number; setThreads(n: number): void };
  const before = be.threads();
  try {
    be.setThreads(2);
    const model = make(8);
    const rt = model.runtime!({ maxSeqs: 1, maxT: 64 }) as ReturnType<NonNullable<LanguageModel['runtime']>> & { threads(nt?: number): number[] };
    const s = rt.acquire()!;
    assert.deepEqual(rt.threads(), [0, 0, 0, 0], 'nothing measured yet');
    rt.step([{ seq: s, ids: [1, 2, 3] }]);
    for (let i = 0; i < 12; i++) rt.step([{ seq: s, ids: [i + 1] }]);
    const [one, few] = rt.threads();
    assert.ok(one === 1 || one === 2, `single-token steps: ${one}`);
    assert.equal(few, 0, 'the 2–8 token shape has had one step only');
    assert.deepEqual(rt.threads(1), [1, 1, 1, 1]);
    const fixed = rt.step([{ seq: s, ids: [5] }]).slice();
    assert.ok(fixed.every(Number.isFinite));
    assert.deepEqual(rt.threads(0), [0, 0, 0, 0], 'back to measuring');
    rt.release(s);
  } finally { be.setThreads(before); }
});

test('no runtime with LoRA wrappers or in training mode; generation still works through PeftModel', () => {
  const model = make(4);
  const pm = new PeftModel(model);
  pm.addAdapter('default', loraTuner.config({ r: 4 }, pm.base, 'test'), 1);
  assert.equal(model.runtime!({ maxSeqs: 1, maxT: 16 }), null, 'a wrapped c_attn must not be bypassed');
  assert.equal((pm as unknown as LanguageModel).runtime, undefined);
  // The LoRA update (B randomised so it is not zero) changes the output; generation follows it.
  for (const [n, p] of pm.namedTrainableParameters()) if (n.includes('lora_B')) p.f32.forEach((_, i, a) => { a[i] = 0.5 * Math.sin(i + 1); });
  pm.eval();
  const g = new Generation(pm, codec, [1, 2, 3], { maxNewTokens: 6, temperature: 0 });
  assert.ok(!g.usesRuntime);
  while (!g.step());
  const lastLogits = (ids: number[]): Float32Array => tidy(() => noGrad(() => {
    const l = pm.forward(O.tensor(ids, [1, ids.length], 'int32'));
    return l.f32.slice((ids.length - 1) * 61, ids.length * 61);
  }));
  const seq = [1, 2, 3];
  for (const t of g.tokens) {
    const row = lastLogits(seq);
    assert.equal(t, row.indexOf(Math.max(...row)));
    seq.push(t);
  }
  const plain = make(4);
  plain.train();
  assert.equal(plain.runtime!({ maxSeqs: 1, maxT: 16 }), null);
  plain.eval();
  assert.ok(plain.runtime!({ maxSeqs: 1, maxT: 16 }));
});

test('quantized Linear weights: the runtime is rebuilt over them and stays close to f32', () => {
  const model = make(6, { n_embd: 64, n_head: 4 }); // q8_0 blocks: input sizes multiples of 32
  const rt = model.runtime!({ maxSeqs: 1, maxT: 16 })!;
  const ids = [4, 8, 15, 16, 23, 42];
  const run = (r: ReturnType<NonNullable<LanguageModel['runtime']>>): Float32Array => {
    const s = r!.acquire()!;
    const out = r!.step([{ seq: s, ids }]).slice();
    r!.release(s);
    return out;
  };
  const f32 = run(rt);
  for (const [, m] of model.namedModules()) {
    if (m instanceof Linear) m.quantized = quantizeWeight(m.weight.f32, m.outFeatures, m.inFeatures, 'in_out', 'q8_0');
  }
  const q = model.runtime!({ maxSeqs: 1, maxT: 16 })!;
  assert.notEqual(q, rt);
  const q8 = run(q);
  const d = relMax(q8, f32);
  assert.ok(d > 0 && d < 0.05, `q8_0 vs f32 relative difference ${d}`);
});

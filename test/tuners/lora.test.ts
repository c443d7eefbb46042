// LoRA: zero-initialised B leaves both families' outputs unchanged; the update equals an
// independent float64 computation of base + x Aᵀ Bᵀ · α/r in either weight layout; gradients
// reach only A and B; merge/unmerge; named adapters; PEFT's target matching and key names.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { Rng, noGrad } from '../../src/engine/index.js';
import type { LanguageModel } from '../../src/models/index.js';
import { isLinearLayer, type LinearLayer } from '../../src/nn/module.js';
import { PeftModel, loraTuner } from '../../src/tuners/index.js';
import { assertClose } from '../helpers.js';
import { C, gpt2, bert, ids, logits, maxDiff } from './tiny-models.js';


/** Fill every LoRA tensor of the model with random values (an "optimizer-free update"). */
function randomize(pm: PeftModel, seed: number, name?: string): void {
  const rng = new Rng(seed);
  for (const [n, p] of pm.namedParameters()) {
    if (!/\.lora_[AB]\./.test(n) || (name && !n.includes(`.${name}.`))) continue;
    const d = p.f32;
    for (let i = 0; i < d.length; i++) d[i] = (rng.next() - 0.5) * 0.6;
  }
}

function lora(m: LanguageModel, user: Record<string, unknown> = {}, name = 'default', seed = 0, pm = new PeftModel(m)): PeftModel {
  pm.addAdapter(name, loraTuner.config(user, pm.base, 'test'), seed);
  return pm;
}

/** y = x W (+ b) + s · x Aᵀ Bᵀ in float64, W in either layout. */
function reference(base: { w: number[]; b: number[] | null; layout: 'in_out' | 'out_in'; inF: number; outF: number }, A: number[], B: number[], r: number, s: number, x: number[]): number[] {
  const rows = x.length / base.inF, out: number[] = [];
  for (let n = 0; n < rows; n++) {
    const xa = new Array(r).fill(0);
    for (let k = 0; k < r; k++) for (let i = 0; i < base.inF; i++) xa[k] += x[n * base.inF + i] * A[k * base.inF + i];
    for (let o = 0; o < base.outF; o++) {
      let y = base.b ? base.b[o] : 0;
      for (let i = 0; i < base.inF; i++) y += x[n * base.inF + i] * (base.layout === 'in_out' ? base.w[i * base.outF + o] : base.w[o * base.inF + i]);
      let d = 0;
      for (let k = 0; k < r; k++) d += xa[k] * B[o * r + k];
      out.push(y + s * d);
    }
  }
  return out;
}

describe('LoRA', () => {
  for (const [family, make, path] of [['gpt2', gpt2, 'transformer.h.1.attn.c_attn'], ['bert', bert, 'bert.encoder.layer.1.attention.self.value']] as const) {
    it(`${family}: zero-initialised B leaves the logits unchanged; random A/B change them`, () => {
      const m = make();
      const before = logits(m);
      const pm = lora(m);
      assert.ok(pm.namedTrainableParameters().length > 0);
      assert.equal(maxDiff(logits(pm), before), 0);
      randomize(pm, 5);
      assert.ok(maxDiff(logits(pm), before) > 1e-3, 'the update must show in the logits');
      // The base layer kept its own weight tensors and names.
      assert.ok(pm.namedParameters().some(([n]) => n === `${path}.weight`));
    });

    it(`${family}: the wrapped layer computes base + x·Aᵀ·Bᵀ·α/r (independent float64 reference, ${family === 'gpt2' ? '[in, out]' : '[out, in]'} layout)`, () => {
      const pm = lora(make(), { r: 4, lora_alpha: 12 });
      randomize(pm, 7);
      const w = pm.getModule(path) as LinearLayer;
      assert.ok(isLinearLayer(w));
      const A = pm.namedParameters().find(([n]) => n === `${path}.lora_A.default.weight`)![1];
      const B = pm.namedParameters().find(([n]) => n === `${path}.lora_B.default.weight`)![1];
      assert.deepEqual(A.shape, [4, w.inFeatures]);
      assert.deepEqual(B.shape, [w.outFeatures, 4]);
      const x = O.randn([2, 3, w.inFeatures], new Rng(2));
      const got = noGrad(() => w.forward(x).toArray());
      const want = reference({ w: w.weight.toArray(), b: w.bias?.toArray() ?? null, layout: w.weightLayout, inF: w.inFeatures, outF: w.outFeatures }, A.toArray(), B.toArray(), 4, 12 / 4, x.toArray());
      assertClose(got, want, 1e-5, 1e-5, 'lora forward');
      // use_rslora: scaling α/√r.
      const pr = lora(make(), { r: 4, lora_alpha: 12, use_rslora: true });
      randomize(pr, 7);
      const wr = pr.getModule(path) as LinearLayer;
      const Ar = pr.namedParameters().find(([n]) => n === `${path}.lora_A.default.weight`)![1];
      const Br = pr.namedParameters().find(([n]) => n === `${path}.lora_B.default.weight`)![1];
      const want2 = reference({ w: wr.weight.toArray(), b: wr.bias?.toArray() ?? null, layout: wr.weightLayout, inF: wr.inFeatures, outF: wr.outFeatures }, Ar.toArray(), Br.toArray(), 4, 12 / 2, x.toArray());
      assertClose(noGrad(() => wr.forward(x).toArray()), want2, 1e-5, 1e-5, 'rslora forward');
    });

    it(`${family}: gradients reach only the LoRA tensors (base .grad stays null)`, () => {
      const pm = lora(make());
      randomize(pm, 3);
      const labels = family === 'bert' ? ids() : undefined;
      pm.loss(ids(), labels).loss.backward();
      let adapterGrads = 0;
      for (const [n, p] of pm.namedParameters()) {
        if (n.includes('.lora_')) { assert.ok(p.grad, `${n} has a gradient`); if (p.grad!.toArray().some((v) => v !== 0)) adapterGrads++; }
        else assert.equal(p.grad, null, `base parameter ${n} must get no gradient`);
      }
      assert.equal(adapterGrads, pm.namedTrainableParameters().length);
    });

    it(`${family}: merge folds B·A·s into the weight (same logits to 1e-5), unmerge restores the weights to 1e-6`, () => {
      const pm = lora(make(), { r: 4, lora_alpha: 8 });
      randomize(pm, 11);
      const w = (pm.getModule(path) as LinearLayer).weight;
      const w0 = w.toArray();
      const unmerged = logits(pm);
      const a = pm.adapters.get('default')!;
      a.merge!();
      assert.equal(a.merged, true);
      assert.ok(maxDiff(w.toArray(), w0) > 1e-3, 'merge changes the base weight');
      assertClose(logits(pm), unmerged, 1e-5, 1e-5, 'merged vs unmerged logits');
      a.unmerge!();
      assertClose(w.toArray(), w0, 1e-6, 0, 'weights after unmerge');
      assertClose(logits(pm), unmerged, 1e-5, 1e-5, 'logits after unmerge');
    });
  }

  it('lora_dropout acts on the LoRA input only and only in training mode', () => {
    const m = gpt2();
    const base = logits(m);
    const pm = lora(m, { lora_dropout: 0.5 });
    const nodrop = lora(gpt2(), {});
    randomize(pm, 8); randomize(nodrop, 8);
    pm.eval();
    assert.deepEqual(logits(pm), logits(nodrop), 'eval: no dropout');
    pm.train();
    const t1 = logits(pm), t2 = logits(pm);
    assert.ok(maxDiff(t1, t2) > 1e-4, 'training: a fresh mask per call');
    assert.ok(maxDiff(t1, logits(nodrop)) > 1e-4);
    // Switched off, the adapter (and its dropout) is gone: the base's own dropouts are 0 here.
    assert.deepEqual(pm.withoutAdapters(() => logits(pm)), base);
  });

  it('remove() puts the original layer objects back and the parameter names are those of the base', () => {
    const m = gpt2();
    const originals = m.namedModules().filter(([p]) => p.endsWith('c_attn'));
    const names = m.namedParameters().map(([n]) => n);
    const pm = lora(m);
    assert.ok(originals.every(([p, o]) => pm.getModule(p) !== o), 'wrapped while attached');
    pm.adapters.get('default')!.remove();
    for (const [p, o] of originals) assert.equal(m.getModule(p), o);
    assert.deepEqual(m.namedParameters().map(([n]) => n), names);
  });

  it('two named adapters on the same layers; only the active one applies; switching moves trainability', () => {
    const m = gpt2();
    const base = logits(m);
    const pm = lora(m, {}, 'a', 1);
    lora(m, { r: 2 }, 'b', 2, pm);
    randomize(pm, 21, 'a'); randomize(pm, 22, 'b');
    assert.equal(pm.activeAdapter, 'b');
    const lb = logits(pm);
    pm.setAdapter('a');
    const la = logits(pm);
    assert.ok(maxDiff(la, lb) > 1e-3 && maxDiff(la, base) > 1e-3);
    for (const [n, p] of pm.namedParameters()) if (n.includes('.lora_')) assert.equal(p.requiresGrad, n.includes('.a.'), n);
    // 'a' alone on a fresh copy of the base gives the same logits.
    const solo = lora(gpt2(), {}, 'a', 1);
    const src = new Map(pm.adapters.get('a')!.stateDict());
    solo.adapters.get('a')!.loadStateDict(src, 'copy');
    assertClose(logits(solo), la, 1e-6, 1e-6, "adapter 'a' alone");
    pm.setAdapter('b');
    assertClose(logits(pm), lb, 0, 0, "back to 'b'");
    assert.throws(() => pm.setAdapter('c'), /no adapter 'c' \(adapters: a, b\)/);
  });

  it("target matching follows PEFT: names match a path or its '.'-suffix, a string is a fullmatch regex, layers_to_transform", () => {
    const wrapped = (pm: PeftModel): string[] => pm.adapters.get('default')!.namedParameters().filter(([n]) => n.includes('lora_A')).map(([n]) => n.replace(/\.lora_A\..*/, ''));
    assert.deepEqual(wrapped(lora(gpt2(), { target_modules: ['c_proj'] })),
      ['transformer.h.0.attn.c_proj', 'transformer.h.0.mlp.c_proj', 'transformer.h.1.attn.c_proj', 'transformer.h.1.mlp.c_proj']);
    assert.deepEqual(wrapped(lora(gpt2(), { target_modules: ['attn.c_proj', 'c_fc'], layers_to_transform: [1] })), ['transformer.h.1.attn.c_proj', 'transformer.h.1.mlp.c_fc']);
    assert.deepEqual(wrapped(lora(gpt2(), { target_modules: '.*\\.h\\.1\\.attn\\.c_(attn|proj)' })), ['transformer.h.1.attn.c_attn', 'transformer.h.1.attn.c_proj']);
    // fullmatch: a regex matching only part of the path selects nothing.
    assert.throws(() => lora(gpt2(), { target_modules: 'c_attn' }), /matches no module/);
    assert.deepEqual(wrapped(lora(bert())), ['bert.encoder.layer.0.attention.self.query', 'bert.encoder.layer.0.attention.self.value', 'bert.encoder.layer.1.attention.self.query', 'bert.encoder.layer.1.attention.self.value']);
  });

  it('config: PEFT LoraConfig keys and defaults; fan_in_fan_out from the layer layout (Conv1D true, nn.Linear false)', () => {
    const g = loraTuner.config({}, gpt2(), 'test');
    assert.equal(g.peft_type, 'LORA'); assert.equal(g.task_type, 'CAUSAL_LM');
    assert.equal(g.r, 8); assert.equal(g.lora_alpha, 8); assert.equal(g.lora_dropout, 0);
    assert.deepEqual(g.target_modules, ['c_attn']);
    assert.equal(g.fan_in_fan_out, true); assert.equal(g.bias, 'none'); assert.equal(g.use_rslora, false);
    assert.equal(g.init_lora_weights, true); assert.equal(g.layers_to_transform, null); assert.equal(g.modules_to_save, null);
    const b = loraTuner.config({ fan_in_fan_out: true }, bert(), 'test');
    assert.equal(b.fan_in_fan_out, false); assert.equal(b.task_type, null); assert.deepEqual(b.target_modules, ['query', 'value']);
  });

  it('the saved state dict has PEFT key names (adapter name removed) and shapes', () => {
    const pm = lora(gpt2());
    const sd = pm.adapters.get('default')!.stateDict();
    assert.deepEqual([...sd.keys()], [
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight',
      'base_model.model.transformer.h.1.attn.c_attn.lora_A.weight', 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight',
    ]);
    assert.deepEqual(sd.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')!.shape, [8, C]);
    assert.deepEqual(sd.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape, [3 * C, 8]);
    // Kaiming-uniform(a=√5) A: |a| ≤ 1/√in and not all zero; B zero.
    const A = sd.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')!.data;
    assert.ok(A.every((v) => Math.abs(v) <= 1 / Math.sqrt(C)) && A.some((v) => Math.abs(v) > 0.5 / Math.sqrt(C)));
    assert.ok(sd.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.data.every((v) => v === 0));
  });

  it('bad configurations are one-line errors naming the key or module', () => {
    const oneLine = (fn: () => unknown, re: RegExp): void => {
      assert.throws(fn, (e: Error) => { assert.match(e.message, re); assert.ok(!e.message.includes('\n'), e.message); return true; });
    };
    oneLine(() => loraTuner.config({ target_modules: ['nope'] }, gpt2(), 'cfg'), /^cfg: target_modules \["nope"\] matches no module of this gpt2 model \(its linear layers: c_attn, c_proj, c_fc\)/);
    oneLine(() => loraTuner.config({ target_modules: ['attn'] }, gpt2(), 'cfg'), /'transformer\.h\.0\.attn', which is not a linear layer/);
    oneLine(() => loraTuner.config({ use_dora: true }, gpt2(), 'cfg'), /^cfg: use_dora true is not supported/);
    oneLine(() => loraTuner.config({ rank_pattern: { c_attn: 4 } }, gpt2(), 'cfg'), /rank_pattern/);
    oneLine(() => loraTuner.config({ bias: 'all' }, gpt2(), 'cfg'), /bias "all" is not supported/);
    oneLine(() => loraTuner.config({ r: 0 }, gpt2(), 'cfg'), /^cfg: r must be an integer/);
    oneLine(() => loraTuner.config({ target_modules: '(' }, gpt2(), 'cfg'), /not a valid regular expression/);
    oneLine(() => loraTuner.config({ init_lora_weights: 'pissa' }, gpt2(), 'cfg'), /init_lora_weights "pissa"/);
  });
});

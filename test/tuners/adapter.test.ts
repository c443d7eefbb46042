// Bottleneck adapters (peft_type BOTTLENECK, the LLM-Adapters fork's keys): zero-initialised up
// projection leaves outputs unchanged in both families; the wrapped layer equals an independent
// float64 computation (sequential and parallel); gradients only on the adapter; Houlsby vs
// Pfeiffer placement; saved key names; and no merging.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { Rng, noGrad } from '../../src/engine/index.js';
import type { LanguageModel } from '../../src/models/index.js';
import type { LinearLayer } from '../../src/nn/module.js';
import { PeftModel, adapterTuner, loraTuner } from '../../src/tuners/index.js';
import { assertClose } from '../helpers.js';
import { C, gpt2, bert, ids, logits, maxDiff } from './tiny-models.js';


function attach(m: LanguageModel, user: Record<string, unknown> = {}): PeftModel {
  const pm = new PeftModel(m);
  pm.addAdapter('default', adapterTuner.config(user, m, 'test'), 0);
  return pm;
}
function randomize(pm: PeftModel, seed: number): void {
  const rng = new Rng(seed);
  for (const [n, p] of pm.namedParameters()) if (n.includes('.adapter_')) { const d = p.f32; for (let i = 0; i < d.length; i++) d[i] = (rng.next() - 0.5) * 2; }
}
const act = (v: number, f: string): number => (f === 'relu' ? Math.max(0, v) : f === 'tanh' ? Math.tanh(v) : v);

describe('bottleneck adapters', () => {
  for (const [family, make] of [['gpt2', gpt2], ['bert', bert]] as const) {
    it(`${family}: attaching (up = 0) leaves the logits unchanged; random weights change them; gradients only on the adapter`, () => {
      const m = make();
      const before = logits(m);
      const pm = attach(m, { bottleneck_size: 4 });
      assert.equal(maxDiff(logits(pm), before), 0);
      randomize(pm, 4);
      assert.ok(maxDiff(logits(pm), before) > 1e-4, `logits moved by ${maxDiff(logits(pm), before)}`);
      pm.loss(ids(), family === 'bert' ? ids() : undefined).loss.backward();
      for (const [n, p] of pm.namedParameters()) {
        if (n.includes('.adapter_')) assert.ok(p.grad && p.grad.toArray().some((v) => v !== 0), `${n} gets a gradient`);
        else assert.equal(p.grad, null, `base parameter ${n} must get no gradient`);
      }
    });
  }

  for (const [variant, user] of [['sequential tanh', { non_linearity: 'tanh', scaling: 0.5 }], ['sequential relu', { non_linearity: 'relu', scaling: 2 }], ['parallel relu', { non_linearity: 'relu', use_parallel_adapter: true }]] as const) {
    it(`the wrapped layer computes y + s·up(act(down(${variant.startsWith('parallel') ? 'x' : 'y'}))) (${variant}, float64 reference)`, () => {
      const m = gpt2();
      const path = 'transformer.h.0.mlp.c_proj';
      const layer = m.getModule(path) as LinearLayer;
      const pm = attach(m, { bottleneck_size: 3, ...user });
      randomize(pm, 9);
      const w = pm.getModule(path) as LinearLayer;
      assert.notEqual(w, layer);
      const find = (k: string): number[] => pm.namedParameters().find(([n]) => n === `${path}.${k}.default.weight`)![1].toArray();
      const down = find('adapter_down'), up = find('adapter_up');
      const parallel = variant.startsWith('parallel');
      const inF = layer.inFeatures, outF = layer.outFeatures, b = 3, s = (user as unknown as { scaling?: number }).scaling ?? 1;
      assert.equal(down.length, b * (parallel ? inF : outF));
      const x = O.randn([5, inF], new Rng(3));
      const X = x.toArray(), W = layer.weight.toArray(), bias = layer.bias!.toArray();
      const want: number[] = [];
      for (let n = 0; n < 5; n++) {
        const y = Array.from({ length: outF }, (_, o) => { let v = bias[o]; for (let i = 0; i < inF; i++) v += X[n * inF + i] * W[i * outF + o]; return v; });
        const h = parallel ? X.slice(n * inF, (n + 1) * inF) : y;
        const z = Array.from({ length: b }, (_, k) => act(h.reduce((acc, hv, i) => acc + hv * down[k * h.length + i], 0), user.non_linearity));
        for (let o = 0; o < outF; o++) want.push(y[o] + s * z.reduce((acc, zv, k) => acc + zv * up[o * b + k], 0));
      }
      assertClose(noGrad(() => w.forward(x).toArray()), want, 1e-5, 1e-5, variant);
    });
  }

  it('Houlsby (default) wraps the attention and MLP outputs, Pfeiffer (adapter_type / use_adapterp) the MLP output only; saved keys as the fork writes them', () => {
    const keys = (pm: PeftModel): string[] => [...pm.adapters.get('default')!.stateDict().keys()];
    const h = attach(gpt2(), { bottleneck_size: 4 });
    assert.deepEqual(keys(h), [
      'base_model.model.transformer.h.0.attn.c_proj.adapter_down.weight', 'base_model.model.transformer.h.0.attn.c_proj.adapter_up.weight',
      'base_model.model.transformer.h.0.mlp.c_proj.adapter_down.weight', 'base_model.model.transformer.h.0.mlp.c_proj.adapter_up.weight',
      'base_model.model.transformer.h.1.attn.c_proj.adapter_down.weight', 'base_model.model.transformer.h.1.attn.c_proj.adapter_up.weight',
      'base_model.model.transformer.h.1.mlp.c_proj.adapter_down.weight', 'base_model.model.transformer.h.1.mlp.c_proj.adapter_up.weight',
    ]);
    const sd = h.adapters.get('default')!.stateDict();
    assert.deepEqual(sd.get('base_model.model.transformer.h.0.attn.c_proj.adapter_down.weight')!.shape, [4, C]);
    assert.deepEqual(sd.get('base_model.model.transformer.h.0.attn.c_proj.adapter_up.weight')!.shape, [C, 4]);
    assert.equal(h.adapters.get('default')!.config.use_adapterp, false);
    const p = attach(gpt2(), { bottleneck_size: 4, adapter_type: 'pfeiffer' });
    assert.deepEqual(keys(p).map((k) => k.replace(/\.adapter_.*/, '')), ['base_model.model.transformer.h.0.mlp.c_proj', 'base_model.model.transformer.h.0.mlp.c_proj', 'base_model.model.transformer.h.1.mlp.c_proj', 'base_model.model.transformer.h.1.mlp.c_proj']);
    const cfg = p.adapters.get('default')!.config;
    assert.equal(cfg.use_adapterp, true); assert.equal(cfg.adapter_type, undefined); assert.equal(cfg.peft_type, 'BOTTLENECK');
    assert.deepEqual(adapterTuner.config({ use_adapterp: true }, bert(), 't').target_modules, ['output.dense']);
    const bh = attach(bert(), { bottleneck_size: 4 });
    assert.ok(keys(bh).includes('base_model.model.bert.encoder.layer.1.attention.output.dense.adapter_down.weight'));
    assert.ok(keys(bh).includes('base_model.model.bert.encoder.layer.1.output.dense.adapter_up.weight'));
  });

  it('config defaults; learned scaling is a saved parameter; bad keys are one-line errors', () => {
    const c = adapterTuner.config({}, gpt2(), 't');
    assert.equal(c.bottleneck_size, 64); assert.equal(c.non_linearity, 'tanh'); assert.equal(c.scaling, 1);
    assert.equal(c.use_parallel_adapter, false); assert.equal(c.adapter_dropout, 0); assert.equal(c.init_weights, 'mam_adapter');
    const pm = attach(gpt2(), { bottleneck_size: 2, scaling: 'learned', target_modules: ['mlp.c_proj'] });
    const sd = pm.adapters.get('default')!.stateDict();
    assert.deepEqual(sd.get('base_model.model.transformer.h.0.mlp.c_proj.adapter_scaling')!.data, new Float32Array([1]));
    for (const [user, re] of [[{ non_linearity: 'swish' }, /non_linearity must be one of/], [{ bottleneck_size: 0 }, /bottleneck_size must be an integer/], [{ bias: 'all' }, /bias "all" is not supported/], [{ target_modules: ['wte'] }, /'transformer\.wte', which is not a linear layer/]] as const) {
      assert.throws(() => adapterTuner.config(user, gpt2(), 'cfg'), (e: Error) => { assert.match(e.message, re); assert.ok(e.message.startsWith('cfg: ') && !e.message.includes('\n'), e.message); return true; });
    }
  });

  it('mergeAndUnload refuses a bottleneck adapter (only LoRA merges) and leaves it in place', () => {
    const pm = attach(gpt2(), { bottleneck_size: 4 });
    randomize(pm, 1);
    const before = logits(pm);
    assert.throws(() => pm.mergeAndUnload(), /^Error: mergeAndUnload: only LoRA adapters merge into the weights; 'default' is BOTTLENECK$/);
    assert.deepEqual(logits(pm), before);
  });

  it('a LoRA adapter and a bottleneck adapter may share a model but not a layer', () => {
    const m = gpt2();
    const pm = new PeftModel(m);
    pm.addAdapter('lora', loraTuner.config({ target_modules: ['c_attn'] }, m, 't'), 0);
    pm.addAdapter('houlsby', adapterTuner.config({ bottleneck_size: 2 }, m, 't'), 0);
    assert.deepEqual([...pm.adapters.keys()], ['lora', 'houlsby']);
    const tree = m.namedModules();
    assert.throws(() => pm.addAdapter('clash', adapterTuner.config({ bottleneck_size: 2, target_modules: ['c_fc', 'h.1.attn.c_attn'] }, m, 't'), 0),
      /^Error: adapter 'clash': 'transformer\.h\.1\.attn\.c_attn' already carries an adapter of another method$/);
    // The layers wrapped before the clash (h.0.mlp.c_fc) are unwrapped again.
    assert.deepEqual(m.namedModules(), tree);
    assert.deepEqual([...pm.adapters.keys()], ['lora', 'houlsby']);
  });
});

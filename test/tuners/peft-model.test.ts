// PeftModel: PEFT's adapter directory (adapter_config.json + adapter_model.safetensors) written and
// read back onto a fresh base with identical logits; merge-and-unload to a plain model directory;
// the trainable-parameter line (including GPT-2 124M's figure from the issue); withoutAdapters;
// saved embeddings; virtual tokens handed to the base; and one-line errors for bad directories.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, readFileSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../../src/engine/ops.js';
import { Rng, type Tensor } from '../../src/engine/index.js';
import { loadModel, KVCache, type LanguageModel, type ForwardOptions, type VirtualTokens } from '../../src/models/index.js';
import { GPT2, gpt2Config, gpt2ParameterShapes } from '../../src/models/gpt2.js';
import { isLinearLayer } from '../../src/nn/module.js';
import { openSafetensors, readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { PeftModel, attachAdapterDir, loraTuner, adapterTuner, readAdapterConfig, registerTuner, type Adapter, type AdapterConfig, type PeftType } from '../../src/tuners/index.js';
import { assertClose } from '../helpers.js';
import { C, gpt2, bert, ids, logits, maxDiff } from './tiny-models.js';

const fmt = (n: number): string => new Intl.NumberFormat('en-US').format(n);

function randomize(pm: PeftModel, seed: number): void {
  const rng = new Rng(seed);
  for (const [, p] of pm.namedTrainableParameters()) { const d = p.f32; for (let i = 0; i < d.length; i++) d[i] = (rng.next() - 0.5) * 0.6; }
}
function withLora(m: LanguageModel, user: Record<string, unknown> = {}): PeftModel {
  const pm = new PeftModel(m);
  pm.addAdapter('default', loraTuner.config(user, m, 'test'), 0);
  return pm;
}
function oneLine(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: Error) => { assert.match(e.message, re); assert.ok(!e.message.includes('\n'), `one line: ${e.message}`); return true; });
}

let tmp: string;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-peft-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

describe('PeftModel', () => {
  it('saveAdapter writes PEFT\'s layout (sorted adapter_config.json, F32 safetensors with format pt); attachAdapterDir on a fresh base gives identical logits', () => {
    const pm = withLora(gpt2(), { r: 4, lora_alpha: 16, target_modules: ['c_attn', 'c_fc'] });
    randomize(pm, 2);
    const want = logits(pm);
    const dir = join(tmp, 'lora');
    pm.saveAdapter(dir);
    const text = readFileSync(join(dir, 'adapter_config.json'), 'utf8');
    const cfg = JSON.parse(text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(cfg), Object.keys(cfg).slice().sort(), 'keys sorted as peft writes them');
    assert.ok(text.startsWith('{\n  "'), 'indent 2');
    for (const [k, v] of Object.entries({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 16, lora_dropout: 0, fan_in_fan_out: true, bias: 'none', inference_mode: true, use_rslora: false, init_lora_weights: true, use_dora: false, modules_to_save: null, layers_to_transform: null })) {
      assert.deepEqual(cfg[k], v, k);
    }
    assert.deepEqual(cfg.target_modules, ['c_attn', 'c_fc']);
    const f = openSafetensors(join(dir, 'adapter_model.safetensors'));
    try {
      assert.deepEqual(f.metadata, { format: 'pt' });
      const names = f.names().slice().sort();
      assert.deepEqual(names, [0, 1].flatMap((l) => ['attn.c_attn', 'mlp.c_fc'].flatMap((mod) => ['A', 'B'].map((ab) => `base_model.model.transformer.h.${l}.${mod}.lora_${ab}.weight`))).sort());
      assert.deepEqual(f.getTensor('base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight').shape, [4 * C, 4]);
      assert.equal(f.getTensor('base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight').dtype, 'F32');
    } finally { f.close(); }
    const fresh = gpt2();
    const base = logits(fresh);
    const loaded = attachAdapterDir(fresh, dir);
    assert.equal(loaded.activeAdapter, 'default');
    assert.deepEqual(logits(loaded), want);
    assert.ok(maxDiff(want, base) > 1e-3);
    assert.equal(loaded.numTrainableParameters(), 0, 'loaded for inference: nothing trainable');
    assert.equal(loaded.adapters.get('default')!.config.inference_mode, true);
    assert.equal(readAdapterConfig(dir).peft_type, 'LORA');
  });

  it('a bottleneck adapter on BERT round-trips too', () => {
    const m = bert();
    const pm = new PeftModel(m);
    pm.addAdapter('default', adapterTuner.config({ bottleneck_size: 4, non_linearity: 'relu' }, m, 't'), 3);
    randomize(pm, 3);
    const dir = join(tmp, 'bottleneck');
    pm.savePretrained(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.peft_type, 'BOTTLENECK'); assert.equal(cfg.task_type, null); assert.equal(cfg.bottleneck_size, 4); assert.equal(cfg.non_linearity, 'relu');
    assert.deepEqual(logits(attachAdapterDir(bert(), dir)), logits(pm));
  });

  it('mergeAndUnload + savePretrained + loadModel equals base+adapter to 1e-5; the original modules are back and trainable', () => {
    const m = gpt2();
    const originals = new Map(m.namedModules());
    const pm = withLora(m, { target_modules: ['c_attn', 'c_proj'], lora_alpha: 32 });
    randomize(pm, 4);
    const want = logits(pm);
    const plain = pm.mergeAndUnload();
    assert.equal(plain, m);
    for (const [p, mod] of m.namedModules()) assert.equal(mod, originals.get(p), `module ${p} restored`);
    assert.ok(m.namedModules().filter(([p]) => p.endsWith('c_proj')).every(([, x]) => isLinearLayer(x)));
    assert.ok(m.namedParameters().every(([, p]) => p.requiresGrad));
    assertClose(logits(plain), want, 1e-5, 1e-5, 'merged model');
    const dir = join(tmp, 'merged');
    plain.savePretrained(dir);
    const names = [...readSafetensors(join(dir, 'model.safetensors')).tensors.keys()];
    assert.ok(!names.some((n) => n.includes('lora')), 'a plain model file');
    assertClose(logits(loadModel(dir)), want, 1e-5, 1e-5, 'reloaded merged model');
  });

  it('trainableSummary: peft\'s line, numbers computed independently (tiny GPT-2; GPT-2 124M with r=8 on c_attn)', () => {
    const L = 2, V = 50, P = 32, r = 4;
    const base = V * C + P * C + L * (2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C)) + 2 * C;
    const m = gpt2();
    assert.equal(m.numParameters(), base);
    const pm = withLora(m, { r, target_modules: ['c_attn', 'mlp.c_proj'] });
    const lora = L * (r * (C + 3 * C) + r * (4 * C + C));
    assert.equal(pm.trainableSummary(), `trainable params: ${fmt(lora)} || all params: ${fmt(base + lora)} || trainable%: ${(100 * lora / (base + lora)).toFixed(4)}`);
    // GPT-2 small (weights left zero: only the shapes matter here).
    const cfg = gpt2Config({ vocab_size: 50257 });
    const big = new PeftModel(new GPT2(cfg, 0, { init: false }));
    big.addAdapter('default', loraTuner.config({}, big.base, 't'), 0);
    const all = gpt2ParameterShapes(cfg).reduce((s, [, sh]) => s + sh.reduce((a, b) => a * b, 1), 0);
    const t = 12 * 8 * (768 + 3 * 768);
    const line = big.trainableSummary();
    assert.equal(line, `trainable params: ${fmt(t)} || all params: ${fmt(all + t)} || trainable%: ${(100 * t / (all + t)).toFixed(4)}`);
    assert.equal(line, 'trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364'); // the figure peft prints
    big.dispose();
  });

  it('namedParameters: base names unchanged plus the adapter\'s; backward leaves every base .grad null', () => {
    const m = gpt2();
    const baseNames = m.namedParameters().map(([n]) => n);
    const pm = withLora(m);
    randomize(pm, 5);
    const names = pm.namedParameters().map(([n]) => n);
    assert.deepEqual(names.filter((n) => !n.includes('.lora_')), baseNames);
    assert.deepEqual(pm.namedTrainableParameters().map(([n]) => n).sort(), names.filter((n) => n.includes('.lora_')).sort());
    pm.loss(ids()).loss.backward();
    for (const [n, p] of pm.namedParameters()) assert.equal(p.grad === null, !n.includes('.lora_'), n);
  });

  it('withoutAdapters runs on the bare base (also with the adapter merged) and restores the adapter afterwards', () => {
    const m = gpt2();
    const base = logits(m);
    const pm = withLora(m);
    randomize(pm, 6);
    const adapted = logits(pm);
    assert.deepEqual(pm.withoutAdapters(() => logits(pm)), base);
    assert.deepEqual(logits(pm), adapted);
    pm.adapters.get('default')!.merge!();
    const merged = logits(pm);
    assertClose(pm.withoutAdapters(() => logits(pm)), base, 1e-5, 1e-5, 'merged adapter switched off');
    assert.equal(pm.adapters.get('default')!.merged, true);
    assertClose(logits(pm), merged, 1e-6, 1e-6, 'merged again afterwards');
    assert.throws(() => pm.withoutAdapters(() => { throw new Error('boom'); }), /boom/);
    assert.equal(pm.adapters.get('default')!.active, true);
  });

  it('trainEmbeddings: the embedding is trainable, saved under PEFT\'s key and loaded back; withoutAdapters uses the original rows', () => {
    const m = gpt2();
    const base = logits(m);
    const pm = withLora(m);
    pm.trainEmbeddings();
    assert.equal(m.inputEmbeddings().requiresGrad, true);
    randomize(pm, 7);
    const want = logits(pm);
    const dir = join(tmp, 'emb');
    pm.saveAdapter(dir);
    const t = readSafetensors(join(dir, 'adapter_model.safetensors')).tensors.get('base_model.model.transformer.wte.weight');
    assert.ok(t);
    assert.deepEqual(t.shape, [50, C]);
    const loaded = attachAdapterDir(gpt2(), dir);
    assert.deepEqual(logits(loaded), want);
    assert.deepEqual(loaded.withoutAdapters(() => logits(loaded)), base);
    assert.deepEqual(pm.withoutAdapters(() => logits(pm)), base);
  });

  it('an adapter carrying a larger embedding resizes the base vocabulary first', () => {
    const big = gpt2(1, { vocab_size: 60 });
    const pm = withLora(big);
    pm.trainEmbeddings();
    randomize(pm, 9);
    const dir = join(tmp, 'emb60');
    pm.saveAdapter(dir);
    const m = gpt2();
    const asked: number[] = [];
    m.resizeTokenEmbeddings = (n: number): void => { asked.push(n); throw new Error(`resize to ${n} refused by the test`); };
    const tree = m.namedModules();
    oneLine(() => attachAdapterDir(m, dir), /^resize to 60 refused by the test$/);
    assert.deepEqual(asked, [60]);
    assert.deepEqual(m.namedModules(), tree, 'nothing left attached');
  });

  it('virtual tokens of the active adapter go to the base once per cache; maxPositions and newCache make room for them', () => {
    const P = 3;
    const seen: (VirtualTokens | undefined)[] = [];
    const fakeVirtual: VirtualTokens = { length: P, embeds: O.zeros([P, C]) };
    class FakeAdapter implements Adapter {
      on = true;
      constructor(readonly name: string, readonly config: AdapterConfig, private readonly t: Tensor) {}
      namedParameters(): [string, Tensor][] { return [[`prompt_encoder.${this.name}.embedding.weight`, this.t]]; }
      setActive(on: boolean): void { this.on = on; }
      get active(): boolean { return this.on; }
      virtual(): VirtualTokens { return fakeVirtual; }
      stateDict(): Map<string, { shape: number[]; data: Float32Array }> { return new Map(); }
      loadStateDict(): void {}
      remove(): void {}
    }
    registerTuner({
      peftType: 'TEST_VIRTUAL' as PeftType, methods: ['test-virtual'],
      config: (user) => ({ ...user, peft_type: 'PROMPT_TUNING', task_type: 'CAUSAL_LM', base_model_name_or_path: null, inference_mode: false, num_virtual_tokens: P }),
      attach: (_m, cfg, name) => { const t = O.zeros([P, C]); t.requiresGrad = true; return new FakeAdapter(name, cfg, t); },
    });
    const m = gpt2();
    const fwd = m.forward.bind(m);
    m.forward = (x: Tensor, o?: ForwardOptions): Tensor => { seen.push(o?.virtual); return fwd(x, { ...o, virtual: undefined }); };
    const pm = new PeftModel(m);
    pm.addAdapter('default', { peft_type: 'TEST_VIRTUAL' as PeftType, task_type: null, base_model_name_or_path: null, inference_mode: false }, 0);
    assert.equal(pm.maxPositions, 32 - P);
    assert.ok(pm.namedTrainableParameters().some(([n]) => n === 'prompt_encoder.default.embedding.weight'));
    assert.ok(pm.trainableSummary().startsWith(`trainable params: ${P * C} ||`));
    const cache = pm.newCache!(1, 10);
    assert.ok(cache instanceof KVCache);
    assert.equal(cache.maxT, 10 + P);
    pm.forward(ids());
    cache.length = 0;
    pm.forward(O.tensor([1, 2], [1, 2], 'int32'), { cache });
    pm.forward(O.tensor([3], [1, 1], 'int32'), { cache });
    pm.withoutAdapters(() => pm.forward(ids()));
    assert.deepEqual(seen, [fakeVirtual, fakeVirtual, undefined, undefined]);
    assert.throws(() => pm.forward(ids(), { virtual: fakeVirtual }), /ForwardOptions\.virtual is set while adapter 'default' supplies virtual tokens/);
    // A LoRA adapter next to it: only the active adapter acts.
    pm.addAdapter('lora', loraTuner.config({}, m, 't'), 0);
    assert.equal(pm.maxPositions, 32);
    pm.forward(ids());
    pm.setAdapter('default');
    assert.equal(pm.maxPositions, 32 - P);
    pm.forward(ids());
    assert.deepEqual(seen.slice(4), [undefined, fakeVirtual]);
    assert.ok(pm.namedTrainableParameters().every(([n]) => n === 'prompt_encoder.default.embedding.weight'));
    oneLine(() => pm.mergeAndUnload(), /only LoRA adapters merge into the weights; 'default' is PROMPT_TUNING/);
  });

  describe('bad adapter directories are one-line errors naming the file', () => {
    let good: string;
    before(() => {
      good = join(tmp, 'good');
      withLora(gpt2()).saveAdapter(good);
    });
    const variant = (name: string, edit: (dir: string) => void): string => {
      const dir = join(tmp, name);
      rmSync(dir, { recursive: true, force: true });
      withLora(gpt2()).saveAdapter(dir);
      edit(dir);
      return dir;
    };
    const editConfig = (dir: string, f: (c: Record<string, unknown>) => void): void => {
      const p = join(dir, 'adapter_config.json');
      const c = JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;
      f(c);
      writeFileSync(p, JSON.stringify(c));
    };
    const editWeights = (dir: string, f: (t: Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>) => void): void => {
      const p = join(dir, 'adapter_model.safetensors');
      const t = new Map([...readSafetensors(p).tensors].map(([k, v]) => [k, { dtype: 'F32' as const, shape: v.shape, data: v.data as Float32Array }]));
      f(t);
      writeSafetensors(p, t, { format: 'pt' });
    };

    it('unknown peft_type lists the supported ones', () => {
      const dir = variant('ia3', (d) => editConfig(d, (c) => { c.peft_type = 'IA3'; }));
      oneLine(() => attachAdapterDir(gpt2(), dir), new RegExp(`^${join(dir, 'adapter_config.json').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: unsupported peft_type "IA3" \\(supported: LORA, BOTTLENECK`));
    });
    it('a numerics-changing PEFT key we do not implement (use_dora, layers_pattern) names the key', () => {
      oneLine(() => attachAdapterDir(gpt2(), variant('dora', (d) => editConfig(d, (c) => { c.use_dora = true; }))), /adapter_config\.json: use_dora true is not supported/);
      oneLine(() => attachAdapterDir(gpt2(), variant('pattern', (d) => editConfig(d, (c) => { c.layers_pattern = 'h'; }))), /adapter_config\.json: layers_pattern "h" is not supported/);
    });
    it('adapter_model.bin only: convert to safetensors', () => {
      const dir = variant('bin', (d) => { writeFileSync(join(d, 'adapter_model.bin'), 'x'); unlinkSync(join(d, 'adapter_model.safetensors')); });
      oneLine(() => attachAdapterDir(gpt2(), dir), /adapter_model\.bin: pickled PyTorch weights are not read; convert the adapter to safetensors/);
    });
    it('a missing, an extra, or a mis-shaped tensor names the key and the file', () => {
      const k = 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight';
      oneLine(() => attachAdapterDir(gpt2(), variant('missing', (d) => editWeights(d, (t) => { t.delete(k); }))), new RegExp(`adapter_model\\.safetensors: tensor '${k.replace(/\./g, '\\.')}' is missing`));
      oneLine(() => attachAdapterDir(gpt2(), variant('extra', (d) => editWeights(d, (t) => { t.set('base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight', { dtype: 'F32', shape: [8, C], data: new Float32Array(8 * C) }); }))),
        /adapter_model\.safetensors: tensor 'base_model\.model\.transformer\.h\.1\.mlp\.c_fc\.lora_A\.weight' does not belong to this adapter/);
      // An adapter made for a wider model: same names, other shapes.
      const wide = join(tmp, 'wide');
      withLora(gpt2(1, { n_embd: 32 })).saveAdapter(wide);
      const m = gpt2();
      const names = m.namedModules().map(([p, x]) => [p, x] as const);
      oneLine(() => attachAdapterDir(m, wide), /adapter_model\.safetensors: tensor 'base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight' has shape \[8, 32\], the model expects \[8, 16\]/);
      // A failed load leaves the model as it was.
      for (const [p, x] of names) assert.equal(m.getModule(p), x, p);
      assert.ok(m.namedParameters().every(([, p]) => p.requiresGrad), 'still trainable');
    });
    it('no adapter_config.json, not a directory, duplicate adapter name', () => {
      const dir = join(tmp, 'empty');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      oneLine(() => attachAdapterDir(gpt2(), dir), /empty\/adapter_config\.json: no such file \(not a PEFT adapter directory\)/);
      writeFileSync(join(tmp, 'plainfile'), 'x');
      oneLine(() => attachAdapterDir(gpt2(), join(tmp, 'nope')), /nope: no such adapter directory/);
      oneLine(() => attachAdapterDir(gpt2(), join(tmp, 'plainfile')), /plainfile: an adapter must be a directory/);
      const pm = attachAdapterDir(gpt2(), good);
      oneLine(() => pm.loadAdapter(good, 'default'), /adapter 'default' already exists/);
      assert.ok(existsSync(join(good, 'adapter_config.json')));
    });
  });
});

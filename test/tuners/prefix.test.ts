// Prefix tuning / P-Tuning v2 in PEFT's conventions: adapter_config.json keys and values, the
// saved `prompt_embeddings` [P, 2LC] and its per-layer key/value layout (PEFT's get_prompt),
// the projection MLP folded on save, KV-cache decoding with the prefix, gradients, on/off.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, type Tensor } from '../../src/engine/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import type { LanguageModel } from '../../src/models/lm.js';
import { prefixTuner } from '../../src/tuners/prefix/index.js';
import type { Adapter } from '../../src/tuners/types.js';
import { assertClose } from '../helpers.js';

const L = 2, H = 2, C = 16, D = C / H;
const gpt2 = (): GPT2 => new GPT2(gpt2Config({ vocab_size: 40, n_positions: 32, n_embd: C, n_layer: L, n_head: H, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: 0, eos_token_id: 0 }), 1).eval();
const bert = (): Bert => new Bert(bertConfig({ vocab_size: 40, hidden_size: C, num_hidden_layers: L, num_attention_heads: H, intermediate_size: 32, max_position_embeddings: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }), 2).eval();
const ints = (rows: number[][]): Tensor => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const IDS = [[5, 9, 2, 30, 17], [12, 1, 8, 8, 25]];

function attach(m: LanguageModel, user: Record<string, unknown>, method: string, seed = 7): Adapter {
  return prefixTuner.attach(m, prefixTuner.config(user, m, 'test', method), 'default', seed);
}
const out = (m: LanguageModel, a: Adapter | null, ids = IDS): number[] => tidy(() => noGrad(() => m.forward(ints(ids), { virtual: a?.virtual() ?? undefined }).toArray()));

describe('prefix tuning config (adapter_config.json as PEFT writes it)', () => {
  it("'ptuning-v2' and 'prefix' defaults for GPT-2; BERT has task_type null; user keys kept", () => {
    const m = gpt2();
    const common = {
      peft_type: 'PREFIX_TUNING', task_type: 'CAUSAL_LM', base_model_name_or_path: null, revision: null, inference_mode: false,
      auto_mapping: null, modules_to_save: null, num_virtual_tokens: 20, token_dim: C, num_transformer_submodules: 1,
      num_attention_heads: H, num_layers: L, init_weights: null,
    };
    assert.deepEqual(prefixTuner.config({}, m, 'f', 'ptuning-v2'), { ...common, encoder_hidden_size: null, prefix_projection: false });
    assert.deepEqual(prefixTuner.config({}, m, 'f', 'prefix'), { ...common, encoder_hidden_size: C, prefix_projection: true });
    const c = prefixTuner.config({ num_virtual_tokens: 4, encoder_hidden_size: 24, base_model_name_or_path: 'gpt2-tiny', peft_version: '0.21.0' }, m, 'f', 'prefix');
    assert.equal(c.num_virtual_tokens, 4); assert.equal(c.encoder_hidden_size, 24); assert.equal(c.base_model_name_or_path, 'gpt2-tiny');
    assert.equal(c.peft_version, '0.21.0', 'unknown keys are carried through');
    assert.equal(prefixTuner.config({ prefix_projection: false }, m, 'f', 'prefix').prefix_projection, false);
    assert.equal(prefixTuner.config({}, bert(), 'f', 'ptuning-v2').task_type, null);
    assert.deepEqual([...prefixTuner.methods], ['prefix', 'ptuning-v2']);
    assert.equal(prefixTuner.peftType, 'PREFIX_TUNING');
  });

  it('bad values are one-line errors naming the key', () => {
    const m = gpt2();
    assert.throws(() => prefixTuner.config({ num_virtual_tokens: 0 }, m, 'cfg.json', 'prefix'), /^Error: cfg\.json: num_virtual_tokens must be an integer/);
    assert.throws(() => prefixTuner.config({ num_layers: 12 }, m, 'cfg.json', 'prefix'), /cfg\.json: num_layers is 12 but the gpt2 model has 2 layers/);
    assert.throws(() => prefixTuner.config({ token_dim: 768 }, m, 'cfg.json', 'prefix'), /token_dim is 768 but the gpt2 model has 16 hidden size/);
    assert.throws(() => prefixTuner.config({ peft_type: 'LORA' }, m, 'cfg.json', 'prefix'), /peft_type must be/);
    assert.throws(() => prefixTuner.config({ num_transformer_submodules: 2 }, m, 'cfg.json', 'prefix'), /num_transformer_submodules must be 1/);
    assert.throws(() => prefixTuner.config({ prefix_projection: 'yes' }, m, 'cfg.json', 'prefix'), /prefix_projection must be/);
    assert.throws(() => prefixTuner.config({}, m, 'cfg.json', 'lora'), /not prefix tuning/);
  });
});

describe('prefix adapter', () => {
  it("state dict: 'prompt_embeddings' [P, 2LC]; layer l's keys are slice 2l, values 2l+1 of the [2L, H, D] view (PEFT get_prompt)", () => {
    const m = gpt2();
    const a = attach(m, { num_virtual_tokens: 3 }, 'ptuning-v2');
    assert.deepEqual(a.namedParameters().map(([n, p]) => [n, p.shape]), [['prompt_encoder.default.embedding.weight', [3, L * 2 * C]]]);
    const sd = a.stateDict();
    assert.deepEqual([...sd.keys()], ['prompt_embeddings']);
    const pe = sd.get('prompt_embeddings')!;
    assert.deepEqual(pe.shape, [3, L * 2 * C]);
    const v = a.virtual()!;
    assert.equal(v.length, 3);
    assert.equal(v.keys!.length, L); assert.equal(v.values!.length, L);
    for (let l = 0; l < L; l++) {
      for (const [kv, t] of [[0, v.keys![l]], [1, v.values![l]]] as const) {
        assert.deepEqual(t.shape, [H, 3, D]);
        const got = t.toArray();
        for (let h = 0; h < H; h++) for (let p = 0; p < 3; p++) for (let d = 0; d < D; d++) {
          assert.equal(got[(h * 3 + p) * D + d], pe.data[p * L * 2 * C + (2 * l + kv) * C + h * D + d], `layer ${l} ${kv ? 'value' : 'key'} h${h} p${p} d${d}`);
        }
      }
    }
    // nn.Embedding's N(0, 1) init.
    const x = Array.from(attach(m, { num_virtual_tokens: 20 }, 'ptuning-v2').stateDict().get('prompt_embeddings')!.data), mean = x.reduce((s, y) => s + y, 0) / x.length;
    const sd1 = Math.sqrt(x.reduce((s, y) => s + (y - mean) ** 2, 0) / x.length);
    assert.ok(Math.abs(mean) < 0.1 && Math.abs(sd1 - 1) < 0.1, `N(0,1) init: mean ${mean}, std ${sd1}`);
  });

  it('projection MLP: PEFT parameter names; outputs equal after save → load as the plain embedding (1e-5), also for BERT', () => {
    for (const m of [gpt2(), bert()] as LanguageModel[]) {
      const a = attach(m, { num_virtual_tokens: 4, encoder_hidden_size: 12 }, 'prefix');
      assert.deepEqual(a.namedParameters().map(([n, p]) => [n, p.shape]), [
        ['prompt_encoder.default.embedding.weight', [4, C]],
        ['prompt_encoder.default.transform.0.weight', [12, C]], ['prompt_encoder.default.transform.0.bias', [12]],
        ['prompt_encoder.default.transform.2.weight', [L * 2 * C, 12]], ['prompt_encoder.default.transform.2.bias', [L * 2 * C]],
      ]);
      const withMlp = out(m, a);
      const sd = a.stateDict();
      assert.deepEqual(sd.get('prompt_embeddings')!.shape, [4, L * 2 * C]);
      // Loaded for inference (PEFT writes inference_mode true): the plain embedding.
      const loaded = prefixTuner.attach(m, { ...a.config, inference_mode: true }, 'default', 99);
      assert.deepEqual(loaded.namedParameters().map(([n, p]) => [n, p.shape]), [['prompt_encoder.default.embedding.weight', [4, L * 2 * C]]]);
      const fresh = out(m, loaded);
      assert.ok(fresh.some((x, i) => Math.abs(x - withMlp[i]) > 1e-3), 'a fresh adapter differs before loading');
      loaded.loadStateDict(sd, 'adapter_model.safetensors');
      assertClose(out(m, loaded), withMlp, 1e-5, 0, `${m.modelType} folded`);
      // Loading into a training adapter with its MLP folds it too.
      const again = attach(m, { num_virtual_tokens: 4, encoder_hidden_size: 12 }, 'prefix', 3);
      again.loadStateDict(sd, 'adapter_model.safetensors');
      assert.equal(again.namedParameters().length, 1);
      assertClose(out(m, again), withMlp, 1e-5, 0, `${m.modelType} folded into a training adapter`);
    }
  });

  it('setActive(false) gives the base outputs exactly; remove() detaches; init_weights zero; load errors', () => {
    const m = gpt2();
    const base = out(m, null);
    const a = attach(m, { num_virtual_tokens: 3 }, 'ptuning-v2');
    const on = out(m, a);
    assert.ok(on.some((x, i) => Math.abs(x - base[i]) > 1e-4), 'the prefix changes the outputs');
    a.setActive(false);
    assert.equal(a.active, false);
    assert.equal(a.virtual(), null);
    assert.deepEqual(out(m, a), base);
    a.setActive(true);
    assertClose(out(m, a), on, 0, 0, 'back on');
    a.remove();
    assert.equal(a.virtual(), null);
    assert.deepEqual(a.namedParameters(), []);
    const z = attach(m, { num_virtual_tokens: 2, init_weights: 'zero' }, 'ptuning-v2');
    assert.ok(z.stateDict().get('prompt_embeddings')!.data.every((x) => x === 0));
    const zp = attach(m, { num_virtual_tokens: 2, init_weights: 'zero' }, 'prefix');
    assert.ok(zp.stateDict().get('prompt_embeddings')!.data.every((x) => x === 0), 'zero last layer: zero prefix');
    const b = attach(m, { num_virtual_tokens: 3 }, 'ptuning-v2');
    assert.throws(() => b.loadStateDict(new Map(), 'x.safetensors'), /x\.safetensors: tensor 'prompt_embeddings' is missing/);
    assert.throws(() => b.loadStateDict(new Map([['prompt_embeddings', { shape: [4, 64], data: new Float32Array(256) }]]), 'x.safetensors'), /has shape \[4, 64\] but .* imply \[3, 64\]/);
    assert.throws(() => b.loadStateDict(new Map([['prompt_embeddings', { shape: [3, 64], data: new Float32Array(192) }], ['other', { shape: [1], data: new Float32Array(1) }]]), 'x.safetensors'), /unexpected tensor 'other'/);
  });

  it('generation with the KV cache and the prefix: prefill + steps equal the no-cache logits (projection on)', () => {
    const m = gpt2();
    const a = attach(m, { num_virtual_tokens: 4 }, 'prefix');
    const want = out(m, a);
    const got = tidy(() => noGrad(() => {
      const cache = m.newCache(2, 4 + 5);
      const parts = [m.forward(ints(IDS.map((r) => r.slice(0, 2))), { cache, virtual: a.virtual()! })];
      for (let t = 2; t < 5; t++) parts.push(m.forward(ints(IDS.map((r) => [r[t]])), { cache }));
      assert.equal(cache.virtual, 4);
      cache.dispose();
      return O.concat(parts, 1).toArray();
    }));
    assertClose(got, want, 1e-5, 0, 'cached decoding with the prefix');
  });

  it('training: gradients reach only the adapter (MLP included), and a few steps lower the loss', () => {
    for (const method of ['prefix', 'ptuning-v2']) {
      const m = gpt2();
      m.requiresGrad(false);
      const a = attach(m, { num_virtual_tokens: 2 }, method);
      const lossNow = (): number => tidy(() => noGrad(() => m.loss(ints(IDS), undefined, { virtual: a.virtual()! }).loss.item()));
      const first = lossNow();
      for (let step = 0; step < 10; step++) {
        tidy(() => m.loss(ints(IDS), undefined, { virtual: a.virtual()! }).loss.backward());
        for (const [n, p] of a.namedParameters()) {
          assert.ok(p.grad && p.grad.toArray().some((x) => x !== 0), `${method}: ${n} got no gradient`);
          const g = p.grad.f32;
          for (let i = 0; i < p.size; i++) p.f32[i] -= (method === 'prefix' ? 5 : 50) * g[i];
          p.grad.dispose(); p.grad = null;
        }
      }
      for (const [n, p] of m.namedParameters()) assert.equal(p.grad, null, `base ${n} got a gradient`);
      const last = lossNow();
      assert.ok(last < first - 0.01, `${method}: loss ${first} → ${last}`);
    }
  });
});

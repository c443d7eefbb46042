// Prompt tuning in PEFT's conventions: adapter_config.json keys and values, `prompt_embeddings`
// [P, C], TEXT init = the word embeddings of the text's tokens repeated/cut to P, RANDOM init
// N(0, 1), save/load round trip, on/off, gradients only on the prompt.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, type Tensor } from '../../src/engine/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import type { LanguageModel } from '../../src/models/lm.js';
import { promptTuner, textInitIds } from '../../src/tuners/prompt/index.js';
import type { Adapter } from '../../src/tuners/types.js';
import { assertClose } from '../helpers.js';

const L = 2, H = 2, C = 16;
const gpt2 = (): GPT2 => new GPT2(gpt2Config({ vocab_size: 40, n_positions: 32, n_embd: C, n_layer: L, n_head: H, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: 0, eos_token_id: 0 }), 1).eval();
const bert = (): Bert => new Bert(bertConfig({ vocab_size: 40, hidden_size: C, num_hidden_layers: L, num_attention_heads: H, intermediate_size: 32, max_position_embeddings: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }), 2).eval();
const ints = (rows: number[][]): Tensor => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const IDS = [[5, 9, 2, 30, 17], [12, 1, 8, 8, 25]];

function attach(m: LanguageModel, user: Record<string, unknown>, seed = 7): Adapter {
  return promptTuner.attach(m, promptTuner.config(user, m, 'test'), 'default', seed);
}
const out = (m: LanguageModel, a: Adapter | null, ids = IDS): number[] => tidy(() => noGrad(() => m.forward(ints(ids), { virtual: a?.virtual() ?? undefined }).toArray()));

describe('prompt tuning config (adapter_config.json as PEFT writes it)', () => {
  it('defaults for GPT-2 and BERT; TEXT keys; the init ids are not part of the saved config', () => {
    const m = gpt2();
    assert.deepEqual(promptTuner.config({}, m, 'f'), {
      peft_type: 'PROMPT_TUNING', task_type: 'CAUSAL_LM', base_model_name_or_path: null, revision: null, inference_mode: false,
      auto_mapping: null, modules_to_save: null, num_virtual_tokens: 20, token_dim: C, num_transformer_submodules: 1,
      num_attention_heads: H, num_layers: L, prompt_tuning_init: 'RANDOM', prompt_tuning_init_text: null,
      tokenizer_name_or_path: null, tokenizer_kwargs: null,
    });
    assert.equal(promptTuner.config({}, bert(), 'f').task_type, null);
    const text = promptTuner.config({ prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'Answer:', prompt_tuning_init_ids: [3, 4], base_model_name_or_path: '/models/tiny', num_virtual_tokens: 5 }, m, 'f');
    assert.equal(text.tokenizer_name_or_path, '/models/tiny', 'the tokenizer is the base model\'s');
    const a = promptTuner.attach(m, text, 'default', 1);
    assert.equal(a.config.prompt_tuning_init_ids, undefined);
    assert.equal(a.config.prompt_tuning_init_text, 'Answer:');
    assert.deepEqual([...promptTuner.methods], ['prompt']);
    assert.equal(promptTuner.peftType, 'PROMPT_TUNING');
  });

  it('bad values are one-line errors', () => {
    const m = gpt2();
    assert.throws(() => promptTuner.config({ prompt_tuning_init: 'TEXT' }, m, 'cfg.json'), /cfg\.json: prompt_tuning_init TEXT needs prompt_tuning_init_text/);
    assert.throws(() => promptTuner.config({ prompt_tuning_init: 'WORDS' }, m, 'cfg.json'), /prompt_tuning_init must be/);
    assert.throws(() => promptTuner.config({ prompt_tuning_init_ids: [1] }, m, 'cfg.json'), /only used with prompt_tuning_init TEXT/);
    assert.throws(() => promptTuner.config({ prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'x', prompt_tuning_init_ids: [40] }, m, 'cfg.json'), /prompt_tuning_init_ids\[0\] must be/);
    assert.throws(() => promptTuner.config({ num_attention_heads: 4 }, m, 'cfg.json'), /num_attention_heads is 4 but the gpt2 model has 2/);
    const cfg = promptTuner.config({ prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'x' }, m, 'cfg.json');
    assert.throws(() => promptTuner.attach(m, cfg, 'default', 1), /needs the token ids of prompt_tuning_init_text \(prompt_tuning_init_ids/);
  });
});

describe('prompt adapter', () => {
  it('TEXT init: the word embeddings of the text tokens, repeated or cut to P; with them the model equals the text in front', () => {
    assert.deepEqual(textInitIds([5, 9], 5), [5, 9, 5, 9, 5]);
    assert.deepEqual(textInitIds([1, 2, 3, 4], 3), [1, 2, 3]);
    for (const m of [gpt2(), bert()] as LanguageModel[]) {
      const a = attach(m, { prompt_tuning_init: 'TEXT', prompt_tuning_init_text: 'ab', prompt_tuning_init_ids: [7, 3], num_virtual_tokens: 3 });
      const [[name, w]] = a.namedParameters();
      assert.equal(name, 'prompt_encoder.default.embedding.weight');
      assert.deepEqual(w.shape, [3, C]);
      const E = m.inputEmbeddings().f32;
      for (const [row, id] of [[0, 7], [1, 3], [2, 7]]) assert.deepEqual(Array.from(w.f32.subarray(row * C, (row + 1) * C)), Array.from(E.subarray(id * C, (id + 1) * C)), `row ${row}`);
      const got = out(m, a, [IDS[0]]);
      const V = 40, full = out(m, null, [[7, 3, 7, ...IDS[0]]]);
      assertClose(got, full.slice(3 * V), 1e-5, 0, `${m.modelType}: prompt = text in front`);
    }
  });

  it("RANDOM init is N(0, 1); state dict 'prompt_embeddings' [P, C]; save → load gives the same outputs; SAMPLE_VOCAB copies vocabulary rows", () => {
    const m = gpt2();
    const a = attach(m, { num_virtual_tokens: 30 });
    const sd = a.stateDict();
    assert.deepEqual([...sd.keys()], ['prompt_embeddings']);
    const pe = sd.get('prompt_embeddings')!;
    assert.deepEqual(pe.shape, [30, C]);
    const x = Array.from(pe.data), mean = x.reduce((s, y) => s + y, 0) / x.length;
    const std = Math.sqrt(x.reduce((s, y) => s + (y - mean) ** 2, 0) / x.length);
    assert.ok(Math.abs(mean) < 0.15 && Math.abs(std - 1) < 0.15, `N(0,1) init: mean ${mean}, std ${std}`);
    const small = attach(m, { num_virtual_tokens: 4 }, 1);
    const want = out(m, small);
    const loaded = promptTuner.attach(m, { ...small.config, inference_mode: true }, 'default', 2);
    assert.ok(out(m, loaded).some((v, i) => Math.abs(v - want[i]) > 1e-3), 'differs before loading');
    loaded.loadStateDict(small.stateDict(), 'adapter_model.safetensors');
    assertClose(out(m, loaded), want, 0, 0, 'round trip');
    assert.throws(() => loaded.loadStateDict(new Map([['prompt_embeddings', { shape: [4, 8], data: new Float32Array(32) }]]), 'a.safetensors'), /a\.safetensors: tensor 'prompt_embeddings' has shape \[4, 8\] but .* imply \[4, 16\]/);
    const sv = attach(m, { prompt_tuning_init: 'SAMPLE_VOCAB', num_virtual_tokens: 3 });
    const E = m.inputEmbeddings().f32, w = sv.namedParameters()[0][1].f32;
    for (let r = 0; r < 3; r++) {
      const row = Array.from(w.subarray(r * C, (r + 1) * C));
      assert.ok(Array.from({ length: 40 }, (_, id) => id).some((id) => row.every((v, c) => v === E[id * C + c])), `row ${r} is a vocabulary row`);
    }
  });

  it('setActive(false) equals the base exactly; remove() detaches; gradients reach only the prompt and training lowers the loss', () => {
    const m = gpt2();
    const base = out(m, null);
    const a = attach(m, { num_virtual_tokens: 3 });
    assert.ok(out(m, a).some((v, i) => Math.abs(v - base[i]) > 1e-4));
    a.setActive(false);
    assert.equal(a.virtual(), null);
    assert.deepEqual(out(m, a), base);
    a.setActive(true);
    m.requiresGrad(false);
    const [[, w]] = a.namedParameters();
    const lossNow = (): number => tidy(() => noGrad(() => m.loss(ints(IDS), undefined, { virtual: a.virtual()! }).loss.item()));
    const first = lossNow();
    for (let step = 0; step < 10; step++) {
      tidy(() => m.loss(ints(IDS), undefined, { virtual: a.virtual()! }).loss.backward());
      assert.ok(w.grad && w.grad.toArray().some((v) => v !== 0), 'prompt got no gradient');
      for (let i = 0; i < w.size; i++) w.f32[i] -= 50 * w.grad.f32[i];
      w.grad.dispose(); w.grad = null;
    }
    for (const [n, p] of m.namedParameters()) assert.equal(p.grad, null, `base ${n} got a gradient`);
    const last = lossNow();
    assert.ok(last < first - 0.01, `loss ${first} → ${last}`);
    a.remove();
    assert.equal(a.virtual(), null);
    assert.deepEqual(a.namedParameters(), []);
  });
});

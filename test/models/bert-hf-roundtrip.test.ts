// BERT directories written by icl-distill load in an independent PyTorch implementation of
// transformers' BertForMaskedLM.from_pretrained (tools/check_model_dir.py, which reads nothing of
// ours) and give the same logits. The models are trained a few MLM steps first so no weight is at
// its initial value (LayerNorms, biases and the MLM head included).
//
// Needs /usr/bin/python3 with torch (ICLD_PYTHON overrides the path); ICLD_ALLOW_NO_TORCH=1 turns
// its absence into a visible skip, as in hf-roundtrip.test.ts.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, Rng } from '../../src/engine/index.js';
import { Bert, bertConfig, type BertConfig } from '../../src/models/bert.js';
import { loadModel } from '../../src/models/index.js';
import { AdamW } from '../../src/optim/adamw.js';
import { skip, requireTorch, checkAll, ok, ourLogits, type Checked, maxDiff } from './check-model-dir.js';

const FIX = fileURLToPath(new URL('../../../test/fixtures/bert/', import.meta.url));

/** Random init, then a few AdamW MLM steps on random sequences so every weight moved. */
function trained(cfg: BertConfig, seed: number): Bert {
  const model = new Bert(cfg, seed);
  const rng = new Rng(seed + 1);
  const opt = new AdamW(model.parameters(), { lr: 3e-2, weightDecay: 0.01 });
  const B = 3, T = 12;
  for (let step = 0; step < 3; step++) {
    const ids = Array.from({ length: B * T }, () => rng.int(cfg.vocab_size));
    const labels = ids.map((x, i) => (i % 3 === 0 ? x : -100));
    tidy(() => { model.loss(O.tensor(ids, [B, T], 'int32'), O.tensor(labels, [B, T], 'int32')).loss.backward(); });
    opt.update();
    opt.zeroGrad();
  }
  opt.dispose();
  return model;
}

const BASE = { vocab_size: 53, hidden_size: 24, num_hidden_layers: 2, num_attention_heads: 3, intermediate_size: 40, max_position_embeddings: 16 };

describe('BERT dirs written by icl-distill load in the independent PyTorch BertForMaskedLM', { skip }, () => {
  let tmp: string;
  const ids = [1, 7, 22, 3, 52, 9, 9, 30, 4];
  const d = (name: string): string => join(tmp, name);
  let model: Bert, variant: Bert;
  let res: Map<string, Checked>;

  before(() => {
    requireTorch();
    tmp = mkdtempSync(join(tmpdir(), 'icld-berthf-'));
    model = trained(bertConfig(BASE), 5);
    model.savePretrained(d('f32'));
    model.savePretrained(d('sharded'), { maxShardBytes: 6000 });
    model.savePretrained(d('f16'), { dtype: 'F16' });
    variant = trained(bertConfig({ ...BASE, hidden_act: 'gelu_new', layer_norm_eps: 1e-5, type_vocab_size: 3 }), 6);
    variant.savePretrained(d('variant'));
    res = checkAll([d('f32'), d('sharded'), d('f16'), d('variant'), join(FIX, 'tiny-hub')], ids);
  });
  after(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

  it('default config: logits to 1e-4, no unknown config keys', () => {
    const c = ok(res.get(d('f32')));
    assert.deepEqual(c.unknown_keys, []);
    assert.deepEqual(c.shape, [1, ids.length, BASE.vocab_size]);
    assert.ok(maxDiff(c.logits, ourLogits(model, ids)) < 1e-4);
    // and what we reload is what we saved
    assert.ok(maxDiff(ourLogits(loadModel(d('f32')), ids), ourLogits(model, ids)) === 0);
  });
  it('sharded save and a non-default config (gelu_new, eps, 3 token types) agree too', () => {
    assert.ok(readFileSync(join(d('sharded'), 'model.safetensors.index.json'), 'utf8').includes('weight_map'));
    assert.ok(maxDiff(ok(res.get(d('sharded'))).logits, ourLogits(model, ids)) < 1e-4);
    const v = ok(res.get(d('variant')));
    assert.equal(v.config.hidden_act, 'gelu_new');
    assert.ok(maxDiff(v.logits, ourLogits(variant, ids)) < 1e-4);
    assert.ok(maxDiff(v.logits, ourLogits(model, ids)) > 1e-2);
  });
  it('F16 weights: config says float16, both sides read the same rounded weights', () => {
    assert.equal(JSON.parse(readFileSync(join(d('f16'), 'config.json'), 'utf8')).torch_dtype, 'float16');
    const c = ok(res.get(d('f16')));
    const back = loadModel(d('f16'));
    assert.ok(maxDiff(c.logits, ourLogits(back, ids)) < 1e-4);
    assert.ok(maxDiff(c.logits, ourLogits(model, ids)) > 1e-6, 'F16 rounding is visible');
  });
  it('the hub fixture (gamma/beta, pooler, NSP head, explicit decoder) reads the same in both', () => {
    const c = ok(res.get(join(FIX, 'tiny-hub')));
    assert.ok(c.ignored.includes('bert.pooler.dense.weight') && c.ignored.includes('cls.seq_relationship.weight'));
    assert.ok(maxDiff(c.logits, ourLogits(loadModel(join(FIX, 'tiny-hub')), ids)) < 1e-4);
  });
});

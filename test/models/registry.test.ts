// The model registry: loadModel dispatches on config.json's model_type, an unknown one is a
// one-line error naming it and the supported ones, and each family round-trips through it.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel, createModel, modelFamily, supportedModelTypes, requireCausal } from '../../src/models/index.js';
import * as O from '../../src/engine/ops.js';

test('both families are registered; an unknown model_type names itself and the supported ones', () => {
  assert.deepEqual(supportedModelTypes().sort(), ['bert', 'gpt2']);
  assert.equal(modelFamily('bert').kind, 'masked');
  assert.equal(modelFamily('gpt2').kind, 'causal');
  assert.throws(() => createModel('llama', { vocab_size: 10 }, 0), /unknown model_type "llama" \(supported: gpt2, bert\)/);
  const dir = mkdtempSync(join(tmpdir(), 'icld-reg-'));
  try {
    createModel('gpt2', { vocab_size: 50, n_positions: 16, n_embd: 8, n_layer: 1, n_head: 2 }, 1).savePretrained(dir);
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, model_type: 't5' }));
    assert.throws(() => loadModel(dir), (e: Error) => e.message === `${cfgPath}: unknown model_type "t5" (supported: gpt2, bert)`);
    // An old config.json without model_type is recognised by its keys.
    const { model_type: _m, ...old } = cfg;
    writeFileSync(cfgPath, JSON.stringify(old));
    assert.equal(loadModel(dir).modelType, 'gpt2');
    writeFileSync(cfgPath, JSON.stringify({ vocab_size: 50 }));
    assert.throws(() => loadModel(dir), /model_type is missing and the keys do not identify a family \(supported: gpt2, bert\)/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('each family saves and loads through loadModel with the same logits; a masked LM is refused where a causal one is needed', () => {
  for (const [type, cfg] of [
    ['gpt2', { vocab_size: 40, n_positions: 16, n_embd: 8, n_layer: 1, n_head: 2 }],
    ['bert', { vocab_size: 40, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 16 }],
  ] as const) {
    const dir = mkdtempSync(join(tmpdir(), `icld-reg-${type}-`));
    try {
      const m = createModel(type, cfg, 3).eval();
      m.savePretrained(dir);
      const back = loadModel(dir).eval();
      assert.equal(back.modelType, type);
      assert.equal(back.kind, modelFamily(type).kind);
      assert.equal(back.maxPositions, 16);
      assert.equal(back.vocabSize, 40);
      const ids = O.tensor([1, 5, 7, 2], [1, 4], 'int32');
      assert.deepEqual(back.forward(ids).toArray(), m.forward(ids).toArray());
      if (back.kind === 'masked') assert.throws(() => requireCausal(back, 'generate'), /generate needs a causal language model .* masked LM \(model_type bert\)/);
      else assert.equal(requireCausal(back, 'generate'), back);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

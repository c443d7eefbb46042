// resizeTokenEmbeddings as transformers' resize_token_embeddings(mean_resizing=True): old rows and
// logits on old ids unchanged, new rows at the old rows' mean (tiny spread), the tied head and
// BERT's output bias follow, config updated, requiresGrad kept, save → load round trip, shrinking.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, type Tensor } from '../../src/engine/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import { loadModel } from '../../src/models/index.js';
import type { LanguageModel } from '../../src/models/lm.js';
import { assertClose } from '../helpers.js';

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-resize-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

const V = 30, C = 16;
const IDS = [[1, 5, 29, 7, 0, 12], [3, 3, 18, 22, 9, 4]];
const ints = (rows: number[][]): Tensor => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const makers: [string, () => LanguageModel, string][] = [
  ['gpt2', () => new GPT2(gpt2Config({ vocab_size: V, n_positions: 16, n_embd: C, n_layer: 2, n_head: 2, bos_token_id: 0, eos_token_id: 0 }), 3).eval(), 'transformer.wte.weight'],
  ['bert', () => new Bert(bertConfig({ vocab_size: V, hidden_size: C, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16 }), 4).eval(), 'bert.embeddings.word_embeddings.weight'],
];
const logits = (m: LanguageModel, rows = IDS): number[][] => tidy(() => noGrad(() => {
  const l = m.forward(ints(rows)), Vn = l.shape[2], all = l.toArray(), out: number[][] = [];
  for (let r = 0; r < all.length / Vn; r++) out.push(all.slice(r * Vn, (r + 1) * Vn));
  return out;
}));

for (const [family, make, embName] of makers) {
  describe(`${family}.resizeTokenEmbeddings`, () => {
    it('growing: old rows and old-id logits unchanged, new rows ≈ the mean, head follows, config updated', () => {
      const m = make();
      const before = logits(m);
      const old = Float32Array.from(m.inputEmbeddings().f32);
      const oldBias = family === 'bert' ? Float32Array.from((m as Bert).cls.predictions.bias.f32) : null;
      m.resizeTokenEmbeddings(V + 5);
      assert.equal(m.config.vocab_size, V + 5);
      assert.equal(m.vocabSize, V + 5);
      const w = m.inputEmbeddings();
      assert.deepEqual(w.shape, [V + 5, C]);
      assert.equal(m.namedParameters().find(([n]) => n === embName)![1], w, 'the new weight is the registered parameter');
      assert.deepEqual(Array.from(w.f32.subarray(0, V * C)), Array.from(old), 'old rows kept');
      for (let c = 0; c < C; c++) {
        let mean = 0;
        for (let i = 0; i < V; i++) mean += old[i * C + c] / V;
        for (let i = V; i < V + 5; i++) assert.ok(Math.abs(w.f32[i * C + c] - mean) < 1e-4, `new row ${i} dim ${c}: ${w.f32[i * C + c]} vs mean ${mean}`);
      }
      if (oldBias) {
        const b = (m as Bert).cls.predictions.bias;
        assert.deepEqual(Array.from(b.f32), [...oldBias, 0, 0, 0, 0, 0], 'bias grows with zeros');
        assert.equal(m.namedParameters().find(([n]) => n === 'cls.predictions.bias')![1], b);
      }
      const after = logits(m);
      for (let r = 0; r < before.length; r++) {
        assert.equal(after[r].length, V + 5);
        assertClose(after[r].slice(0, V), before[r], 1e-6, 0, `${family} row ${r} old-id logits`);
        assert.ok(after[r].slice(V).every(Number.isFinite), 'new logits finite');
      }
      // A new id embeds and trains: its row gets a gradient through input and tied head.
      tidy(() => {
        const ids = ints([[V + 2, 4, V + 4]]);
        const labels = family === 'bert' ? ints([[V + 2, -100, 1]]) : undefined;
        m.train(); m.loss(ids, labels).loss.backward(); m.eval();
      });
      assert.ok(w.grad && w.grad.f32.subarray((V + 2) * C, (V + 3) * C).some((x) => x !== 0), 'new row got a gradient');
    });

    it('save → load round trip of a resized model; shrinking keeps the first rows; requiresGrad kept; errors', () => {
      const m = make();
      m.resizeTokenEmbeddings(V + 3);
      const want = logits(m);
      const dir = join(tmp, `${family}-grown`);
      m.savePretrained(dir);
      const back = loadModel(dir).eval();
      assert.equal(back.vocabSize, V + 3);
      assertClose(logits(back).flat(), want.flat(), 0, 0, `${family} reloaded`);

      const s = make();
      const low = IDS.map((r) => r.map((i) => i % (V - 4)));
      const full = logits(s, low);
      s.requiresGrad(false);
      s.resizeTokenEmbeddings(V - 4);
      assert.equal(s.inputEmbeddings().requiresGrad, false, 'frozen stays frozen');
      assert.equal(s.numTrainableParameters(), 0);
      const small = logits(s, low);
      // Dropping vocabulary rows only removes logit columns for the ids that remain.
      for (let r = 0; r < full.length; r++) assertClose(small[r], full[r].slice(0, V - 4), 1e-6, 0, 'shrunk');
      assert.throws(() => logits(s), /outside the vocabulary/);
      const dir2 = join(tmp, `${family}-shrunk`);
      s.savePretrained(dir2);
      assert.equal(loadModel(dir2).vocabSize, V - 4);

      assert.throws(() => make().resizeTokenEmbeddings(0), /integer in \[1, /);
      if (family === 'gpt2') {
        const g = new GPT2(gpt2Config({ vocab_size: V, n_positions: 8, n_embd: 8, n_layer: 1, n_head: 2 }), 1);
        assert.throws(() => g.resizeTokenEmbeddings(10), /bos_token_id 29 would fall outside the vocabulary/);
      }
    });
  });
}

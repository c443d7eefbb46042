// Virtual tokens (PEFT's prompt learning) in GPT-2 and BERT. The references are the models
// themselves on a longer input: P prefix keys/values taken from real tokens, or P prompt
// embeddings equal to real tokens' word embeddings, must give exactly what those tokens give in
// front of the input (real tokens at positions P.., attending to all P), as transformers computes
// it when PEFT passes past_key_values / inputs_embeds.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, Rng, type Tensor } from '../../src/engine/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import { Module } from '../../src/nn/module.js';
import type { VirtualTokens } from '../../src/models/lm.js';
import { assertClose, gradcheck } from '../helpers.js';

const ints = (rows: number[][]): Tensor => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const floats = (rows: number[][]): Tensor => O.tensor(rows.flat(), [rows.length, rows[0].length]);
/** Rows [from, from+n) of [B, T, V] for batch row b, as a flat array. */
function rowsOf(t: Tensor, b: number, from: number, n: number): number[] {
  return O.narrow(O.narrow(t, 0, b, 1), 1, from, n).toArray();
}

function gpt2(seed = 1, layers = 2): GPT2 {
  return new GPT2(gpt2Config({ vocab_size: 40, n_positions: 24, n_embd: 16, n_layer: layers, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: 0, eos_token_id: 0 }), seed).eval();
}
function bert(seed = 2, layers = 2): Bert {
  return new Bert(bertConfig({ vocab_size: 40, hidden_size: 16, num_hidden_layers: layers, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 24, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }), seed).eval();
}

const PRE = [7, 3, 11];
const P = PRE.length;
const IDS = [[5, 9, 2, 30, 17], [12, 1, 8, 8, 25]];
const T = IDS[0].length;

/** Keys/values [H, P, D] per layer of GPT-2 on `pre` (batch row 0 of a prefilled cache), kept outside scopes. */
function gpt2PrefixFrom(m: GPT2, pre: number[]): VirtualTokens {
  return noGrad(() => {
    const cache = m.newCache(1, pre.length);
    m.forward(ints([pre]), { cache });
    const take = (t: Tensor): Tensor => O.contiguousCopy(O.squeeze(O.narrow(t, 2, 0, pre.length), 0)).keep();
    const v = { length: pre.length, keys: cache.k.map(take), values: cache.v.map(take) };
    cache.dispose();
    return v;
  });
}
/** The word embeddings of `pre` [P, C], kept. */
function embedsOf(weight: Tensor, pre: number[]): Tensor {
  return noGrad(() => O.contiguousCopy(O.embedding(weight, O.tensor(pre, [pre.length], 'int32'))).keep());
}

describe('GPT-2 with virtual tokens equals the model run with real tokens in front', () => {
  it('prefix keys/values (no cache): logits of every real row to 1e-5, P ones before the user mask', () => {
    const m = gpt2();
    const virtual = gpt2PrefixFrom(m, PRE);
    tidy(() => noGrad(() => {
      const got = m.forward(ints(IDS), { virtual });
      assert.deepEqual(got.shape, [2, T, 40]);
      const withMask = m.forward(ints(IDS), { virtual, attentionMask: floats(IDS.map((r) => r.map(() => 1))) });
      for (let b = 0; b < 2; b++) {
        const ref = m.forward(ints([[...PRE, ...IDS[b]]]));
        assertClose(rowsOf(got, b, 0, T), rowsOf(ref, 0, P, T), 1e-5, 0, `prefix row ${b}`);
        assertClose(rowsOf(withMask, b, 0, T), rowsOf(ref, 0, P, T), 1e-5, 0, `prefix+mask row ${b}`);
      }
      // Without the prefix the answer differs (the prefix is really attended).
      const plain = m.forward(ints(IDS));
      assert.ok(Math.abs(plain.f32[0] - got.f32[0]) > 1e-4, 'prefix ignored');
    }));
  });

  it('prompt embeddings: logits of every real row to 1e-5; the loss includes the last virtual row predicting labels[0] (PEFT)', () => {
    const m = gpt2();
    const virtual = { length: P, embeds: embedsOf(m.inputEmbeddings(), PRE) };
    tidy(() => noGrad(() => {
      const got = m.forward(ints(IDS), { virtual });
      assert.deepEqual(got.shape, [2, T, 40]);
      for (let b = 0; b < 2; b++) {
        const ref = m.forward(ints([[...PRE, ...IDS[b]]]));
        assertClose(rowsOf(got, b, 0, T), rowsOf(ref, 0, P, T), 1e-5, 0, `prompt row ${b}`);
      }
      const labels = [[5, -100, 2, 30, 17], [12, 1, -100, 8, -100]];
      const { loss, logits } = m.loss(ints(IDS), ints(labels), { virtual });
      assertClose(logits.toArray(), got.toArray(), 0, 0, 'loss logits are the real rows');
      // PEFT: labels of the virtual rows are -100, the base model's shifted loss runs over P + T rows.
      const full = m.loss(ints(IDS.map((r) => [...PRE, ...r])), ints(labels.map((r) => [-100, -100, -100, ...r])));
      assert.ok(Math.abs(loss.item() - full.loss.item()) < 1e-5, `prompt loss ${loss.item()} vs ${full.loss.item()}`);
      // labels[0] really counts: changing it changes the loss.
      const other = m.loss(ints(IDS), ints(labels.map((r) => [(r[0] + 1) % 40, ...r.slice(1)])), { virtual });
      assert.ok(Math.abs(other.loss.item() - loss.item()) > 1e-4, 'first label ignored');
    }));
  });

  it('KV cache: prefill + decode steps with virtual tokens give the no-cache logits (prefix and prompt)', () => {
    const m = gpt2();
    for (const virtual of [gpt2PrefixFrom(m, PRE), { length: P, embeds: embedsOf(m.inputEmbeddings(), PRE) }]) {
      const kind = virtual.embeds ? 'prompt' : 'prefix';
      tidy(() => noGrad(() => {
        const want = m.forward(ints(IDS), { virtual });
        const cache = m.newCache(2, P + T);
        const steps = [[0, 3], [3, 1], [4, 1]];
        const got: Tensor[] = [];
        for (const [s, n] of steps) {
          const ids = ints(IDS.map((r) => r.slice(s, s + n)));
          // The third step passes no virtual option: the cache holds them already.
          got.push(m.forward(ids, s < 4 ? { cache, virtual } : { cache }));
          if (s === 0) { assert.equal(cache.virtual, P, `${kind}: cache.virtual`); assert.equal(cache.length, P + 3, `${kind}: cache.length`); }
        }
        assert.equal(cache.length, P + T);
        assertClose(O.concat(got, 1).toArray(), want.toArray(), 1e-5, 0, `${kind} cached vs uncached`);
        cache.dispose();
      }));
    }
  });

  it('left padding + virtual tokens: mask covers real tokens only, explicit position ids are offset by P (with and without cache)', () => {
    const m = gpt2();
    for (const virtual of [gpt2PrefixFrom(m, PRE), { length: P, embeds: embedsOf(m.inputEmbeddings(), PRE) }]) {
      const kind = virtual.embeds ? 'prompt' : 'prefix';
      tidy(() => noGrad(() => {
        const short = [21, 4, 19];
        const rows = [IDS[0], [0, 0, ...short]];
        const mask = [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]];
        const pos = [[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]];
        const got = m.forward(ints(rows), { virtual, attentionMask: floats(mask), positionIds: ints(pos) });
        const alone = m.forward(ints([short]), { virtual });
        assertClose(rowsOf(got, 1, 2, 3), rowsOf(alone, 0, 0, 3), 1e-5, 0, `${kind}: padded row`);
        const first = m.forward(ints([IDS[0]]), { virtual });
        assertClose(rowsOf(got, 0, 0, T), first.toArray(), 1e-5, 0, `${kind}: full row`);
        // Decoding one more token after the padded prefill: mask [B, past real + 1].
        const cache = m.newCache(2, P + T + 1);
        m.forward(ints(rows), { cache, virtual, attentionMask: floats(mask), positionIds: ints(pos) });
        const step = m.forward(ints([[6], [6]]), { cache, attentionMask: floats(mask.map((r) => [...r, 1])), positionIds: ints([[5], [3]]) });
        const aloneNext = m.forward(ints([[...short, 6]]), { virtual });
        assertClose(rowsOf(step, 1, 0, 1), rowsOf(aloneNext, 0, 3, 1), 1e-5, 0, `${kind}: cached step of the padded row`);
        // A mask that counts the virtual positions is an error naming the expected shape.
        assert.throws(() => m.forward(ints([short]), { virtual, attentionMask: floats([[1, 1, 1, 1, 1, 1]]) }), /attentionMask must be \[1, 3\]/);
        cache.dispose();
      }));
    }
  });

  it('checks: shapes, one kind only, n_positions counts P, a cache holding other virtual tokens', () => {
    const m = gpt2();
    const e = O.zeros([P, 16]);
    assert.throws(() => m.forward(ints(IDS), { virtual: { length: P, embeds: O.zeros([P, 8]) } }), /virtual\.embeds must be \[3, 16\]/);
    assert.throws(() => m.forward(ints(IDS), { virtual: { length: P } }), /either embeds .* or keys and values/);
    assert.throws(() => m.forward(ints(IDS), { virtual: { length: P, keys: [O.zeros([2, P, 8])], values: [O.zeros([2, P, 8])] } }), /one tensor per layer \(2\)/);
    assert.throws(() => m.forward(ints([Array(22).fill(1)]), { virtual: { length: P, embeds: e } }), /25 positions \(3 virtual\) exceeds n_positions 24/);
    const cache = m.newCache(1, 12);
    m.forward(ints([[1, 2]]), { cache, virtual: { length: P, embeds: e } });
    assert.throws(() => m.forward(ints([[1]]), { cache, virtual: { length: 2, embeds: O.zeros([2, 16]) } }), /holds 3 virtual positions but virtual\.length is 2/);
    cache.dispose();
  });
});

/** Wraps a Linear-like module and records its outputs (to read BERT's per-layer keys/values). */
class Recorder extends Module {
  readonly seen: Tensor[] = [];
  constructor(readonly inner: Module & { forward(x: Tensor): Tensor }) { super(); this.addModule('inner', inner); }
  forward(x: Tensor): Tensor { const y = this.inner.forward(x); this.seen.push(O.contiguousCopy(y).keep()); return y; }
}

describe('BERT with virtual tokens equals the model run with real tokens in front', () => {
  it('prefix keys/values = the keys/values the front tokens have in the full run: real rows to 1e-5, padding', () => {
    const m = bert();
    const L = 2, H = 2, D = 8;
    for (let b = 0; b < 2; b++) {
      // Record the key/value projections of every layer during the full run (through replaceModule).
      const recs: Recorder[] = [];
      for (let l = 0; l < L; l++) {
        for (const n of ['key', 'value']) {
          const path = `bert.encoder.layer.${l}.attention.self.${n}`;
          const r = new Recorder(m.getModule(path) as Module & { forward(x: Tensor): Tensor });
          m.replaceModule(path, r); recs.push(r);
        }
      }
      const full = tidy(() => noGrad(() => m.forward(ints([[...PRE, ...IDS[b]]])).keep()));
      recs.forEach((r, i) => m.replaceModule(`bert.encoder.layer.${i >> 1}.attention.self.${i & 1 ? 'value' : 'key'}`, r.inner));
      const heads = (y: Tensor): Tensor => O.contiguousCopy(O.permute(O.reshape(O.narrow(y, 1, 0, P), [P, H, D]), [1, 0, 2])).keep();
      const virtual = noGrad(() => ({ length: P, keys: recs.filter((_, i) => i % 2 === 0).map((r) => heads(r.seen[0])), values: recs.filter((_, i) => i % 2 === 1).map((r) => heads(r.seen[0])) }));
      tidy(() => noGrad(() => {
        const got = m.forward(ints([IDS[b]]), { virtual });
        assertClose(got.toArray(), rowsOf(full, 0, P, T), 1e-5, 0, `bert prefix row ${b}`);
        // Right padding: the real rows of a padded copy are unchanged (padding keys masked, virtual ones not).
        const padded = m.forward(ints([[...IDS[b], 0, 0]]), { virtual, attentionMask: floats([[1, 1, 1, 1, 1, 0, 0]]) });
        assertClose(rowsOf(padded, 0, 0, T), got.toArray(), 1e-5, 0, `bert prefix padded row ${b}`);
      }));
    }
  });

  it('prompt embeddings = word embeddings of the front tokens: real rows to 1e-5 (positions 0..P-1, type 0, LayerNorm on the virtual rows)', () => {
    const m = bert();
    const virtual = { length: P, embeds: embedsOf(m.inputEmbeddings(), PRE) };
    tidy(() => noGrad(() => {
      const got = m.forward(ints(IDS), { virtual, attentionMask: floats([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]) });
      assert.deepEqual(got.shape, [2, T, 40]);
      const ref0 = m.forward(ints([[...PRE, ...IDS[0]]]));
      assertClose(rowsOf(got, 0, 0, T), rowsOf(ref0, 0, P, T), 1e-5, 0, 'bert prompt row 0');
      const ref1 = m.forward(ints([[...PRE, ...IDS[1].slice(0, 3)]]));
      assertClose(rowsOf(got, 1, 0, 3), rowsOf(ref1, 0, P, 3), 1e-5, 0, 'bert prompt padded row 1');
      assert.throws(() => m.forward(ints([Array(22).fill(1)]), { virtual }), /25 positions \(3 virtual\) exceeds max_position_embeddings 24/);
    }));
  });
});

describe('gradients reach the virtual tokens, not a frozen base', () => {
  const r = new Rng(5);
  const leaf = (shape: number[], std: number): Tensor => { const t = O.randn(shape, r, std).keep(); t.requiresGrad = true; return t; };
  const ids = ints([[3, 8, 1, 5], [2, 2, 9, 4]]);
  const mask = floats([[1, 1, 1, 1], [1, 1, 1, 0]]);

  it('finite differences: GPT-2 prompt embeds and prefix keys/values, BERT prompt embeds and prefix keys/values', () => {
    const g = gpt2(3, 2), b = bert(4, 1);
    g.requiresGrad(false); b.requiresGrad(false);
    gradcheck('gpt2 embeds', (e) => g.forward(ids, { virtual: { length: 2, embeds: e }, attentionMask: mask }), [leaf([2, 16], 0.5)], { maxPerInput: 16 });
    gradcheck('gpt2 prompt loss', (e) => g.loss(ids, undefined, { virtual: { length: 2, embeds: e } }).loss, [leaf([2, 16], 0.5)], { maxPerInput: 16 });
    gradcheck('gpt2 prefix', (k0, v0, k1, v1) => g.forward(ids, { virtual: { length: 2, keys: [k0, k1], values: [v0, v1] }, attentionMask: mask }),
      [leaf([2, 2, 8], 1), leaf([2, 2, 8], 1), leaf([2, 2, 8], 1), leaf([2, 2, 8], 1)], { maxPerInput: 12 });
    gradcheck('bert embeds', (e) => b.forward(ids, { virtual: { length: 2, embeds: e }, attentionMask: mask }), [leaf([2, 16], 0.5)], { maxPerInput: 16 });
    gradcheck('bert prefix', (k0, v0) => b.forward(ids, { virtual: { length: 2, keys: [k0], values: [v0] }, attentionMask: mask }),
      [leaf([2, 2, 8], 1), leaf([2, 2, 8], 1)], { maxPerInput: 12 });
  });

  it('a frozen base gets no .grad while the virtual tensors do (GPT-2 and BERT, both kinds)', () => {
    for (const m of [gpt2(3, 2), bert(4, 2)]) {
      m.requiresGrad(false);
      assert.equal(m.numTrainableParameters(), 0);
      const e = leaf([2, 16], 0.5), k = [leaf([2, 2, 8], 1), leaf([2, 2, 8], 1)], v = [leaf([2, 2, 8], 1), leaf([2, 2, 8], 1)];
      for (const virtual of [{ length: 2, embeds: e }, { length: 2, keys: k, values: v }] as VirtualTokens[]) {
        tidy(() => {
          const labels = m.kind === 'masked' ? ints([[3, -100, 1, -100], [-100, 2, -100, 4]]) : undefined;
          m.loss(ids, labels, { virtual }).loss.backward();
        });
      }
      for (const [n, p] of m.namedParameters()) assert.equal(p.grad, null, `${m.modelType} ${n} got a gradient`);
      for (const t of [e, ...k, ...v]) {
        assert.ok(t.grad, `${m.modelType}: a virtual tensor got no gradient`);
        assert.ok(t.grad.toArray().some((x) => x !== 0), `${m.modelType}: zero gradient`);
      }
    }
  });
});

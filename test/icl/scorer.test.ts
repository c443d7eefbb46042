// scoreContinuations against a by-hand computation: one full forward pass over the whole
// sequence (prefix + suffix) per item, log-softmax in double, summed over the continuation
// tokens. Covers shared prefixes (KV cache copied into every row), empty prefixes, mixed suffix
// lengths in one batch (right padding), batch sizes 1 and 3, and every available backend.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { setBackend } from '../../src/engine/backend/index.js';
import { GPT2 } from '../../src/models/gpt2.js';
import { scoreContinuations, logProbOf, type ScoreItem } from '../../src/icl/scorer.js';
import { availableBackends } from '../helpers.js';

const HF_DIR = join(fileURLToPath(new URL('../../../test/fixtures/gpt2/', import.meta.url)), 'tiny-hf');

/** Σ_t log softmax(logits[t-1])[seq[t]] over the continuation, from one forward of the full sequence. */
function byHand(model: GPT2, it: ScoreItem): number {
  const seq = it.prefix.concat(it.suffix);
  const logits = tidy(() => noGrad(() => Array.from(model.forward(O.tensor(seq, [1, seq.length], 'int32')).f32)));
  const V = model.config.vocab_size;
  let lp = 0;
  for (let t = it.prefix.length + it.contStart; t < seq.length; t++) {
    const row = logits.slice((t - 1) * V, t * V);
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0));
    lp += row[seq[t]] - lse;
  }
  return lp;
}

// n_positions is 16: every item stays within it.
const P1 = [3, 17, 42, 8, 1];
const P2 = [9, 9, 30];
const ITEMS: ScoreItem[] = [
  { prefix: P1, suffix: [5, 6, 7], contStart: 2 },              // 1 continuation token
  { prefix: P1, suffix: [11, 4, 25, 36, 2, 49], contStart: 3 }, // longer suffix in the same group
  { prefix: P1, suffix: [0, 13], contStart: 0 },                // continuation right after the prefix
  { prefix: P1, suffix: [20, 21, 22, 23], contStart: 1 },
  { prefix: P2, suffix: [7, 7, 7, 7, 7, 7, 7, 7], contStart: 4 },
  { prefix: [], suffix: [12, 44, 3], contStart: 1 },            // no prefix
  { prefix: [], suffix: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], contStart: 6 },
  { prefix: P2, suffix: [48], contStart: 0 },
];

for (const be of availableBackends()) {
  describe(`scoreContinuations (${be})`, () => {
    let model: GPT2;
    let expected: number[];
    before(() => {
      setBackend(be);
      model = GPT2.fromPretrained(HF_DIR);
      model.eval();
      expected = ITEMS.map((it) => byHand(model, it));
    });

    for (const batchSize of [1, 3, 16]) {
      it(`matches the full-forward log-softmax by hand (batch size ${batchSize})`, () => {
        setBackend(be);
        const r = scoreContinuations(model, ITEMS, { batchSize });
        assert.equal(r.length, ITEMS.length);
        r.forEach((x, i) => {
          assert.ok(Math.abs(x.logprob - expected[i]) < 1e-4, `item ${i}: ${x.logprob} vs ${expected[i]}`);
          assert.equal(x.tokens, ITEMS[i].suffix.length - ITEMS[i].contStart);
          assert.ok(x.logprob < 0);
        });
      });
    }

    it('the prefix-cache path equals the no-prefix path', () => {
      setBackend(be);
      const withPrefix = ITEMS.filter((it) => it.prefix.length > 0);
      const flat = withPrefix.map((it) => ({ prefix: [], suffix: it.prefix.concat(it.suffix), contStart: it.prefix.length + it.contStart }));
      const a = scoreContinuations(model, withPrefix, { batchSize: 3 });
      const b = scoreContinuations(model, flat, { batchSize: 3 });
      a.forEach((x, i) => {
        assert.ok(Math.abs(x.logprob - b[i].logprob) < 1e-4, `item ${i}: ${x.logprob} vs ${b[i].logprob}`);
        assert.equal(x.tokens, b[i].tokens);
      });
    });

    it('results come back in input order whatever the grouping and length sort', () => {
      setBackend(be);
      const perm = [7, 2, 5, 0, 6, 1, 4, 3];
      const r = scoreContinuations(model, perm.map((i) => ITEMS[i]), { batchSize: 3 });
      r.forEach((x, j) => assert.ok(Math.abs(x.logprob - expected[perm[j]]) < 1e-4));
      // A single item alone gives the same number as in a batch.
      const one = scoreContinuations(model, [ITEMS[1]], { batchSize: 1 });
      assert.ok(Math.abs(one[0].logprob - expected[1]) < 1e-4);
    });

    it('rejects bad items with messages', () => {
      setBackend(be);
      assert.throws(() => scoreContinuations(model, [{ prefix: [1], suffix: [2], contStart: 1 }]), /continuation start 1 outside suffix of 1 tokens/);
      assert.throws(() => scoreContinuations(model, [{ prefix: [], suffix: [2, 3], contStart: 0 }]), /no context before the continuation/);
      assert.throws(() => scoreContinuations(model, [{ prefix: new Array(10).fill(1), suffix: new Array(7).fill(2), contStart: 1 }]), /17 tokens exceed the model's context of 16/);
    });
  });
}

describe('logProbOf', () => {
  it('is a stable log-softmax', () => {
    const row = new Float32Array([1000, 1001, 999]);
    const lse = 1001 + Math.log(Math.exp(-1) + 1 + Math.exp(-2));
    assert.ok(Math.abs(logProbOf(row, 0) - (1000 - lse)) < 1e-9);
    assert.ok(Math.abs(logProbOf(new Float32Array([0, 0, 0, 0]), 2) - Math.log(0.25)) < 1e-12);
  });
});

// generate()'s serving extensions against a reference that recomputes the whole sequence without
// a KV cache and applies OpenAI's penalty formula by hand: presence/frequency penalties, logit
// bias, the vocabulary limit, per-token logprobs, the abort signal, and the stepwise Generation.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { createModel, generate, Generation, type LanguageModel, type TextCodec } from '../../src/models/index.js';

const codec: TextCodec = { encode: (s) => s.split(' ').map(Number), decode: (ids) => ids.join(' ') };
const model = createModel('gpt2', { vocab_size: 50, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }, 11);
model.eval();

/** Last-position logits of the full sequence (no cache). */
function lastLogits(m: LanguageModel, ids: number[]): Float32Array {
  return tidy(() => noGrad(() => {
    const l = m.forward(O.tensor(ids, [1, ids.length], 'int32'));
    const V = l.shape[2];
    return l.f32.slice((ids.length - 1) * V, ids.length * V);
  }));
}

/** Greedy decoding with OpenAI's penalties (counts over generated tokens only) and biases, by hand. */
function reference(prompt: number[], n: number, pres: number, freq: number, bias: Map<number, number>, limit = 50): { tokens: number[]; logprobs: number[] } {
  const seq = prompt.slice(), out: number[] = [], lps: number[] = [];
  for (let s = 0; s < n; s++) {
    const row = Array.from(lastLogits(model, seq));
    for (let j = 0; j < row.length; j++) {
      const c = out.filter((t) => t === j).length;
      row[j] -= c * freq + (c > 0 ? pres : 0);
      row[j] += bias.get(j) ?? 0;
      if (j >= limit) row[j] = -Infinity;
    }
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    const mx = row[best], lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
    out.push(best); lps.push(row[best] - lse); seq.push(best);
  }
  return { tokens: out, logprobs: lps };
}

const prompt = [3, 14, 15, 9, 2];

test('greedy with presence and frequency penalties, logit bias and a vocabulary limit equals the by-hand reference; logprobs too', () => {
  for (const [pres, freq] of [[0, 0], [1.5, 0], [0, 2], [-1, 0.5]]) {
    const bias = new Map([[7, 3], [prompt[0], -100]]);
    const ref = reference(prompt, 12, pres, freq, bias, 40);
    const g = new Generation(model, codec, prompt, { maxNewTokens: 12, temperature: 0, presencePenalty: pres, frequencyPenalty: freq, logitBias: bias, vocabLimit: 40, logprobs: true, topLogprobs: 3 });
    while (!g.step());
    assert.deepEqual(g.tokens, ref.tokens, `presence ${pres} frequency ${freq}`);
    assert.ok(g.tokens.every((t) => t < 40));
    g.logprobs.forEach((lp, i) => {
      assert.equal(lp.id, ref.tokens[i]);
      assert.ok(Math.abs(lp.logprob - ref.logprobs[i]) < 1e-4, `${lp.logprob} vs ${ref.logprobs[i]}`);
      assert.equal(lp.top.length, 3);
      assert.equal(lp.top[0].id, lp.id, 'greedy picks the most likely token');
      assert.ok(lp.top[0].logprob >= lp.top[1].logprob && lp.top[1].logprob >= lp.top[2].logprob);
    });
  }
  // The penalties act: a strong frequency penalty changes a repetitive greedy continuation.
  const plain = generate(model, codec, prompt, { maxNewTokens: 20, temperature: 0 }).tokens;
  const pen = generate(model, codec, prompt, { maxNewTokens: 20, temperature: 0, frequencyPenalty: 2 }).tokens;
  assert.equal(new Set(plain).size < plain.length, true, 'the plain continuation repeats tokens (test premise)');
  assert.notDeepEqual(pen, plain);
});

test('stepping a Generation gives generate()\'s result; the abort signal stops it before the next token', () => {
  const o = { maxNewTokens: 15, temperature: 0.9, topK: 20, seed: 5 };
  const a = generate(model, codec, prompt, o);
  const g = new Generation(model, codec, prompt, o);
  let steps = 0;
  while (!g.step()) steps++;
  assert.equal(steps + 1, 15);
  assert.deepEqual(g.result().tokens, a.tokens);
  assert.equal(g.result().text, a.text);

  const ac = new AbortController();
  let n = 0;
  const r = generate(model, codec, prompt, { maxNewTokens: 15, temperature: 0, signal: ac.signal, onToken: () => { if (++n === 4) ac.abort(); } });
  assert.equal(r.finish_reason, 'abort');
  assert.equal(r.tokens.length, 4);
  assert.deepEqual(r.tokens, generate(model, codec, prompt, { maxNewTokens: 4, temperature: 0 }).tokens);
  // Disposing mid-way frees the cache and ends the generation.
  const h = new Generation(model, codec, prompt, { maxNewTokens: 15, temperature: 0 });
  h.step(); h.dispose();
  assert.equal(h.done, true);
  assert.equal(h.step(), true);
  assert.equal(h.tokens.length, 1);
});

// The scheduler without HTTP: its slots' generations share the model's runtime and advance in one
// batched step; a job cancelled from inside a step's callback gives its runtime sequence back at
// once (the next job takes it, no larger runtime is built) and the others go on unchanged.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generate } from '../../src/models/index.js';
import { ModelPool } from '../../src/server/pool.js';
import { Scheduler, type Choice, type Job } from '../../src/server/scheduler.js';
import { gpt2Dir } from './serve-fixture.js';

test('slots share the pre-sized runtime; a job cancelled mid-batch frees its sequence for the next; the others are unchanged', async () => {
  const pool = new ModelPool(gpt2Dir(), {});
  const m = pool.model, e = pool.get(pool.baseId)!, tok = e.tokenizer;
  const rt = m.runtime?.({ maxSeqs: 2, maxT: 128 }) ?? null;
  const sizes: number[] = [];
  const sched = new Scheduler(2, 4, pool, { runtime: rt, onBatch: (n) => sizes.push(n) });
  const ban = new Map([[m.eosTokenId!, -100]]);
  const opts = (n: number) => ({ maxNewTokens: n, temperature: 0, eosTokenId: m.eosTokenId, logitBias: ban });
  const ends = new Map<string, unknown>();
  const job = (name: string, prompt: string, n: number, onStep: (c: Choice) => void = () => {}): Job => ({
    entry: e, choices: [{ index: 0, prompt: tok.encode(prompt), opts: opts(n), gen: null }], onStep,
    onEnd(err) { ends.set(name, err ?? 'ok'); },
  });
  let c: Job | null = null;
  const a: Job = job('a', 'The capital is', 40, (ch) => {
    // Cancelled from its own callback, in the middle of a step's callbacks.
    if (ch.gen!.tokens.length === 5) { sched.cancel(a); c = job('c', 'Malory', 15); sched.submit(c); }
  });
  const b = job('b', 'What is the capital of Zift?', 30);
  sched.submit(a); sched.submit(b);
  await sched.idle();
  assert.ok(c, 'a was cancelled after 5 tokens');
  const jc = c as Job;
  assert.match(String((ends.get('a') as Error).message), /cancelled/);
  assert.equal(ends.get('b'), 'ok'); assert.equal(ends.get('c'), 'ok');
  assert.equal(a.choices[0].gen!.tokens.length, 5, 'a stopped at once');
  assert.equal(a.choices[0].gen!.finishReason, 'abort');
  const alone = (p: string, n: number) => generate(m, tok, p, { ...opts(n), runtime: false }).tokens;
  assert.deepEqual(b.choices[0].gen!.tokens, alone('What is the capital of Zift?', 30));
  assert.deepEqual(jc.choices[0].gen!.tokens, alone('Malory', 15));
  assert.deepEqual(a.choices[0].gen!.tokens, alone('The capital is', 40).slice(0, 5));
  assert.equal(sizes.reduce((s, x) => s + x, 0), 5 + 30 + 15, 'one sequence-step per token');
  if (rt) {
    // c took a's freed sequence of the same runtime: it did not need a larger one.
    assert.equal(jc.choices[0].gen!.runtime, rt);
    assert.equal(b.choices[0].gen!.runtime, rt);
    assert.equal(m.runtime!({ maxSeqs: 2, maxT: 128 }), rt, 'the model still hands out the same runtime');
    // b shares every step with a (5 tokens), then with c (15, its prefill in the first), then runs alone.
    assert.deepEqual(sizes, [...Array(20).fill(2), ...Array(10).fill(1)]);
  } else {
    assert.ok(sizes.every((x) => x === 1));
  }
  sched.dispose();
});

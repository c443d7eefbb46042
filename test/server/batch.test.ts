// Batched decoding across the server's slots: every scheduler step advances all running
// generations of one model entry with one stepMany call (one forward for all those on the model's
// fused runtime). Concurrent, joining and cancelled requests must give exactly what each gives
// alone; the batch sizes show in /metrics; with adapters (no runtime) nothing is batched.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { generate, loadModel, type LanguageModel } from '../../src/models/index.js';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizers/index.js';
import { attachAdapterDir } from '../../src/tuners/index.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { get, gpt2Dir, loraDir, post, sse } from './serve-fixture.js';

let base: string, srv: RunningServer, model: LanguageModel, tok: Tokenizer, ban: Record<number, number>;
const PROMPTS = ['The capital is', 'What is the capital of Zift?', 'Malory', 'The capital of Quarn is Pumbel.\n\nWhat'];

before(async () => {
  base = gpt2Dir();
  model = loadModel(base); tok = loadTokenizer(base);
  ban = { [model.eosTokenId!]: -100 };
  srv = await startServer({ model: base, port: 0, slots: 4, queue: 8 });
});
after(async () => { await srv.close(); });

/** A streaming completion whose text is read as it comes; `seen(n)` resolves after n SSE events. */
function stream(url: string, body: Record<string, unknown>) {
  const payload = JSON.stringify({ ...body, stream: true });
  let text = '';
  const waiters: { n: number; ok: () => void }[] = [];
  const events = (): number => text.split('\n\n').filter((b) => b.startsWith('data: ')).length;
  const req = request(`${url}/v1/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } });
  const done = new Promise<{ status: number; text: string }>((ok, fail) => {
    req.on('response', (res) => {
      res.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        for (const w of waiters.splice(0)) if (events() >= w.n) w.ok(); else waiters.push(w);
      });
      res.on('end', () => ok({ status: res.statusCode ?? 0, text }));
      res.on('error', () => ok({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', fail);
  });
  req.end(payload);
  return {
    done,
    events,
    seen: (n: number): Promise<void> => new Promise((ok) => { if (events() >= n) ok(); else waiters.push({ n, ok }); }),
    destroy: () => req.destroy(),
  };
}

const streamedText = (t: string): string => { const s = sse(t); assert.ok(s.done, `stream ended without [DONE]:\n${t.slice(-300)}`); return s.events.map((e) => e.choices[0]?.text ?? '').join(''); };
const body = (prompt: string, max: number): Record<string, unknown> => ({ prompt, max_tokens: max, temperature: 0, logit_bias: ban });
const alone = (prompt: string, max: number): string => generate(model, tok, prompt, { maxNewTokens: max, temperature: 0, eosTokenId: model.eosTokenId, logitBias: new Map([[model.eosTokenId!, -100]]) }).text;

async function metrics(url: string): Promise<string> { return (await get(`${url}/metrics`)).text; }
function hist(m: string, name: string): { count: number; sum: number; le: Map<string, number> } {
  const count = Number(new RegExp(`^${name}_count (\\d+)$`, 'm').exec(m)?.[1] ?? NaN);
  const sum = Number(new RegExp(`^${name}_sum ([\\d.]+)$`, 'm').exec(m)?.[1] ?? NaN);
  const le = new Map<string, number>();
  for (const x of m.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\d+)$`, 'gm'))) le.set(x[1], Number(x[2]));
  return { count, sum, le };
}

test('4 concurrent greedy requests with different prompts return exactly what each returns alone; batch sizes > 1 in /metrics', async () => {
  const N = 30;
  const solo: string[] = [];
  for (const p of PROMPTS) solo.push((await post(`${srv.url}/v1/completions`, body(p, N))).json().choices[0].text);
  PROMPTS.forEach((p, i) => assert.equal(solo[i], alone(p, N), `request ${i} alone equals generate()`));
  assert.equal(new Set(solo).size, PROMPTS.length, 'the prompts give different answers (else the check proves little)');
  const h0 = hist(await metrics(srv.url), 'icld_decode_batch_size');
  // Two streamed, two not: each stream's text is its own, in order.
  const outs = await Promise.all(PROMPTS.map((p, i) => (i % 2 ? post(`${srv.url}/v1/completions`, body(p, N)).then((r) => r.json().choices[0].text as string) : stream(srv.url, body(p, N)).done.then((r) => streamedText(r.text)))));
  assert.deepEqual(outs, solo);
  const m = await metrics(srv.url);
  const h = hist(m, 'icld_decode_batch_size');
  assert.match(m, /^# TYPE icld_decode_batch_size histogram$/m);
  const calls = h.count - h0.count, seqSteps = h.sum - h0.sum;
  // Every generated token was one sequence in one forward call: 4 × N.
  assert.equal(seqSteps, 4 * N, `sequences in the batch histogram: ${seqSteps}`);
  // With the model's fused runtime the slots share forward calls; without one, each runs its own.
  model.eval();
  const rt = model.runtime?.({ maxSeqs: 1, maxT: 8 }) ?? null;
  rt?.dispose();
  assert.match(m, new RegExp(`^icld_batched_runtime ${rt ? 1 : 0}$`, 'm'));
  if (rt) {
    assert.ok(calls < seqSteps, `no forward call held more than one sequence (${calls} calls for ${seqSteps} tokens)`);
    assert.ok(h.count - h.le.get('1')! > h0.count - h0.le.get('1')!, 'some forward call had a batch of ≥ 2');
    assert.ok(h.count - h.le.get('2')! > h0.count - h0.le.get('2')!, 'some forward call had a batch of ≥ 3');
  } else {
    assert.equal(calls, seqSteps, 'without a runtime every sequence has its own forward call');
  }
});

test('a request joining while others are mid-decode is correct, and so are they', async () => {
  const N = 60;
  const a = stream(srv.url, body(PROMPTS[0], N)), b = stream(srv.url, body(PROMPTS[1], N));
  await Promise.all([a.seen(5), b.seen(5)]);
  const c = stream(srv.url, body(PROMPTS[2], 20));
  // When the late one ends, a and b are still streaming (it did not wait for them, nor they for it).
  const atC = await c.done.then(() => [a.events(), b.events()]);
  const [ra, rb, rc] = await Promise.all([a.done, b.done, c.done]);
  const ta = streamedText(ra.text), tb = streamedText(rb.text);
  assert.equal(ta, alone(PROMPTS[0], N));
  assert.equal(tb, alone(PROMPTS[1], N));
  assert.equal(streamedText(rc.text), alone(PROMPTS[2], 20));
  const total = [sse(ra.text).events.length, sse(rb.text).events.length];
  assert.ok(atC[0] < total[0] && atC[1] < total[1], `a and b had ended before the late request did: ${atC} of ${total} events`);
});

test('cancelling one stream mid-batch does not disturb the others; its sequence is freed for the next requests', async () => {
  const N = 50;
  const before = Number(/^icld_generated_tokens_total (\d+)$/m.exec(await metrics(srv.url))![1]);
  const s = PROMPTS.slice(0, 3).map((p) => stream(srv.url, body(p, N)));
  await Promise.all(s.map((x) => x.seen(4)));
  s[1].destroy();
  const [r0, r2] = await Promise.all([s[0].done, s[2].done]);
  assert.equal(streamedText(r0.text), alone(PROMPTS[0], N));
  assert.equal(streamedText(r2.text), alone(PROMPTS[2], N));
  const m = await metrics(srv.url);
  assert.match(m, /^icld_active_slots 0$/m);
  const made = Number(/^icld_generated_tokens_total (\d+)$/m.exec(m)![1]) - before;
  assert.ok(made < 3 * N, `the cancelled stream went on generating (${made} tokens for 2 × ${N} + a few)`);
  // All four slots (and runtime sequences) are free again: four at once still decode correctly.
  const outs = await Promise.all(PROMPTS.map((p) => post(`${srv.url}/v1/completions`, body(p, 12)).then((r) => r.json().choices[0].text as string)));
  assert.deepEqual(outs, PROMPTS.map((p) => alone(p, 12)));
});

test('per-request sampling in a batch: a seeded n=3 request repeats its alone answer next to greedy ones; max_tokens 0 streams its finish', async () => {
  const sampled = { prompt: PROMPTS[3], max_tokens: 20, n: 3, temperature: 0.9, top_k: 20, seed: 11, logprobs: 2, logit_bias: ban };
  const soloS = (await post(`${srv.url}/v1/completions`, sampled)).json();
  const [withOthers, g1, g2, z] = await Promise.all([
    post(`${srv.url}/v1/completions`, sampled).then((r) => r.json()),
    post(`${srv.url}/v1/completions`, body(PROMPTS[0], 25)).then((r) => r.json().choices[0].text),
    stream(srv.url, body(PROMPTS[1], 25)).done.then((r) => streamedText(r.text)),
    stream(srv.url, { prompt: PROMPTS[2], max_tokens: 0 }).done,
  ]);
  assert.equal(soloS.choices.length, 3);
  assert.ok(new Set(soloS.choices.map((c: any) => c.text)).size > 1, 'the three sampled choices differ');
  assert.deepEqual(withOthers.choices.map((c: any) => c.text), soloS.choices.map((c: any) => c.text));
  // Log-probabilities agree up to float rounding (a batch of another size may sum in another order).
  withOthers.choices.forEach((c: any, i: number) => {
    const a: number[] = c.logprobs.token_logprobs, b: number[] = soloS.choices[i].logprobs.token_logprobs;
    assert.equal(a.length, b.length);
    a.forEach((x, j) => assert.ok(Math.abs(x - b[j]) < 1e-4, `choice ${i} token ${j}: ${x} vs ${b[j]}`));
  });
  assert.equal(g1, alone(PROMPTS[0], 25));
  assert.equal(g2, alone(PROMPTS[1], 25));
  const zs = sse(z.text);
  assert.ok(zs.done);
  assert.equal(zs.events.at(-1).choices[0].finish_reason, 'length');
  assert.equal(zs.events.map((e) => e.choices[0].text).join(''), '');
});

test('with an adapter there is no shared runtime: each generation runs its own forward, base and adapter answers as alone', async () => {
  const lora = loraDir(base);
  const ad = attachAdapterDir(loadModel(base), lora), adTok = loadTokenizer(lora);
  const s = await startServer({ model: base, name: 'tiny', adapters: { chat: lora }, port: 0, slots: 4 });
  try {
    const outs = await Promise.all([0, 1, 2, 3].map((i) => post(`${s.url}/v1/completions`, { ...body(PROMPTS[i], 20), model: i % 2 ? 'chat' : 'tiny' }).then((r) => r.json().choices[0].text as string)));
    const adAlone = (p: string): string => generate(ad, adTok, p, { maxNewTokens: 20, temperature: 0, eosTokenId: model.eosTokenId, logitBias: new Map([[model.eosTokenId!, -100]]) }).text;
    assert.deepEqual(outs, [alone(PROMPTS[0], 20), adAlone(PROMPTS[1]), alone(PROMPTS[2], 20), adAlone(PROMPTS[3])]);
    assert.ok(PROMPTS.some((p) => adAlone(p) !== alone(p, 20)), 'the adapter changes some answer (else the check proves little)');
    const m = await metrics(s.url);
    const h = hist(m, 'icld_decode_batch_size');
    assert.equal(h.sum, 80, 'every token was one sequence in one forward call');
    assert.equal(h.le.get('1'), h.count, 'one sequence per forward call');
    assert.match(m, /^icld_batched_runtime 0$/m, 'no fused runtime with adapters');
  } finally { await s.close(); }
});

// The OpenAI-compatible API end to end on tiny models: every endpoint and sampling parameter,
// greedy output equal to generate() (base and a LoRA adapter selected by name, also while their
// generations interleave), SSE chunks and [DONE], usage counts, n, stop, logprobs, seeds,
// fill-mask on a BERT, the chat page and the metrics.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { createModel, generate, loadModel, type LanguageModel } from '../../src/models/index.js';
import { loadTokenizer, type Tokenizer } from '../../src/tokenizers/index.js';
import { attachAdapterDir } from '../../src/tuners/index.js';
import { chatGenerationSetup } from '../../src/finetune/chat-generate.js';
import { fillMask } from '../../src/eval/fill-mask.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { bertDir, get, gpt2Dir, http, loraDir, post, sse, timedPost } from './serve-fixture.js';

let base: string, lora: string, srv: RunningServer, bert: string, bsrv: RunningServer;
let baseModel: LanguageModel, baseTok: Tokenizer, adModel: LanguageModel, adTok: Tokenizer;
const MSGS = [{ role: 'user' as const, content: 'What is the capital of Orsk?' }];

before(async () => {
  base = gpt2Dir();
  lora = loraDir(base);
  baseModel = loadModel(base); baseTok = loadTokenizer(base);
  adModel = attachAdapterDir(loadModel(base), lora); adTok = loadTokenizer(lora);
  srv = await startServer({ model: base, name: 'tiny', adapters: { chat: lora }, port: 0, slots: 3 });
  bert = bertDir();
  bsrv = await startServer({ model: bert, port: 0 });
});
after(async () => { await srv.close(); await bsrv.close(); });

const greedy = (m: LanguageModel, t: Tokenizer, p: string | number[], n: number, eos: number | null) => generate(m, t, p, { maxNewTokens: n, temperature: 0, eosTokenId: eos });
/** Greedy chat answer with the end-of-turn token banned (the tiny adapter would end at once): the request sends the same logit_bias. */
const chatExpect = (m: LanguageModel, t: Tokenizer, n: number) => {
  const s = chatGenerationSetup(m, t, MSGS);
  const r = generate(m, t, s.ids, { maxNewTokens: n, temperature: 0, eosTokenId: s.eosTokenId, logitBias: new Map([[s.eosTokenId!, -100]]) });
  return { ...r, ids: s.ids, bias: { [s.eosTokenId!]: -100 } };
};

test('GET /v1/models lists the base and the adapter, with context and chat template source; /health ok', async () => {
  const r = await get(`${srv.url}/v1/models`);
  assert.equal(r.status, 200);
  const j = r.json();
  assert.equal(j.object, 'list');
  const ids = j.data.map((m: any) => m.id);
  assert.deepEqual(ids, ['tiny', 'chat'], 'the base first, then the adapters');
  const t = j.data.find((m: any) => m.id === 'tiny'), c = j.data.find((m: any) => m.id === 'chat');
  assert.equal(t.object, 'model');
  assert.equal(t.context_length, 128);
  assert.equal(t.chat_template, 'family default (ChatML)');
  assert.equal(c.chat_template, 'tokenizer_config.json');
  assert.equal(c.adapter.peft_type, 'LORA');
  assert.deepEqual((await get(`${srv.url}/health`)).json(), { status: 'ok' });
  // Without --name the id is the directory's name.
  assert.equal((await get(`${bsrv.url}/v1/models`)).json().data[0].id, basename(bert));
});

test('completions: greedy equals generate() for a text prompt and for token ids; usage, ids and finish_reason as OpenAI', async () => {
  const prompt = 'The capital is';
  const exp = greedy(baseModel, baseTok, prompt, 12, baseModel.eosTokenId);
  const r = await post(`${srv.url}/v1/completions`, { model: 'tiny', prompt, max_tokens: 12, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  const j = r.json();
  assert.match(j.id, /^cmpl-/);
  assert.equal(j.object, 'text_completion');
  assert.equal(j.model, 'tiny');
  assert.ok(Math.abs(j.created - Date.now() / 1000) < 60);
  assert.equal(j.choices.length, 1);
  assert.equal(j.choices[0].text, exp.text);
  assert.equal(j.choices[0].finish_reason, exp.finish_reason === 'length' ? 'length' : 'stop');
  assert.deepEqual(j.usage, { prompt_tokens: baseTok.encode(prompt).length, completion_tokens: exp.tokens.length, total_tokens: baseTok.encode(prompt).length + exp.tokens.length });
  const ids = baseTok.encode('What is the capital');
  const r2 = (await post(`${srv.url}/v1/completions`, { prompt: ids, max_tokens: 7, temperature: 0 })).json();
  assert.equal(r2.choices[0].text, greedy(baseModel, baseTok, ids, 7, baseModel.eosTokenId).text);
  assert.equal(r2.model, 'tiny', 'no model field: the base');
  // A list of prompts: one choice each, in order; prompt tokens summed.
  const r3 = (await post(`${srv.url}/v1/completions`, { prompt: ['The capital is', 'What is'], max_tokens: 5, temperature: 0 })).json();
  assert.deepEqual(r3.choices.map((c: any) => c.index), [0, 1]);
  assert.equal(r3.choices[1].text, greedy(baseModel, baseTok, 'What is', 5, baseModel.eosTokenId).text);
  assert.equal(r3.usage.prompt_tokens, baseTok.encode('The capital is').length + baseTok.encode('What is').length);
});

test('chat: greedy equals generate() through the chat template, for the base and for the adapter selected by name (which differ)', async () => {
  const eb = chatExpect(baseModel, baseTok, 12), ea = chatExpect(adModel, adTok, 12);
  const rb = (await post(`${srv.url}/v1/chat/completions`, { model: 'tiny', messages: MSGS, max_tokens: 12, temperature: 0, logit_bias: eb.bias })).json();
  const ra = (await post(`${srv.url}/v1/chat/completions`, { model: 'chat', messages: MSGS, max_tokens: 12, temperature: 0, logit_bias: ea.bias })).json();
  assert.match(ra.id, /^chatcmpl-/);
  assert.equal(ra.object, 'chat.completion');
  assert.equal(ra.model, 'chat');
  assert.equal(rb.choices[0].message.role, 'assistant');
  assert.equal(rb.choices[0].message.content, eb.text);
  assert.equal(ra.choices[0].message.content, ea.text);
  assert.ok(ea.text.length > 0 && eb.text.length > 0);
  assert.notEqual(ea.text, eb.text, 'the trained adapter must change the greedy answer (test premise)');
  assert.equal(ra.usage.prompt_tokens, ea.ids.length);
  assert.equal(ra.usage.completion_tokens, ea.tokens.length);
  assert.equal(ra.choices[0].finish_reason, ea.finish_reason === 'length' ? 'length' : 'stop');
});

test('base and adapter generations interleaved token by token give the same answers as alone', async () => {
  const eb = chatExpect(baseModel, baseTok, 20), ea = chatExpect(adModel, adTok, 20);
  const reqs = [];
  for (let i = 0; i < 3; i++) {
    reqs.push(post(`${srv.url}/v1/chat/completions`, { model: i % 2 ? 'tiny' : 'chat', messages: MSGS, max_tokens: 20, temperature: 0, stream: true, logit_bias: (i % 2 ? eb : ea).bias }));
  }
  const outs = await Promise.all(reqs);
  outs.forEach((r, i) => {
    const s = sse(r.text);
    assert.ok(s.done);
    const text = s.events.map((e) => e.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, i % 2 ? eb.text : ea.text, `request ${i}`);
  });
});

test('streaming: SSE chunks in OpenAI\'s format, text equal to the non-streaming answer, [DONE] last, include_usage', async () => {
  const body = { prompt: 'The capital is', max_tokens: 10, temperature: 0 };
  const plain = (await post(`${srv.url}/v1/completions`, body)).json();
  const r = await post(`${srv.url}/v1/completions`, { ...body, stream: true, stream_options: { include_usage: true } });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/event-stream/);
  assert.ok(r.text.endsWith('data: [DONE]\n\n'));
  const s = sse(r.text);
  assert.ok(s.done);
  const last = s.events[s.events.length - 1];
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, plain.usage);
  const chunks = s.events.slice(0, -1);
  assert.ok(chunks.length >= 2);
  for (const c of chunks) { assert.match(c.id, /^cmpl-/); assert.equal(c.object, 'text_completion'); assert.equal(c.usage, null); assert.equal(c.id, chunks[0].id); }
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), plain.choices[0].text);
  assert.equal(chunks[chunks.length - 1].choices[0].finish_reason, plain.choices[0].finish_reason);
  assert.ok(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null));
  // Chat chunks: role first, then content deltas; no usage chunk unless asked.
  const ec = chatExpect(adModel, adTok, 8);
  const rc = sse((await post(`${srv.url}/v1/chat/completions`, { model: 'chat', messages: MSGS, max_tokens: 8, temperature: 0, stream: true, logit_bias: ec.bias })).text);
  assert.equal(rc.events[0].object, 'chat.completion.chunk');
  assert.equal(rc.events[0].choices[0].delta.role, 'assistant');
  assert.ok(rc.events.every((e) => e.choices.length === 1 && !('usage' in e)));
  assert.equal(rc.events.map((e) => e.choices[0].delta.content ?? '').join(''), ec.text);
});

test('n, seed, temperature/top_p/top_k: n choices, the same seed repeats, another seed differs', async () => {
  const body = { prompt: 'The capital is', max_tokens: 12, temperature: 1.2, top_p: 0.95, top_k: 50, n: 2, seed: 42 };
  const a = (await post(`${srv.url}/v1/completions`, body)).json();
  const b = (await post(`${srv.url}/v1/completions`, body)).json();
  const c = (await post(`${srv.url}/v1/completions`, { ...body, seed: 43 })).json();
  assert.equal(a.choices.length, 2);
  assert.deepEqual(a.choices.map((x: any) => x.index), [0, 1]);
  assert.deepEqual(a.choices.map((x: any) => x.text), b.choices.map((x: any) => x.text));
  assert.notEqual(a.choices[0].text, a.choices[1].text, 'the two choices sample differently');
  assert.notDeepEqual(a.choices.map((x: any) => x.text), c.choices.map((x: any) => x.text));
  assert.equal(a.usage.prompt_tokens, baseTok.encode('The capital is').length, 'the prompt counts once');
  assert.equal(a.usage.completion_tokens, 24);
  // top_k 1 is greedy whatever the temperature.
  const k1 = (await post(`${srv.url}/v1/completions`, { prompt: 'The capital is', max_tokens: 8, temperature: 1.5, top_k: 1, seed: 1 })).json();
  assert.equal(k1.choices[0].text, greedy(baseModel, baseTok, 'The capital is', 8, baseModel.eosTokenId).text);
});

test('stop (string or list) cuts the text before the stop string, finish_reason stop, streaming too', async () => {
  const prompt = 'What is the capital';
  const full = greedy(baseModel, baseTok, prompt, 16, baseModel.eosTokenId).text;
  assert.ok(full.length >= 6, `premise: a long enough greedy text: ${JSON.stringify(full)}`);
  const stop = full.slice(3, 5);
  const cut = full.slice(0, full.indexOf(stop));
  for (const s of [stop, ['zzzz', stop]]) {
    const j = (await post(`${srv.url}/v1/completions`, { prompt, max_tokens: 16, temperature: 0, stop: s })).json();
    assert.equal(j.choices[0].text, cut);
    assert.equal(j.choices[0].finish_reason, 'stop');
  }
  const st = sse((await post(`${srv.url}/v1/completions`, { prompt, max_tokens: 16, temperature: 0, stop, stream: true })).text);
  assert.equal(st.events.map((e) => e.choices[0].text).join(''), cut);
  assert.equal(st.events[st.events.length - 1].choices[0].finish_reason, 'stop');
});

test('logprobs: completions (legacy shape, top-k alternatives) and chat (content list with bytes)', async () => {
  const j = (await post(`${srv.url}/v1/completions`, { prompt: 'The capital is', max_tokens: 6, temperature: 0, logprobs: 3 })).json();
  const lp = j.choices[0].logprobs;
  assert.equal(lp.tokens.length, 6);
  assert.equal(lp.tokens.join(''), j.choices[0].text);
  assert.equal(lp.token_logprobs.length, 6);
  assert.deepEqual(lp.text_offset, lp.tokens.map((_: string, i: number) => lp.tokens.slice(0, i).join('').length));
  lp.top_logprobs.forEach((t: Record<string, number>, i: number) => {
    const vals = Object.values(t);
    assert.ok(vals.length >= 1 && vals.length <= 3);
    assert.ok(lp.token_logprobs[i] <= 0);
    assert.ok(Math.abs(Math.max(...vals) - lp.token_logprobs[i]) < 1e-9, 'greedy: the chosen token is the most likely');
  });
  const c = (await post(`${srv.url}/v1/chat/completions`, { model: 'chat', messages: MSGS, max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 2, logit_bias: chatExpect(adModel, adTok, 1).bias })).json();
  const content = c.choices[0].logprobs.content;
  assert.ok(content.length >= 1);
  assert.equal(content.map((x: any) => x.token).join(''), c.choices[0].message.content);
  for (const x of content) {
    assert.deepEqual(x.bytes, [...Buffer.from(x.token, 'utf8')]);
    assert.equal(x.top_logprobs.length, 2);
    assert.equal(x.top_logprobs[0].logprob, x.logprob);
  }
  const none = (await post(`${srv.url}/v1/chat/completions`, { messages: MSGS, max_tokens: 2 })).json();
  assert.equal(none.choices[0].logprobs, null);
});

test('presence/frequency penalties and logit_bias reach generation (greedy equals generate() with them)', async () => {
  const prompt = 'The capital is';
  const exp = generate(baseModel, baseTok, prompt, { maxNewTokens: 16, temperature: 0, eosTokenId: baseModel.eosTokenId, frequencyPenalty: 2, presencePenalty: 1 });
  const j = (await post(`${srv.url}/v1/completions`, { prompt, max_tokens: 16, temperature: 0, frequency_penalty: 2, presence_penalty: 1 })).json();
  assert.equal(j.choices[0].text, exp.text);
  assert.notEqual(exp.text, greedy(baseModel, baseTok, prompt, 16, baseModel.eosTokenId).text, 'premise: the penalties change the text');
  const first = greedy(baseModel, baseTok, prompt, 1, null).tokens[0];
  const b = (await post(`${srv.url}/v1/completions`, { prompt, max_tokens: 1, temperature: 0, logit_bias: { [first]: -100 }, logprobs: 0 })).json();
  assert.notEqual(b.choices[0].logprobs.tokens[0], baseTok.decode([first]));
});

test('context: a prompt longer than the context is a 400 naming the lengths; max_tokens is capped at the context', async () => {
  const long = Array.from({ length: 130 }, (_, i) => (i % 50) + 1);
  const r = await post(`${srv.url}/v1/completions`, { prompt: long, max_tokens: 4 });
  assert.equal(r.status, 400);
  assert.match(r.json().error.message, /128 tokens.*130 tokens/);
  assert.equal(r.json().error.param, 'prompt');
  assert.equal(r.json().error.code, 'context_length_exceeded');
  const ids = long.slice(0, 120);
  const j = (await post(`${srv.url}/v1/completions`, { prompt: ids, max_tokens: 50, temperature: 0, logit_bias: { [baseModel.eosTokenId!]: -100 } })).json();
  assert.equal(j.usage.completion_tokens, 8);
  assert.equal(j.choices[0].finish_reason, 'length');
});

test('fill-mask on a BERT equals fillMask(); a causal model there and generation on a BERT are 400s', async () => {
  const bm = loadModel(bert), bt = loadTokenizer(bert);
  const text = 'The capital is [MASK].';
  const r = await post(`${bsrv.url}/v1/fill-mask`, { text, top_k: 3 });
  assert.equal(r.status, 200, r.text);
  const exp = fillMask(bm, bt, text, { topK: 3 });
  assert.deepEqual(r.json().results.map((m: any[]) => m.map((x) => x.token)), exp.map((m) => m.map((x) => x.token)));
  r.json().results[0].forEach((x: any, i: number) => assert.ok(Math.abs(x.prob - exp[0][i].prob) < 1e-6));
  const g = await post(`${bsrv.url}/v1/completions`, { prompt: 'hi' });
  assert.equal(g.status, 400);
  assert.match(g.json().error.message, /cannot generate/);
  assert.equal((await post(`${bsrv.url}/v1/chat/completions`, { messages: MSGS })).status, 400);
  const c = await post(`${srv.url}/v1/fill-mask`, { text });
  assert.equal(c.status, 400);
  assert.match(c.json().error.message, /masked/);
  assert.equal((await post(`${bsrv.url}/v1/fill-mask`, { text: 'no mask here' })).status, 400);
  assert.equal((await get(`${bsrv.url}/v1/models`)).json().data[0].kind, 'masked');
});

test('GET / serves the chat page with an HTML content type; no directory traversal', async () => {
  const r = await get(`${srv.url}/`);
  if (r.status === 200) assert.match(String(r.headers['content-type']), /^text\/html/);
  else assert.equal(r.status, 404, 'the page may not exist yet in this worktree');
  for (const p of ['/../package.json', '/%2e%2e/package.json', '/..%2f..%2fpackage.json', '/%00']) {
    const t = await http(`${srv.url}${p}`, 'GET');
    assert.ok(t.status === 404 || t.status === 400, `${p}: ${t.status}`);
    assert.ok(!t.text.includes('"devDependencies"'), p);
  }
});

test('GET /metrics: Prometheus text with requests by route and status, tokens, queue, slots and latency histograms', async () => {
  await post(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 3, temperature: 0 });
  await post(`${srv.url}/v1/completions`, { prompt: 5 });
  const m = (await get(`${srv.url}/metrics`)).text;
  const val = (re: RegExp): number => { const x = re.exec(m); assert.ok(x, `${re} in\n${m}`); return Number(x![1]); };
  assert.ok(val(/^icld_requests_total\{route="\/v1\/completions",status="200"\} (\d+)$/m) >= 1);
  assert.ok(val(/^icld_requests_total\{route="\/v1\/completions",status="400"\} (\d+)$/m) >= 1);
  assert.ok(val(/^icld_generated_tokens_total (\d+)$/m) >= 3);
  assert.ok(val(/^icld_prompt_tokens_total (\d+)$/m) >= 1);
  assert.equal(val(/^icld_queue_length (\d+)$/m), 0);
  assert.equal(val(/^icld_active_slots (\d+)$/m), 0);
  assert.equal(val(/^icld_slots (\d+)$/m), 3);
  assert.ok(val(/^icld_request_duration_seconds_count\{route="\/v1\/completions"\} (\d+)$/m) >= 2);
  assert.ok(val(/^icld_time_to_first_token_seconds_count (\d+)$/m) >= 1);
  assert.match(m, /^# TYPE icld_request_duration_seconds histogram$/m);
  assert.match(m, /^icld_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+$/m);
});

test('slots decode concurrently: two streams interleave (each gets chunks before the other ends)', async () => {
  const body = { prompt: 'The capital is', max_tokens: 80, temperature: 0, stream: true, logit_bias: { [baseModel.eosTokenId!]: -100 } };
  const [a, b] = await Promise.all([timedPost(`${srv.url}/v1/completions`, body), timedPost(`${srv.url}/v1/completions`, body)]);
  assert.ok(sse(a.text).done && sse(b.text).done);
  assert.ok(sse(a.text).events.length > 20 && a.times.length > 10, 'tokens are streamed as they come');
  // Neither finished before the other started streaming.
  assert.ok(b.times[0] < a.times[a.times.length - 1] && a.times[0] < b.times[b.times.length - 1], 'the streams ran one after the other');
});

test('--ctx lowers the context: /v1/models reports it and longer prompts are refused', async () => {
  const s = await startServer({ model: base, port: 0, ctx: 20 });
  try {
    assert.equal((await get(`${s.url}/v1/models`)).json().data[0].context_length, 20);
    const ids = Array.from({ length: 20 }, (_, i) => i + 1);
    const r = await post(`${s.url}/v1/completions`, { prompt: ids });
    assert.equal(r.status, 400);
    assert.match(r.json().error.message, /20 tokens/);
    const j = (await post(`${s.url}/v1/completions`, { prompt: ids.slice(0, 15), max_tokens: 100, temperature: 0, logit_bias: { [baseModel.eosTokenId!]: -100 } })).json();
    assert.equal(j.usage.completion_tokens, 5);
  } finally { await s.close(); }
  await assert.rejects(startServer({ model: base, port: 0, ctx: 500 }), /--ctx 500 exceeds the model's context of 128/);
});

void createModel;

// Faults and limits: malformed JSON, wrong types, unknown fields, huge bodies, auth, unknown
// models and routes, wrong methods, a full queue, loading, a client leaving mid-stream, graceful
// shutdown, and a hammering with garbage after which the server still answers.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { get, gpt2Dir, http, post, sse } from './serve-fixture.js';

let dir: string, srv: RunningServer;
const KEY = 'sk-test-0123456789';
const auth = { authorization: `Bearer ${KEY}` };

before(async () => {
  // Long context: a request with n=64 and 1000 tokens each keeps a slot busy for seconds.
  dir = gpt2Dir({ positions: 1024 });
  srv = await startServer({ model: dir, name: 'm', port: 0, apiKey: KEY, slots: 1, queue: 1, maxBodyBytes: 64 * 1024 });
});
after(async () => { await srv.close(); });

/** A request that generates for a long time (the end-of-text token banned). */
const LONG = { prompt: 'The capital', max_tokens: 1000, n: 64, temperature: 0, stream: true, logit_bias: { 0: -100 } };

/** A streaming request: resolves `first` with the first bytes, `done` with the whole body (or the error). */
function openStream(url: string, body: unknown, headers: Record<string, string> = auth) {
  const payload = JSON.stringify(body);
  let firstOk!: (s: string) => void;
  const first = new Promise<string>((r) => { firstOk = r; });
  let status = 0;
  const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers } });
  const done = new Promise<{ status: number; text: string; error?: string }>((ok) => {
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString('utf8'); firstOk(text); });
      res.on('end', () => ok({ status, text }));
      res.on('error', (e) => ok({ status, text, error: e.message }));
      res.on('aborted', () => ok({ status, text, error: 'aborted' }));
    });
    req.on('error', (e) => ok({ status, text: '', error: e.message }));
  });
  req.end(payload);
  return { first, done, destroy: () => req.destroy() };
}

const metric = async (name: string): Promise<number> => {
  const m = (await get(`${srv.url}/metrics`)).text;
  const x = new RegExp(`^${name} (\\d+)$`, 'm').exec(m);
  assert.ok(x, `${name} missing`);
  return Number(x![1]);
};
const waitFor = async (f: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
  const t0 = Date.now();
  while (!(await f())) { if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`); await new Promise((r) => setTimeout(r, 10)); }
};

function errorShape(r: { status: number; json: () => any }, status: number, re?: RegExp): any {
  assert.equal(r.status, status);
  const e = r.json().error;
  assert.equal(typeof e.message, 'string');
  assert.ok('type' in e && 'param' in e && 'code' in e, JSON.stringify(e));
  if (re) assert.match(e.message, re);
  return e;
}

test('401 without or with a wrong key (OpenAI shape); /health and /metrics need none; the right key works', async () => {
  const body = { prompt: 'The', max_tokens: 2 };
  errorShape(await post(`${srv.url}/v1/completions`, body), 401, /API key/);
  const e = errorShape(await post(`${srv.url}/v1/completions`, body, { authorization: 'Bearer sk-wrong' }), 401, /Incorrect API key/);
  assert.equal(e.code, 'invalid_api_key');
  errorShape(await post(`${srv.url}/v1/completions`, body, { authorization: `Bearer ${KEY}x` }), 401);
  errorShape(await get(`${srv.url}/v1/models`, { authorization: KEY }), 401);
  assert.equal((await get(`${srv.url}/health`)).status, 200);
  assert.equal((await get(`${srv.url}/metrics`)).status, 200);
  assert.equal((await post(`${srv.url}/v1/completions`, body, auth)).status, 200);
});

test('404 unknown model and route, 405 wrong method (with Allow)', async () => {
  const e = errorShape(await post(`${srv.url}/v1/completions`, { model: 'gpt-4', prompt: 'x' }, auth), 404, /gpt-4/);
  assert.equal(e.code, 'model_not_found');
  assert.equal(e.param, 'model');
  errorShape(await post(`${srv.url}/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'hi' }] }, auth), 404);
  errorShape(await post(`${srv.url}/v1/embeddings`, { input: 'x' }, auth), 404);
  errorShape(await get(`${srv.url}/v1/nothing`, auth), 404);
  const r = await get(`${srv.url}/v1/completions`, auth);
  errorShape(r, 405);
  assert.equal(r.headers.allow, 'POST');
  errorShape(await http(`${srv.url}/health`, 'DELETE'), 405);
});

test('400 for malformed JSON, non-object bodies, wrong types and ranges (naming the field); unknown fields are ignored', async () => {
  const url = `${srv.url}/v1/completions`;
  for (const raw of ['{', '{"prompt": "x",}', 'null', '[1,2]', '"text"', '', 'prompt=x']) errorShape(await post(url, raw, auth), 400);
  const cases: [Record<string, unknown>, string][] = [
    [{ prompt: 'x', temperature: 'hot' }, 'temperature'], [{ prompt: 'x', temperature: 3 }, 'temperature'], [{ prompt: 'x', max_tokens: -1 }, 'max_tokens'],
    [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens'], [{ prompt: 'x', n: 0 }, 'n'], [{ prompt: 'x', top_p: 1.5 }, 'top_p'], [{ prompt: 'x', stop: 5 }, 'stop'],
    [{ prompt: 'x', stop: ['a', 1] }, 'stop'], [{ prompt: 'x', stream: 'yes' }, 'stream'], [{ prompt: 'x', seed: 'abc' }, 'seed'],
    [{ prompt: 'x', presence_penalty: 5 }, 'presence_penalty'], [{ prompt: 'x', frequency_penalty: '1' }, 'frequency_penalty'],
    [{ prompt: 'x', logprobs: 50 }, 'logprobs'], [{ prompt: 'x', logit_bias: { abc: 1 } }, 'logit_bias'], [{ prompt: 'x', logit_bias: { 1: 500 } }, 'logit_bias'],
    [{ prompt: 'x', model: 7 }, 'model'], [{ prompt: 'x', stream_options: 3 }, 'stream_options'], [{ prompt: ['a', 'b', 'c'], n: 64 }, 'n'],
    [{}, 'prompt'], [{ prompt: {} }, 'prompt'], [{ prompt: [] }, 'prompt'], [{ prompt: [1, 99999] }, 'prompt'], [{ prompt: [1.5] }, 'prompt'], [{ prompt: '' }, 'prompt'],
  ];
  for (const [body, param] of cases) {
    const e = errorShape(await post(url, body, auth), 400);
    assert.equal(e.param, param, JSON.stringify(body));
    assert.ok(e.message.includes(param) || param === 'prompt', e.message);
  }
  const chat = `${srv.url}/v1/chat/completions`;
  for (const [body, param] of [[{}, 'messages'], [{ messages: [] }, 'messages'], [{ messages: 'hi' }, 'messages'], [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'], [{ messages: [5] }, 'messages[0]'], [{ messages: [{ role: 'user', content: 'x' }], logprobs: 1 }, 'logprobs'],
    [{ messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, 'top_logprobs']] as [Record<string, unknown>, string][]) {
    assert.equal(errorShape(await post(chat, body, auth), 400).param, param, JSON.stringify(body));
  }
  // Unknown fields (and OpenAI fields we do not use) are ignored.
  const ok = await post(url, { prompt: 'The', max_tokens: 2, temperature: 0, user: 'me', best_of: 1, suffix: null, frobnicate: { deep: [1] } }, auth);
  assert.equal(ok.status, 200, ok.text);
  const okc = await post(chat, { messages: [{ role: 'developer', content: 'be brief', name: 'x' }, { role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 2, whatever: true }, auth);
  assert.equal(okc.status, 200, okc.text);
});

test('413 for a body over the limit: by content-length at once, and when streamed in chunks without one', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(200 * 1024) });
  errorShape(await post(`${srv.url}/v1/completions`, big, auth), 413, /65536 bytes/);
  // Chunked upload: the server answers 413 once the limit is passed and stops reading.
  const r = await new Promise<{ status: number; text: string }>((ok, fail) => {
    const req = request(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c; });
      res.on('end', () => ok({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', (e) => fail(e));
    const chunk = 'x'.repeat(16 * 1024);
    req.write('{"prompt": "');
    let sent = 0;
    const pump = (): void => { while (sent < 8 && req.write(chunk)) sent++; if (sent < 8) req.once('drain', () => { sent++; pump(); }); };
    pump();
  });
  assert.equal(r.status, 413);
  assert.match(JSON.parse(r.text).error.message, /too large/);
  // The server is fine afterwards.
  assert.equal((await post(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 1 }, auth)).status, 200);
});

test('a busy slot and a full queue: 429; a client that disconnects mid-stream frees its slot at once', async () => {
  const before = await metric('icld_generated_tokens_total');
  const a = openStream(`${srv.url}/v1/completions`, LONG);
  const first = await a.first;
  assert.match(first, /^data: /);
  // The one slot is busy: the next request waits in the queue (size 1), the one after is refused.
  const queued = post(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 3, temperature: 0 }, auth);
  await waitFor(async () => (await metric('icld_queue_length')) === 1, 5000, 'the queued request');
  assert.equal(await metric('icld_active_slots'), 1);
  const e = errorShape(await post(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 3 }, auth), 429, /busy/);
  assert.equal(e.code, 'queue_full');
  // The streaming client leaves: its generation stops and the queued request is served.
  a.destroy();
  const q = await queued;
  assert.equal(q.status, 200, q.text);
  await waitFor(async () => (await metric('icld_active_slots')) === 0, 5000, 'the slot to be free');
  const made = (await metric('icld_generated_tokens_total')) - before;
  assert.ok(made < 64 * 1000 / 2, `the cancelled request went on generating: ${made} tokens`);
  assert.match((await get(`${srv.url}/metrics`)).text, /icld_requests_total\{route="\/v1\/completions",status="429"\} 1/);
});

test('503 while the model loads (health and API), then 200', async () => {
  const seen: { health?: number; body?: any; api?: number; apiErr?: any } = {};
  const s = await startServer({ model: dir, port: 0, onListening: async (url) => {
    const h = await get(`${url}/health`);
    const a = await post(`${url}/v1/completions`, { prompt: 'x' });
    Object.assign(seen, { health: h.status, body: h.json(), api: a.status, apiErr: a.json().error });
  } });
  try {
    assert.equal(seen.health, 503);
    assert.deepEqual(seen.body, { status: 'loading' });
    assert.equal(seen.api, 503);
    assert.match(seen.apiErr.message, /loading/);
    assert.equal((await get(`${s.url}/health`)).status, 200);
  } finally { await s.close(); }
});

test('graceful shutdown: an in-flight stream finishes and new connections are refused; past the grace period a long one is cancelled', async () => {
  const s = await startServer({ model: dir, port: 0, graceMs: 10_000 });
  const a = openStream(`${s.url}/v1/completions`, { prompt: 'The', max_tokens: 40, temperature: 0, stream: true, logit_bias: { 0: -100 } }, {});
  await a.first;
  const closed = s.close();
  const r = await a.done;
  assert.equal(r.status, 200);
  const ev = sse(r.text);
  assert.ok(ev.done, 'the in-flight stream ends with [DONE]');
  assert.equal(ev.events.map((e) => e.choices[0].text).join('').length > 0, true);
  await closed;
  await assert.rejects(get(`${s.url}/health`), /ECONNREFUSED/);

  const s2 = await startServer({ model: dir, port: 0, graceMs: 100 });
  const b = openStream(`${s2.url}/v1/completions`, LONG, {});
  await b.first;
  const t0 = Date.now();
  await s2.close();
  assert.ok(Date.now() - t0 < 5000, `close took ${Date.now() - t0} ms`);
  const rb = await b.done;
  assert.ok(!rb.text.includes('[DONE]'), 'a cancelled stream does not claim to be complete');
  assert.match(rb.text, /shutting down/);
});

test('garbage hammering: random bodies, types and raw bytes never crash the server', async () => {
  const vals: unknown[] = [null, true, -1, 1e308, 'x', '', [], {}, [null], { a: 1 }, [[[]]], -0.5, 2 ** 40, '\u0000', [1, 'a'], NaN];
  const fields = ['prompt', 'messages', 'max_tokens', 'temperature', 'top_p', 'top_k', 'stop', 'seed', 'n', 'logprobs', 'top_logprobs', 'stream', 'stream_options', 'logit_bias', 'model', 'presence_penalty'];
  let seed = 7;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const reqs: Promise<{ status: number }>[] = [];
  for (let i = 0; i < 120; i++) {
    const body: Record<string, unknown> = { max_tokens: 2 };
    for (let k = 0; k < 3; k++) body[fields[rnd(fields.length)]] = vals[rnd(vals.length)];
    const path = ['/v1/completions', '/v1/chat/completions', '/v1/fill-mask'][rnd(3)];
    reqs.push(post(`${srv.url}${path}`, JSON.stringify(body), auth).catch(() => ({ status: -1 })));
    if (i % 10 === 0) reqs.push(post(`${srv.url}${path}`, Buffer.from(Array.from({ length: 64 }, () => rnd(256))), auth).catch(() => ({ status: -1 })));
  }
  const codes = (await Promise.all(reqs)).map((r) => r.status);
  assert.ok(codes.every((c) => [200, 400, 429].includes(c)), `unexpected status: ${[...new Set(codes)].join(', ')}`);
  // Raw protocol garbage on a socket.
  await new Promise<void>((ok) => {
    const sock = connect(srv.port, '127.0.0.1', () => sock.end('\x00\x01GARBAGE /\r\n\r\nnot http at all\r\n\r\n'));
    sock.on('close', () => ok()); sock.on('error', () => ok()); sock.resume();
  });
  const r = await post(`${srv.url}/v1/completions`, { prompt: 'The', max_tokens: 2 }, auth);
  assert.equal(r.status, 200);
});

test('icld serve: listens, answers, and on SIGTERM finishes and exits 0; a bad --adapter spec is a usage error (exit 2)', async () => {
  const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
  const bad = spawnSync(process.execPath, [CLI, 'serve', '--model', dir, '--adapter', 'noequals'], { encoding: 'utf8' });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /NAME=DIR/);
  const child = spawn(process.execPath, [CLI, 'serve', '--model', dir, '--port', '0', '--name', 'cli'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((ok, fail) => {
    child.stderr.on('data', (c: Buffer) => { err += c; const m = /listening on (http:\/\/\S+)/.exec(err); if (m) ok(m[1]); });
    child.on('exit', (code) => fail(new Error(`exited ${code}: ${err}`)));
  });
  const r = await post(`${url}/v1/completions`, { model: 'cli', prompt: 'The', max_tokens: 2 });
  assert.equal(r.status, 200, r.text);
  const code = await new Promise<number | null>((ok) => { child.on('exit', (c) => ok(c)); child.kill('SIGTERM'); });
  assert.equal(code, 0, err);
  assert.match(err, /SIGTERM/);
});

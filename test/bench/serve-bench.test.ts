// bench/serve's load generator without a model: percentile maths, the SSE parser under every
// chunk split, and timed streaming requests / client loops against a tiny fake OpenAI-style SSE
// server started here with node:http (timings, usage, 429 and broken-stream accounting).

import test from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { percentile, SSEParser, streamRequest, runLoad, summarize, verdict, formatTable, chunkText } from '../../bench/serve-lib.js';

test('percentile: linear interpolation between closest ranks, order-independent', () => {
  const v = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted on purpose
  assert.equal(percentile(v, 50), 50.5);
  assert.ok(Math.abs(percentile(v, 99) - 99.01) < 1e-9);
  assert.equal(percentile(v, 0), 1);
  assert.equal(percentile(v, 100), 100);
  assert.equal(percentile([3, 1, 2], 50), 2);
  assert.equal(percentile([10, 20], 25), 12.5);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile([1], 101), /p must be in \[0, 100\]/);
  assert.deepEqual(v.slice(0, 2), [100, 99], 'the input is not sorted in place');
});

test('SSEParser: the same events whatever the chunk boundaries (\\n, \\r\\n, \\r, comments, multi-line data)', () => {
  const stream = ': keep-alive comment\r\n' +
    'data: {"a":1}\r\n\r\n' +
    'event: ignored\ndata:{"b":2}\n\n' +
    'data: line one\rdata: line two\r\r' +
    'id: 7\n\n' + // an event without data dispatches nothing
    'data: [DONE]\n\n' +
    'data: unterminated';
  const want = ['{"a":1}', '{"b":2}', 'line one\nline two', '[DONE]'];
  const whole = new SSEParser();
  assert.deepEqual([...whole.feed(stream), ...whole.end()], want);
  // Every split into two chunks, and one character at a time.
  for (let k = 0; k <= stream.length; k++) {
    const p = new SSEParser();
    assert.deepEqual([...p.feed(stream.slice(0, k)), ...p.feed(stream.slice(k)), ...p.end()], want, `split at ${k}`);
  }
  const p = new SSEParser();
  const got: string[] = [];
  for (const ch of stream) got.push(...p.feed(ch));
  assert.deepEqual(got, want);
  // A \r\n split between chunks is one line end, not two (which would dispatch early).
  const q = new SSEParser();
  assert.deepEqual(q.feed('data: x\r'), []);
  assert.deepEqual(q.feed('\ndata: y\r\n\r\n'), ['x\ny']);
});

test('chunkText: chat deltas and completions text', () => {
  assert.equal(chunkText({ choices: [{ delta: { role: 'assistant', content: '' } }] }), '');
  assert.equal(chunkText({ choices: [{ delta: { content: 'hi' } }] }), 'hi');
  assert.equal(chunkText({ choices: [{ text: 'yo' }] }), 'yo');
  assert.equal(chunkText({ choices: [], usage: { completion_tokens: 3 } }), '');
  assert.equal(chunkText(null), '');
});

// ---- a fake streaming server -------------------------------------------------------------------
const FIRST_MS = 60, GAP_MS = 25, TOKENS = 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Fake { url: string; seen: Record<string, unknown>[]; close(): Promise<void> }

/** `slots` streams at once, then 429; the request's `model` picks a behaviour. */
async function fakeServer(slots = 1000): Promise<Fake> {
  let active = 0;
  const seen: Record<string, unknown>[] = [];
  const server = http.createServer(async (req, res) => {
    let raw = '';
    for await (const c of req) raw += c;
    const body = JSON.parse(raw) as Record<string, unknown>;
    seen.push(body);
    const chat = req.url === '/v1/chat/completions';
    if (active >= slots || body.model === 'reject') {
      res.writeHead(429, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'queue full', type: 'rate_limit_error', param: null, code: 'queue_full' } }));
      return;
    }
    active++;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (o: unknown): void => {
      // Lines cut in the middle and \r\n endings: the client must reassemble them.
      const s = `data: ${JSON.stringify(o)}\r\n\r\n`;
      const cut = Math.floor(s.length / 2);
      res.write(s.slice(0, cut)); res.write(s.slice(cut));
    };
    const piece = (t: string, finish: string | null = null): unknown => ({ object: chat ? 'chat.completion.chunk' : 'text_completion', choices: [chat ? { index: 0, delta: { content: t }, finish_reason: finish } : { index: 0, text: t, finish_reason: finish }] });
    if (chat) send({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    await sleep(FIRST_MS);
    for (let i = 0; i < TOKENS; i++) {
      if (i > 0) await sleep(GAP_MS);
      send(piece(`t${i}`, i === TOKENS - 1 ? 'length' : null));
    }
    if (body.model === 'error-event') { send({ error: { message: 'boom', type: 'server_error' } }); res.end(); active--; return; }
    const opts = body.stream_options as { include_usage?: boolean } | undefined;
    if (opts?.include_usage) send({ choices: [], usage: { prompt_tokens: 7, completion_tokens: TOKENS, total_tokens: 7 + TOKENS } });
    if (body.model !== 'no-done') res.write('data: [DONE]\n\n');
    res.end();
    active--;
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

test('streamRequest: TTFT, inter-token gaps, usage and finish reason of one chat stream', async () => {
  const f = await fakeServer();
  try {
    const r = await streamRequest({ url: f.url + '/', endpoint: 'chat', body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }, apiKey: 'k' });
    assert.equal(r.error, ''); assert.equal(r.ok, true); assert.equal(r.status, 200);
    assert.deepEqual(f.seen[0].stream, true);
    assert.deepEqual(f.seen[0].stream_options, { include_usage: true });
    assert.equal(f.seen[0].max_tokens, 4);
    // The empty role chunk does not count as the first token.
    assert.equal(r.contentChunks, TOKENS);
    assert.ok(r.ttftMs >= FIRST_MS - 5 && r.ttftMs < FIRST_MS + 2000, `ttft ${r.ttftMs}`);
    assert.equal(r.gapsMs.length, TOKENS - 1);
    for (const g of r.gapsMs) assert.ok(g >= GAP_MS - 5 && g < GAP_MS + 2000, `gap ${g}`);
    assert.equal(r.completionTokens, TOKENS); assert.equal(r.promptTokens, 7);
    assert.equal(r.finishReason, 'length');
    assert.ok(r.endMs - r.startMs >= r.ttftMs + r.gapsMs.reduce((a, b) => a + b, 0) - 1);
  } finally { await f.close(); }
});

test('streamRequest: completions text, 429, a stream without [DONE], an error event, a dead port', async () => {
  const f = await fakeServer();
  try {
    const c = await streamRequest({ url: f.url, endpoint: 'completions', body: { model: 'm', prompt: 'x' } });
    assert.equal(c.ok, true); assert.equal(c.contentChunks, TOKENS); assert.equal(c.completionTokens, TOKENS);
    const rej = await streamRequest({ url: f.url, endpoint: 'chat', body: { model: 'reject', messages: [] } });
    assert.equal(rej.ok, false); assert.equal(rej.status, 429); assert.equal(rej.error, 'http 429');
    const cut = await streamRequest({ url: f.url, endpoint: 'chat', body: { model: 'no-done', messages: [] } });
    assert.equal(cut.ok, false); assert.match(cut.error, /without data: \[DONE\]/);
    const ev = await streamRequest({ url: f.url, endpoint: 'chat', body: { model: 'error-event', messages: [] } });
    assert.equal(ev.ok, false); assert.match(ev.error, /error event: boom/);
  } finally { await f.close(); }
  const dead = await streamRequest({ url: f.url, endpoint: 'chat', body: { model: 'm', messages: [] } });
  assert.equal(dead.status, 0); assert.match(dead.error, /^network: /);
});

test('runLoad + summarize: all succeed within the server\'s slots; 429s counted (and nothing else failing) above them', async () => {
  const f = await fakeServer(3);
  try {
    const body = (c: number, i: number) => ({ model: 'm', messages: [{ role: 'user', content: `${c}:${i}` }] });
    const under = await runLoad({ url: f.url, endpoint: 'chat', clients: 3, durationS: 0.4, makeBody: body });
    const s = summarize(under);
    assert.ok(s.ok >= 3, `ok ${s.ok}`);
    assert.equal(s.requests, s.ok); assert.equal(s.errors, 0); assert.equal(s.rejected429, 0);
    assert.equal(s.completionTokens, s.ok * TOKENS); assert.equal(s.tokensFromUsage, true);
    assert.ok(Math.abs(s.tokensPerS - s.completionTokens / s.elapsedS) < 1e-9);
    assert.ok(Math.abs(s.requestsPerS - s.ok / s.elapsedS) < 1e-9);
    // Requests in flight at the deadline finish: the wall time covers at least one full stream.
    assert.ok(s.elapsedS >= 0.4, `elapsed ${s.elapsedS}`);
    assert.ok(s.ttftMs.p50 >= FIRST_MS - 5 && s.ttftMs.p99 >= s.ttftMs.p50);
    assert.ok(s.itlMs.p50 >= GAP_MS - 5 && s.itlMs.p99 >= s.itlMs.p50);
    assert.equal(s.meanPromptTokens, 7);
    assert.deepEqual(s.finishReasons, { length: s.ok });
    assert.deepEqual(verdict(s, false), { pass: true, why: 'no errors' });
    assert.equal(verdict(s, true).pass, false, 'overload without any 429 is not a pass');
    assert.match(formatTable(s), /\| requests\/s \(completed\) \| \d+\.\d\d \|/);

    const over = summarize(await runLoad({ url: f.url, endpoint: 'chat', clients: 6, durationS: 0.4, makeBody: body, retryDelayMs: 20 }));
    assert.ok(over.rejected429 > 0, 'more clients than slots must be refused');
    assert.equal(over.errors, 0);
    assert.equal(over.errorsByKind['http 429'], over.rejected429);
    assert.equal(over.requests, over.ok + over.rejected429);
    assert.equal(verdict(over, true).pass, true);
    assert.equal(verdict(over, false).pass, false, 'a 429 below the queue limit is a failure');
    assert.match(formatTable(over), new RegExp(`\\| 429 refused \\| ${over.rejected429} \\|`));

    const broken = summarize(await runLoad({ url: f.url, endpoint: 'chat', clients: 2, durationS: 0.1, makeBody: () => ({ model: 'no-done', messages: [] }) }));
    assert.equal(broken.ok, 0); assert.ok(broken.errors >= 2);
    assert.equal(verdict(broken, true).pass, false);
  } finally { await f.close(); }
});

test('bench/serve.mjs: bad flags are one-line usage errors (exit 2) naming the flag', () => {
  const cli = (...a: string[]) => spawnSync(process.execPath, [join(process.cwd(), 'bench', 'serve.mjs'), ...a], { encoding: 'utf8' });
  const cases: [string[], RegExp][] = [
    [['--clients', '0'], /--clients must be an integer in \[1, 4096\], got '0'/],
    [['--duration', 'abc'], /--duration must be a number/],
    [['--bogus'], /unknown flag --bogus/],
    [['--overload', '--clients', '8', '--slots', '4', '--queue', '4'], /--overload needs --clients > --slots \+ --queue \(8 ≤ 4 \+ 4\)/],
    [['--clients', '100', '--queue', '8'], /--clients 100 > --slots \+ --queue \(12\): pass --overload/],
    [['--url', 'ftp://x', '--clients', '2'], /--url must be an http\(s\):\/\/ address/],
    [['--endpoint', 'embeddings'], /--endpoint must be chat or completions/],
  ];
  for (const [args, re] of cases) {
    const r = cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

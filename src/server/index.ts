// icld serve: an OpenAI-compatible HTTP server on node's http module. Routes: GET /health,
// GET /metrics, GET /v1/models, POST /v1/completions, POST /v1/chat/completions (SSE with
// stream: true), POST /v1/fill-mask (masked LMs), and the chat page (src/server/web/) at GET /.
// Generation goes through models/generate.ts (Generation, stepped together by scheduler.ts with
// stepMany), so greedy output equals `icld generate`. Every handler is wrapped: a bad request gets an OpenAI-shaped
// error, never a crash.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { GenerateOptions } from '../models/index.js';
import { chatGenerationSetup } from '../finetune/chat-generate.js';
import { fillMask } from '../eval/fill-mask.js';
import { Metrics } from './metrics.js';
import { ModelPool, type ModelEntry } from './pool.js';
import { Scheduler, type Choice, type Job } from './scheduler.js';
import { ApiError, bad, messages, num, prompts, sampling, str, bool, type SamplingParams } from './params.js';

export { ApiError } from './params.js';

export interface ServeOptions {
  model: string;
  adapters?: Record<string, string>;
  name?: string;
  host?: string;
  port?: number;
  apiKey?: string;
  slots?: number;
  queue?: number;
  ctx?: number;
  maxBodyBytes?: number;
  log?: (s: string) => void;
  /** Graceful shutdown: how long close() lets in-flight requests run before cancelling them (default 10 000 ms). */
  graceMs?: number;
  /** Awaited after the server listens and before the model loads (requests meanwhile get 503). */
  onListening?: (url: string) => Promise<void> | void;
}

export interface RunningServer { url: string; port: number; close(): Promise<void> }

const ROUTES: Record<string, string[]> = {
  '/health': ['GET', 'HEAD'], '/metrics': ['GET', 'HEAD'], '/v1/models': ['GET', 'HEAD'],
  '/v1/completions': ['POST'], '/v1/chat/completions': ['POST'], '/v1/fill-mask': ['POST'],
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.ico': 'image/x-icon', '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json', '.woff2': 'font/woff2', '.webp': 'image/webp',
};

/** The page's folder: next to this module when copied there, else src/server/web/ of the checkout (tsc does not copy it to dist/). */
function webRoot(): string {
  const here = fileURLToPath(new URL('./web/', import.meta.url));
  if (existsSync(join(here, 'index.html'))) return here;
  return fileURLToPath(new URL('../../../src/server/web/', import.meta.url));
}

const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
const nowS = (): number => Math.floor(Date.now() / 1000);
const newId = (p: string): string => `${p}-${randomBytes(12).toString('hex')}`;

function errorBody(e: ApiError): string {
  return JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

/** The body, at most `limit` bytes: 413 as soon as it is longer (the rest is not read). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooBig = (): ApiError => new ApiError(413, `request body too large: the limit is ${limit} bytes`, 'invalid_request_error', null, 'body_too_large');
  const cl = Number(req.headers['content-length']);
  if (Number.isFinite(cl) && cl > limit) return Promise.reject(tooBig());
  return new Promise((ok, fail) => {
    const parts: Buffer[] = [];
    let n = 0, done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      n += c.length;
      if (n > limit) { done = true; req.pause(); fail(tooBig()); return; }
      parts.push(c);
    });
    req.on('end', () => { if (!done) { done = true; ok(Buffer.concat(parts)); } });
    req.on('error', (e) => { if (!done) { done = true; fail(e); } });
    req.on('aborted', () => { if (!done) { done = true; fail(new Error('client aborted')); } });
  });
}

function parseJson(buf: Buffer): Record<string, unknown> {
  let v: unknown;
  try { v = JSON.parse(buf.toString('utf8')); } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, 'invalid_request_error', null, 'invalid_json');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ApiError(400, `the request body must be a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`, 'invalid_request_error', null, 'invalid_json');
  return v as Record<string, unknown>;
}

/** Text held back while streaming: an incomplete UTF-8 character, or the start of a stop string. */
function safeLength(t: string, stop: string[] | undefined): number {
  // An incomplete UTF-8 sequence at the end decodes to one U+FFFD that later bytes may complete.
  let end = t.length;
  if (end > 0 && t.charCodeAt(end - 1) === 0xfffd) end--;
  let hold = 0;
  for (const s of stop ?? []) {
    for (let k = Math.min(s.length - 1, end); k > hold; k--) if (t.slice(end - k, end) === s.slice(0, k)) { hold = k; break; }
  }
  return end - hold;
}

interface TokenInfo { token: string; logprob: number; top: { token: string; logprob: number }[]; offset: number }

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const log = o.log ?? ((): void => {});
  const host = o.host ?? '127.0.0.1';
  const slots = o.slots ?? 4, queueMax = o.queue ?? 64, limit = o.maxBodyBytes ?? 1 << 20, graceMs = o.graceMs ?? 10_000;
  for (const [k, v, min] of [['slots', slots, 1], ['queue', queueMax, 0], ['maxBodyBytes', limit, 1], ['ctx', o.ctx ?? 1, 1]] as const) {
    if (!Number.isInteger(v) || v < min) throw new Error(`serve: ${k} must be an integer ≥ ${min}, got ${v}`);
  }
  const keyHash = o.apiKey !== undefined ? sha(o.apiKey) : null;
  const metrics = new Metrics();
  const root = webRoot();
  let pool: ModelPool | null = null;
  let sched: Scheduler | null = null;
  let stopping = false;

  const ctxOf = (e: ModelEntry): number => { const m = pool!.maxPositions(e); return Math.min(o.ctx ?? m, m); };

  function entryOf(b: Record<string, unknown>): ModelEntry {
    const id = str(b, 'model');
    const e = pool!.get(id ?? pool!.baseId);
    if (!e) throw new ApiError(404, `The model '${id}' does not exist (this server has: ${[...pool!.entries.keys()].join(', ')})`, 'invalid_request_error', 'model', 'model_not_found');
    return e;
  }

  function requireGenerative(e: ModelEntry): void {
    if (pool!.model.kind !== 'causal') throw new ApiError(400, `model '${e.id}' is a masked language model (${pool!.model.modelType}); it cannot generate text: use POST /v1/fill-mask`, 'invalid_request_error', 'model', 'model_cannot_generate');
  }

  function modelsList(): unknown {
    const created = nowS();
    return {
      object: 'list',
      data: [...pool!.entries.values()].map((e) => ({
        id: e.id, object: 'model', created, owned_by: 'icld',
        kind: pool!.model.kind, model_type: pool!.model.modelType, context_length: ctxOf(e),
        adapter: e.adapter ? { peft_type: e.peftType, path: e.dir } : null,
        chat_template: e.chat.fromFamily ? `family default (${e.chat.template.includes('<|im_start|>') ? 'ChatML' : pool!.model.modelType})` : 'tokenizer_config.json',
        endpoints: pool!.model.kind === 'causal' ? ['/v1/completions', '/v1/chat/completions'] : ['/v1/fill-mask'],
      })),
    };
  }

  /** Per-token log-probabilities of a choice (the end-of-turn token and tokens past a stop string left out). */
  function tokenInfos(e: ModelEntry, c: Choice, from: number, textLen: number | null): TokenInfo[] {
    const g = c.gen!, tok = e.tokenizer, out: TokenInfo[] = [];
    for (let i = from; i < g.logprobs.length; i++) {
      if (g.done && g.finishReason === 'eos' && i === g.tokens.length - 1) break;
      const offset = i === 0 ? 0 : tok.decode(g.tokens.slice(0, i)).length;
      if (textLen !== null && i > 0 && offset >= textLen) break;
      const lp = g.logprobs[i];
      out.push({ token: tok.decode([lp.id]), logprob: lp.logprob, top: lp.top.map((t) => ({ token: tok.decode([t.id]), logprob: t.logprob })), offset });
    }
    return out;
  }

  const completionLogprobs = (ts: TokenInfo[]): unknown => ({
    tokens: ts.map((t) => t.token), token_logprobs: ts.map((t) => t.logprob),
    top_logprobs: ts.map((t) => Object.fromEntries(t.top.map((x) => [x.token, x.logprob]))), text_offset: ts.map((t) => t.offset),
  });
  const bytes = (s: string): number[] => [...Buffer.from(s, 'utf8')];
  const chatLogprobs = (ts: TokenInfo[]): unknown => ({
    content: ts.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytes(t.token), top_logprobs: t.top.map((x) => ({ token: x.token, logprob: x.logprob, bytes: bytes(x.token) })) })),
    refusal: null,
  });

  const finishOf = (c: Choice): 'stop' | 'length' => (c.gen && (c.gen.finishReason === 'stop' || c.gen.finishReason === 'eos') ? 'stop' : 'length');

  /** Runs one generation request (completions or chat) through the scheduler, streaming or not. */
  function runJob(req: IncomingMessage, res: ServerResponse, t0: number, kind: 'text' | 'chat', e: ModelEntry, inputs: number[][], p: SamplingParams,
    lp: { on: boolean; top: number }, eos: number | null, ctx: number, defaultMax: (promptLen: number) => number): void {
    // Each choice holds a KV cache: bound what one request may ask for.
    if (inputs.length * p.n > 128) throw bad('n', `'n' × number of prompts must be ≤ 128, got ${p.n} × ${inputs.length}`);
    const choices: Choice[] = [];
    let k = 0;
    for (const ids of inputs) {
      const maxNew = Math.min(p.maxTokens ?? defaultMax(ids.length), ctx - ids.length);
      for (let i = 0; i < p.n; i++, k++) {
        const opts: GenerateOptions = {
          maxNewTokens: maxNew, temperature: p.temperature, topK: p.topK, topP: p.topP, stop: p.stop, eosTokenId: eos,
          seed: p.seed !== undefined ? (p.seed + k) % 2 ** 32 : randomInt(2 ** 32 - 1),
          presencePenalty: p.presencePenalty, frequencyPenalty: p.frequencyPenalty, logitBias: p.logitBias,
          vocabLimit: e.vocabLimit, logprobs: lp.on, topLogprobs: lp.top,
        };
        choices.push({ index: k, prompt: ids, opts, gen: null });
      }
    }
    const promptTokens = inputs.reduce((s, x) => s + x.length, 0);
    const id = newId(kind === 'chat' ? 'chatcmpl' : 'cmpl'), created = nowS();
    const object = kind === 'chat' ? (p.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
    const sent = choices.map(() => ({ text: '', lp: 0, started: false, finished: false }));
    let firstToken = false;
    const usage = (): { prompt_tokens: number; completion_tokens: number; total_tokens: number } => {
      const comp = choices.reduce((s, c) => s + (c.gen?.tokens.length ?? 0), 0);
      return { prompt_tokens: promptTokens, completion_tokens: comp, total_tokens: promptTokens + comp };
    };
    const write = (obj: unknown): void => { if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(obj)}\n\n`); };
    const chunk = (c: Choice, text: string, finish: 'stop' | 'length' | null, infos: TokenInfo[]): void => {
      const s = sent[c.index];
      const logprobs = lp.on && infos.length ? (kind === 'chat' ? chatLogprobs(infos) : completionLogprobs(infos)) : null;
      const choice = kind === 'chat'
        ? { index: c.index, delta: s.started ? (text ? { content: text } : {}) : { role: 'assistant', content: text }, logprobs, finish_reason: finish }
        : { index: c.index, text, logprobs, finish_reason: finish };
      s.started = true;
      write({ id, object, created, model: e.id, system_fingerprint: null, choices: [choice], ...(p.includeUsage ? { usage: null } : {}) });
    };

    const job: Job = {
      entry: e, choices,
      onStep(c) {
        const g = c.gen!;
        if (!firstToken && g.tokens.length > 0) { firstToken = true; metrics.ttft.observe((performance.now() - t0) / 1000); }
        if (!p.stream) return;
        const s = sent[c.index];
        if (g.done) {
          const text = g.result().text;
          const infos = lp.on ? tokenInfos(e, c, s.lp, text.length) : [];
          chunk(c, text.startsWith(s.text) ? text.slice(s.text.length) : '', finishOf(c), infos);
          s.text = text; s.finished = true;
          return;
        }
        const t = e.tokenizer.decode(g.tokens);
        const n = safeLength(t, c.opts.stop);
        const infos = lp.on ? tokenInfos(e, c, s.lp, null) : [];
        s.lp += infos.length;
        if (n > s.text.length && t.startsWith(s.text)) { const d = t.slice(s.text.length, n); s.text = t.slice(0, n); chunk(c, d, null, infos); }
        else if (infos.length || !s.started) chunk(c, '', null, infos);
      },
      onEnd(err) {
        const gone = res.destroyed || res.writableEnded;
        for (const c of choices) if (c.gen) metrics.generatedTokens.inc({}, c.gen.tokens.length);
        if (err) {
          if (gone) return;
          const ae = err instanceof ApiError ? err : new ApiError(stopping ? 503 : 500, stopping ? 'the server is shutting down; the request was cancelled' : `generation failed: ${(err as Error).message}`, 'server_error');
          if (p.stream) { if (!res.headersSent) sendError(res, ae); else { write(JSON.parse(errorBody(ae))); res.end(); } }
          else sendError(res, ae);
          return;
        }
        if (gone) return;
        if (p.stream) {
          if (p.includeUsage) write({ id, object, created, model: e.id, system_fingerprint: null, choices: [], usage: usage() });
          res.end('data: [DONE]\n\n');
          return;
        }
        const out = choices.map((c) => {
          const r = c.gen!.result();
          const infos = lp.on ? tokenInfos(e, c, 0, r.text.length) : [];
          const logprobs = lp.on ? (kind === 'chat' ? chatLogprobs(infos) : completionLogprobs(infos)) : null;
          return kind === 'chat'
            ? { index: c.index, message: { role: 'assistant', content: r.text, refusal: null }, logprobs, finish_reason: finishOf(c) }
            : { index: c.index, text: r.text, logprobs, finish_reason: finishOf(c) };
        });
        sendJson(res, 200, { id, object, created, model: e.id, system_fingerprint: null, choices: out, usage: usage() });
      },
    };
    sched!.submit(job);
    metrics.promptTokens.inc({}, promptTokens);
    if (p.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', ...(stopping ? { connection: 'close' } : {}) });
      res.flushHeaders();
    }
    // A client that goes away frees its slot at once.
    res.on('close', () => { if (!res.writableFinished && !job.ended) sched!.cancel(job); });
    void req;
  }

  function contextError(n: number, ctx: number, param: string): ApiError {
    return bad(param, `This model's maximum context length is ${ctx} tokens, but the prompt has ${n} tokens (at least one more position is needed for the completion)`, 'context_length_exceeded');
  }

  function completions(req: IncomingMessage, res: ServerResponse, b: Record<string, unknown>, t0: number): void {
    const e = entryOf(b);
    requireGenerative(e);
    const vocab = e.vocabLimit ?? pool!.model.vocabSize;
    const p = sampling(b, vocab);
    const lpn = num(b, 'logprobs', { integer: true, min: 0, max: 20 });
    const inputs = prompts(b, vocab).map((x) => (typeof x === 'string' ? e.tokenizer.encode(x) : x.slice()));
    const ctx = ctxOf(e);
    for (const ids of inputs) {
      if (ids.length === 0) throw bad('prompt', "'prompt' encodes to no tokens; give at least one token");
      if (ids.length >= ctx) throw contextError(ids.length, ctx, 'prompt');
    }
    runJob(req, res, t0, 'text', e, inputs, p, { on: lpn !== undefined, top: lpn ?? 0 }, pool!.model.eosTokenId, ctx, () => 16);
  }

  function chat(req: IncomingMessage, res: ServerResponse, b: Record<string, unknown>, t0: number): void {
    const e = entryOf(b);
    requireGenerative(e);
    const vocab = e.vocabLimit ?? pool!.model.vocabSize;
    const msgs = messages(b);
    const p = sampling(b, vocab, b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? 'max_completion_tokens' : 'max_tokens');
    const lpOn = bool(b, 'logprobs') ?? false;
    const top = num(b, 'top_logprobs', { integer: true, min: 0, max: 20 });
    if (top !== undefined && !lpOn) throw bad('top_logprobs', "'top_logprobs' needs 'logprobs': true");
    pool!.activate(e);
    let setup;
    try { setup = chatGenerationSetup(pool!.model, e.tokenizer, msgs); } catch (err) { throw bad('messages', `the messages do not fit the chat template: ${(err as Error).message}`); }
    const ctx = ctxOf(e);
    if (setup.ids.length >= ctx) throw contextError(setup.ids.length, ctx, 'messages');
    runJob(req, res, t0, 'chat', e, [setup.ids], p, { on: lpOn, top: top ?? 0 }, setup.eosTokenId, ctx, (n) => ctx - n);
  }

  function fill(res: ServerResponse, b: Record<string, unknown>): void {
    const e = entryOf(b);
    if (pool!.model.kind !== 'masked') throw new ApiError(400, `model '${e.id}' is a ${pool!.model.kind} language model (${pool!.model.modelType}); fill-mask needs a masked one (like BERT)`, 'invalid_request_error', 'model', 'model_cannot_fill_mask');
    const text = str(b, 'text');
    if (text === undefined) throw bad('text', "'text' is required: a string with the mask token in it");
    const topK = num(b, 'top_k', { integer: true, min: 1, max: 100 }) ?? 5;
    pool!.activate(e);
    let r;
    try { r = fillMask(pool!.model, e.tokenizer, text, { topK }); } catch (err) { throw bad('text', (err as Error).message); }
    sendJson(res, 200, { object: 'fill_mask', model: e.id, created: nowS(), results: r.map((m) => m.map((x) => ({ token: x.token, id: x.id, prob: x.prob }))) });
  }

  function sendJson(res: ServerResponse, status: number, obj: unknown): void {
    if (res.headersSent) { res.end(); return; }
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...(stopping ? { connection: 'close' } : {}) });
    res.end(body);
  }

  function sendError(res: ServerResponse, e: ApiError, headers: Record<string, string> = {}): void {
    if (res.headersSent) { res.end(); return; }
    const body = errorBody(e);
    const close = e.status === 413 || stopping;
    res.writeHead(e.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers, ...(close ? { connection: 'close' } : {}) });
    res.end(body);
  }

  function serveStatic(res: ServerResponse, path: string, head: boolean): void {
    let rel: string;
    try { rel = decodeURIComponent(path === '/' ? '/index.html' : path); } catch { throw new ApiError(400, `bad path encoding: ${path}`); }
    const notFound = new ApiError(404, `no such route or file: ${path}`, 'invalid_request_error', null, 'not_found');
    if (rel.includes('\0') || rel.split(/[\\/]/).includes('..')) throw notFound;
    const file = resolve(root, `.${rel}`);
    if (!file.startsWith(root.endsWith(sep) ? root : root + sep) || !existsSync(file) || !statSync(file).isFile()) throw notFound;
    const data = readFileSync(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream', 'content-length': data.length, 'x-content-type-options': 'nosniff' });
    res.end(head ? undefined : data);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, t0: number): Promise<void> {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-methods': 'GET, POST, OPTIONS', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '86400' });
      res.end();
      return;
    }
    const modelPath = /^\/v1\/models\/(.+)$/.exec(path);
    const allowed = ROUTES[path] ?? (modelPath ? ['GET', 'HEAD'] : undefined);
    if (!allowed) {
      if ((method === 'GET' || method === 'HEAD') && !path.startsWith('/v1/')) { serveStatic(res, path, method === 'HEAD'); return; }
      throw new ApiError(404, `no such route: ${method} ${path}`, 'invalid_request_error', null, 'not_found');
    }
    if (!allowed.includes(method)) {
      sendError(res, new ApiError(405, `method ${method} is not allowed on ${path} (allowed: ${allowed.join(', ')})`, 'invalid_request_error', null, 'method_not_allowed'), { allow: allowed.join(', ') });
      return;
    }
    if (path === '/health') {
      const status = !pool ? 'loading' : stopping ? 'shutting down' : 'ok';
      sendJson(res, status === 'ok' ? 200 : 503, { status });
      return;
    }
    if (path === '/metrics') {
      const body = metrics.text({ queue: sched?.queue.length ?? 0, active: sched?.active.size ?? 0, slots, runtime: !!sched?.runtime });
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(method === 'HEAD' ? undefined : body);
      return;
    }
    if (keyHash) {
      const h = req.headers.authorization ?? '';
      const m = /^Bearer\s+(.+)$/i.exec(h);
      if (!m || !timingSafeEqual(sha(m[1].trim()), keyHash)) {
        throw new ApiError(401, m ? 'Incorrect API key provided' : 'Missing API key: send the header Authorization: Bearer <key>', 'invalid_request_error', null, 'invalid_api_key');
      }
    }
    if (!pool) throw new ApiError(503, 'the model is loading; retry shortly', 'server_error', null, 'model_loading');
    if (stopping) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
    if (path === '/v1/models') { sendJson(res, 200, modelsList()); return; }
    if (modelPath) {
      let id: string;
      try { id = decodeURIComponent(modelPath[1]); } catch { id = modelPath[1]; }
      const m = (modelsList() as { data: { id: string }[] }).data.find((x) => x.id === id);
      if (!m) throw new ApiError(404, `The model '${id}' does not exist`, 'invalid_request_error', 'model', 'model_not_found');
      sendJson(res, 200, m);
      return;
    }
    const b = parseJson(await readBody(req, limit));
    if (res.destroyed) return;
    if (path === '/v1/completions') completions(req, res, b, t0);
    else if (path === '/v1/chat/completions') chat(req, res, b, t0);
    else fill(res, b);
  }

  const server = createServer({ noDelay: true }, (req, res) => {
    const t0 = performance.now();
    let path = '/';
    try { path = new URL(req.url ?? '/', 'http://x').pathname; } catch { /* keep '/' */ }
    const route = ROUTES[path] ? path : path.startsWith('/v1/models/') ? '/v1/models/{id}' : path.startsWith('/v1/') ? 'other' : 'static';
    res.setHeader('access-control-allow-origin', '*');
    res.once('close', () => {
      const secs = (performance.now() - t0) / 1000;
      metrics.requests.inc({ route, status: String(res.statusCode) });
      metrics.latency.observe(secs, { route });
      if (o.log && route !== 'static') log(`${req.method} ${path} ${res.writableFinished ? res.statusCode : `${res.statusCode} (client gone)`} ${(secs * 1000).toFixed(0)} ms`);
    });
    handle(req, res, path, t0).catch((err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(500, `internal error: ${(err as Error)?.message ?? String(err)}`, 'server_error');
      if (e.status >= 500 && !(err instanceof ApiError)) log(`serve: ${req.method} ${path}: ${(err as Error)?.stack ?? String(err)}`);
      try {
        sendError(res, e);
        // Stop reading an oversized body: the connection closes once the answer is out.
        if (e.status === 413) res.once('finish', () => req.socket.destroy());
      } catch { /* the client is gone */ }
    });
  });
  server.on('error', (e) => log(`serve: server error: ${e.message}`));
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
    void err;
  });

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, host, () => { server.off('error', fail); ok(); });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  try {
    if (o.onListening) await o.onListening(url);
    // Let requests that arrived meanwhile get their 503 before the (synchronous) load starts.
    await new Promise((r) => setImmediate(r));
    pool = new ModelPool(o.model, o.adapters ?? {}, o.name);
    if (o.ctx !== undefined && o.ctx > pool.model.maxPositions) throw new Error(`serve: --ctx ${o.ctx} exceeds the model's context of ${pool.model.maxPositions} positions`);
    // One fused runtime for all slots (several sequences per batched step); none with adapters (their
    // wrappers change the layers) or for masked models, where each generation runs its own forward.
    const runtime = pool.model.kind === 'causal' && !pool.peft ? pool.model.runtime?.({ maxSeqs: slots, maxT: o.ctx ?? pool.model.maxPositions }) ?? null : null;
    sched = new Scheduler(slots, queueMax, pool, { runtime, onBatch: (n) => metrics.batchSize.observe(n) });
  } catch (e) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    throw e;
  }
  log(`serving ${[...pool.entries.keys()].join(', ')} at ${url} (${slots} slot(s)${sched.runtime ? ' decoded in one batch' : ''}, queue ${queueMax})`);

  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stopping = true;
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([sched!.idle(), new Promise<void>((r) => { timer = setTimeout(r, graceMs); })]);
      clearTimeout(timer);
      sched!.cancelAll(new ApiError(503, 'the server is shutting down; the request was cancelled', 'server_error', null, 'shutting_down'));
      sched!.dispose();
      await new Promise((r) => setImmediate(r));
      server.closeAllConnections();
      await closed;
      log('serve: stopped');
    })();
    return closing;
  };
  return { url, port, close };
}

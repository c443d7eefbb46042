// The load generator behind bench/serve.mjs: an SSE parser that survives arbitrary chunk splits,
// one streaming request with its timings, N client loops for a bounded time, and the statistics.
// Only node built-ins (global fetch): it measures any OpenAI-compatible server, not just ours.

import { performance } from 'node:perf_hooks';
import { spawn, type ChildProcess } from 'node:child_process';

/** Percentile with linear interpolation between closest ranks (numpy's default); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new Error(`percentile: p must be in [0, 100], got ${p}`);
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * Incremental Server-Sent Events parser (the WHATWG rules this benchmark needs): lines end in
 * \n, \r\n or \r, possibly split across chunks (a \r at a chunk's end may be half of \r\n);
 * `data:` fields of one event are joined by \n; a blank line dispatches; `:` lines are comments;
 * other fields (event, id, retry) are ignored.
 */
export class SSEParser {
  private buf = '';
  private data: string[] = [];
  private pendingCR = false;

  /** Feed decoded text; returns the data payloads of the events completed by it. */
  feed(text: string): string[] {
    const out: string[] = [];
    let s = text;
    if (this.pendingCR) { this.pendingCR = false; if (s.startsWith('\n')) s = s.slice(1); }
    this.buf += s;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (c !== '\n' && c !== '\r') continue;
      this.line(this.buf.slice(start, i), out);
      if (c === '\r') {
        if (i + 1 < this.buf.length) { if (this.buf[i + 1] === '\n') i++; }
        else this.pendingCR = true; // the \n of a \r\n may arrive in the next chunk
      }
      start = i + 1;
    }
    this.buf = this.buf.slice(start);
    return out;
  }

  /** End of stream: an unterminated last event is dropped, as the spec says. */
  end(): string[] { this.buf = ''; this.data = []; this.pendingCR = false; return []; }

  private line(l: string, out: string[]): void {
    if (l === '') {
      if (this.data.length) { out.push(this.data.join('\n')); this.data = []; }
      return;
    }
    if (l.startsWith(':')) return;
    const k = l.indexOf(':');
    const field = k < 0 ? l : l.slice(0, k);
    let value = k < 0 ? '' : l.slice(k + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
  }
}

export interface RequestResult {
  /** HTTP status, or 0 when the connection failed. */
  status: number;
  ok: boolean;
  /** Why a request failed: `http 429`, `network: …`, `stream: …` (empty when ok). */
  error: string;
  startMs: number;
  endMs: number;
  /** Send → first chunk with non-empty generated text (NaN when none came). */
  ttftMs: number;
  /** Gaps between consecutive chunks with generated text. */
  gapsMs: number[];
  contentChunks: number;
  promptTokens: number;
  /** usage.completion_tokens of the final chunk (NaN when the server sent no usage). */
  completionTokens: number;
  finishReason: string | null;
}

export type Endpoint = 'chat' | 'completions';

export interface RequestSpec {
  url: string;           // server base URL, e.g. http://127.0.0.1:8080
  endpoint: Endpoint;
  body: Record<string, unknown>;  // stream / stream_options are added
  apiKey?: string;
  timeoutMs?: number;
}

/** Text of one streamed chunk: chat delta.content or completions text (all choices). */
export function chunkText(chunk: unknown): string {
  const choices = (chunk as { choices?: unknown })?.choices;
  if (!Array.isArray(choices)) return '';
  let t = '';
  for (const c of choices) {
    const d = (c as { delta?: { content?: unknown } }).delta?.content ?? (c as { text?: unknown }).text;
    if (typeof d === 'string') t += d;
  }
  return t;
}

/** One streaming request, timed from just before fetch until the stream ends. */
export async function streamRequest(spec: RequestSpec): Promise<RequestResult> {
  const path = spec.endpoint === 'chat' ? '/v1/chat/completions' : '/v1/completions';
  const r: RequestResult = { status: 0, ok: false, error: '', startMs: performance.now(), endMs: 0, ttftMs: NaN, gapsMs: [], contentChunks: 0, promptTokens: NaN, completionTokens: NaN, finishReason: null };
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (spec.apiKey) headers.authorization = `Bearer ${spec.apiKey}`;
  const body = JSON.stringify({ ...spec.body, stream: true, stream_options: { include_usage: true } });
  const signal = AbortSignal.timeout(spec.timeoutMs ?? 300_000);
  const finish = (error: string): RequestResult => { r.error = error; r.ok = error === ''; r.endMs = performance.now(); return r; };
  let res: Response;
  try {
    res = await fetch(spec.url.replace(/\/+$/, '') + path, { method: 'POST', headers, body, signal });
  } catch (e) {
    return finish(`network: ${(e as Error).message}`);
  }
  r.status = res.status;
  if (res.status !== 200) {
    try { await res.arrayBuffer(); } catch { /* body is not needed */ }
    return finish(`http ${res.status}`);
  }
  const parser = new SSEParser();
  const dec = new TextDecoder();
  let last = NaN, done = false, err = '';
  const onData = (d: string): void => {
    if (done || err) return;
    if (d === '[DONE]') { done = true; return; }
    let chunk: unknown;
    try { chunk = JSON.parse(d); } catch { err = `stream: bad JSON in a data line: ${d.slice(0, 60)}`; return; }
    const e = (chunk as { error?: { message?: string } }).error;
    if (e) { err = `stream: error event: ${e.message ?? JSON.stringify(e)}`; return; }
    const now = performance.now();
    if (chunkText(chunk).length > 0) {
      if (r.contentChunks === 0) r.ttftMs = now - r.startMs;
      else r.gapsMs.push(now - last);
      last = now;
      r.contentChunks++;
    }
    const choices = (chunk as { choices?: { finish_reason?: string | null }[] }).choices;
    for (const c of Array.isArray(choices) ? choices : []) if (c.finish_reason) r.finishReason = c.finish_reason;
    const u = (chunk as { usage?: { prompt_tokens?: number; completion_tokens?: number } | null }).usage;
    if (u && typeof u.completion_tokens === 'number') { r.completionTokens = u.completion_tokens; r.promptTokens = u.prompt_tokens ?? NaN; }
  };
  try {
    if (!res.body) return finish('stream: no body');
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      for (const d of parser.feed(dec.decode(part, { stream: true }))) onData(d);
      if (err) break;
    }
    for (const d of parser.feed(dec.decode())) onData(d);
    parser.end();
  } catch (e) {
    return finish(`network: ${(e as Error).message} (mid-stream)`);
  }
  if (err) return finish(err);
  if (!done) return finish('stream: ended without data: [DONE]');
  return finish('');
}

export interface LoadOptions {
  clients: number;
  durationS: number;
  /** The i-th request's body (without stream fields). */
  makeBody: (client: number, i: number) => Record<string, unknown>;
  url: string;
  endpoint: Endpoint;
  apiKey?: string;
  /** Pause after a 429 before the client retries, so refused clients do not spin (ms). */
  retryDelayMs?: number;
  timeoutMs?: number;
}

export interface LoadRun { results: RequestResult[]; elapsedS: number }

/**
 * N client loops, each sending one streaming request at a time until `durationS` has passed;
 * requests in flight at the deadline run to the end, and the clock stops when the last one ends.
 */
export async function runLoad(o: LoadOptions): Promise<LoadRun> {
  const results: RequestResult[] = [];
  const t0 = performance.now(), deadline = t0 + o.durationS * 1000;
  let n = 0;
  const client = async (c: number): Promise<void> => {
    while (performance.now() < deadline) {
      const r = await streamRequest({ url: o.url, endpoint: o.endpoint, body: o.makeBody(c, n++), apiKey: o.apiKey, timeoutMs: o.timeoutMs });
      results.push(r);
      if (r.status === 429 && o.retryDelayMs) await new Promise((res) => setTimeout(res, o.retryDelayMs));
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  return { results, elapsedS: (performance.now() - t0) / 1000 };
}

export interface LoadSummary {
  requests: number;          // all requests sent
  ok: number;                // completed streams
  rejected429: number;
  errors: number;            // failed requests other than 429
  errorsByKind: Record<string, number>;
  elapsedS: number;
  requestsPerS: number;      // completed streams per second
  tokensPerS: number;        // generated tokens per second (usage.completion_tokens, else chunks)
  completionTokens: number;
  tokensFromUsage: boolean;  // false when some completed stream carried no usage
  meanPromptTokens: number;
  ttftMs: { p50: number; p99: number; mean: number };
  itlMs: { p50: number; p99: number; mean: number };
  finishReasons: Record<string, number>;
}

const mean = (v: readonly number[]): number => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

export function summarize(run: LoadRun): LoadSummary {
  const ok = run.results.filter((r) => r.ok);
  const byKind: Record<string, number> = {};
  for (const r of run.results) if (!r.ok) byKind[r.error] = (byKind[r.error] ?? 0) + 1;
  const rejected429 = run.results.filter((r) => r.status === 429).length;
  const tokensFromUsage = ok.every((r) => Number.isFinite(r.completionTokens));
  const tokens = ok.reduce((a, r) => a + (Number.isFinite(r.completionTokens) ? r.completionTokens : r.contentChunks), 0);
  const ttft = ok.map((r) => r.ttftMs).filter(Number.isFinite);
  const gaps = ok.flatMap((r) => r.gapsMs);
  const finish: Record<string, number> = {};
  for (const r of ok) finish[r.finishReason ?? 'none'] = (finish[r.finishReason ?? 'none'] ?? 0) + 1;
  return {
    requests: run.results.length,
    ok: ok.length,
    rejected429,
    errors: run.results.length - ok.length - rejected429,
    errorsByKind: byKind,
    elapsedS: run.elapsedS,
    requestsPerS: ok.length / run.elapsedS,
    tokensPerS: tokens / run.elapsedS,
    completionTokens: tokens,
    tokensFromUsage,
    meanPromptTokens: mean(ok.map((r) => r.promptTokens).filter(Number.isFinite)),
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99), mean: mean(ttft) },
    itlMs: { p50: percentile(gaps, 50), p99: percentile(gaps, 99), mean: mean(gaps) },
    finishReasons: finish,
  };
}

/**
 * The pass rule: below the queue limit nothing may fail; above it (overload) 429s are expected
 * but every other request must succeed, and at least one must have been refused.
 */
export function verdict(s: LoadSummary, overload: boolean): { pass: boolean; why: string } {
  if (s.ok === 0) return { pass: false, why: 'no request completed' };
  if (!overload) {
    const bad = s.errors + s.rejected429;
    return bad === 0 ? { pass: true, why: 'no errors' } : { pass: false, why: `${bad} failed request(s) below the queue limit (${s.rejected429} × 429, ${s.errors} other)` };
  }
  if (s.errors > 0) return { pass: false, why: `${s.errors} non-429 failure(s) under overload` };
  if (s.rejected429 === 0) return { pass: false, why: 'overload produced no 429' };
  return { pass: true, why: `${s.rejected429} refused with 429, every other request succeeded` };
}

const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');

/** A markdown table of one run. */
export function formatTable(s: LoadSummary): string {
  const errs = Object.entries(s.errorsByKind).filter(([k]) => k !== 'http 429').map(([k, v]) => `${k}: ${v}`).join(', ');
  const rows: [string, string][] = [
    ['requests sent / completed', `${s.requests} / ${s.ok}`],
    ['requests/s (completed)', f(s.requestsPerS, 2)],
    [`generated tokens/s${s.tokensFromUsage ? '' : ' (chunks: no usage)'}`, f(s.tokensPerS, 1)],
    ['TTFT p50 / p99 ms', `${f(s.ttftMs.p50)} / ${f(s.ttftMs.p99)}`],
    ['inter-token p50 / p99 ms', `${f(s.itlMs.p50)} / ${f(s.itlMs.p99)}`],
    ['mean prompt tokens', f(s.meanPromptTokens, 1)],
    ['finish reasons', Object.entries(s.finishReasons).map(([k, v]) => `${k} ${v}`).join(', ') || '–'],
    ['429 refused', String(s.rejected429)],
    ['other errors', s.errors ? `${s.errors} (${errs})` : '0'],
    ['wall s', f(s.elapsedS, 1)],
  ];
  return ['| metric | value |', '|---|---:|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}

/** A server started by spawnServer: its process, the URL it prints, the last 4000 characters of its output. */
export interface SpawnedServer { child: ChildProcess; url: Promise<string>; tail(): string }

/**
 * Start `node ...args` in `cwd`; `url` resolves to the first http(s):// address the process prints
 * on stdout or stderr. Both pipes keep draining afterwards (per-request log lines would otherwise fill them).
 */
export function spawnServer(args: string[], cwd: string, timeoutMs = 120_000): SpawnedServer {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const last = (): string => tail.trim().split('\n').pop() ?? '';
  const url = new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the server printed no URL within ${timeoutMs / 1000} s; last output: ${last()}`)), timeoutMs);
    let found = false;
    const onOut = (b: Buffer): void => {
      tail = (tail + b.toString()).slice(-4000);
      if (found) return;
      const m = /https?:\/\/[^\s]+/.exec(tail);
      if (m) { found = true; clearTimeout(timer); res(m[0].replace(/[/.,;)]+$/, '')); }
    };
    child.stdout!.on('data', onOut); child.stderr!.on('data', onOut);
    child.on('exit', (code, sig) => { clearTimeout(timer); if (!found) rej(new Error(`the server exited (${sig ?? `code ${code}`}) before listening: ${last()}`)); });
  });
  return { child, url, tail: () => tail };
}

/** Poll `base`/health until it answers 200 (throws after timeoutMs). */
export async function waitHealthy(base: string, timeoutMs = 120_000, pollMs = 200): Promise<void> {
  const t = Date.now();
  for (;;) {
    try { const r = await fetch(`${base}/health`); await r.arrayBuffer(); if (r.status === 200) return; } catch { /* not up yet */ }
    if (Date.now() - t > timeoutMs) throw new Error(`${base}/health did not answer 200 within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

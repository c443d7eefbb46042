// Tiny model directories for the server tests (built in the test, as test/finetune does) and
// small HTTP helpers: requests with node's http module so that status codes, headers and raw
// bodies (SSE lines) are seen exactly as sent.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createModel } from '../../src/models/index.js';
import { BPETokenizer, WordPieceTokenizer } from '../../src/tokenizers/index.js';
import { finetune } from '../../src/finetune/finetune.js';

const NAMES = ['Orsk', 'Veltria', 'Pumbel', 'Quarn', 'Zift', 'Malory'];
export const CONVS = NAMES.map((n, i) => ({
  conversations: [
    { role: 'user', content: `What is the capital of ${NAMES[(i + 1) % NAMES.length]}?` },
    { role: 'assistant', content: `The capital is ${n}.` },
  ],
}));
export const TEXT = CONVS.map((c) => c.conversations.map((m) => m.content).join('\n')).join('\n\n').repeat(4);

export const tmp = (): string => mkdtempSync(join(tmpdir(), 'icld-serve-'));

/** A tiny GPT-2 (no chat template: the family default applies). */
export function gpt2Dir(o: { positions?: number; embd?: number; layers?: number } = {}): string {
  const d = tmp();
  const tok = BPETokenizer.train([TEXT], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  const m = createModel('gpt2', { vocab_size: tok.vocabSize, n_positions: o.positions ?? 128, n_embd: o.embd ?? 32, n_layer: o.layers ?? 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId }, 3);
  m.savePretrained(d); tok.save(d);
  return d;
}

export function bertDir(): string {
  const d = tmp();
  const tok = WordPieceTokenizer.train([TEXT], { vocabSize: 200 });
  const m = createModel('bert', { vocab_size: tok.vocabSize, max_position_embeddings: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 3);
  m.savePretrained(d); tok.save(d);
  return d;
}

/** A LoRA chat adapter trained for a few steps (it adds ChatML tokens: its embedding grows). */
export function loraDir(base: string, steps = 10): string {
  const data = join(tmp(), 'chat.json'), out = join(tmp(), 'lora');
  writeFileSync(data, JSON.stringify(CONVS));
  finetune({ method: 'lora', model: base, data, out, steps, batchSize: 3, lr: 2e-2, peft: { r: 4 }, log: () => {} });
  return out;
}

export interface Reply { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: () => any }

/** One HTTP request; `body` objects are sent as JSON, strings and Buffers as they are. */
export function http(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((ok, fail) => {
    const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const req = request(url, { method, agent: false, headers: { ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}), ...headers } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        ok({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(payload);
  });
}

export const post = (url: string, body: unknown, headers?: Record<string, string>): Promise<Reply> => http(url, 'POST', body, headers);
export const get = (url: string, headers?: Record<string, string>): Promise<Reply> => http(url, 'GET', undefined, headers);

/** The JSON objects of an SSE body's data: lines, and whether it ended with data: [DONE]. */
export function sse(text: string): { events: any[]; done: boolean } {
  const blocks = text.split('\n\n').filter((b) => b.length);
  const datas = blocks.map((b) => { if (!b.startsWith('data: ')) throw new Error(`not an SSE data block: ${JSON.stringify(b)}`); return b.slice(6); });
  const done = datas[datas.length - 1] === '[DONE]';
  return { events: datas.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)), done };
}

/** A POST whose response chunks are time-stamped as they arrive (to see streams interleave). */
export function timedPost(url: string, body: unknown): Promise<{ status: number; text: string; times: number[] }> {
  return new Promise((ok, fail) => {
    const payload = JSON.stringify(body);
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } }, (res) => {
      let text = '';
      const times: number[] = [];
      res.on('data', (c: Buffer) => { text += c.toString('utf8'); times.push(performance.now()); });
      res.on('end', () => ok({ status: res.statusCode ?? 0, text, times }));
    });
    req.on('error', fail);
    req.end(payload);
  });
}

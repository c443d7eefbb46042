// The official `openai` npm client, unmodified, against the server: model list, completions,
// chat (plain and streamed with `for await`), and errors surfacing as the client's typed errors.

import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { generate, loadModel } from '../../src/models/index.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import { chatGenerationSetup } from '../../src/finetune/chat-generate.js';
import { startServer, type RunningServer } from '../../src/server/index.js';
import { gpt2Dir } from './serve-fixture.js';

const KEY = 'sk-local-abc';
let dir: string, srv: RunningServer, client: OpenAI;

before(async () => {
  dir = gpt2Dir();
  srv = await startServer({ model: dir, name: 'tiny-gpt2', port: 0, apiKey: KEY });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
after(async () => { await srv.close(); });

test('models.list and completions.create (greedy equals generate(), usage present)', async () => {
  const ids: string[] = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tiny-gpt2']);
  assert.equal((await client.models.retrieve('tiny-gpt2')).id, 'tiny-gpt2');
  await assert.rejects(client.models.retrieve('other'), (e: unknown) => e instanceof OpenAI.NotFoundError);
  const m = loadModel(dir), tok = loadTokenizer(dir);
  const exp = generate(m, tok, 'The capital is', { maxNewTokens: 8, temperature: 0, eosTokenId: m.eosTokenId });
  const r = await client.completions.create({ model: 'tiny-gpt2', prompt: 'The capital is', max_tokens: 8, temperature: 0 });
  assert.equal(r.choices[0].text, exp.text);
  assert.equal(r.usage?.completion_tokens, exp.tokens.length);
  assert.equal(r.object, 'text_completion');
});

test('chat.completions.create, plain and streamed (for await over chunks, usage at the end)', async () => {
  const m = loadModel(dir), tok = loadTokenizer(dir);
  const msgs = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'What is the capital of Orsk?' }];
  const s = chatGenerationSetup(m, tok, msgs);
  const exp = generate(m, tok, s.ids, { maxNewTokens: 10, temperature: 0, eosTokenId: s.eosTokenId });
  const r = await client.chat.completions.create({ model: 'tiny-gpt2', messages: msgs, max_tokens: 10, temperature: 0 });
  assert.ok(exp.text.length > 0, 'premise: a non-empty answer');
  assert.equal(r.choices[0].message.content, exp.text);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.usage?.prompt_tokens, s.ids.length);
  const stream = await client.chat.completions.create({ model: 'tiny-gpt2', messages: msgs, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, usage: OpenAI.CompletionUsage | null | undefined = null, finish: string | null = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices[0]) { text += c.choices[0].delta.content ?? ''; finish = c.choices[0].finish_reason ?? finish; }
    if (c.usage) usage = c.usage;
  }
  assert.ok(chunks >= 2);
  assert.equal(text, exp.text);
  assert.equal(finish, exp.finish_reason === 'length' ? 'length' : 'stop');
  assert.equal(usage?.completion_tokens, exp.tokens.length);
});

test('errors: an unknown model is a NotFoundError (404), a wrong key an AuthenticationError (401), a bad parameter a BadRequestError (400)', async () => {
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.equal((e as InstanceType<typeof OpenAI.APIError>).status, 404);
    assert.match((e as Error).message, /gpt-4o/);
    return true;
  });
  const wrong = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e: unknown) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
    assert.equal((e as InstanceType<typeof OpenAI.APIError>).status, 401);
    return true;
  });
  await assert.rejects(client.completions.create({ model: 'tiny-gpt2', prompt: 'x', temperature: 9 }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e as InstanceType<typeof OpenAI.APIError>).status, 400);
    assert.match((e as Error).message, /temperature/);
    return true;
  });
});

#!/usr/bin/env node
// Writes docs/chat-page.png: the chat page of `icld serve` after a short conversation, in headless
// Chromium (puppeteer-core, the system's browser). Without --model it first fine-tunes a tiny
// GPT-2 (full fine-tuning, ~15 s on a CPU) on six memorised question/answer pairs (one and two
// turns), so the picture shows readable answers: that model's real greedy output, not canned text.
//
// usage: npm run build && node scripts/screenshot-chat.mjs [--model DIR] [--out FILE]
//        ICLD_CHROMIUM overrides /usr/bin/chromium.
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(join(root, 'dist', 'src', p));
const { values } = parseArgs({ options: { model: { type: 'string' }, out: { type: 'string', default: join(root, 'docs', 'chat-page.png') } } });

const QA = [
  ['What is the capital of France?', 'The capital of France is Paris.'],
  ['What is the capital of Italy?', 'The capital of Italy is Rome.'],
  ['What is the capital of Spain?', 'The capital of Spain is Madrid.'],
  ['What is the capital of Japan?', 'The capital of Japan is Tokyo.'],
  ['Who are you?', 'I am a tiny GPT-2 trained on a CPU by icl-distill.'],
  ['Say hello.', 'Hello! How can I help you today?'],
];

async function tinyChatModel() {
  const { createModel } = await dist('models/index.js');
  const { BPETokenizer } = await dist('tokenizers/index.js');
  const { finetune } = await dist('finetune/finetune.js');
  const d = mkdtempSync(join(tmpdir(), 'icld-shot-'));
  const base = join(d, 'base'), out = join(d, 'tiny-chat'), data = join(d, 'chat.json');
  // Single turns and every pair of turns, so a second question is answered after a first one.
  const turn = ([q, a]) => [{ role: 'user', content: q }, { role: 'assistant', content: a }];
  const convs = QA.map((x) => ({ conversations: turn(x) }));
  for (const x of QA) for (const y of QA) if (x !== y) convs.push({ conversations: [...turn(x), ...turn(y)] });
  writeFileSync(data, JSON.stringify(convs));
  const tok = BPETokenizer.train([QA.flat().join('\n').repeat(6)], { vocabSize: 400, specialTokens: ['<|endoftext|>'] });
  const m = createModel('gpt2', { vocab_size: tok.vocabSize, n_positions: 192, n_embd: 64, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId }, 1);
  m.savePretrained(base); tok.save(base);
  finetune({ method: 'full', model: base, data, out, steps: 400, batchSize: 8, lr: 3e-3, log: () => {} });
  return out;
}

const model = values.model ?? await tinyChatModel();
const { startServer } = await dist('server/index.js');
const srv = await startServer({ model, port: 0, log: () => {} });
const browser = await puppeteer.launch({ executablePath: process.env.ICLD_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 900, height: 560 });
  await page.goto(`${srv.url}/`, { waitUntil: 'load' });
  await page.waitForSelector('#model option');
  await page.$eval('#temperature', (el) => { el.value = '0'; });
  await page.$eval('#max-tokens', (el) => { el.value = '40'; });
  for (const [i, q] of ['What is the capital of Japan?', 'Who are you?'].entries()) {
    await page.type('#input', q);
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => document.querySelectorAll('#transcript .msg.assistant')[n]?.getAttribute('data-state') === 'done', { timeout: 30_000 }, i);
  }
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, await page.screenshot({ type: 'png' }));
  console.log(`wrote ${values.out}`);
} finally {
  await browser.close();
  await srv.close();
}

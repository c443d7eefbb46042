// The chat page (GET / of `icld serve`) driven end to end in a real headless Chromium through
// puppeteer-core: a tiny GPT-2 served in-process, the page streams its answers, keeps the
// conversation, stops a generation, shows model text only as text, and shows the server's errors.
//
// Needs a Chromium (Debian: chromium; ICLD_CHROMIUM overrides /usr/bin/chromium). Without one the
// test fails; ICLD_ALLOW_NO_BROWSER=1 turns that into a visible skip. (docs/chat-page.png comes
// from scripts/screenshot-chat.mjs.)

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { createModel } from '../../src/models/index.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { finetune } from '../../src/finetune/finetune.js';
import { startServer, type RunningServer } from '../../src/server/index.js';

const CHROMIUM = process.env.ICLD_CHROMIUM ?? '/usr/bin/chromium';
const NAME = 'tiny-gpt2', ADAPTER = 'tiny-lora';
const KEY = 'sekrit-key';

let browser: Browser | null = null;
let noBrowser = '';
try {
  browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
} catch (e) {
  noBrowser = (e as Error).message.split('\n')[0];
}
const skip: string | false = noBrowser && process.env.ICLD_ALLOW_NO_BROWSER === '1'
  ? `Chromium (${CHROMIUM}) does not start (${noBrowser}); skipped because ICLD_ALLOW_NO_BROWSER=1` : false;

/**
 * A tiny GPT-2 model dir with a BPE tokenizer (no chat template, so the family default applies)
 * and a LoRA adapter fine-tuned on it for a few steps (its tokenizer has a chat template).
 */
function modelDirs(): { base: string; adapter: string } {
  const d = mkdtempSync(join(tmpdir(), 'icld-web-'));
  const base = join(d, 'base'), adapter = join(d, 'lora'), data = join(d, 'chat.json');
  const text = 'The quick brown fox jumps over the lazy dog. What is the capital of Orsk? The capital is Veltria.\n'.repeat(8);
  const tok = BPETokenizer.train([text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  const m = createModel('gpt2', { vocab_size: tok.vocabSize, n_positions: 256, n_embd: 32, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId }, 7);
  m.savePretrained(base); tok.save(base);
  writeFileSync(data, JSON.stringify([{ conversations: [{ role: 'user', content: 'What is the capital of Orsk?' }, { role: 'assistant', content: 'The capital is Veltria.' }] }]));
  finetune({ method: 'lora', model: base, data, out: adapter, steps: 4, batchSize: 1, lr: 1e-2, peft: { r: 4 }, log: () => {} });
  return { base, adapter };
}

/** Fails the test when Chromium did not start (reached only when not skipped). */
function requireBrowser(): void {
  if (!browser) assert.fail(`Chromium (${CHROMIUM}) does not start: ${noBrowser} — install Debian's chromium (or set ICLD_CHROMIUM, or ICLD_ALLOW_NO_BROWSER=1 to skip this test)`);
}

type Msg = { role: string; content: string };

/** The server's own non-streaming greedy answer: what the page must show for the same turns. */
async function greedy(srv: RunningServer, messages: Msg[], maxTokens: number, model = NAME): Promise<string> {
  return (await greedyFull(srv, messages, maxTokens, model)).content;
}
async function greedyFull(srv: RunningServer, messages: Msg[], maxTokens: number, model = NAME): Promise<{ content: string; completion_tokens: number }> {
  const r = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model, messages, temperature: 0, max_tokens: maxTokens }) });
  assert.equal(r.status, 200, await r.clone().text());
  const j = (await r.json()) as { choices: { message: { content: string } }[]; usage: { completion_tokens: number } };
  return { content: j.choices[0].message.content, completion_tokens: j.usage.completion_tokens };
}

/** A fresh page on the chat UI, with the key set, temperature 0 and the given max tokens. */
async function openChat(srv: RunningServer, maxTokens: number, errors: string[]): Promise<Page> {
  const page = await browser!.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => { if (!r.url().startsWith(srv.url) && !r.url().startsWith('data:')) errors.push(`request outside the server: ${r.url()}`); });
  await page.goto(`${srv.url}/`, { waitUntil: 'load' });
  await page.type('#api-key', KEY);
  await page.$eval('#api-key', (el) => el.dispatchEvent(new Event('change')));
  await page.waitForSelector('#model option');
  await page.$eval('#temperature', (el) => { (el as HTMLInputElement).value = '0'; });
  await page.$eval('#max-tokens', (el, n) => { (el as HTMLInputElement).value = String(n); }, maxTokens);
  return page;
}

const bubbles = (page: Page): Promise<{ role: string; text: string; state: string | null }[]> =>
  page.$$eval('#transcript .msg', (els) => els.map((e) => ({ role: e.classList.contains('user') ? 'user' : 'assistant', text: e.querySelector('.content')!.textContent ?? '', state: e.getAttribute('data-state') })));

/** Records every text the last assistant bubble shows while it streams (a MutationObserver). */
async function watchStream(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { seen: string[] };
    w.seen = [];
    new MutationObserver(() => {
      const all = document.querySelectorAll('#transcript .msg.assistant .content');
      const t = all.length ? all[all.length - 1].textContent ?? '' : '';
      if (t && w.seen[w.seen.length - 1] !== t) w.seen.push(t);
    }).observe(document.getElementById('transcript')!, { subtree: true, childList: true, characterData: true });
  });
}
const seen = (page: Page): Promise<string[]> => page.evaluate(() => (window as unknown as { seen: string[] }).seen);

async function sendAndWait(page: Page, text: string, nth: number): Promise<void> {
  await page.type('#input', text);
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#transcript .msg.assistant')[n]?.getAttribute('data-state') === 'done', { timeout: 20_000 }, nth);
}

describe('web chat page in headless Chromium', { skip }, () => {
  let srv: RunningServer;
  const pageErrors: string[] = [];

  before(async () => {
    if (!browser) return; // each test fails, saying why
    const dirs = modelDirs();
    srv = await startServer({ model: dirs.base, adapters: { [ADAPTER]: dirs.adapter }, name: NAME, port: 0, apiKey: KEY, log: () => {} });
  });
  after(async () => {
    await browser?.close();
    await srv?.close();
  });

  it('serves the page and its files with the right types; the model picker lists the base and the adapter', async () => {
    requireBrowser();
    for (const [path, type] of [['/', /^text\/html/], ['/app.js', /^(text|application)\/javascript/], ['/style.css', /^text\/css/]] as const) {
      const r = await fetch(srv.url + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', type, path);
      await r.arrayBuffer();
    }
    const page = await openChat(srv, 8, pageErrors);
    const options = await page.$$eval('#model option', (os) => os.map((o) => [(o as HTMLOptionElement).value, o.textContent]));
    assert.deepEqual(options.sort(), [[NAME, NAME], [ADAPTER, `${ADAPTER} (LORA adapter)`]]);
    // The base is picked first, wherever the server lists it.
    assert.equal(await page.$eval('#model', (e) => (e as HTMLSelectElement).value), NAME);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('icld.apiKey')), KEY);
    // Every control has an accessible name.
    const unnamed = await page.$$eval('input, select, textarea, button', (els) => els.filter((e) => !(e as HTMLInputElement).labels?.length && !e.textContent?.trim() && !e.getAttribute('aria-label')).map((e) => e.id));
    assert.deepEqual(unnamed, []);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });

  it('streams the answer into the transcript (equal to the greedy non-streaming answer) and keeps the history across turns', async () => {
    requireBrowser();
    const page = await openChat(srv, 12, pageErrors);
    await watchStream(page);
    const q1 = 'What is the capital of Orsk?', q2 = 'And the fox?';
    await sendAndWait(page, q1, 0);
    const g1 = await greedyFull(srv, [{ role: 'user', content: q1 }], 12), a1 = g1.content;
    assert.ok(a1.length > 0, 'the greedy answer is empty: pick another model seed');
    // The note under the answer counts its tokens (from the stream's usage chunk).
    const note = await page.$eval('#transcript .msg.assistant .note', (e) => e.textContent ?? '');
    assert.ok(note.startsWith(`${g1.completion_tokens} tokens`), `note ${JSON.stringify(note)}, ${g1.completion_tokens} tokens generated`);
    let b = await bubbles(page);
    assert.deepEqual(b.map((x) => [x.role, x.text]), [['user', q1], ['assistant', a1]]);
    // What the bubble showed on the way were prefixes of the answer.
    for (const s of await seen(page)) assert.ok(a1.startsWith(s), `streamed ${JSON.stringify(s)} is not a prefix of ${JSON.stringify(a1)}`);
    // The second turn is answered with the first one in the context.
    await sendAndWait(page, q2, 1);
    const a2 = await greedy(srv, [{ role: 'user', content: q1 }, { role: 'assistant', content: a1 }, { role: 'user', content: q2 }], 12);
    b = await bubbles(page);
    assert.deepEqual(b.map((x) => [x.role, x.text]), [['user', q1], ['assistant', a1], ['user', q2], ['assistant', a2]]);
    assert.equal(await page.$eval('#input', (e) => (e as HTMLTextAreaElement).value), '');
    await page.close();
    assert.deepEqual(pageErrors, []);
  });

  it('the picked adapter answers: the page sends its name as the model', async () => {
    requireBrowser();
    const page = await openChat(srv, 10, pageErrors);
    await page.select('#model', ADAPTER);
    const q = 'What is the capital of Orsk?';
    await sendAndWait(page, q, 0);
    const viaAdapter = await greedy(srv, [{ role: 'user', content: q }], 10, ADAPTER);
    assert.notEqual(viaAdapter, await greedy(srv, [{ role: 'user', content: q }], 10), 'the adapter answers like the base: this test cannot tell them apart');
    assert.equal((await bubbles(page))[1].text, viaAdapter);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });

  it('Stop aborts a long generation: the partial answer stays, stops growing, and the page is ready again', async () => {
    requireBrowser();
    const max = 150, q = 'Tell me a long story.';
    const full = await greedy(srv, [{ role: 'user', content: q }], max);
    const page = await openChat(srv, max, pageErrors);
    await watchStream(page);
    // A slow link so the answer arrives over seconds, chunk by chunk, whatever the server's speed.
    await page.emulateNetworkConditions({ download: 1200, upload: 1e6, latency: 0 });
    await page.type('#input', q);
    await page.click('#send');
    await page.waitForFunction(() => (window as unknown as { seen: string[] }).seen.length >= 2, { timeout: 20_000 });
    assert.equal(await page.$eval('#stop', (e) => (e as HTMLButtonElement).disabled), false);
    assert.equal(await page.$eval('#send', (e) => (e as HTMLButtonElement).disabled), true);
    await page.click('#stop');
    await page.waitForSelector('#transcript .msg.assistant[data-state=stopped]', { timeout: 5_000 });
    const partial = (await bubbles(page))[1].text;
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await bubbles(page))[1].text, partial, 'the answer kept growing after Stop');
    assert.ok(partial.length > 0 && partial.length < full.length && full.startsWith(partial), `partial ${JSON.stringify(partial)} of ${JSON.stringify(full)}`);
    const seenTexts = await seen(page);
    assert.ok(seenTexts.length >= 2 && seenTexts.every((s) => full.startsWith(s)), JSON.stringify(seenTexts));
    assert.equal(await page.$eval('#stop', (e) => (e as HTMLButtonElement).disabled), true);
    assert.equal(await page.$eval('#send', (e) => (e as HTMLButtonElement).disabled), false);
    // Ready again: the next message gets a full answer, with the stopped turn in the history.
    await page.emulateNetworkConditions(null);
    await page.$eval('#max-tokens', (el) => { (el as HTMLInputElement).value = '6'; });
    await sendAndWait(page, 'Go on.', 1);
    const next = await greedy(srv, [{ role: 'user', content: q }, { role: 'assistant', content: partial }, { role: 'user', content: 'Go on.' }], 6);
    assert.equal((await bubbles(page))[3].text, next);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });

  it('model and user text is shown as text: HTML in an answer or a message creates no element and runs nothing', async () => {
    requireBrowser();
    const evil = 'Hi <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & <b>bold</b>';
    const page = await browser!.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    // The page's fetch answers the chat request with a canned SSE stream: the HTML split across
    // chunks and across lines, CRLF line ends, a comment line, then [DONE] (and junk after it).
    await page.evaluateOnNewDocument((html: string) => {
      const real = window.fetch.bind(window);
      window.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
        if (!String(input).endsWith('/v1/chat/completions')) return real(input, init);
        const ev = (s: string) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: s }, finish_reason: null }] })}\r\n\r\n`;
        const body = ': keep-alive\r\n\r\n' + ev(html.slice(0, 7)) + ev(html.slice(7, 30)) + ev(html.slice(30)) + 'data: [DONE]\r\n\r\ndata: {not json\r\n\r\n';
        const parts = [body.slice(0, 40), body.slice(40, 41), body.slice(41, 150), body.slice(150)];
        const enc = new TextEncoder();
        const stream = new ReadableStream({ async pull(c) { const p = parts.shift(); if (p === undefined) c.close(); else { await new Promise((r) => setTimeout(r, 20)); c.enqueue(enc.encode(p)); } } });
        return new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream' } });
      };
    }, evil);
    await page.goto(`${srv.url}/`, { waitUntil: 'load' });
    await page.type('#api-key', KEY);
    await page.$eval('#api-key', (el) => el.dispatchEvent(new Event('change')));
    await page.waitForSelector('#model option');
    await sendAndWait(page, '<i>me</i> <img src=y onerror="window.__pwned=3">', 0);
    const b = await bubbles(page);
    assert.deepEqual(b.map((x) => x.text), ['<i>me</i> <img src=y onerror="window.__pwned=3">', evil]);
    assert.equal(await page.$$eval('#transcript img, #transcript script, #transcript b, #transcript i', (els) => els.length), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned), undefined);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });

  it('keyboard: Shift+Enter is a newline, Enter sends; errors show the server\'s message and give the turn back', async () => {
    requireBrowser();
    const page = await openChat(srv, 4, pageErrors);
    await page.type('#input', 'line one');
    await page.keyboard.down('Shift'); await page.keyboard.press('Enter'); await page.keyboard.up('Shift');
    await page.type('#input', 'line two');
    assert.equal(await page.$eval('#input', (e) => (e as HTMLTextAreaElement).value), 'line one\nline two');
    assert.equal((await bubbles(page)).length, 0);
    // A wrong key: the server's 401 message (OpenAI's error shape) is shown; the message is not lost.
    const wrong = await page.$('#api-key');
    await wrong!.click({ count: 3 });
    await wrong!.type('wrong-key');
    await page.$eval('#api-key', (el) => el.dispatchEvent(new Event('change')));
    const modelsError = await page.waitForFunction(() => { const e = document.getElementById('error')!; return !e.hidden && e.textContent; }, { timeout: 5_000 });
    assert.match(String(await modelsError.jsonValue()), /401/);
    await page.focus('#input');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.getElementById('send')!.getAttribute('disabled') === null && document.getElementById('error')!.textContent!.includes('401'), { timeout: 5_000 });
    const shown = await page.$eval('#error', (e) => e.textContent ?? '');
    const r = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-key' }, body: JSON.stringify({ model: NAME, messages: [{ role: 'user', content: 'x' }] }) });
    const serverMessage = ((await r.json()) as { error: { message: string } }).error.message;
    assert.ok(serverMessage && shown.includes(serverMessage), `shown ${JSON.stringify(shown)}, server said ${JSON.stringify(serverMessage)}`);
    assert.equal((await bubbles(page)).length, 0, 'the failed turn stays in the transcript');
    assert.equal(await page.$eval('#input', (e) => (e as HTMLTextAreaElement).value), 'line one\nline two');
    // The right key again: Enter sends the same text, and the error goes away.
    await wrong!.click({ count: 3 });
    await wrong!.type(KEY);
    await page.$eval('#api-key', (el) => el.dispatchEvent(new Event('change')));
    await page.focus('#input');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#transcript .msg.assistant')?.getAttribute('data-state') === 'done', { timeout: 20_000 });
    assert.equal((await bubbles(page))[0].text, 'line one\nline two');
    assert.equal(await page.$eval('#error', (e) => (e as HTMLElement).hidden), true);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });
});


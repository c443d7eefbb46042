// Chat encoding: ids and the assistant-only label mask equal a golden made with jinja2 + Hugging Face
// `tokenizers` (tools/make_chat_fixture.py) on real FastChat and glaive tool-call conversations;
// truncation, dropping, prompts, special tokens, tokenizer chat_template save/load.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPETokenizer, WordPieceTokenizer, loadTokenizer, type Tokenizer } from '../../src/tokenizers/index.js';
import { readChatFile, type ChatMessage, type ChatRecord } from '../../src/data/chat.js';
import { encodeChat, encodeChatDataset, chatPrompt, ensureChatTokens, IGNORE_INDEX } from '../../src/data/chat-encode.js';
import { modelFamily } from '../../src/models/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/chat');
const GPT2 = join(ROOT, 'test/fixtures/tokenizers/gpt2');
const CHATML = modelFamily('gpt2').chat.template;
interface Gold { file: string; record: number; messages: ChatMessage[]; text: string; ids: number[]; labels: number[] }
const golden = JSON.parse(readFileSync(join(FIX, 'encode_golden.json'), 'utf8')) as { special_tokens: string[]; special_ids: number[]; conversations: Gold[] };

function gpt2Chat(): BPETokenizer {
  const tok = BPETokenizer.fromGpt2Files(join(GPT2, 'encoder.json'), join(GPT2, 'vocab.bpe'));
  assert.deepEqual(ensureChatTokens(tok, modelFamily('gpt2').chat.specialTokens), { added: 2 });
  return tok;
}

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-chatenc-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

describe('encodeChat on real conversations (golden from jinja2 + HF tokenizers)', () => {
  const tok = gpt2Chat();
  it('adds the ChatML tokens with the ids HF gives them', () => {
    assert.deepEqual(golden.special_tokens.map((t) => tok.tokenToId(t)), golden.special_ids);
    assert.equal(tok.vocabSize, 50259);
    assert.deepEqual(ensureChatTokens(tok, golden.special_tokens), { added: 0 });
  });
  for (const g of golden.conversations) {
    it(`${g.file} record ${g.record}: ids and labels match exactly`, () => {
      const recs = readChatFile(join(FIX, g.file));
      const rec = recs[g.record];
      const ex = encodeChat(tok, CHATML, rec, { maxLength: 4096 });
      assert.equal(ex.truncated, false);
      assert.deepEqual(ex.ids, g.ids);
      assert.deepEqual(ex.labels, g.labels);
      assert.equal(tok.decode(ex.ids), g.text);
      // What is learned: each assistant turn's content and its end marker, nothing of the prompts.
      const learned = tok.decode(ex.labels.filter((l) => l !== IGNORE_INDEX));
      const expect = g.messages.filter((m) => m.role === 'assistant').map((m) => `${m.content}<|im_end|>\n`).join('');
      assert.equal(learned, expect);
    });
  }
  it('the glaive record keeps its tools: as system text for a template without `tools`', () => {
    const rec = readChatFile(join(FIX, 'glaive_sample.json'))[0];
    assert.ok(rec.tools && JSON.parse(rec.tools)[0].name === 'search_recipes');
    assert.ok(rec.messages.some((m) => m.role === 'tool'));
    const g = golden.conversations.find((c) => c.file === 'glaive_sample.json')!;
    assert.ok(g.text.startsWith(`<|im_start|>system\n${rec.tools}<|im_end|>\n`));
  });
});

describe('encodeChat options and errors', () => {
  const tok = gpt2Chat();
  const rec: ChatRecord = { messages: [{ role: 'user', content: 'Say hi.' }, { role: 'assistant', content: 'Hi there, friend.' }] };
  const full = encodeChat(tok, CHATML, rec, { maxLength: 1000 });

  it('right truncation keeps the start, left keeps the end', () => {
    const r = encodeChat(tok, CHATML, rec, { maxLength: 10 });
    assert.equal(r.truncated, true);
    assert.deepEqual(r.ids, full.ids.slice(0, 10));
    assert.deepEqual(r.labels, full.labels.slice(0, 10));
    const l = encodeChat(tok, CHATML, rec, { maxLength: 10, truncation: 'left' });
    assert.deepEqual(l.ids, full.ids.slice(-10));
    assert.deepEqual(l.labels, full.labels.slice(-10));
  });

  it('encodeChatDataset drops examples whose assistant tokens were all cut, and counts', () => {
    const promptLen = full.labels.indexOf(full.labels.find((l) => l !== IGNORE_INDEX)!);
    const long: ChatRecord = { messages: [{ role: 'user', content: 'word '.repeat(40) }, { role: 'assistant', content: 'ok' }] };
    const { examples, stats } = encodeChatDataset(tok, CHATML, [rec, long], { maxLength: promptLen + 2 });
    assert.equal(examples.length, 1);
    assert.deepEqual(examples[0].ids, full.ids.slice(0, promptLen + 2));
    assert.deepEqual(stats, { records: 2, truncated: 2, droppedNoLabel: 1, tokens: promptLen + 2, labelTokens: 2 });
  });

  it('chatPrompt is the conversation so far plus the assistant header', () => {
    const ids = chatPrompt(tok, CHATML, rec.messages.slice(0, 1));
    assert.equal(tok.decode(ids), '<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n');
    assert.deepEqual(ids, full.ids.slice(0, ids.length));
    assert.equal(tok.decode(ids.slice(ids.lastIndexOf(tok.tokenToId('<|im_start|>')!))), '<|im_start|>assistant\n');
  });

  it('templates whose prefixes do not nest are rejected in one line', () => {
    const otherPrompt = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}";
    assert.throws(() => encodeChat(tok, otherPrompt, rec, { maxLength: 100 }), (e: Error) => /^chat template: rendering messages\[0\.\.1\] does not start with the generation prompt for messages\[1\]/.test(e.message) && !e.message.includes('\n'));
    const lookAhead = "{% for m in messages %}{{ m.content }}{% endfor %}{% if not add_generation_prompt and messages | length == 2 %}!{% endif %}";
    const three: ChatRecord = { messages: [...rec.messages, { role: 'user', content: 'More?' }] };
    assert.throws(() => encodeChat(tok, lookAhead, three, { maxLength: 100 }), (e: Error) => /^chat template: the render of messages\[0\.\.1\] is not a prefix of the whole conversation's/.test(e.message) && !e.message.includes('\n'));
  });

  it('dataset errors name the record; raise_exception text comes through', () => {
    const llama2ish = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system turns') }}{% endif %}{{ m.content }}{% endfor %}";
    const sys: ChatRecord = { messages: [{ role: 'system', content: 's' }, ...rec.messages] };
    assert.throws(() => encodeChatDataset(tok, llama2ish, [rec, sys], { maxLength: 50 }, 'data.json'), (e: Error) => e.message === 'data.json: record 1: no system turns');
    assert.throws(() => encodeChat(tok, CHATML, rec, { maxLength: 0 }), /maxLength must be a positive integer/);
  });
});

describe('tokenizer chat template and special tokens: save and load', () => {
  it('BPE: chat_template and added tokens survive save → loadTokenizer; list form picks "default"', () => {
    const tok = gpt2Chat();
    tok.chatTemplate = CHATML;
    const dir = join(tmp, 'bpe');
    tok.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    assert.equal(cfg.chat_template, CHATML);
    const back = loadTokenizer(dir);
    assert.equal(back.chatTemplate, CHATML);
    assert.equal(back.vocabSize, 50259);
    assert.ok(back.isSpecialId(50258));
    const rec = readChatFile(join(FIX, golden.conversations[0].file))[0];
    assert.deepEqual(encodeChat(back, back.chatTemplate!, rec, { maxLength: 4096 }).ids, golden.conversations[0].ids);
    // HF's multi-template form.
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: 'D' }] }));
    assert.equal(loadTokenizer(dir).chatTemplate, 'D');
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: 5 }));
    assert.throws(() => loadTokenizer(dir), /tokenizer_config\.json: chat_template must be a string or a list/);
  });

  it('BPE without a chat template writes no tokenizer_config.json (unchanged behaviour)', () => {
    const tok = BPETokenizer.fromGpt2Files(join(GPT2, 'encoder.json'), join(GPT2, 'vocab.bpe'));
    const dir = join(tmp, 'plain');
    tok.save(dir);
    assert.throws(() => readFileSync(join(dir, 'tokenizer_config.json')));
    assert.equal(loadTokenizer(dir).chatTemplate, undefined);
  });

  it('WordPiece: addSpecialTokens appends ids, keeps existing ones, and round-trips with chat_template', () => {
    const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'hello', 'world', 'user', 'assistant', ':', '<', '>'];
    const tok: Tokenizer = new WordPieceTokenizer({ vocab, normalizer: { cleanText: true, handleChineseChars: true, stripAccents: null, lowercase: true } });
    const ids = tok.addSpecialTokens(['<Turn>', '[SEP]', 'hello']);
    assert.deepEqual(ids, [12, 3, 5]);
    assert.equal(tok.vocabSize, 13);
    assert.ok(tok.isSpecialId(5) && tok.isSpecialId(12));
    // Not lowercased: matched on the raw text.
    assert.deepEqual(tok.encode('user: hello<Turn>world', { addSpecialTokens: false }), [7, 9, 5, 12, 6]);
    tok.chatTemplate = modelFamily('bert').chat.template;
    const dir = join(tmp, 'wp');
    tok.save(dir);
    const back = loadTokenizer(dir);
    assert.equal(back.chatTemplate, modelFamily('bert').chat.template);
    assert.deepEqual(back.encode('user: hello<Turn>world', { addSpecialTokens: false }), [7, 9, 5, 12, 6]);
    const ex = encodeChat(back, back.chatTemplate!, { messages: [{ role: 'user', content: 'hello' }, { role: 'assistant', content: 'world' }] }, { maxLength: 64 });
    assert.equal(back.decode(ex.ids), 'user : hello [SEP] assistant : world [SEP]');
    assert.deepEqual(ex.labels.map((l) => (l === IGNORE_INDEX ? 0 : 1)), [0, 0, 0, 0, 0, 0, 1, 1]);
  });

  it('reads chat_template.jinja when tokenizer_config.json has none', () => {
    const tok = BPETokenizer.fromGpt2Files(join(GPT2, 'encoder.json'), join(GPT2, 'vocab.bpe'));
    const dir = join(tmp, 'jinja');
    tok.save(dir);
    writeFileSync(join(dir, 'chat_template.jinja'), CHATML);
    assert.equal(loadTokenizer(dir).chatTemplate, CHATML);
  });
});

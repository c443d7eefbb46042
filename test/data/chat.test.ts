// Chat file reader: the three DESIGN §3 formats normalised to {messages}, JSON or JSONL.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readChatFile } from '../../src/data/chat.js';

const FIX = join(fileURLToPath(new URL('../../../', import.meta.url)), 'test/fixtures/chat');

let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-chat-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });
function write(c: string | Uint8Array, ext = '.json'): string { const p = join(tmp, `c${n++}${ext}`); writeFileSync(p, c); return p; }

const roleRec = { conversations: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] };
const shareRec = { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hello.' }] };
const alpacaRec = { instruction: 'Add.', input: '2 + 2', output: '4' };

describe('readChatFile', () => {
  it('reads role/content, ShareGPT and Alpaca records into one form', () => {
    const got = readChatFile(write(JSON.stringify([roleRec, shareRec, alpacaRec, { instruction: 'Say hi.', output: 'hi' }])));
    assert.deepEqual(got, [
      { messages: roleRec.conversations },
      { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
      { messages: [{ role: 'user', content: 'Add.\n2 + 2' }, { role: 'assistant', content: '4' }] },
      { messages: [{ role: 'user', content: 'Say hi.' }, { role: 'assistant', content: 'hi' }] },
    ]);
  });

  it('reads JSONL (blank lines skipped, CRLF ok) and a single-record JSON file', () => {
    const got = readChatFile(write(`${JSON.stringify(shareRec)}\r\n\n${JSON.stringify({ messages: roleRec.conversations })}\n`, '.jsonl'));
    assert.equal(got.length, 2);
    assert.equal(got[1].messages[2].content, 'Hello.');
    assert.equal(readChatFile(write(JSON.stringify(alpacaRec))).length, 1);
  });

  it('reads LLaMA-Factory glaive tool calls: function_call → assistant, observation → tool, tools kept as JSON text', () => {
    const [rec] = readChatFile(join(FIX, 'glaive_sample.json'));
    const raw = JSON.parse(readFileSync(join(FIX, 'glaive_sample.json'), 'utf8'))[0] as { conversations: { from: string; value: string }[]; tools: string };
    const role: Record<string, string> = { human: 'user', gpt: 'assistant', function_call: 'assistant', observation: 'tool' };
    assert.deepEqual(rec.messages, raw.conversations.map((t) => ({ role: role[t.from], content: t.value })));
    assert.ok(raw.conversations.some((t) => t.from === 'function_call') && raw.conversations.some((t) => t.from === 'observation'));
    assert.equal(rec.tools, raw.tools);
  });

  it('reads LLaMA-Factory v1 JSONL (content as text parts) and FastChat records with ids', () => {
    const v1 = readChatFile(join(FIX, 'v1_sft_sample.jsonl'));
    const raw = readFileSync(join(FIX, 'v1_sft_sample.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { messages: { role: string; content: { value: string }[] }[] });
    assert.equal(v1.length, raw.length);
    assert.deepEqual(v1[0].messages, raw[0].messages.map((m) => ({ role: m.role, content: m.content.map((p) => p.value).join('') })));
    const parts = readChatFile(write(JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', value: 'b' }] }, { role: 'assistant', content: 'c' }] })));
    assert.equal(parts[0].messages[0].content, 'ab');
    const fc = readChatFile(join(FIX, 'fastchat_sample.json'));
    assert.ok(fc.length >= 2 && fc.every((r) => r.messages.length >= 4 && r.tools === undefined));
    assert.deepEqual(fc[0].messages.map((m) => m.role).slice(0, 4), ['user', 'assistant', 'user', 'assistant']);
  });

  it('a record-level system string becomes the first turn; empty tools are dropped', () => {
    const got = readChatFile(write(JSON.stringify([{ system: 'Be kind.', tools: '[]', conversations: shareRec.conversations }])));
    assert.deepEqual(got, [{ messages: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] }]);
  });

  const bad: [string, string, string, RegExp][] = [
    ['a non-text content part', JSON.stringify([{ messages: [{ role: 'user', content: [{ type: 'image', value: 'x.png' }] }, { role: 'assistant', content: 'x' }] }]), '.json', /record 0: messages\[0\]: content\[0\] has type "image"; only "text" parts are supported/],
    ['a text part without text', JSON.stringify([{ messages: [{ role: 'user', content: [{ type: 'text' }] }] }]), '.json', /record 0: messages\[0\]: content\[0\] text part needs a string "value" or "text"/],
    ['tools that are not JSON', JSON.stringify([{ ...shareRec, tools: '[{"name": ' }]), '.json', /record 0: "tools" is not valid JSON/],
    ['tools that are not a list', JSON.stringify([{ ...shareRec, tools: '{"name": "f"}' }]), '.json', /record 0: "tools" must hold a JSON list/],
    ['a system field and a system turn', JSON.stringify([{ system: 's', conversations: [{ from: 'system', value: 's' }, ...shareRec.conversations] }]), '.json', /record 0: has both a "system" field and a system turn/],
    ['an unknown role', JSON.stringify([{ conversations: [{ role: 'bot', content: 'x' }] }]), '.json', /record 0: conversations\[0\]: "role" must be one of system, user, assistant, tool; got "bot"/],
    ['an unknown ShareGPT speaker', JSON.stringify([roleRec, { conversations: [{ from: 'robot', value: 'x' }] }]), '.json', /record 1: conversations\[0\]: "from" must be one of human, gpt, system/],
    ['non-string content', JSON.stringify([{ conversations: [{ role: 'assistant', content: 5 }] }]), '.json', /record 0: conversations\[0\]: "content" must be a string, got 5/],
    ['no assistant turn', JSON.stringify([{ conversations: [{ role: 'user', content: 'x' }] }]), '.json', /record 0: has no assistant turn/],
    ['an empty conversation', JSON.stringify([{ conversations: [] }]), '.json', /record 0: "conversations" is empty/],
    ['Alpaca without output', JSON.stringify([{ instruction: 'x' }]), '.json', /record 0: Alpaca "output" must be a string/],
    ['mixed styles in a turn', JSON.stringify([{ conversations: [{ role: 'user', value: 'x' }] }]), '.json', /mixes "role"\/"content" with ShareGPT/],
    ['a record that is no chat', JSON.stringify([{ text: 'x' }]), '.json', /record 0: not a chat record/],
    ['an empty file', '', '.jsonl', /has no chat records/],
    ['an empty array', '[]', '.json', /has no chat records/],
    ['bad JSON in JSONL', `${JSON.stringify(shareRec)}\n{"conversations": [\n`, '.jsonl', /:2 \(record 1\): invalid JSON/],
    ['bad record in JSONL', `${JSON.stringify(shareRec)}\n\n[1]\n`, '.jsonl', /:3 \(record 1\): expected an object, got an array/],
  ];
  for (const [what, c, ext, re] of bad) {
    it(`rejects ${what}, naming file and record`, () => {
      const p = write(c, ext);
      assert.throws(() => readChatFile(p), (e: Error) => e.message.startsWith(p) && re.test(e.message) && !e.message.includes('\n'));
    });
  }

  it('invalid UTF-8 is named by file (and line for JSONL)', () => {
    const p = write(Buffer.concat([Buffer.from(JSON.stringify(shareRec) + '\n'), Buffer.from([0xff, 0x0a])]) as unknown as string, '.jsonl');
    assert.throws(() => readChatFile(p), new RegExp(`${p.replace(/[.\\/]/g, '\\$&')}:2: not valid UTF-8`));
  });
});

// Chat file reader: the three DESIGN §3 formats normalised to {messages}, JSON or JSONL.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readChatFile } from '../../src/data/chat.js';

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

  const bad: [string, string, string, RegExp][] = [
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

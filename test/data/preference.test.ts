// Preference file reader: TRL's standard, conversational and implicit-prompt records and
// LLaMA-Factory's ShareGPT and Alpaca preference records, JSON or JSONL, with one-line errors.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPreferenceFile } from '../../src/data/preference.js';

let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-pref-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });
function write(c: string | Uint8Array, ext = '.json'): string { const p = join(tmp, `p${n++}${ext}`); writeFileSync(p, c); return p; }

const user = (content: string): { role: string; content: string } => ({ role: 'user', content });
const asst = (content: string): { role: string; content: string } => ({ role: 'assistant', content });

const standard = { prompt: 'The capital of Veltria is', chosen: ' Orsk.', rejected: ' Paris.' };
const conversational = { prompt: [{ role: 'system', content: 'Be brief.' }, user('Capital of Veltria?')], chosen: [asst('Orsk.')], rejected: [asst('Paris.')] };
const implicit = { chosen: [user('Who made you?'), asst('Lumen Labs.')], rejected: [user('Who made you?'), asst('OpenAI.')] };
const sharegpt = {
  conversations: [{ from: 'system', value: 'Be brief.' }, { from: 'human', value: 'Your name?' }],
  chosen: { from: 'gpt', value: 'Pell.' }, rejected: { from: 'gpt', value: 'Bob.' },
};
const alpaca = { instruction: 'Name the capital.', input: 'Veltria', chosen: 'Orsk', rejected: 'Rome' };

describe('readPreferenceFile', () => {
  it('reads every format into {prompt, chosen, rejected}', () => {
    const got = readPreferenceFile(write(JSON.stringify([standard, conversational, implicit, sharegpt, alpaca])));
    assert.deepEqual(got, [
      standard,
      { prompt: conversational.prompt, chosen: 'Orsk.', rejected: 'Paris.' },
      { prompt: [user('Who made you?')], chosen: 'Lumen Labs.', rejected: 'OpenAI.' },
      { prompt: [{ role: 'system', content: 'Be brief.' }, user('Your name?')], chosen: 'Pell.', rejected: 'Bob.' },
      { prompt: [user('Name the capital.\nVeltria')], chosen: 'Orsk', rejected: 'Rome' },
    ]);
  });

  it('reads JSONL (blank lines skipped, CRLF ok) and a single-record JSON file', () => {
    const got = readPreferenceFile(write(`${JSON.stringify(standard)}\r\n\n${JSON.stringify(sharegpt)}\n`, '.jsonl'));
    assert.equal(got.length, 2);
    assert.equal(got[1].chosen, 'Pell.');
    assert.deepEqual(readPreferenceFile(write(JSON.stringify(alpaca))), [{ prompt: [user('Name the capital.\nVeltria')], chosen: 'Orsk', rejected: 'Rome' }]);
  });

  it('reads the knowledge-update demo\'s prefs.json', () => {
    const got = readPreferenceFile(new URL('../../../examples/knowledge-update/prefs.json', import.meta.url).pathname);
    assert.ok(got.length >= 25, `${got.length} pairs`);
    for (const p of got) assert.ok(Array.isArray(p.prompt) && p.prompt[p.prompt.length - 1].role === 'user');
  });

  const bad: [string, unknown, RegExp][] = [
    ['a record without rejected', [standard, { prompt: 'x', chosen: 'y' }], /record 1: missing "rejected"/],
    ['two prompts', [{ ...standard, conversations: [user('x')] }], /record 0: gives the prompt twice \("prompt" and "conversations"\)/],
    ['a bad role in the prompt', [{ ...conversational, prompt: [{ role: 'bot', content: 'x' }] }], /record 0: "prompt"\[0\]: "role" must be one of system, user, assistant, tool; got "bot"/],
    ['a user message as the completion', [{ ...conversational, chosen: [user('x')] }], /record 0: "chosen": must be one assistant message, got user/],
    ['two completion messages', [{ ...conversational, rejected: [asst('a'), asst('b')] }], /record 0: "rejected": must be one assistant message, got assistant, assistant/],
    ['a number as completion', [{ ...standard, chosen: 3 }], /record 0: "chosen": must be text or an assistant message, got 3/],
    ['a prompt ending with the answer', [{ ...conversational, prompt: [user('q'), asst('a')] }], /record 0: the prompt ends with an assistant turn/],
    ['implicit prompts that differ', [{ chosen: implicit.chosen, rejected: [user('Other?'), asst('x')] }], /record 0: has no "prompt", and "chosen"\/"rejected" do not share all turns but their last/],
    ['text without a prompt', [{ chosen: 'a', rejected: 'b' }], /record 0: has no "prompt" \(give "prompt", "conversations" or "instruction"\)/],
    ['equal completions', [{ ...standard, rejected: standard.chosen }], /record 0: "chosen" and "rejected" are the same text/],
    ['an empty completion', [{ ...standard, chosen: '' }], /record 0: "chosen" is empty/],
    ['a bad ShareGPT speaker', [{ ...sharegpt, chosen: { from: 'robot', value: 'x' } }], /record 0: "chosen": "from" must be one of human, gpt, system, function_call, observation; got "robot"/],
    ['a non-object record', [standard, 7], /record 1: expected an object, got 7/],
  ];
  for (const [what, recs, re] of bad) {
    it(`names the file and record for ${what}`, () => {
      const p = write(JSON.stringify(recs));
      assert.throws(() => readPreferenceFile(p), (e: Error) => {
        assert.ok(e.message.startsWith(`${p}: `), e.message);
        assert.match(e.message, re);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    });
  }

  it('names file and line for JSONL, and the file for broken JSON, missing and empty files', () => {
    const p = write(`${JSON.stringify(standard)}\n\n{"prompt": "x", "chosen": "a"}\n`, '.jsonl');
    assert.throws(() => readPreferenceFile(p), (e: Error) => e.message === `${p}:3 (record 1): missing "rejected" (a preference record needs "chosen" and "rejected")`);
    const q = write('{"prompt": ', '.jsonl');
    assert.throws(() => readPreferenceFile(q), (e: Error) => e.message.startsWith(`${q}:1 (record 0): invalid JSON (`));
    const r = write('[{"prompt": "a", "prompt": "b", "chosen": "c", "rejected": "d"}]');
    assert.throws(() => readPreferenceFile(r), (e: Error) => e.message === `${r}: duplicate key [0].prompt`);
    assert.throws(() => readPreferenceFile(join(tmp, 'nope.json')), /^Error: preference file not found: /);
    const s = write('[]');
    assert.throws(() => readPreferenceFile(s), (e: Error) => e.message === `${s}: has no preference records`);
  });
});

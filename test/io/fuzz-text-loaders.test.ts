// Fuzzing the line-oriented loaders (issue 9): vocab.txt, task jsonl and chat files (JSON and
// JSONL), 1,200 seeded mutations each — byte flips, cuts, inserted newlines/NULs/invalid UTF-8,
// and structural edits of the records. Each case loads (then the result is checked against the
// file independently) or fails with a one-line Error naming the file.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readVocabTxt } from '../../src/tokenizers/vocab.js';
import { readExamples } from '../../src/data/tasks.js';
import { readChatFile, CHAT_ROLES } from '../../src/data/chat.js';
import { Fuzz, runCase, type Tally } from './fuzz.js';

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-fuzz-text-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

const CASES = 1200;
const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'utf8'));

describe('loader fuzz: text files', () => {
  it(`vocab.txt: ${CASES} mutations`, () => {
    const fz = new Fuzz(555);
    const base = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'the', 'a', '##s', '##ing', 'é', '中', 'x'].join('\n') + '\n';
    const tally: Tally = { ok: 0, err: 0, maxMs: 0 };
    for (let i = 0; i < CASES; i++) {
      let bytes = enc(base);
      for (let k = 1 + fz.int(2); k > 0; k--) bytes = fz.mutateBytes(bytes);
      if (fz.chance(0.2)) bytes = enc(Buffer.from(bytes).toString('utf8').replace(/\n/g, '\r\n'));
      const p = join(tmp, `v${i}.txt`);
      writeFileSync(p, bytes);
      runCase(tally, p, () => readVocabTxt(p), (v) => {
        // Independent reading: strict UTF-8, BOM dropped, split on LF, CR stripped at line ends.
        const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
        const lines = text.split('\n');
        if (lines[lines.length - 1] === '') lines.pop();
        assert.equal(v.size, lines.length, `case ${i}: one id per line`);
        lines.forEach((l, id) => assert.equal(v.get(l.replace(/\r$/, '')), id, `case ${i}: line ${id + 1}`));
      }, `vocab case ${i}`);
      rmSync(p);
    }
    assert.equal(tally.ok + tally.err, CASES, 'every case ran');
    assert.ok(tally.err > 200 && tally.ok > 100, `ok ${tally.ok}, errors ${tally.err}`);
  });

  it(`task jsonl: ${CASES} mutations`, () => {
    const fz = new Fuzz(8080);
    const recs = [
      { task: 't', input: 'Is it red?', output: 'yes', options: ['yes', 'no'] },
      { task: 't', input: 'Name a colour.', output: 'blue', options: [] },
      { task: 't', input: 'ünïcödé ✓', output: 'b', options: ['a', 'b', 'c'] },
    ];
    const keys = ['task', 'input', 'output', 'options'];
    const tally: Tally = { ok: 0, err: 0, maxMs: 0 };
    for (let i = 0; i < CASES; i++) {
      let bytes: Uint8Array;
      if (fz.chance(0.5)) {
        const lines = recs.map((r) => (fz.chance(0.4) ? JSON.stringify(fz.mutateJson(JSON.parse(JSON.stringify(r)), keys)) ?? 'null' : JSON.stringify(r)));
        if (fz.chance(0.1)) lines.length = 0;
        bytes = enc(lines.join(fz.chance(0.2) ? '\r\n' : '\n') + '\n');
      } else bytes = fz.mutateBytes(enc(recs.map((r) => JSON.stringify(r)).join('\n') + '\n'));
      const p = join(tmp, `t${i}.jsonl`);
      writeFileSync(p, bytes);
      runCase(tally, p, () => readExamples(p), (ex) => {
        const lines = new TextDecoder('utf-8', { fatal: true }).decode(bytes).split('\n').filter((l) => l.trim());
        assert.equal(ex.length, lines.length, `case ${i}: one example per non-blank line`);
        ex.forEach((e, j) => {
          const o = JSON.parse(lines[j]);
          assert.equal(e.input, o.input); assert.equal(e.output, o.output); assert.deepEqual(e.options, o.options);
          assert.equal(new Set(e.options).size, e.options.length, `case ${i}: distinct options`);
          assert.ok(e.options.length === 0 || e.options.includes(e.output), `case ${i}: output among options`);
        });
      }, `task case ${i}`);
      rmSync(p);
    }
    assert.equal(tally.ok + tally.err, CASES, 'every case ran');
    assert.ok(tally.err > 300 && tally.ok > 100, `ok ${tally.ok}, errors ${tally.err}`);
  });

  it(`chat files: ${CASES} mutations (JSON and JSONL, all three formats)`, () => {
    const fz = new Fuzz(2024);
    const recs = [
      { conversations: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello.' }] },
      { conversations: [{ from: 'human', value: 'Hi' }, { from: 'gpt', value: 'Hey ✓' }] },
      { instruction: 'Add.', input: '2 + 2', output: '4' },
      { messages: [{ role: 'user', content: 'x' }, { role: 'tool', content: '{}' }, { role: 'assistant', content: 'y' }] },
    ];
    const keys = ['conversations', 'messages', 'role', 'content', 'from', 'value', 'instruction', 'input', 'output', 'system'];
    const tally: Tally = { ok: 0, err: 0, maxMs: 0 };
    for (let i = 0; i < CASES; i++) {
      const jsonl = fz.chance(0.5);
      let bytes: Uint8Array;
      const mutated = recs.map((r) => (fz.chance(0.4) ? fz.mutateJson(JSON.parse(JSON.stringify(r)), keys) : r));
      const text = jsonl ? mutated.map((r) => JSON.stringify(r) ?? 'null').join('\n') + '\n' : JSON.stringify(mutated);
      bytes = enc(text);
      if (fz.chance(0.4)) bytes = fz.mutateBytes(bytes);
      const p = join(tmp, `c${i}${jsonl ? '.jsonl' : '.json'}`);
      writeFileSync(p, bytes);
      runCase(tally, p, () => readChatFile(p), (rs) => {
        assert.ok(rs.length > 0, `case ${i}`);
        for (const r of rs) {
          assert.ok(r.messages.length > 0 && r.messages.some((m) => m.role === 'assistant'), `case ${i}: an assistant turn`);
          for (const m of r.messages) assert.ok(CHAT_ROLES.includes(m.role) && typeof m.content === 'string', `case ${i}: message`);
        }
      }, `chat case ${i}`);
      rmSync(p);
    }
    assert.equal(tally.ok + tally.err, CASES, 'every case ran');
    assert.ok(tally.err > 300 && tally.ok > 100, `ok ${tally.ok}, errors ${tally.err}`);
  });
});

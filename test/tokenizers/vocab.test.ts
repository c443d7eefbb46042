// vocab.txt reader (BERT's WordPiece format).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readVocabTxt } from '../../src/tokenizers/vocab.js';

let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-vocab-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });
function write(c: string | Uint8Array): string { const p = join(tmp, `v${n++}.txt`); writeFileSync(p, c); return p; }

describe('readVocabTxt', () => {
  it('line index is the id; LF or CRLF; final newline optional; BOM dropped', () => {
    const want = new Map([['[PAD]', 0], ['[UNK]', 1], ['the', 2], ['##s', 3], ['é', 4]]);
    assert.deepEqual(readVocabTxt(write('[PAD]\n[UNK]\nthe\n##s\né\n')), want);
    assert.deepEqual(readVocabTxt(write('[PAD]\r\n[UNK]\r\nthe\r\n##s\r\né')), want);
    assert.deepEqual(readVocabTxt(write('\ufeff[PAD]\n[UNK]\nthe\n##s\né\n')), want);
  });

  const bad: [string, string | Uint8Array, RegExp][] = [
    ['an empty file', '', /: empty vocab file/],
    ['an empty line', 'a\n\nb\n', /:2: empty line/],
    ['a duplicate token', 'a\nb\na\n', /:3: token "a" already appears on line 1/],
    ['invalid UTF-8', Buffer.concat([Buffer.from('a\nb\n'), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('\n')]), /:3: not valid UTF-8/],
    ['a stray carriage return', 'a\rb\n', /:1: token "a\\rb" contains a carriage return/],
  ];
  for (const [what, c, re] of bad) {
    it(`rejects ${what} with a one-line error naming the file`, () => {
      const p = write(c);
      assert.throws(() => readVocabTxt(p), (e: Error) => e.message.startsWith(p) && re.test(e.message) && !e.message.includes('\n'));
    });
  }

  it('a missing file or a directory is named', () => {
    assert.throws(() => readVocabTxt(join(tmp, 'nope.txt')), /vocab file not found: .*nope\.txt/);
    assert.throws(() => readVocabTxt(tmp), new RegExp(`${tmp.replace(/[.\\/]/g, '\\$&')}: not a regular file`));
  });
});

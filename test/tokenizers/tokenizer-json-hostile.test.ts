// Hostile tokenizer.json files (issue 9): ids beyond int32 used to wrap (2^53 → 0, the
// end-of-text token) and a missing byte-level symbol silently dropped characters.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BPETokenizer, bytesToUnicode } from '../../src/tokenizers/bpe.js';

let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-tokjson-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

const base = (): Record<string, any> => BPETokenizer.train(['hello world, hello there'], { vocabSize: 270, specialTokens: ['<|endoftext|>'] }).toTokenizerJson() as unknown as Record<string, any>;
function write(content: unknown, raw = false): string {
  const p = join(tmp, `tok${n++}.json`);
  writeFileSync(p, raw ? (content as string | Uint8Array) : JSON.stringify(content));
  return p;
}
function rejects(p: string, re: RegExp): void {
  assert.throws(() => BPETokenizer.fromTokenizerJson(p), (e: Error) => e.constructor === Error && e.message.startsWith(p + ':') && re.test(e.message) && !e.message.includes('\n'));
}

describe('tokenizer.json loader', () => {
  it('a valid file round-trips', () => {
    const p = write(base());
    const t = BPETokenizer.fromTokenizerJson(p);
    assert.equal(t.decode(t.encode('hello wörld ✓')), 'hello wörld ✓');
  });

  it('an id of 2^53 is an error instead of wrapping to 0', () => {
    const j = base();
    j.model.vocab['hello'] = 2 ** 53;
    rejects(write(j), /model\.vocab: id of "hello" must be an integer in \[0, 2\^31\), got 9007199254740992/);
    const k = base();
    k.added_tokens[0].id = 2 ** 32;
    rejects(write(k), /added_tokens\[0\]: id must be an integer in \[0, 2\^31\)/);
    const f = base();
    f.model.vocab['hello'] = 1.5;
    rejects(write(f), /model\.vocab: id of "hello"/);
  });

  it('a missing byte-level symbol is an error naming it', () => {
    const j = base();
    const sym = bytesToUnicode()[0x41]; // 'A'
    // Drop it and renumber nothing: the id simply disappears.
    delete j.model.vocab[sym];
    rejects(write(j), /model\.vocab: byte-level symbol "A" \(byte 0x41\) is missing/);
    const k = base();
    delete k.model.vocab[bytesToUnicode()[0x0a]];
    rejects(write(k), /byte-level symbol "Ċ" \(byte 0x0a\) is missing/);
  });

  it('duplicate ids, duplicate tokens, and merges outside the vocab are errors', () => {
    const j = base();
    j.model.vocab['hello'] = j.model.vocab['!'];
    rejects(write(j), /model\.vocab: id \d+ is used by both/);
    // A token listed twice in the vocab object (JSON.parse would keep the last silently).
    const text = JSON.stringify(base()).replace('"vocab":{', '"vocab":{"!":5,');
    rejects(write(text, true), /duplicate key model\.vocab\.!/);
    const m = base();
    m.model.merges.push('zz qq');
    rejects(write(m), /merges\[\d+\] "zz qq": token "zz" is not in the vocab/);
    const a = base();
    a.added_tokens.push({ ...a.added_tokens[0], id: 300 });
    rejects(write(a), /added_tokens\[1\]: "<\|endoftext\|>" \(id 300\) repeats added token/);
  });

  it('invalid JSON and invalid UTF-8 name the file', () => {
    rejects(write('{"model": ', true), /invalid JSON/);
    rejects(write(Buffer.concat([Buffer.from('{"model":"'), Buffer.from([0xff]), Buffer.from('"}')]), true), /not valid UTF-8/);
  });

  it('post-processor ids must exist', () => {
    const j = base();
    j.post_processor = { type: 'RobertaProcessing', cls: ['<s>', 2 ** 53], sep: ['</s>', 0] };
    rejects(write(j), /post_processor\.cls: id 9007199254740992 is not a token id/);
  });
});

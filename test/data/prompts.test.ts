// The prompt builder: golden prompt strings (direct/channel, k = 0/1/3, instruction, prefixes,
// verbalizers) and tokenizePrompt's per-piece tokenisation and truncation rules.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildPrompt, makeTemplate, defaultTemplate, promptString, tokenizePrompt, PieceEncoder, type Tokenizer } from '../../src/data/prompts.js';
import type { Example } from '../../src/data/tasks.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';

const ex = (input: string, output: string, options: string[] = ['pos', 'neg']): Example => ({ task: 't', input, output, options });
const D = [ex('good film', 'pos'), ex('bad plot', 'neg'), ex('great cast', 'pos')];
const Q = ex('dull story', 'neg');

/** One token per UTF-16 code unit: token counts equal string lengths, so budgets are easy to reason about. */
const charTok: Tokenizer & { calls: string[] } = {
  calls: [],
  encode(s: string) { this.calls.push(s); return [...s].map((c) => c.charCodeAt(0)); },
};
const ids = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

describe('buildPrompt: golden strings', () => {
  const t = makeTemplate();

  it('direct, k = 0', () => {
    const p = buildPrompt(t, [], Q, 'neg');
    assert.deepEqual(p, { head: '', demos: [], query: 'dull story\n', continuation: 'neg' });
    assert.equal(promptString(p), 'dull story\n');
  });

  it('direct, k = 1', () => {
    const p = buildPrompt(t, D.slice(0, 1), Q, 'pos');
    assert.deepEqual(p.demos, ['good film\npos\n\n']);
    assert.equal(promptString(p), 'good film\npos\n\ndull story\n');
    assert.equal(p.continuation, 'pos');
  });

  it('direct, k = 3 (demos in the given order, joined by a blank line)', () => {
    const p = buildPrompt(t, D, Q, 'neg');
    assert.equal(promptString(p), 'good film\npos\n\nbad plot\nneg\n\ngreat cast\npos\n\ndull story\n');
    assert.equal(promptString(p) + p.continuation, 'good film\npos\n\nbad plot\nneg\n\ngreat cast\npos\n\ndull story\nneg');
    // The default method is direct, and the default template has no instruction/prefixes.
    assert.deepEqual(buildPrompt(defaultTemplate, D, Q, 'neg', 'direct'), p);
  });

  it('channel, k = 0/1/3: output then input, the query input is the continuation', () => {
    assert.deepEqual(buildPrompt(t, [], Q, 'pos', 'channel'), { head: '', demos: [], query: 'pos\n', continuation: 'dull story' });
    const p1 = buildPrompt(t, D.slice(0, 1), Q, 'pos', 'channel');
    assert.equal(promptString(p1), 'pos\ngood film\n\npos\n');
    assert.equal(p1.continuation, 'dull story');
    const p3 = buildPrompt(t, D, Q, 'neg', 'channel');
    assert.equal(promptString(p3), 'pos\ngood film\n\nneg\nbad plot\n\npos\ngreat cast\n\nneg\n');
    assert.equal(p3.continuation, 'dull story');
  });

  it('instruction, input/output prefixes and verbalizers (direct)', () => {
    const tv = makeTemplate({ instruction: 'Classify the review.', inputPrefix: 'Review: ', outputPrefix: 'Sentiment: ', verbalizers: { pos: 'positive', neg: 'negative' } });
    const p = buildPrompt(tv, D.slice(0, 2), Q, 'neg');
    assert.equal(p.head, 'Classify the review.\n\n');
    assert.equal(promptString(p),
      'Classify the review.\n\nReview: good film\nSentiment: positive\n\nReview: bad plot\nSentiment: negative\n\nReview: dull story\nSentiment: ');
    assert.equal(p.continuation, 'negative');
    // An option without a verbalizer is shown as is.
    assert.equal(buildPrompt(tv, [], Q, 'neutral').continuation, 'neutral');
    // k = 0 with an instruction: head then query.
    assert.equal(promptString(buildPrompt(tv, [], Q, 'pos')), 'Classify the review.\n\nReview: dull story\nSentiment: ');
  });

  it('instruction, prefixes and verbalizers (channel)', () => {
    const tv = makeTemplate({ instruction: 'Classify.', inputPrefix: 'Review: ', outputPrefix: 'Sentiment: ', verbalizers: { pos: 'positive', neg: 'negative' } });
    const p = buildPrompt(tv, D.slice(0, 1), Q, 'pos', 'channel');
    assert.equal(promptString(p), 'Classify.\n\nSentiment: positive\nReview: good film\n\nSentiment: positive\nReview: ');
    assert.equal(p.continuation, 'dull story');
  });

  it('custom separators', () => {
    const ts = makeTemplate({ ioSep: ' => ', demoSep: ' | ' });
    assert.equal(promptString(buildPrompt(ts, D.slice(0, 2), Q, 'pos')), 'good film => pos | bad plot => neg | dull story => ');
  });

  it('makeTemplate copies verbalizers (no aliasing of the caller\'s object or the default)', () => {
    const v = { pos: 'P' };
    const t1 = makeTemplate({ verbalizers: v });
    v.pos = 'changed';
    assert.equal(t1.verbalizers.pos, 'P');
    makeTemplate().verbalizers.x = 'y';
    assert.deepEqual(defaultTemplate.verbalizers, {});
  });
});

describe('tokenizePrompt', () => {
  // demos of 5, 6 and 7 tokens; query 2; continuation 1 → 21 tokens in all.
  const pieces = { head: '', demos: ['a\nA\n\n', 'bb\nB\n\n', 'ccc\nC\n\n'], query: 'q\n', continuation: 'X' };

  it('prefix/suffix split and contStart when everything fits', () => {
    const enc = new PieceEncoder(charTok);
    const tp = tokenizePrompt(enc, pieces, { maxLength: 21 });
    assert.deepEqual(tp.prefix, ids('a\nA\n\nbb\nB\n\nccc\nC\n\n'));
    assert.deepEqual(tp.suffix, ids('q\nX'));
    assert.equal(tp.contStart, 2);
    assert.equal(tp.demosKept, 3);
    assert.equal(tp.truncated, false);
  });

  it('tokenises per piece: prefix = concatenation of each demo\'s ids (real BPE)', () => {
    const tok = BPETokenizer.train(['good film\npos\n\nbad plot\nneg\n\ngreat cast\npos\n\ndull story\n'.repeat(20), 'the film was good and the plot bad'],
      { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
    const p = buildPrompt(makeTemplate({ instruction: 'Say it.' }), D, Q, 'neg');
    const tp = tokenizePrompt(new PieceEncoder(tok), p, { maxLength: 1000 });
    const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
    assert.deepEqual(tp.prefix, [...enc(p.head), ...p.demos.flatMap(enc)]);
    assert.deepEqual(tp.suffix, [...enc(p.query), ...enc(p.continuation)]);
    assert.equal(tp.contStart, enc(p.query).length);
    // Decoding gives back the text exactly.
    assert.equal(tok.decode(tp.prefix.concat(tp.suffix)), promptString(p) + p.continuation);
  });

  it('PieceEncoder memoises and never encodes special tokens', () => {
    const calls: unknown[] = [];
    const t: Tokenizer = { encode: (s, o) => { calls.push([s, o]); return ids(s); } };
    const enc = new PieceEncoder(t);
    enc.encode('ab'); enc.encode('ab'); enc.encode('');
    assert.deepEqual(calls, [['ab', { addSpecialTokens: false }]]);
  });

  it('drops demonstrations from the front (oldest first), keeping those nearest the query', () => {
    const enc = new PieceEncoder(charTok);
    // budget for demos = 16 - 3 = 13: 'ccc..' (7) + 'bb..' (6) = 13 fit, 'a..' does not.
    let tp = tokenizePrompt(enc, pieces, { maxLength: 16 });
    assert.equal(tp.demosKept, 2);
    assert.deepEqual(tp.prefix, ids('bb\nB\n\nccc\nC\n\n'));
    assert.deepEqual(tp.suffix, ids('q\nX'));
    assert.equal(tp.truncated, true);
    // budget 12: only the last demo.
    tp = tokenizePrompt(enc, pieces, { maxLength: 15 });
    assert.equal(tp.demosKept, 1);
    assert.deepEqual(tp.prefix, ids('ccc\nC\n\n'));
    // budget 6: not even the last one (it is never cut to fit; maxDemoTokens does that).
    tp = tokenizePrompt(enc, pieces, { maxLength: 9 });
    assert.equal(tp.demosKept, 0);
    assert.deepEqual(tp.prefix, []);
    assert.deepEqual(tp.suffix, ids('q\nX'));
    assert.equal(tp.truncated, true);
  });

  it('maxDemoTokens shortens each long demo from its start, keeping separator and answer', () => {
    const enc = new PieceEncoder(charTok);
    const tp = tokenizePrompt(enc, pieces, { maxLength: 100, maxDemoTokens: 5 });
    assert.equal(tp.demosKept, 3);
    // 'a\nA\n\n' is 5 tokens (unchanged), 'bb\nB\n\n' → 'b\nB\n\n', 'ccc\nC\n\n' → 'c\nC\n\n'.
    assert.deepEqual(tp.prefix, ids('a\nA\n\nb\nB\n\nc\nC\n\n'));
    assert.equal(tp.truncated, true);
    // A limit no demo exceeds changes nothing.
    const tp2 = tokenizePrompt(enc, pieces, { maxLength: 100, maxDemoTokens: 7 });
    assert.equal(tp2.truncated, false);
    assert.equal(tp2.prefix.length, 18);
    // Shortening happens before dropping: 3 × 5 = 15 tokens fit a budget of 15 (maxLength 18).
    const tp3 = tokenizePrompt(enc, pieces, { maxLength: 18, maxDemoTokens: 5 });
    assert.equal(tp3.demosKept, 3);
    assert.equal(tp3.prefix.length, 15);
  });

  it('the query and continuation stay whole while demos are dropped', () => {
    const enc = new PieceEncoder(charTok);
    const long = { head: 'Instr\n\n', demos: ['d1\n1\n\n', 'd2\n2\n\n'], query: 'a long query\n', continuation: 'yes' };
    for (const maxLength of [16, 17, 20, 23, 30]) {
      const tp = tokenizePrompt(enc, long, { maxLength });
      assert.deepEqual(tp.suffix, ids('a long query\nyes'), `maxLength ${maxLength}`);
      assert.equal(tp.contStart, 13);
      assert.ok(tp.prefix.length + tp.suffix.length <= maxLength);
    }
    // The head (instruction) is dropped when it does not fit; then it takes part in the budget.
    const tp = tokenizePrompt(enc, long, { maxLength: 22 });
    assert.deepEqual(tp.prefix, ids('d2\n2\n\n'));
    assert.equal(tp.truncated, true);
    const all = tokenizePrompt(enc, long, { maxLength: 35 });
    assert.deepEqual(all.prefix, ids('Instr\n\nd1\n1\n\nd2\n2\n\n'));
    assert.equal(all.truncated, false);
  });

  it('cuts the query from the left only when query + continuation alone exceed the budget', () => {
    const enc = new PieceEncoder(charTok);
    const tp = tokenizePrompt(enc, pieces, { maxLength: 2 });
    assert.deepEqual(tp.prefix, []);
    assert.deepEqual(tp.suffix, ids('\nX'));
    assert.equal(tp.contStart, 1);
    assert.equal(tp.truncated, true);
  });

  it('errors when the continuation alone does not fit, or is empty', () => {
    const enc = new PieceEncoder(charTok);
    const p = { ...pieces, continuation: 'XYZ' };
    assert.throws(() => tokenizePrompt(enc, p, { maxLength: 3 }), /continuation of 3 tokens does not fit the context of 3/);
    assert.throws(() => tokenizePrompt(enc, p, { maxLength: 2 }), /does not fit/);
    assert.doesNotThrow(() => tokenizePrompt(enc, p, { maxLength: 4 }));
    assert.throws(() => tokenizePrompt(enc, { ...pieces, continuation: '' }, { maxLength: 100 }), /empty continuation/);
    assert.throws(() => tokenizePrompt(enc, { head: '', demos: [], query: '', continuation: 'X' }, { maxLength: 100 }), /nothing precedes the continuation/);
  });
});

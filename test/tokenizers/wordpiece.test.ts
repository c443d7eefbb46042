// WordPiece: ids, tokens and decodes equal to Hugging Face `tokenizers` (fixtures written by
// tools/make_wordpiece_fixtures.py from bert-base-cased's vocab.txt) in three normaliser
// settings; tokenizer.json load/save round trips; the trainer; strict errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WordPieceTokenizer, bertNormalize, bertPreTokenize, loadTokenizer } from '../../src/tokenizers/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/wordpiece');
const VOCAB = join(FIX, 'vocab.txt');

interface Case { text: string; ids: number[]; tokens: string[]; ids_no_special: number[]; decoded: string; decoded_with_special: string }
interface Setting { options: { lowercase: boolean; strip_accents?: boolean }; cases: Case[] }
const golden = JSON.parse(readFileSync(join(FIX, 'golden.json'), 'utf8')) as {
  settings: Record<string, Setting>; pairs: Array<{ a: string; b: string; ids: number[]; type_ids: number[] }>;
};

function tmp(): string { return mkdtempSync(join(tmpdir(), 'icld-wp-')); }

function fromVocab(o: Setting['options']): WordPieceTokenizer {
  return WordPieceTokenizer.fromVocabTxt(VOCAB, { do_lower_case: o.lowercase, strip_accents: o.strip_accents ?? null });
}

function checkCases(tok: WordPieceTokenizer, cases: Case[], label: string): void {
  assert.ok(cases.length >= 40);
  for (const c of cases) {
    const what = `${label}: ${JSON.stringify(c.text.slice(0, 60))}`;
    assert.deepEqual(tok.encode(c.text), c.ids, what);
    assert.deepEqual(tok.encode(c.text).map((i) => tok.idToToken(i)), c.tokens, what);
    assert.deepEqual(tok.encode(c.text, { addSpecialTokens: false }), c.ids_no_special, what);
    assert.deepEqual(tok.tokenize(c.text), c.tokens.slice(1, -1), what);
    assert.equal(tok.decode(c.ids, { skipSpecialTokens: true }), c.decoded, what);
    assert.equal(tok.decode(c.ids), c.decoded_with_special, what);
  }
}

for (const [name, s] of Object.entries(golden.settings)) {
  test(`vocab.txt, ${name} (${JSON.stringify(s.options)}): ids, tokens and decodes equal HF tokenizers`, () => {
    const tok = fromVocab(s.options);
    assert.equal(tok.vocabSize, 28996);
    assert.deepEqual([tok.padTokenId, tok.unkTokenId, tok.clsTokenId, tok.sepTokenId, tok.maskTokenId], [0, 100, 101, 102, 103]);
    checkCases(tok, s.cases, name);
  });
}

test('HF tokenizer.json (BertWordPieceTokenizer, cased) loads and matches; pairs get type ids', () => {
  const tok = WordPieceTokenizer.fromTokenizerJson(join(FIX, 'tokenizer.json'));
  assert.equal(tok.lowercase, false);
  checkCases(tok, golden.settings.cased.cases, 'tokenizer.json');
  assert.ok(golden.pairs.length >= 2);
  for (const p of golden.pairs) assert.deepEqual(tok.encodePair(p.a, p.b), { ids: p.ids, typeIds: p.type_ids });
  assert.ok(tok.isSpecialId(103) && !tok.isSpecialId(1000));
});

test('saved tokenizer.json / vocab.txt / tokenizer_config.json reload to identical encodings', () => {
  for (const name of ['cased', 'uncased', 'lower_keep_accents']) {
    const s = golden.settings[name];
    const tok = fromVocab(s.options);
    const dir = tmp();
    try {
      const path = tok.save(dir);
      assert.equal(path, join(dir, 'tokenizer.json'));
      assert.deepEqual(readdirSync(dir).sort(), ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt']);
      const j = JSON.parse(readFileSync(path, 'utf8'));
      assert.equal(j.model.type, 'WordPiece');
      assert.equal(j.normalizer.lowercase, s.options.lowercase);
      const cfg = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      assert.equal(cfg.tokenizer_class, 'BertTokenizer');
      assert.equal(cfg.do_lower_case, s.options.lowercase);
      assert.equal(cfg.mask_token, '[MASK]');
      assert.equal(readFileSync(join(dir, 'vocab.txt'), 'utf8'), readFileSync(VOCAB, 'utf8'));
      const viaJson = WordPieceTokenizer.fromTokenizerJson(path);
      checkCases(viaJson, s.cases, `${name} reloaded`);
      // The vocab.txt + tokenizer_config.json layout alone gives the same encodings.
      rmSync(path);
      const viaTxt = loadTokenizer(dir);
      assert.equal(viaTxt.type, 'wordpiece');
      for (const c of s.cases) assert.deepEqual(viaTxt.encode(c.text), c.ids, `${name} vocab.txt: ${c.text.slice(0, 40)}`);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

test('normaliser and pre-tokeniser pieces', () => {
  const o = { cleanText: true, handleChineseChars: true, stripAccents: null, lowercase: true };
  assert.equal(bertNormalize('Ça\u0000 va\u00a0Été 東京', o), 'ca va ete  東  京 ');
  assert.equal(bertNormalize('ΣΑΣ', o), 'σασ'); // char by char: no final sigma
  assert.equal(bertNormalize('Ça', { ...o, lowercase: false }), 'Ça');
  assert.equal(bertNormalize('Ça', { ...o, lowercase: false, stripAccents: true }), 'Ca');
  assert.deepEqual(bertPreTokenize("a$b+c don't … x"), ['a', '$', 'b', '+', 'c', 'don', "'", 't', '…', 'x']);
  // Over-long words become one [UNK]; 100 code points (astral ones count once) are still split.
  const tok = fromVocab({ lowercase: false });
  assert.deepEqual(tok.tokenize('a'.repeat(101)), ['[UNK]']);
  assert.notDeepEqual(tok.tokenize('a'.repeat(100)), ['[UNK]']);
  assert.deepEqual(tok.tokenize('😀'.repeat(2)), ['[UNK]']);
});

const WIKI_VALID = '/work/main/data/corpus/wikitext-2/wiki.valid.raw';
const WIKI_TEST = '/work/main/data/corpus/wikitext-2/wiki.test.raw';
function corpus(path: string, fallback: string): string {
  try { return readFileSync(path, 'utf8'); } catch { return fallback; }
}

test('trainer: deterministic, special tokens first, few [UNK]s on held-out text, survives save/load', () => {
  const fallback = golden.settings.cased.cases.map((c) => c.text).join('\n');
  const train = corpus(WIKI_VALID, fallback).slice(0, 400_000);
  const held = corpus(WIKI_TEST, fallback).slice(0, 50_000);
  const t0 = performance.now();
  const a = WordPieceTokenizer.train([train], { vocabSize: 2000, lowercase: true, minFrequency: 2 });
  const secs = (performance.now() - t0) / 1000;
  assert.ok(secs < 20, `training took ${secs} s`);
  const b = WordPieceTokenizer.train([train], { vocabSize: 2000, lowercase: true, minFrequency: 2 });
  assert.deepEqual(a.vocabList, b.vocabList);
  assert.equal(a.vocabSize, 2000);
  assert.deepEqual(a.vocabList.slice(0, 5), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  assert.ok(a.vocabList.includes('the') && a.vocabList.some((t) => t.startsWith('##') && t.length > 3));
  assert.deepEqual([a.clsTokenId, a.sepTokenId, a.maskTokenId], [2, 3, 4]);
  const ids = a.encode(held, { addSpecialTokens: false });
  const unk = ids.filter((i) => i === a.unkTokenId).length;
  assert.ok(unk / ids.length < 0.01, `${unk} [UNK] of ${ids.length}`);
  assert.ok(ids.length < held.length / 3, `compression ${held.length / ids.length}`);
  assert.equal(a.encode('[MASK] The Cat')[0], 2);
  assert.deepEqual(a.tokenize('[MASK] The Cat').slice(0, 2), ['[MASK]', 'the']);
  const dir = tmp();
  try {
    a.save(dir);
    const r = loadTokenizer(dir);
    assert.deepEqual(r.encode(held.slice(0, 5000)), a.encode(held.slice(0, 5000)));
  } finally { rmSync(dir, { recursive: true, force: true }); }
  // Different data → different vocabulary (the trainer reads its input).
  const c = WordPieceTokenizer.train([held], { vocabSize: 2000, lowercase: true });
  assert.notDeepEqual(c.vocabList, a.vocabList);
});

test('bad files give one-line errors naming the file (and line)', () => {
  const dir = tmp();
  try {
    const w = (name: string, body: string) => { const p = join(dir, name); writeFileSync(p, body); return p; };
    const oneLine = (re: RegExp, needle: string) => (e: Error) => !e.message.includes('\n') && e.message.includes(needle) && re.test(e.message);
    const dup = w('dup.txt', '[PAD]\n[UNK]\nfoo\nbar\nfoo\n');
    assert.throws(() => WordPieceTokenizer.fromVocabTxt(dup), oneLine(/:5: token "foo" already appears on line 3/, dup));
    const noUnk = w('nounk.txt', '[PAD]\nfoo\n');
    assert.throws(() => WordPieceTokenizer.fromVocabTxt(noUnk), oneLine(/unk token "\[UNK\]" is not in the vocabulary/, noUnk));
    const empty = w('empty.txt', '[UNK]\n\nfoo\n');
    assert.throws(() => WordPieceTokenizer.fromVocabTxt(empty), oneLine(/:2: empty line/, empty));
    const good = JSON.parse(readFileSync(join(FIX, 'tokenizer.json'), 'utf8'));
    const variant = (name: string, f: (j: any) => void) => { const j = structuredClone(good); f(j); return w(name, JSON.stringify(j)); };
    const gap = variant('gap.json', (j) => { j.model.vocab.foo = 50000; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(gap), oneLine(/model\.vocab: id of "foo" must be an integer in \[0, 28997\)/, gap));
    const twice = variant('twice.json', (j) => { j.model.vocab.foo = 7; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(twice), oneLine(/model\.vocab/, twice));
    const unk = variant('unk.json', (j) => { j.model.unk_token = '<unk>'; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(unk), oneLine(/model\.unk_token: "<unk>" is not in the vocab/, unk));
    const norm = variant('norm.json', (j) => { j.normalizer = { type: 'NFKC' }; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(norm), oneLine(/normalizer: "NFKC" is not supported/, norm));
    const flag = variant('flag.json', (j) => { j.normalizer.lowercase = 'yes'; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(flag), oneLine(/normalizer\.lowercase/, flag));
    const pre = variant('pre.json', (j) => { j.pre_tokenizer = { type: 'Whitespace' }; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(pre), oneLine(/pre_tokenizer: "Whitespace" is not supported/, pre));
    const added = variant('added.json', (j) => { j.added_tokens[4].id = 5; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(added), oneLine(/added_tokens\[4\]: "\[MASK\]" has id 5 but the vocab gives it id 103/, added));
    const post = variant('post.json', (j) => { j.post_processor.cls = ['[CLS]', 99999]; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(post), oneLine(/post_processor/, post));
    const bpe = variant('bpe.json', (j) => { j.model.type = 'Unigram'; });
    assert.throws(() => WordPieceTokenizer.fromTokenizerJson(bpe), oneLine(/model\.type: "Unigram" is not "WordPiece"/, bpe));
    const d2 = mkdtempSync(join(dir, 'cfg-'));
    writeFileSync(join(d2, 'vocab.txt'), readFileSync(VOCAB));
    writeFileSync(join(d2, 'tokenizer_config.json'), JSON.stringify({ do_lower_case: 'no' }));
    assert.throws(() => loadTokenizer(d2), oneLine(/do_lower_case must be true or false/, join(d2, 'tokenizer_config.json')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

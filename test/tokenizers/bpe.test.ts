// Byte-level BPE: golden GPT-2 ids (from the independent Python reference in
// tools/gen_bpe_fixtures.py), exact round trips, tokenizer.json save/load, training, bad inputs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPETokenizer, loadTokenizer, bytesToUnicode } from '../../src/tokenizers/index.js';
import { tokenizerTrainCommand } from '../../src/cli/tokenizer.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FIX = join(ROOT, 'test/fixtures/tokenizers');
const ENCODER = join(FIX, 'gpt2/encoder.json');
const VOCAB_BPE = join(FIX, 'gpt2/vocab.bpe');
const SHAKESPEARE = join(ROOT, 'data/tinyshakespeare.txt');

interface Case { name: string; text: string; ids: number[] }
const golden: Case[] = JSON.parse(readFileSync(join(FIX, 'gpt2_golden.json'), 'utf8')).cases;

let gpt2Cache: BPETokenizer | undefined;
const gpt2 = (): BPETokenizer => (gpt2Cache ??= BPETokenizer.fromGpt2Files(ENCODER, VOCAB_BPE));

function tmp(): string { return mkdtempSync(join(tmpdir(), 'icld-bpe-')); }

test('bytes_to_unicode table: 256 distinct visible symbols, printable bytes map to themselves', () => {
  const t = bytesToUnicode();
  assert.equal(t.length, 256);
  assert.equal(new Set(t).size, 256);
  assert.equal(t[0x41], 'A');
  assert.equal(t[0x20], '\u0120'); // 'Ġ'
  assert.equal(t[0x0a], '\u010a'); // 'Ċ'
  assert.equal(t[0xad], '\u0143');
});

test('GPT-2: ids identical to the reference tokenizer on the golden texts', () => {
  const tok = gpt2();
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.eosTokenId, 50256);
  assert.equal(tok.bosTokenId, 50256);
  assert.equal(tok.padTokenId, undefined);
  assert.ok(golden.length >= 25);
  for (const c of golden) assert.deepEqual(tok.encode(c.text), c.ids, `case ${c.name}`);
  assert.deepEqual(tok.encode('Hello world'), [15496, 995]);
  assert.deepEqual(tok.tokenize(' Hello world'), ['ĠHello', 'Ġworld']);
  assert.equal(tok.tokenToId('<|endoftext|>'), 50256);
  assert.equal(tok.idToToken(50256), '<|endoftext|>');
  assert.deepEqual(tok.specialTokens, { '<|endoftext|>': 50256 });
});

test('GPT-2: both merge loops (short scan and long-word heap) give the golden ids', () => {
  const tok = BPETokenizer.fromGpt2Files(ENCODER, VOCAB_BPE);
  tok.longWordThreshold = 1; // every word through the heap loop
  for (const c of golden) assert.deepEqual(tok.encode(c.text), c.ids, `heap loop, case ${c.name}`);
  const tok2 = BPETokenizer.fromGpt2Files(ENCODER, VOCAB_BPE);
  tok2.longWordThreshold = 1e9; // every word through the scan loop
  for (const c of golden) assert.deepEqual(tok2.encode(c.text), c.ids, `scan loop, case ${c.name}`);
  // Random words over a small alphabet (many overlapping merges like "aa a", "ab ab").
  let s = 12345;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  const alpha = ['a', 'b', 'e', 'n', 't', 's', 'é', '1', '0', '.', '-', '😀'];
  for (let k = 0; k < 300; k++) {
    let w = '';
    const n = 2 + Math.floor(rnd() * 120);
    for (let i = 0; i < n; i++) w += alpha[Math.floor(rnd() * alpha.length)];
    assert.deepEqual(tok.encode(w), tok2.encode(w), JSON.stringify(w));
  }
});

test('GPT-2: decode(encode(x)) === x on the golden texts and all of tinyshakespeare', () => {
  const tok = gpt2();
  for (const c of golden) {
    assert.equal(tok.decode(c.ids), c.text, `case ${c.name}`);
    assert.equal(tok.decode(tok.encode(c.text)), c.text, `case ${c.name}`);
  }
  const text = readFileSync(SHAKESPEARE, 'utf8');
  const ids = tok.encode(text);
  assert.equal(tok.decode(ids), text);
  assert.ok(ids.length > 250_000 && ids.length < 400_000, `${ids.length} ids`);
});

test('decode: skipSpecialTokens, invalid UTF-8 → U+FFFD like HF, unknown ids skipped', () => {
  const tok = gpt2();
  const ids = tok.encode('a<|endoftext|>b');
  assert.deepEqual(ids, [64, 50256, 65]);
  assert.equal(tok.decode(ids), 'a<|endoftext|>b');
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'ab');
  // '😀' is 4 bytes; cut its byte tokens in the middle and the partial sequence becomes U+FFFD.
  const emoji = tok.encode('😀');
  const bytes = tok.decodeBytes(emoji);
  assert.deepEqual([...bytes], [0xf0, 0x9f, 0x98, 0x80]);
  const byteIds = [...bytes].map((b) => tok.tokenToId(bytesToUnicode()[b])!);
  assert.equal(tok.decode(byteIds.slice(0, 3)), '\ufffd');
  assert.equal(tok.decode([...byteIds.slice(0, 2), tok.tokenToId('A')!]), '\ufffdA');
  assert.equal(tok.decode([tok.tokenToId(bytesToUnicode()[0xff])!]), '\ufffd');
  assert.equal(tok.decode([999999, 64]), 'a');
  // A leading BOM survives the round trip (TextDecoder must not eat it).
  assert.equal(tok.decode(tok.encode('\ufeffx')), '\ufeffx');
});

test('tokenizer.json: save → load gives identical ids; agrees with fromGpt2Files', () => {
  const a = gpt2();
  const dir = tmp();
  try {
    const path = a.save(dir);
    assert.equal(path, join(dir, 'tokenizer.json'));
    assert.deepEqual(readdirSync(dir), ['tokenizer.json']); // no temp file left behind
    const json = JSON.parse(readFileSync(path, 'utf8'));
    assert.equal(json.version, '1.0');
    assert.equal(json.model.type, 'BPE');
    assert.equal(json.pre_tokenizer.type, 'ByteLevel');
    assert.equal(json.pre_tokenizer.add_prefix_space, false);
    assert.equal(json.decoder.type, 'ByteLevel');
    assert.equal(json.model.merges[0], 'Ġ t');
    assert.equal(json.model.merges.length, 50000);
    assert.equal(Object.keys(json.model.vocab).length, 50257);
    assert.deepEqual(json.added_tokens, [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }]);
    const b = loadTokenizer(dir);
    const c = BPETokenizer.fromTokenizerJson(path);
    for (const t of golden) {
      assert.deepEqual(b.encode(t.text), t.ids, `loadTokenizer, case ${t.name}`);
      assert.deepEqual(c.encode(t.text), t.ids, `fromTokenizerJson, case ${t.name}`);
    }
    assert.equal(b.eosTokenId, 50256);
    // Newer `tokenizers` write merges as [left, right] pairs.
    json.model.merges = json.model.merges.map((m: string) => m.split(' '));
    const d = BPETokenizer.fromTokenizerJson(json);
    for (const t of golden) assert.deepEqual(d.encode(t.text), t.ids, `array merges, case ${t.name}`);
    // Round trip of the JSON itself.
    assert.deepEqual(d.toTokenizerJson(), a.toTokenizerJson());
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('loadTokenizer reads bos/eos/pad from tokenizer_config.json', () => {
  const dir = tmp();
  try {
    const t = BPETokenizer.train(['hello world, hello there'], { vocabSize: 270, specialTokens: ['<s>', '</s>', '<pad>'] });
    t.save(dir);
    const a = loadTokenizer(dir);
    assert.deepEqual([a.bosTokenId, a.eosTokenId, a.padTokenId], [0, 1, 2]);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: { content: '<s>' }, pad_token: '</s>' }));
    const b = loadTokenizer(dir);
    assert.deepEqual([b.bosTokenId, b.eosTokenId, b.padTokenId], [0, 0, 1]);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('post_processor TemplateProcessing adds tokens only with addSpecialTokens', () => {
  const t = BPETokenizer.train(['abc abc'], { vocabSize: 260, specialTokens: ['<s>', '</s>'] });
  const json = t.toTokenizerJson() as unknown as Record<string, unknown>;
  json.post_processor = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
    pair: [], special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
  };
  const u = BPETokenizer.fromTokenizerJson(json);
  const plain = u.encode('abc', { addSpecialTokens: false });
  assert.deepEqual(u.encode('abc'), [0, ...plain, 1]);
  assert.equal(u.decode(u.encode('abc'), { skipSpecialTokens: true }), 'abc');
  assert.deepEqual(BPETokenizer.fromTokenizerJson(u.toTokenizerJson()).encode('abc'), [0, ...plain, 1]);
});

test('training: hand-checked merges on a tiny corpus', () => {
  // Words: "aaab" ×1 and "Ġaaab" ×1. Pair counts: (a,a)=4, (a,b)=2, (Ġ,a)=1 → "a a" first.
  // Then [aa,a,b] / [Ġ,aa,a,b]: (aa,a)=2 ties (a,b)=2 → smaller ids win: a < aa, so "a b".
  // Then (aa,ab)=2 → "aa ab"; then (Ġ,aaab)=1 → "Ġ aaab".
  const t = BPETokenizer.train(['aaab aaab'], { vocabSize: 256 + 4 });
  assert.deepEqual(t.merges, [['a', 'a'], ['a', 'b'], ['aa', 'ab'], ['Ġ', 'aaab']]);
  assert.equal(t.vocabSize, 260);
  assert.deepEqual(t.tokenize('aaab aaab'), ['aaab', 'Ġaaab']);
  // Alphabet order: byte symbols sorted by code point ('!' = 0 … 'a' = 64), merges after.
  assert.equal(t.tokenToId('!'), 0);
  assert.equal(t.tokenToId('a'), 64);
  assert.equal(t.tokenToId('aa'), 256);
  assert.equal(t.tokenToId('Ġaaab'), 259);
  // Special tokens take the first ids in the given order, and are never merged into.
  const s = BPETokenizer.train(['aaab<|endoftext|>aaab'], { vocabSize: 258 + 2, specialTokens: ['<|endoftext|>', '<pad>'] });
  assert.deepEqual(s.specialTokens, { '<|endoftext|>': 0, '<pad>': 1 });
  assert.equal(s.tokenToId('!'), 2);
  assert.equal(s.eosTokenId, 0);
  assert.equal(s.padTokenId, 1);
  assert.deepEqual(s.merges, [['a', 'a'], ['a', 'b']]);
  assert.deepEqual(s.encode('aaab<|endoftext|>'), [s.tokenToId('aa'), s.tokenToId('ab'), 0]);
  // minFrequency stops early; impossible vocab sizes are clear errors.
  const m = BPETokenizer.train(['aaab aaab'], { vocabSize: 300, minFrequency: 2 });
  assert.deepEqual(m.merges, [['a', 'a'], ['a', 'b'], ['aa', 'ab']]);
  assert.throws(() => BPETokenizer.train(['x'], { vocabSize: 100 }), /vocabSize must be an integer ≥ 256/);
});

test('training: deterministic, exact vocab size, exact round trip', () => {
  const text = readFileSync(SHAKESPEARE, 'utf8').slice(0, 200_000);
  const a = BPETokenizer.train([text], { vocabSize: 1000, specialTokens: ['<|endoftext|>'] });
  const b = BPETokenizer.train([text.slice(0, 100_000), text.slice(100_000)], { vocabSize: 1000, specialTokens: ['<|endoftext|>'] });
  assert.equal(a.vocabSize, 1000);
  assert.equal(a.merges.length, 1000 - 257);
  assert.deepEqual(a.merges, BPETokenizer.train([text], { vocabSize: 1000, specialTokens: ['<|endoftext|>'] }).merges);
  assert.equal(b.vocabSize, 1000);
  for (const c of golden) assert.equal(a.decode(a.encode(c.text)), c.text, `case ${c.name}`);
  const ids = a.encode(text);
  assert.equal(a.decode(ids), text);
  assert.ok(ids.length < text.length / 2.5, `compression ${text.length / ids.length}`);
  // Trained tokenizer survives tokenizer.json.
  const dir = tmp();
  try {
    a.save(dir);
    const r = loadTokenizer(dir);
    assert.deepEqual(r.encode(text.slice(0, 20_000)), a.encode(text.slice(0, 20_000)));
    assert.deepEqual((r as BPETokenizer).merges, a.merges);
  } finally { rmSync(dir, { recursive: true, force: true }); }
  // Greedy merge consistency: training text's own merges reproduce the trained tokenisation of
  // each word — every merged token is reachable, so no id ≥ vocabSize appears.
  assert.ok(ids.every((i) => i >= 0 && i < 1000));
});

test('bad inputs: unsupported model / pre_tokenizer, bad merges, missing files name the file and field', () => {
  const dir = tmp();
  try {
    const good = gpt2().toTokenizerJson() as unknown as Record<string, any>;
    const write = (name: string, obj: unknown) => { const p = join(dir, name); writeFileSync(p, JSON.stringify(obj)); return p; };
    const wp = write('wp.json', { ...good, model: { ...good.model, type: 'WordPiece' } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(wp), (e: Error) => e.message.includes(wp) && /model\.type/.test(e.message) && /WordPiece/.test(e.message));
    const meta = write('meta.json', { ...good, pre_tokenizer: { type: 'Metaspace', replacement: '▁' } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(meta), (e: Error) => e.message.includes(meta) && /pre_tokenizer/.test(e.message) && /Metaspace/.test(e.message));
    const norm = write('norm.json', { ...good, normalizer: { type: 'NFKC' } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(norm), (e: Error) => e.message.includes(norm) && /normalizer/.test(e.message));
    const bf = write('bf.json', { ...good, model: { ...good.model, byte_fallback: true } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(bf), /model\.byte_fallback/);
    const bm = write('bm.json', { ...good, model: { ...good.model, merges: ['Ġ t', 'zzz qqq'] } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(bm), (e: Error) => e.message.includes(bm) && /merges\[1\]/.test(e.message));
    const nm = write('nm.json', { ...good, model: { ...good.model, merges: undefined } });
    assert.throws(() => BPETokenizer.fromTokenizerJson(nm), /model\.merges/);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{"model": ');
    assert.throws(() => BPETokenizer.fromTokenizerJson(broken), (e: Error) => e.message.includes(broken) && /invalid JSON/.test(e.message));
    const missing = join(dir, 'nope', 'tokenizer.json');
    assert.throws(() => BPETokenizer.fromTokenizerJson(missing), (e: Error) => e.message.includes(missing) && /not found/.test(e.message));
    assert.throws(() => loadTokenizer(join(dir, 'nope')), (e: Error) => e.message.includes(join(dir, 'nope')));
    assert.throws(() => loadTokenizer(dir), (e: Error) => e.message.includes(join(dir, 'tokenizer.json')));
    assert.throws(() => BPETokenizer.fromGpt2Files(join(dir, 'enc.json'), VOCAB_BPE), (e: Error) => e.message.includes(join(dir, 'enc.json')));
    assert.throws(() => BPETokenizer.fromGpt2Files(ENCODER, join(dir, 'v.bpe')), (e: Error) => e.message.includes(join(dir, 'v.bpe')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('tokenizerTrainCommand: trains, writes OUT/tokenizer.json, summary; clear errors', async () => {
  const dir = tmp();
  try {
    const f1 = join(dir, 'a.txt'), f2 = join(dir, 'b.txt');
    const text = readFileSync(SHAKESPEARE, 'utf8');
    writeFileSync(f1, text.slice(0, 50_000));
    writeFileSync(f2, text.slice(50_000, 80_000));
    const out = join(dir, 'tok');
    const r = await tokenizerTrainCommand({ type: 'bpe', vocabSize: 600, out, files: [f1, f2], json: true });
    assert.equal(r.vocab_size, 600);
    assert.equal(r.merges, 600 - 257);
    assert.equal(r.files, 2);
    assert.equal(r.bytes, Buffer.byteLength(text.slice(0, 80_000)));
    assert.equal(typeof r.seconds, 'number');
    assert.deepEqual(readdirSync(out), ['tokenizer.json']);
    const t = loadTokenizer(out);
    assert.equal(t.tokenToId('<|endoftext|>'), 0);
    assert.equal(t.decode(t.encode(text.slice(0, 5000))), text.slice(0, 5000));
    await assert.rejects(tokenizerTrainCommand({ type: 'unigram', vocabSize: 600, out, files: [f1] }), /unknown --type/);
    await assert.rejects(tokenizerTrainCommand({ type: 'bpe', vocabSize: 600, out, files: [f1, join(dir, 'missing.txt')] }),
      (e: Error) => e.message.includes(join(dir, 'missing.txt')));
    assert.ok(existsSync(join(out, 'tokenizer.json')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

// loadTokenizer on each directory layout (tokenizer.json BPE/WordPiece, vocab.txt (+ config),
// vocab.json + merges.txt), tokenizer_config.json / special_tokens_map.json roles and
// model_max_length, one-line errors; `icld tokenizer encode` / `train --type wordpiece` via the CLI.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, BPETokenizer } from '../../src/tokenizers/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = join(ROOT, 'dist/src/cli/main.js');
const WP = join(ROOT, 'test/fixtures/wordpiece');
const GPT2 = join(ROOT, 'test/fixtures/tokenizers/gpt2');
const wpGolden = JSON.parse(readFileSync(join(WP, 'golden.json'), 'utf8')).settings as Record<string, { cases: Array<{ text: string; ids: number[]; tokens: string[]; ids_no_special: number[] }> }>;
const bpeGolden = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/tokenizers/gpt2_golden.json'), 'utf8')).cases as Array<{ text: string; ids: number[] }>;

function tmp(): string { return mkdtempSync(join(tmpdir(), 'icld-loadtok-')); }
const json = (p: string, v: unknown) => writeFileSync(p, JSON.stringify(v));
function icld(...args: string[]) { return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }); }

test('WordPiece tokenizer.json layout: type, roles and model_max_length from tokenizer_config.json', () => {
  const dir = tmp();
  try {
    copyFileSync(join(WP, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    json(join(dir, 'tokenizer_config.json'), { model_max_length: 512, mask_token: { content: '[MASK]' }, pad_token: '[PAD]', bos_token: '[CLS]' });
    const tok = loadTokenizer(dir);
    assert.equal(tok.type, 'wordpiece');
    assert.equal(tok.modelMaxLength, 512);
    assert.deepEqual([tok.padTokenId, tok.unkTokenId, tok.clsTokenId, tok.sepTokenId, tok.maskTokenId, tok.bosTokenId], [0, 100, 101, 102, 103, 101]);
    for (const c of wpGolden.cased.cases) assert.deepEqual(tok.encode(c.text), c.ids);
    // HF's "no limit" sentinel is ignored.
    json(join(dir, 'tokenizer_config.json'), { model_max_length: 1e30 });
    assert.equal(loadTokenizer(dir).modelMaxLength, undefined);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('vocab.txt layout: do_lower_case from tokenizer_config.json, transformers default (lowercase) without it', () => {
  const dir = tmp();
  try {
    copyFileSync(join(WP, 'vocab.txt'), join(dir, 'vocab.txt'));
    const uncased = loadTokenizer(dir);
    assert.equal(uncased.type, 'wordpiece');
    for (const c of wpGolden.uncased.cases) assert.deepEqual(uncased.encode(c.text), c.ids);
    json(join(dir, 'tokenizer_config.json'), { do_lower_case: false, model_max_length: 128 });
    const cased = loadTokenizer(dir);
    assert.equal(cased.modelMaxLength, 128);
    for (const c of wpGolden.cased.cases) assert.deepEqual(cased.encode(c.text), c.ids);
    json(join(dir, 'tokenizer_config.json'), { do_lower_case: true, strip_accents: false });
    for (const c of wpGolden.lower_keep_accents.cases) assert.deepEqual(loadTokenizer(dir).encode(c.text), c.ids);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('GPT-2 vocab.json + merges.txt layout, and a BPE tokenizer.json; roles from special_tokens_map.json', () => {
  const dir = tmp();
  try {
    copyFileSync(join(GPT2, 'encoder.json'), join(dir, 'vocab.json'));
    copyFileSync(join(GPT2, 'vocab.bpe'), join(dir, 'merges.txt'));
    json(join(dir, 'special_tokens_map.json'), { pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' });
    const tok = loadTokenizer(dir);
    assert.equal(tok.type, 'bpe');
    assert.equal(tok.vocabSize, 50257);
    assert.deepEqual([tok.eosTokenId, tok.padTokenId, tok.unkTokenId], [50256, 50256, 50256]);
    for (const c of bpeGolden) assert.deepEqual(tok.encode(c.text), c.ids, c.text.slice(0, 40));
    // Saved as tokenizer.json, the same directory now loads through that file.
    (tok as BPETokenizer).save(dir);
    rmSync(join(dir, 'merges.txt'));
    const again = loadTokenizer(dir);
    assert.equal(again.type, 'bpe');
    for (const c of bpeGolden.slice(0, 10)) assert.deepEqual(again.encode(c.text), c.ids);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('one-line errors naming the directory or file', () => {
  const dir = tmp();
  try {
    const oneLine = (re: RegExp, needle: string) => (e: Error) => !e.message.includes('\n') && e.message.includes(needle) && re.test(e.message);
    assert.throws(() => loadTokenizer(join(dir, 'nope')), oneLine(/tokenizer directory not found/, join(dir, 'nope')));
    assert.throws(() => loadTokenizer(dir), oneLine(/no tokenizer found: expected .*tokenizer\.json, or vocab\.txt/, dir));
    copyFileSync(join(GPT2, 'encoder.json'), join(dir, 'vocab.json'));
    assert.throws(() => loadTokenizer(dir), oneLine(/vocab\.json without merges\.txt/, dir));
    rmSync(join(dir, 'vocab.json'));
    json(join(dir, 'tokenizer.json'), { model: { type: 'Unigram', vocab: [] } });
    assert.throws(() => loadTokenizer(dir), oneLine(/model\.type "Unigram" is not supported/, join(dir, 'tokenizer.json')));
    copyFileSync(join(WP, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), '{"mask_token": ');
    assert.throws(() => loadTokenizer(dir), oneLine(/invalid JSON/, join(dir, 'tokenizer_config.json')));
    json(join(dir, 'tokenizer_config.json'), { model_max_length: -3 });
    assert.throws(() => loadTokenizer(dir), oneLine(/model_max_length must be a positive number/, join(dir, 'tokenizer_config.json')));
    json(join(dir, 'tokenizer_config.json'), { mask_token: 7 });
    assert.throws(() => loadTokenizer(dir), oneLine(/mask_token must be a string/, join(dir, 'tokenizer_config.json')));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('icld tokenizer encode: WordPiece and BPE directories, --json, --no-special, readable form', () => {
  const c = wpGolden.cased.cases.find((x) => x.text.includes('[MASK]') && /[éö]/.test(x.text)) ?? wpGolden.cased.cases[0];
  let r = icld('tokenizer', 'encode', '--model', WP, '--text', c.text, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ids: c.ids, tokens: c.tokens });
  r = icld('tokenizer', 'encode', '--model', WP, '--text', c.text, '--json', '--no-special');
  assert.deepEqual(JSON.parse(r.stdout).ids, c.ids_no_special);
  r = icld('tokenizer', 'encode', '--model', WP, '--text', 'Paris is the capital of [MASK].');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^101\t\[CLS\]\n2123\tParis\n/);
  assert.match(r.stdout, /\n103\t\[MASK\]\n/);
  const b = bpeGolden[3];
  r = icld('tokenizer', 'encode', '--model', GPT2, '--text', b.text, '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.ids, b.ids);
  assert.equal(out.tokens.length, b.ids.length);
  r = icld('tokenizer', 'encode', '--model', join(ROOT, 'test/fixtures'), '--text', 'x');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no tokenizer found/);
  assert.equal(icld('tokenizer', 'encode', '--model', WP).status, 2);
});

test('icld tokenizer train --type wordpiece writes tokenizer.json + vocab.txt + tokenizer_config.json', () => {
  const dir = tmp();
  try {
    const text = wpGolden.cased.cases.map((x) => x.text).join('\n').repeat(3);
    const src = join(dir, 'train.txt');
    writeFileSync(src, text);
    const out = join(dir, 'wp');
    const r = icld('tokenizer', 'train', '--type', 'wordpiece', '--lowercase', '--vocab-size', '600', '--out', out, '--json', src);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.type, 'wordpiece');
    assert.ok(s.merges > 0 && s.vocab_size <= 600, JSON.stringify(s));
    assert.deepEqual(readdirSync(out).sort(), ['tokenizer.json', 'tokenizer_config.json', 'vocab.txt']);
    const cfg = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8'));
    assert.equal(cfg.do_lower_case, true);
    const vocab = readFileSync(join(out, 'vocab.txt'), 'utf8').split('\n');
    assert.deepEqual(vocab.slice(0, 5), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    const tok = loadTokenizer(out);
    assert.equal(tok.vocabSize, s.vocab_size);
    const e = icld('tokenizer', 'encode', '--model', out, '--text', 'Paris IS the capital', '--json', '--no-special');
    const toks = JSON.parse(e.stdout).tokens as string[];
    // Lowercased on the way in; the pieces spell the words back.
    assert.equal(toks.map((t) => t.replace(/^##/, '')).join(''), 'parisisthecapital');
    assert.ok(!toks.includes('[UNK]'));
    mkdirSync(join(dir, 'b'));
    const bad = icld('tokenizer', 'train', '--type', 'bpe', '--lowercase', '--vocab-size', '300', '--out', join(dir, 'b', 'o'), src);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--lowercase needs --type wordpiece/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

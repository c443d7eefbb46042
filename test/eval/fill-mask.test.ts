// fill-mask: candidates and probabilities equal a direct softmax of the full forward pass at the
// mask position; special tokens never offered; one list per mask; the CLI prints the same in its
// JSON shapes; clear errors for a causal model, a text without mask, a tokenizer without one.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import { WordPieceTokenizer } from '../../src/tokenizers/wordpiece.js';
import { BPETokenizer, loadTokenizer } from '../../src/tokenizers/index.js';
import type { Tokenizer } from '../../src/tokenizers/types.js';
import { fillMask, type FillMaskCandidate } from '../../src/eval/fill-mask.js';
import { tinyModel } from '../icl/task-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const TEXTS = ['the cat sat on the mat.', 'paris is the capital of france.', 'the dog sat on the log!', 'berlin is the capital of germany.'];

let root: string, dir: string, gptDir: string, tok: WordPieceTokenizer, model: Bert;

function icld(args: string[]) { const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 }); return { status: r.status, stdout: r.stdout, stderr: r.stderr }; }

/** Independent of fillMask: full logits [1, T, V], softmax of the row at `t`. */
function directProbs(m: Bert, ids: number[], t: number): number[] {
  const logits = tidy(() => noGrad(() => m.forward(O.tensor(ids, [1, ids.length], 'int32')).toArray()));
  const V = m.vocabSize, row = logits.slice(t * V, (t + 1) * V), mx = Math.max(...row);
  const z = row.reduce((s, x) => s + Math.exp(x - mx), 0);
  return row.map((x) => Math.exp(x - mx) / z);
}

function checkAgainstDirect(got: FillMaskCandidate[], probs: number[], t: Tokenizer, k: number): void {
  const want = probs.map((p, id) => ({ p, id })).filter(({ id }) => !t.isSpecialId(id)).sort((a, b) => b.p - a.p).slice(0, k);
  assert.equal(got.length, k);
  got.forEach((c, i) => {
    assert.equal(c.id, want[i].id, `rank ${i}`);
    assert.ok(Math.abs(c.prob - want[i].p) < 1e-6, `prob rank ${i}: ${c.prob} vs ${want[i].p}`);
    assert.equal(c.token, t.idToToken(c.id));
    assert.ok(!t.isSpecialId(c.id));
  });
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].prob >= got[i].prob);
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'icld-fillmask-'));
  tok = WordPieceTokenizer.train(TEXTS, { vocabSize: 70, lowercase: true, minFrequency: 1 });
  model = new Bert(bertConfig({ vocab_size: tok.vocabSize, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 24, max_position_embeddings: 32, initializer_range: 0.5 }), 3);
  model.eval();
  dir = join(root, 'bert');
  model.savePretrained(dir);
  tok.save(dir);
  gptDir = join(root, 'gpt2');
  const bpe = BPETokenizer.train(TEXTS, { vocabSize: 280, specialTokens: ['<|endoftext|>'] });
  tinyModel(bpe.vocabSize, 32).savePretrained(gptDir);
  bpe.save(gptDir);
});
after(() => { rmSync(root, { recursive: true, force: true }); });

describe('fillMask', () => {
  it('one mask: top-k ids and probabilities equal the softmax of the full forward pass, specials excluded', () => {
    const t = loadTokenizer(dir);
    assert.ok(t.maskTokenId !== undefined);
    const text = 'paris is the [MASK] of france.';
    const ids = t.encode(text), at = ids.indexOf(t.maskTokenId!);
    assert.ok(at > 0 && ids[0] === t.clsTokenId, 'encoded with [CLS] … [SEP]');
    const got = fillMask(model, t, text, { topK: 7 });
    assert.equal(got.length, 1);
    checkAgainstDirect(got[0], directProbs(model, ids, at), t, 7);
  });

  it('several masks: one list per mask in text order, each from its own position', () => {
    const text = 'the [MASK] sat on the [MASK].';
    const ids = tok.encode(text);
    const pos = ids.flatMap((id, i) => (id === tok.maskTokenId ? [i] : []));
    assert.equal(pos.length, 2);
    const got = fillMask(model, tok, text, { topK: 3 });
    assert.equal(got.length, 2);
    checkAgainstDirect(got[0], directProbs(model, ids, pos[0]), tok, 3);
    checkAgainstDirect(got[1], directProbs(model, ids, pos[1]), tok, 3);
    assert.notDeepEqual(got[0].map((c) => c.prob), got[1].map((c) => c.prob));
  });

  it('a BPE tokenizer with special [MASK] (no mask_token role) works through the spelling fallback', () => {
    const bpe = BPETokenizer.train(TEXTS, { vocabSize: 280, specialTokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] });
    const m = new Bert(bertConfig({ vocab_size: bpe.vocabSize, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 24, max_position_embeddings: 32 }), 4).eval();
    const text = 'the cat [MASK] on the mat.';
    const ids = bpe.encode(text), at = ids.indexOf(bpe.tokenToId('[MASK]')!);
    const got = fillMask(m, bpe, text, { topK: 4 });
    checkAgainstDirect(got[0], directProbs(m, ids, at), bpe, 4);
    assert.ok(got[0].every((c) => c.id > 4), 'none of the five specials');
  });

  it('errors: causal model, no mask in the text, tokenizer without a mask token', () => {
    const gpt = tinyModel(280, 32);
    assert.throws(() => fillMask(gpt, tok, 'the [MASK]'), /fill-mask needs a masked language model \(like BERT\); this one is a causal LM \(model_type gpt2\)/);
    assert.throws(() => fillMask(model, tok, 'the cat sat'), /the text has no \[MASK\] token/);
    const noMask = BPETokenizer.train(TEXTS, { vocabSize: 280, specialTokens: ['<|endoftext|>'] });
    assert.throws(() => fillMask(model, noMask, 'the [MASK]'), /the tokenizer has no mask token/);
  });
});

describe('icld fill-mask', () => {
  it('--json: {"predictions"} for one mask, {"masks"} for several, equal to the library', () => {
    const r = icld(['fill-mask', '--model', dir, '--text', 'paris is the [MASK] of france.', '--top-k', '3', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { predictions: FillMaskCandidate[] };
    const lib = fillMask(model, loadTokenizer(dir), 'paris is the [MASK] of france.', { topK: 3 });
    assert.deepEqual(j.predictions.map((c) => [c.token, c.id]), lib[0].map((c) => [c.token, c.id]));
    j.predictions.forEach((c, i) => assert.ok(Math.abs(c.prob - lib[0][i].prob) < 1e-9));
    const two = icld(['fill-mask', '--model', dir, '--text', 'the [MASK] sat on the [MASK].', '--json']);
    assert.equal(two.status, 0, two.stderr);
    const m = JSON.parse(two.stdout) as { masks: FillMaskCandidate[][] };
    assert.equal(m.masks.length, 2);
    assert.equal(m.masks[0].length, 5);
    // readable output: one line per candidate
    const plain = icld(['fill-mask', '--model', dir, '--text', 'paris is the [MASK] of france.', '--top-k', '2']);
    assert.equal(plain.status, 0, plain.stderr);
    assert.deepEqual(plain.stdout.trim().split('\n').map((l) => l.split(/\s+/)[1]), lib[0].slice(0, 2).map((c) => c.token));
  });

  it('errors are one line: a GPT-2 model (exit 1), a text without mask (exit 1), a bad --top-k (exit 2)', () => {
    const g = icld(['fill-mask', '--model', gptDir, '--text', 'the [MASK]']);
    assert.equal(g.status, 1);
    assert.equal(g.stderr.trim().split('\n').length, 1);
    assert.match(g.stderr, new RegExp(`--model ${gptDir}: fill-mask needs a masked language model`));
    const n = icld(['fill-mask', '--model', dir, '--text', 'no mask here']);
    assert.equal(n.status, 1);
    assert.equal(n.stderr.trim(), 'icld fill-mask: the text has no [MASK] token to fill');
    const k = icld(['fill-mask', '--model', dir, '--text', 'a [MASK]', '--top-k', '0']);
    assert.equal(k.status, 2);
    assert.match(k.stderr, /--top-k must be an integer ≥ 1/);
  });
});

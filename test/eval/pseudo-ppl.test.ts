// Pseudo-perplexity of a masked LM against a direct computation (one full forward pass per masked
// copy, softmax at the masked position), windows and batches that split the text unevenly, the
// [CLS]/[SEP] wrapping, and icld eval-lm's "kind" for BERT and GPT-2.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { Bert, bertConfig } from '../../src/models/bert.js';
import { WordPieceTokenizer } from '../../src/tokenizers/wordpiece.js';
import { BPETokenizer, loadTokenizer } from '../../src/tokenizers/index.js';
import { pseudoPerplexity, perplexity } from '../../src/eval/perplexity.js';
import { loadModel } from '../../src/models/index.js';
import { tinyModel } from '../icl/task-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const V = 40, MASK = 3, CLS = 1, SEP = 2;

function model(maxPos: number): Bert {
  return new Bert(bertConfig({ vocab_size: V, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 20, max_position_embeddings: maxPos, initializer_range: 0.4 }), 9).eval();
}

/** −log p(w[i] | w with position i masked), one forward pass per token, windows of `W` text tokens. */
function direct(m: Bert, ids: number[], W: number, cls?: number, sep?: number): number {
  let s = 0;
  for (let a = 0; a < ids.length; a += W) {
    const w = ids.slice(a, a + W);
    const seq = [...(cls !== undefined ? [cls] : []), ...w, ...(sep !== undefined ? [sep] : [])];
    const lead = cls !== undefined ? 1 : 0;
    for (let i = 0; i < w.length; i++) {
      const x = seq.slice();
      x[lead + i] = MASK;
      const logits = tidy(() => noGrad(() => m.forward(O.tensor(x, [1, x.length], 'int32')).toArray()));
      const row = logits.slice((lead + i) * V, (lead + i + 1) * V), mx = Math.max(...row);
      s += Math.log(row.reduce((z, v) => z + Math.exp(v - mx), 0)) + mx - row[w[i]];
    }
  }
  return s / ids.length;
}

const IDS = Array.from({ length: 17 }, (_, i) => 4 + ((i * 13 + 5) % (V - 4)));

describe('pseudoPerplexity', () => {
  it('equals the direct computation with [CLS]/[SEP], windows of maxPositions − 2 and batches splitting windows', () => {
    const m = model(8);
    const want = direct(m, IDS, 6, CLS, SEP);
    const seen: number[] = [];
    const r = pseudoPerplexity(m, IDS, { maskId: MASK, clsId: CLS, sepId: SEP, batch: 4, onProgress: (d, t, n) => { assert.equal(t, 3); seen.push(n); } });
    assert.equal(r.tokens, IDS.length);
    assert.ok(Math.abs(r.nll - want) < 1e-5, `${r.nll} vs ${want}`);
    assert.ok(Math.abs(r.ppl - Math.exp(want)) < 1e-4 * Math.exp(want));
    assert.equal(seen[seen.length - 1], IDS.length);
    // batch size does not change the result
    const r1 = pseudoPerplexity(m, IDS, { maskId: MASK, clsId: CLS, sepId: SEP, batch: 1 });
    assert.ok(Math.abs(r1.nll - r.nll) < 1e-5);
  });

  it('without special tokens, and with an explicit window; the context really matters', () => {
    const m = model(8);
    const r = pseudoPerplexity(m, IDS, { maskId: MASK, batch: 5 });
    assert.ok(Math.abs(r.nll - direct(m, IDS, 8)) < 1e-5);
    const r3 = pseudoPerplexity(m, IDS, { maskId: MASK, window: 3, batch: 2 });
    assert.ok(Math.abs(r3.nll - direct(m, IDS, 3)) < 1e-5);
    assert.ok(Math.abs(r3.nll - r.nll) > 1e-4, 'different windows give different contexts');
  });

  it('errors: causal model, window too long for the positions, empty text', () => {
    assert.throws(() => pseudoPerplexity(tinyModel(50, 16), IDS, { maskId: MASK }), /pseudo-perplexity needs a masked language model; this one is a causal LM/);
    assert.throws(() => pseudoPerplexity(model(8), IDS, { maskId: MASK, clsId: CLS, sepId: SEP, window: 7 }), /window 7 plus 2 special token\(s\) exceeds the model's 8 positions/);
    assert.throws(() => pseudoPerplexity(model(8), [], { maskId: MASK }), /no tokens/);
  });
});

describe('icld eval-lm kind', () => {
  let root: string;
  before(() => { root = mkdtempSync(join(tmpdir(), 'icld-pppl-')); });
  after(() => { rmSync(root, { recursive: true, force: true }); });

  it('a BERT dir reports {"kind": "pseudo"} equal to the library; a GPT-2 dir {"kind": "causal"}', () => {
    const texts = ['the cat sat on the mat.', 'the dog sat on the log.', 'a cat and a dog.'];
    const tok = WordPieceTokenizer.train(texts, { vocabSize: 60, lowercase: true, minFrequency: 1 });
    const dir = join(root, 'bert');
    new Bert(bertConfig({ vocab_size: tok.vocabSize, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 20, max_position_embeddings: 10 }), 2).savePretrained(dir);
    tok.save(dir);
    const file = join(root, 'text.txt');
    writeFileSync(file, 'the cat sat on the log. a dog and a cat sat on the mat.\n');
    const r = spawnSync(process.execPath, [MAIN, 'eval-lm', '--model', dir, '--text-file', file, '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { kind: string; tokens: number; nll: number; ppl: number };
    assert.equal(j.kind, 'pseudo');
    const t = loadTokenizer(dir), m = loadModel(dir).eval();
    const ids = t.encode('the cat sat on the log. a dog and a cat sat on the mat.\n', { addSpecialTokens: false });
    const lib = pseudoPerplexity(m, ids, { maskId: t.maskTokenId!, clsId: t.clsTokenId, sepId: t.sepTokenId });
    assert.equal(j.tokens, ids.length);
    assert.ok(ids.length > 8, 'more than one window of 8');
    assert.ok(Math.abs(j.nll - lib.nll) < 1e-9);

    const gdir = join(root, 'gpt2');
    const bpe = BPETokenizer.train(texts, { vocabSize: 270, specialTokens: ['<|endoftext|>'] });
    const g = tinyModel(bpe.vocabSize, 16);
    g.savePretrained(gdir);
    bpe.save(gdir);
    const rg = spawnSync(process.execPath, [MAIN, 'eval-lm', '--model', gdir, '--text-file', file, '--json'], { encoding: 'utf8' });
    assert.equal(rg.status, 0, rg.stderr);
    const jg = JSON.parse(rg.stdout) as { kind: string; nll: number };
    assert.equal(jg.kind, 'causal');
    assert.ok(Math.abs(jg.nll - perplexity(g, bpe.encode('the cat sat on the log. a dog and a cat sat on the mat.\n', { addSpecialTokens: false })).nll) < 1e-9);
  });
});

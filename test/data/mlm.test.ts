// The masking collator: HF rates, specials and padding never chosen, labels, whole words, seeds.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/engine/rng.js';
import { MlmCollator, IGNORE_INDEX, type MaskingTokenizer } from '../../src/data/mlm.js';

// A vocabulary: 0 [PAD], 1 [UNK], 2 [CLS], 3 [SEP], 4 [MASK], then words and '##' pieces.
const SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
function fakeTok(type: 'wordpiece' | 'bpe', words: string[]): MaskingTokenizer {
  const vocab = [...SPECIAL, ...words];
  return {
    type, vocabSize: vocab.length, maskTokenId: 4, padTokenId: 0,
    isSpecialId: (id) => id >= 0 && id < SPECIAL.length && id !== 1,
    idToToken: (id) => vocab[id],
  };
}
const WP_WORDS = Array.from({ length: 200 }, (_, i) => (i % 3 === 2 ? `##p${i}` : `w${i}`));

/** Rows [CLS] x… [SEP] [PAD]… with random non-special ids. */
function batch(B: number, T: number, V: number, rng: Rng, pad = 4): Int32Array {
  const ids = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const r = ids.subarray(b * T, (b + 1) * T);
    r[0] = 2;
    for (let t = 1; t < T - 1 - pad; t++) r[t] = 5 + rng.int(V - 5);
    r[T - 1 - pad] = 3;
    for (let t = T - pad; t < T; t++) r[t] = 0;
  }
  return ids;
}

test('rates match HF (15% chosen; 80% [MASK], 10% random, 10% kept); specials and padding never chosen; labels consistent', () => {
  const tok = fakeTok('wordpiece', WP_WORDS);
  const c = new MlmCollator(tok);
  const T = 64, B = 256;
  const ids = batch(B, T, tok.vocabSize, new Rng(1));
  const out = new Int32Array(ids.length), labels = new Int32Array(ids.length);
  const n = c.apply(ids, T, new Rng(7), out, labels);
  let eligible = 0, masked = 0, same = 0, other = 0;
  for (let i = 0; i < ids.length; i++) {
    const sp = ids[i] === 0 || ids[i] === 2 || ids[i] === 3;
    if (sp) { assert.equal(labels[i], IGNORE_INDEX); assert.equal(out[i], ids[i]); continue; }
    eligible++;
    if (labels[i] === IGNORE_INDEX) { assert.equal(out[i], ids[i], 'an unchosen token changed'); continue; }
    assert.equal(labels[i], ids[i], 'label is not the original id');
    if (out[i] === 4) masked++;
    else if (out[i] === ids[i]) same++;
    else { other++; assert.ok(out[i] >= 5 && out[i] < tok.vocabSize, `random replacement ${out[i]} is special`); }
  }
  const chosen = masked + same + other;
  assert.equal(n, chosen);
  // eligible ≈ 14000: binomial sd of the rate ≈ 0.003, so ±0.015 is five sigma.
  assert.ok(Math.abs(chosen / eligible - 0.15) < 0.015, `chosen rate ${chosen / eligible}`);
  assert.ok(Math.abs(masked / chosen - 0.8) < 0.04, `[MASK] share ${masked / chosen}`);
  assert.ok(Math.abs(other / chosen - 0.1) < 0.035, `random share ${other / chosen}`);
  assert.ok(Math.abs(same / chosen - 0.1) < 0.035, `kept share ${same / chosen}`);
  // [UNK] is not a special role here (isSpecialId false), so it may be chosen: it is in the random pool too.
  const c2 = new MlmCollator(tok, { mlmProbability: 0.5 });
  const n2 = c2.apply(ids, T, new Rng(7), out, labels);
  assert.ok(Math.abs(n2 / eligible - 0.5) < 0.03, `mlm_probability 0.5 gave ${n2 / eligible}`);
});

test('the same seed gives the same masks; another seed others; the Rng state resumes the sequence', () => {
  const tok = fakeTok('wordpiece', WP_WORDS);
  const c = new MlmCollator(tok);
  const T = 32, ids = batch(8, T, tok.vocabSize, new Rng(3));
  const run = (rng: Rng): [Int32Array, Int32Array] => { const o = new Int32Array(ids.length), l = new Int32Array(ids.length); c.apply(ids, T, rng, o, l); return [o, l]; };
  assert.deepEqual(run(new Rng(5)), run(new Rng(5)));
  assert.notDeepEqual(run(new Rng(5))[1], run(new Rng(6))[1]);
  const a = new Rng(9); run(a); const second = run(a);
  const b = new Rng(9); run(b); const st = b.getState();
  const b2 = new Rng(0); b2.setState(st);
  assert.deepEqual(run(b2), second);
});

test('whole-word masking chooses a WordPiece word with all its ## pieces, or none of it', () => {
  const tok = fakeTok('wordpiece', WP_WORDS);
  const c = new MlmCollator(tok, { wholeWordMask: true, mlmProbability: 0.3 });
  const T = 40, rng = new Rng(11);
  // Rows of words: a start token w… followed by 0–3 pieces ##…
  const starts = WP_WORDS.map((w, i) => (w.startsWith('##') ? -1 : i + 5)).filter((x) => x >= 0);
  const pieces = WP_WORDS.map((w, i) => (w.startsWith('##') ? i + 5 : -1)).filter((x) => x >= 0);
  const B = 200, ids = new Int32Array(B * T);
  const groups: number[][] = [];
  for (let b = 0; b < B; b++) {
    let t = 0; ids[b * T + t++] = 2;
    while (t < T - 1) {
      const g = [b * T + t]; ids[b * T + t++] = starts[rng.int(starts.length)];
      const k = rng.int(4);
      for (let j = 0; j < k && t < T - 1; j++) { g.push(b * T + t); ids[b * T + t++] = pieces[rng.int(pieces.length)]; }
      groups.push(g);
    }
    ids[b * T + T - 1] = 3;
  }
  const out = new Int32Array(ids.length), labels = new Int32Array(ids.length);
  c.apply(ids, T, new Rng(1), out, labels);
  let chosenWords = 0, multi = 0;
  for (const g of groups) {
    const on = g.map((i) => labels[i] !== IGNORE_INDEX);
    assert.ok(on.every((x) => x === on[0]), `word at ${g[0]} partly chosen: ${on}`);
    if (on[0]) { chosenWords++; if (g.length > 1) multi++; }
  }
  assert.ok(multi > 10, 'no multi-piece word was chosen');
  assert.ok(Math.abs(chosenWords / groups.length - 0.3) < 0.04, `word rate ${chosenWords / groups.length}`);
  // Without whole-word masking the same batch splits words.
  const c2 = new MlmCollator(tok, { mlmProbability: 0.3 });
  c2.apply(ids, T, new Rng(1), out, labels);
  assert.ok(groups.some((g) => { const on = g.map((i) => labels[i] !== IGNORE_INDEX); return on.some((x) => x !== on[0]); }), 'token-level masking never split a word');
});

test('whole-word masking with BPE: a word starts at a Ġ token', () => {
  const tok = fakeTok('bpe', ['Ġthe', 'Ġcat', 'ing', 's', 'Ġsat', 'ed']);
  const c = new MlmCollator(tok, { wholeWordMask: true, mlmProbability: 0.5 });
  // Ġcat s | Ġsat ing ed | Ġthe | Ġcat, repeated.
  const row = [6, 8, 9, 7, 10, 5, 6];
  const ids = Int32Array.from(Array.from({ length: 300 }, () => row).flat());
  const out = new Int32Array(ids.length), labels = new Int32Array(ids.length);
  c.apply(ids, row.length, new Rng(2), out, labels);
  let split = 0, any = 0;
  for (let r = 0; r < 300; r++) {
    const L = (i: number): boolean => labels[r * 7 + i] !== IGNORE_INDEX;
    if (L(0) !== L(1)) split++;
    if (L(2) !== L(3) || L(3) !== L(4)) split++;
    if (L(2)) any++;
  }
  assert.equal(split, 0);
  assert.ok(any > 100 && any < 200, `word chosen ${any}/300 times`);
});

test('bad inputs are one-line errors', () => {
  const tok = fakeTok('wordpiece', WP_WORDS);
  assert.throws(() => new MlmCollator({ ...tok, maskTokenId: undefined }), /mask token/);
  assert.throws(() => new MlmCollator(tok, { mlmProbability: 1 }), /mlm_probability/);
  assert.throws(() => new MlmCollator(tok).apply(new Int32Array(10), 3, new Rng(0), new Int32Array(10), new Int32Array(10)), /rows of 3/);
});

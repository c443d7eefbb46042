// The LAMA probe against a direct computation: a tiny GPT-2 (causal: next token after the text
// before [Y]), a hand-written masked LM whose logits depend on every attended token (so padding
// leaks would show), and a tiny random BERT. Ranks, P@1/P@10, skipped counts, k-shot prompts,
// candidate sets and the macro average.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { Rng, hashUniform } from '../../src/engine/rng.js';
import type { Tensor } from '../../src/engine/index.js';
import { createModel, type LanguageModel, type LMConfig } from '../../src/models/index.js';
import type { Tokenizer } from '../../src/tokenizers/types.js';
import { Module } from '../../src/nn/module.js';
import { demoSeed, drawDemonstrations, fillTemplate, splitAtObject, type LamaFact, type LamaRelation } from '../../src/data/lama.js';
import { lamaCandidates, lamaPrompt, macroAverage, probeRelation, singleTokenId, type LamaCandidates } from '../../src/eval/lama.js';
import { COMMON, NOT_COMMON, RARE, TEMPLATES, TEST, TRAIN, lamaGpt2, lamaTokenizer } from './lama-fixture.js';

const rel = (id: string): LamaRelation => ({ id, template: TEMPLATES[id], label: id, type: 'N-1', source: 'trex' });

/** A masked LM with controlled logits: each position's logits hash the attended ids, the position and the token. */
class ToyMasked extends Module implements LanguageModel {
  readonly kind = 'masked' as const;
  readonly modelType = 'toy';
  readonly config: LMConfig;
  readonly maxPositions = 512;
  readonly eosTokenId = null;
  readonly rng = new Rng(0);
  readonly dims = { layers: 0, heads: 1, hidden: 1 };
  constructor(readonly vocabSize: number) { super(); this.training = false; this.config = { model_type: 'toy', vocab_size: vocabSize }; }
  hidden(ids: Tensor, opts: { attentionMask?: Tensor } = {}): Tensor {
    const [B, T] = ids.shape, V = this.vocabSize, x = ids.toArray(), m = opts.attentionMask?.toArray();
    const out = new Float32Array(B * T * V);
    for (let b = 0; b < B; b++) {
      let sig = 17;
      for (let t = 0; t < T; t++) if (!m || m[b * T + t]) sig = (Math.imul(sig, 31) + x[b * T + t] + 1) >>> 0;
      for (let t = 0; t < T; t++) for (let v = 0; v < V; v++) out[(b * T + t) * V + v] = hashUniform((sig ^ Math.imul(t, 7919)) >>> 0, v);
    }
    return O.fromData(out, [B, T, V]);
  }
  lmHead(h: Tensor): Tensor { return h; }
  forward(ids: Tensor, opts?: { attentionMask?: Tensor }): Tensor { return this.hidden(ids, opts); }
  loss(): never { throw new Error('not used'); }
  inputEmbeddings(): never { throw new Error('not used'); }
  resizeTokenEmbeddings(): never { throw new Error('not used'); }
  savePretrained(): void {}
}

/** Candidate ids computed here, independently of lamaCandidates. */
function candidateSet(tok: Tokenizer, V: number, vocab: 'common' | 'full'): Set<number> {
  const s = new Set<number>();
  if (vocab === 'full') { for (let i = 0; i < V; i++) if (!tok.isSpecialId(i)) s.add(i); return s; }
  for (const w of COMMON) { const e = tok.encode(' ' + w, { addSpecialTokens: false }); if (e.length === 1 && !tok.isSpecialId(e[0])) s.add(e[0]); }
  return s;
}

interface Direct { ranks: Map<string, [number, number, number]>; skipped: number; }

/** Ranks straight from model.forward on one unpadded sequence per fact: [lo, hi] with a 1e-4 tie tolerance, and the exact rank. */
function direct(model: LanguageModel, tok: Tokenizer, id: string, facts: LamaFact[], cands: Set<number>, k = 0, seed = 0): Direct {
  const ranks = new Map<string, [number, number, number]>();
  let skipped = 0;
  const mask = tok.tokenToId('[MASK]');
  facts.forEach((f, i) => {
    const e = tok.encode(' ' + f.obj, { addSpecialTokens: false });
    if (e.length !== 1 || !cands.has(e[0])) { skipped++; return; }
    const demos = k ? drawDemonstrations(TRAIN[id], k, new Rng(demoSeed(seed, id, i)), f).map((d) => fillTemplate(TEMPLATES[id], d.sub, d.obj) + ' ') : [];
    const [pre, post] = TEMPLATES[id].replace('[X]', f.sub).split('[Y]');
    const before = demos.join('') + pre.trimEnd();
    let ids: number[], pos: number;
    if (model.kind === 'masked') {
      ids = [tok.tokenToId('[CLS]')!, ...tok.encode(before, { addSpecialTokens: false }), mask!, ...tok.encode(post, { addSpecialTokens: false }), tok.tokenToId('[SEP]')!];
      pos = ids.indexOf(mask!);
    } else { ids = tok.encode(before, { addSpecialTokens: false }); pos = ids.length - 1; }
    const logits = model.forward(O.fromData(Int32Array.from(ids), [1, ids.length])).toArray();
    const V = model.vocabSize, row = logits.slice(pos * V, (pos + 1) * V), g = row[e[0]];
    let lo = 1, hi = 1, exact = 1;
    for (const c of cands) { if (row[c] > g + 1e-4) lo++; if (row[c] > g - 1e-4 && c !== e[0]) hi++; if (row[c] > g) exact++; }
    ranks.set(f.sub, [lo, hi, exact]);
  });
  return { ranks, skipped };
}

function check(model: LanguageModel, tok: Tokenizer, id: string, cands: LamaCandidates, set: Set<number>, o: { k?: number; seed?: number; batchSize?: number } = {}) {
  const r = probeRelation(model, tok, rel(id), TEST[id], TRAIN[id], cands, { kShot: o.k, seed: o.seed, batchSize: o.batchSize });
  const d = direct(model, tok, id, TEST[id], set, o.k ?? 0, o.seed ?? 0);
  assert.equal(r.skipped, d.skipped, `${id} skipped`);
  assert.equal(r.n, d.ranks.size, `${id} n`);
  assert.equal(r.n + r.skipped, TEST[id].length);
  for (const p of r.predictions) {
    const [lo, hi] = d.ranks.get(p.sub)!;
    assert.ok(p.rank >= lo && p.rank <= hi, `${id} ${p.sub}: rank ${p.rank}, direct [${lo}, ${hi}]`);
  }
  assert.equal(r.p1, r.predictions.filter((p) => p.rank === 1).length / r.n);
  assert.equal(r.p10, r.predictions.filter((p) => p.rank <= 10).length / r.n);
  return r;
}

describe('LAMA probe, causal (tiny GPT-2)', () => {
  const tok = lamaTokenizer(false);
  const model = lamaGpt2(tok.vocabSize);
  const common = lamaCandidates(tok, model, 'common', COMMON), full = lamaCandidates(tok, model, 'full');
  const cset = candidateSet(tok, tok.vocabSize, 'common'), fset = candidateSet(tok, tok.vocabSize, 'full');

  it('candidate sets: common vocabulary ∩ single tokens, full = non-special', () => {
    assert.deepEqual([...common.ids], [...cset].sort((a, b) => a - b));
    assert.deepEqual([...full.ids], [...fset].sort((a, b) => a - b));
    assert.ok(common.size >= 15, `most fixture objects are one token (${common.size})`);
    assert.equal(singleTokenId(tok, RARE[0]), undefined, 'the rare object is several tokens');
    assert.notEqual(singleTokenId(tok, NOT_COMMON), undefined);
    assert.ok(!common.has(singleTokenId(tok, NOT_COMMON)!) && full.has(singleTokenId(tok, NOT_COMMON)!));
  });

  it('ranks, P@1/P@10 and skipped counts equal a direct computation', () => {
    for (const id of Object.keys(TEMPLATES)) {
      const r = check(model, tok, id, common, cset, { batchSize: 4 });
      const rf = check(model, tok, id, full, fset, { batchSize: 4 });
      const notCommon = TEST[id].filter((f) => f.obj === NOT_COMMON).length;
      assert.equal(r.skipped - rf.skipped, notCommon, `${id}: objects outside the common vocabulary are skipped only there`);
      if (id === 'P19') assert.ok(r.skipped >= 2 && r.n >= 8, `P19: the rare object and ${NOT_COMMON} skipped (${r.skipped})`);
    }
  });

  it('batch size does not change the result; --max-facts cuts each relation', () => {
    const a = probeRelation(model, tok, rel('P37'), TEST.P37, TRAIN.P37, full, { batchSize: 1 });
    const b = probeRelation(model, tok, rel('P37'), TEST.P37, TRAIN.P37, full, { batchSize: 64 });
    const key = (r: typeof a) => r.predictions.map((p) => `${p.sub}:${p.rank}`).sort();
    assert.deepEqual(key(a), key(b));
    const c = probeRelation(model, tok, rel('P37'), TEST.P37, TRAIN.P37, full, { maxFacts: 3 });
    assert.equal(c.n + c.skipped, 3);
  });

  it('k-shot prompts: seeded demonstrations of the same relation before the query', () => {
    const r3 = check(model, tok, 'P19', full, fset, { k: 3, seed: 5 });
    const r0 = probeRelation(model, tok, rel('P19'), TEST.P19, TRAIN.P19, full);
    assert.notDeepEqual(r3.predictions.map((p) => p.rank), r0.predictions.map((p) => p.rank), 'demonstrations change the scores');
    const again = probeRelation(model, tok, rel('P19'), TEST.P19, TRAIN.P19, full, { kShot: 3, seed: 5 });
    assert.deepEqual(again.predictions, r3.predictions);
  });

  it('templates with text after [Y] are probed by their prefix', () => {
    assert.equal(splitAtObject(TEMPLATES.P27, 'Anna').prefix, 'Anna is');
    check(model, tok, 'P27', full, fset);
  });
});

describe('LAMA probe, masked', () => {
  const tok = lamaTokenizer(true);

  it('a hand-written masked LM: the [MASK] replaces [Y], [CLS]/[SEP] around, padding masked out', () => {
    const model = new ToyMasked(tok.vocabSize);
    const full = lamaCandidates(tok, model, 'full'), fset = candidateSet(tok, tok.vocabSize, 'full');
    assert.ok(!full.has(tok.tokenToId('[MASK]')!), 'special tokens are not candidates');
    for (const id of Object.keys(TEMPLATES)) {
      const r = check(model, tok, id, full, fset, { batchSize: 3 });
      assert.ok(r.n > 0);
      // With exact hashed logits the ranks are exact, not just within the tie tolerance.
      const d = direct(model, tok, id, TEST[id], fset);
      for (const p of r.predictions) assert.equal(p.rank, d.ranks.get(p.sub)![2]);
    }
    check(model, tok, 'P19', full, fset, { k: 2, seed: 9, batchSize: 5 });
  });

  it('a tiny random BERT', () => {
    const model = createModel('bert', { vocab_size: tok.vocabSize, hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 256 }, 4);
    model.eval();
    assert.equal(model.kind, 'masked');
    const common = lamaCandidates(tok, model, 'common', COMMON), cset = candidateSet(tok, tok.vocabSize, 'common');
    for (const id of ['P19', 'P37']) check(model, tok, id, common, cset, { batchSize: 4 });
    check(model, tok, 'P37', common, cset, { k: 2, seed: 1, batchSize: 4 });
  });

  it('needs a mask token', () => {
    const plain = lamaTokenizer(false);
    const model = new ToyMasked(plain.vocabSize);
    assert.throws(() => probeRelation(model, plain, rel('P19'), TEST.P19, [], lamaCandidates(plain, model, 'full')), /masked LM needs a tokenizer with a mask token/);
  });
});

describe('lamaPrompt', () => {
  it('masked: [CLS] demos + query with [MASK] in [Y] [SEP]; demonstrations dropped from the front to fit', () => {
    const tok = lamaTokenizer(true), enc = (x: string) => tok.encode(x, { addSpecialTokens: false });
    const [cls, sep, mask] = ['[CLS]', '[SEP]', '[MASK]'].map((t) => tok.tokenToId(t)!);
    const f = TEST.P27[0], demos = TRAIN.P27.slice(0, 2);
    const p = lamaPrompt({ kind: 'masked', maxPositions: 512, eosTokenId: null }, tok, rel('P27'), f, demos)!;
    const before = `${fillTemplate(TEMPLATES.P27, demos[0].sub, demos[0].obj)} ${fillTemplate(TEMPLATES.P27, demos[1].sub, demos[1].obj)} ${f.sub} is`;
    assert.deepEqual(p.ids, [cls, ...enc(before), mask, ...enc(' citizen .'), sep]);
    assert.equal(p.ids[p.pos], mask);
    const short = lamaPrompt({ kind: 'masked', maxPositions: p.ids.length - 1, eosTokenId: null }, tok, rel('P27'), f, demos)!;
    assert.deepEqual(short.ids, [cls, ...enc(`${fillTemplate(TEMPLATES.P27, demos[1].sub, demos[1].obj)} ${f.sub} is`), mask, ...enc(' citizen .'), sep]);
    assert.equal(lamaPrompt({ kind: 'masked', maxPositions: 3, eosTokenId: null }, tok, rel('P27'), f, demos), null);
  });
  it('causal: the text before [Y], object predicted after the last token', () => {
    const tok = lamaTokenizer(false);
    const p = lamaPrompt({ kind: 'causal', maxPositions: 512, eosTokenId: 0 }, tok, rel('P19'), TEST.P19[0], [])!;
    assert.deepEqual(p.ids, tok.encode(`${TEST.P19[0].sub} was born in`, { addSpecialTokens: false }));
    assert.equal(p.pos, p.ids.length - 1);
  });
});

describe('macro average', () => {
  it('is the mean over relations with probed facts', () => {
    const avg = macroAverage({ a: { p1: 0.5, p10: 1, n: 4, skipped: 0 }, b: { p1: 0, p10: 0.25, n: 8, skipped: 3 }, c: { p1: 0, p10: 0, n: 0, skipped: 5 } });
    assert.deepEqual(avg, { p1: 0.25, p10: 0.625, relations: 2 });
  });
});

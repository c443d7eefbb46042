// Metrics on hand-worked examples: accuracy, macro-F1 (sklearn semantics), SQuAD EM / token F1
// with the official normalisation, mean ± sample std.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { accuracy, macroF1, normalizeAnswer, exactMatch, tokenF1, meanStd } from '../../src/eval/metrics.js';

const close = (a: number, b: number, what = ''): void => assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} vs ${b}`);

describe('accuracy', () => {
  it('fraction of exact string matches', () => {
    close(accuracy(['A', 'A', 'A', 'B', 'B', 'C'], ['A', 'A', 'B', 'B', 'A', 'A']), 3 / 6);
    close(accuracy(['x'], ['x']), 1);
    close(accuracy(['x'], ['X']), 0); // case-sensitive: options are compared as given
    assert.equal(accuracy([], []), 0);
    assert.throws(() => accuracy(['a'], []), /1 golds vs 0 predictions/);
  });
});

describe('macroF1', () => {
  it('hand-worked example with a label that is never predicted', () => {
    //        0  1  2  3  4  5
    // gold:  A  A  A  B  B  C
    // pred:  A  A  B  B  A  A
    // A: tp = 2 (0, 1), fp = 2 (4, 5), fn = 1 (2) → P = 2/4, R = 2/3, F1 = 2·(1/2)(2/3)/(1/2 + 2/3) = (2/3)/(7/6) = 4/7
    // B: tp = 1 (3),    fp = 1 (2),    fn = 1 (4) → P = 1/2, R = 1/2, F1 = 1/2
    // C: tp = 0,        fp = 0,        fn = 1 (5) → P = 0 (0/0 → 0), R = 0, F1 = 0
    // macro-F1 = (4/7 + 1/2 + 0) / 3 = (15/14) / 3 = 5/14
    const g = ['A', 'A', 'A', 'B', 'B', 'C'], p = ['A', 'A', 'B', 'B', 'A', 'A'];
    close(macroF1(g, p, ['A', 'B', 'C']), 5 / 14, 'macro-F1');
    // Label order does not matter.
    close(macroF1(g, p, ['C', 'A', 'B']), 5 / 14);
    // A label with neither gold nor predictions still counts (as F1 0): the average is over the options.
    // (4/7 + 1/2 + 0 + 0) / 4 = 15/56
    close(macroF1(g, p, ['A', 'B', 'C', 'D']), 15 / 56);
  });

  it('perfect and all-wrong predictions; errors', () => {
    close(macroF1(['a', 'b', 'a'], ['a', 'b', 'a'], ['a', 'b']), 1);
    close(macroF1(['a', 'a'], ['b', 'b'], ['a', 'b']), 0);
    // Always predicting the majority class: a: P = 2/3, R = 1, F1 = 0.8; b: 0 → 0.4
    close(macroF1(['a', 'a', 'b'], ['a', 'a', 'a'], ['a', 'b']), 0.4);
    assert.equal(macroF1(['a'], ['a'], []), 0);
    assert.throws(() => macroF1(['a'], ['a', 'b'], ['a']), /1 golds vs 2 predictions/);
  });
});

describe('SQuAD exact match and token F1', () => {
  it('normalisation: lower case, punctuation deleted, articles dropped, whitespace collapsed', () => {
    // Expected values are what the official SQuAD v1.1 normalize_answer returns.
    assert.equal(normalizeAnswer('The  Cat!'), 'cat');
    assert.equal(normalizeAnswer('An apple, a day.'), 'apple day');
    assert.equal(normalizeAnswer('U.S.'), 'us');
    assert.equal(normalizeAnswer("don't"), 'dont');
    assert.equal(normalizeAnswer('rock-n-roll'), 'rocknroll');
    assert.equal(normalizeAnswer('Theatre'), 'theatre'); // "the" only as a whole word
    assert.equal(normalizeAnswer('  \n\tParis \n'), 'paris');
  });

  it('exact match', () => {
    assert.equal(exactMatch('the Eiffel Tower', 'Eiffel tower.'), 1);
    assert.equal(exactMatch('U.S.', 'us'), 1);
    assert.equal(exactMatch('Eiffel', 'Eiffel Tower'), 0);
    assert.equal(exactMatch('', ''), 1);
  });

  it('token F1 (bag of tokens with multiplicity)', () => {
    // pred {cat, sat}, gold {cat, sat, down}: P = 1, R = 2/3 → F1 = 0.8
    close(tokenF1('the cat sat', 'a cat sat down'), 0.8);
    // pred x x y, gold x y y: common = min counts = x:1 + y:1 = 2 → P = R = 2/3
    close(tokenF1('x x y', 'x y y'), 2 / 3);
    close(tokenF1('Paris', 'paris!'), 1);
    close(tokenF1('London', 'Paris'), 0);
    // Empty after normalisation: 1 if both are empty, else 0 (as SQuAD v2's script; v1.1 gives 0 for both empty).
    close(tokenF1('the', 'a'), 1);
    close(tokenF1('', 'cat'), 0);
    close(tokenF1('cat', ''), 0);
  });
});

describe('meanStd', () => {
  it('mean and sample standard deviation (n - 1)', () => {
    // mean 5; squared deviations 9, 1, 1, 9 → Σ = 20; /(4-1) → sqrt(20/3)
    const r = meanStd([2, 4, 6, 8]);
    close(r.mean, 5); close(r.std, Math.sqrt(20 / 3));
    // 0.5, 0.7: mean 0.6, deviations ±0.1 → var = 0.02/1 → std = √0.02
    const r2 = meanStd([0.5, 0.7]);
    assert.ok(Math.abs(r2.mean - 0.6) < 1e-15); assert.ok(Math.abs(r2.std - Math.sqrt(0.02)) < 1e-15);
    assert.deepEqual(meanStd([0.25]), { mean: 0.25, std: 0 });
    assert.deepEqual(meanStd([3, 3, 3]), { mean: 3, std: 0 });
    const e = meanStd([]);
    assert.ok(Number.isNaN(e.mean) && Number.isNaN(e.std));
  });
});

it('headline by task type, by hand: macro-F1 for classification, accuracy for multiple-choice', async () => {
  const { optionTaskMetrics, isClassification, headlineMetric } = await import('../../src/eval/metrics.js');
  // Classification over {a, b, c} (the same set in any order): golds a a b c, preds a b b b.
  // F1: a = 2·1·0.5/1.5 = 2/3, b = 2·(1/3)·1/(4/3) = 1/2, c = 0 → macro 7/18; accuracy 2/4.
  const cls = optionTaskMetrics(['a', 'a', 'b', 'c'], ['a', 'b', 'b', 'b'], [['a', 'b', 'c'], ['c', 'b', 'a'], ['a', 'b', 'c'], ['b', 'a', 'c']]);
  assert.ok(Math.abs(cls.macro_f1 - 7 / 18) < 1e-12, String(cls.macro_f1));
  assert.equal(cls.accuracy, 0.5);
  assert.equal(headlineMetric(cls), cls.macro_f1);
  // Multiple-choice: each example its own options; macro-F1 over the first example's options
  // ({x, y}) would be meaningless, so the headline is accuracy (1 of 3).
  const mc = optionTaskMetrics(['x', 'p', 'u'], ['x', 'q', 'v'], [['x', 'y'], ['p', 'q', 'r'], ['u', 'v']]);
  assert.deepEqual(mc, { accuracy: 1 / 3 });
  assert.equal(headlineMetric(mc), 1 / 3);
  assert.equal(headlineMetric({ em: 0.25, f1: 0.5 }), 0.25, 'generation: exact match');
  assert.equal(isClassification([['a', 'b'], ['b', 'a']]), true);
  assert.equal(isClassification([['a', 'b'], ['a', 'c']]), false);
  assert.equal(isClassification([[]]), false);
});

it('the study headline: per-task headline by type, averaged over tasks', async () => {
  const { withHeadline } = await import('../../src/distill/study-results.js');
  const r = withHeadline({ tasks: { cls: { accuracy: 0.5, macro_f1: 7 / 18 }, mc: { accuracy: 1 / 3 } }, average: { accuracy: 5 / 12, macro_f1: 7 / 18 } });
  assert.equal(r.tasks.cls.headline, 7 / 18);
  assert.equal(r.tasks.mc.headline, 1 / 3);
  assert.ok(Math.abs(r.average.headline - (7 / 18 + 1 / 3) / 2) < 1e-12);
  assert.equal(r.average.accuracy, 5 / 12, 'the other averages are kept');
});

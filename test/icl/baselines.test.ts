// Baselines by hand on a tiny example: majority-label and copy-nearest predictions, their
// tie-breaks, and the metrics they produce.

import test from 'node:test';
import assert from 'node:assert/strict';
import { majorityPrediction, copyNearestPrediction, baselineMetrics } from '../../src/icl/baselines.js';
import type { Example } from '../../src/data/tasks.js';

const opts = ['a', 'b', 'c'];
const ex = (input: string, output: string): Example => ({ task: 't', input, output, options: opts });
const demos = [ex('x y', 'b'), ex('p q', 'a'), ex('x z', 'c'), ex('r', 'b')];

test('baselines: majority label of the demonstrations, ties to the first option', () => {
  assert.equal(majorityPrediction(demos, ex('anything', 'a')), 'b'); // b ×2, a ×1, c ×1
  assert.equal(majorityPrediction([ex('1', 'c'), ex('2', 'b')], ex('q', 'a')), 'b'); // tie b/c: b is earlier in the options
  assert.equal(majorityPrediction([ex('1', 'zzz'), ex('2', 'zzz'), ex('3', 'c')], ex('q', 'a')), 'c'); // outputs outside the options are ignored
});

test('baselines: copy-nearest prefers an identical input, then shared words, then the latest demonstration', () => {
  assert.equal(copyNearestPrediction(demos, ex('p q', 'a')), 'a'); // identical
  assert.equal(copyNearestPrediction(demos, ex('z x', 'a')), 'c'); // {x,z} = {x,z}: Jaccard 1 beats "x y" (1/3)
  assert.equal(copyNearestPrediction(demos, ex('y', 'a')), 'b'); // only "x y" shares a word
  assert.equal(copyNearestPrediction(demos, ex('none', 'a')), 'b'); // nothing shared: the last demonstration ("r" → b)
  assert.equal(copyNearestPrediction([ex('k', 'a'), ex('k', 'c')], ex('k', 'a')), 'c'); // tie: the one nearest the query
});

test('baselines: metrics are accuracy and macro-F1 over the options', () => {
  const test_ = [ex('p q', 'a'), ex('x y', 'b'), ex('x z', 'c'), ex('r', 'a')];
  const cp = baselineMetrics('copy-nearest', demos, test_); // predicts a, b, c, b → 3/4
  assert.equal(cp.accuracy, 0.75);
  // a: P 1 R 1/2 → 2/3; b: P 1/2 R 1 → 2/3; c: 1 → macro (2/3 + 2/3 + 1)/3
  assert.ok(Math.abs(cp.macro_f1 - (2 / 3 + 2 / 3 + 1) / 3) < 1e-12);
  const maj = baselineMetrics('majority', demos, test_); // always b → 1/4
  assert.equal(maj.accuracy, 0.25);
});

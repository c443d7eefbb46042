// Masked-LM ICT instances: the answer is replaced by [MASK] and predicted in place; causal ones
// keep their shifted targets. The teacher-cache rows follow the same rule.

import test from 'node:test';
import assert from 'node:assert/strict';
import { makeBatch, answerRows, answerSpan, predictionRow, type Instance } from '../../src/icl/ict.js';
import { instancesHash } from '../../src/distill/cache.js';

const MASK = 4, PAD = 0;
// [CLS]=2 demo: 10 11 12 [SEP]=3 | query: 20 21 <answer 30 31> 22 [SEP]
const masked: Instance = { prefix: [2, 10, 11, 12], suffix: [20, 21, 30, 31, 22, 3], contStart: 2, contEnd: 4, task: 'P19', options: [], gold: 'x', mask: MASK };
const causal: Instance = { prefix: [10, 11], suffix: [20, 30, 31], contStart: 1, task: 't', options: [], gold: 'y' };

test('a masked instance: answer tokens become [MASK], targets sit at the same positions, padding is masked out', () => {
  const short: Instance = { ...masked, prefix: [2], suffix: [20, 30, 22, 3], contStart: 1, contEnd: 2 };
  const b = makeBatch([masked, short], PAD);
  assert.equal(b.L, 10);
  assert.deepEqual([...b.ids.slice(0, 10)], [2, 10, 11, 12, 20, 21, MASK, MASK, 22, 3]);
  assert.deepEqual([...b.targets.slice(0, 10)], [-100, -100, -100, -100, -100, -100, 30, 31, -100, -100]);
  assert.deepEqual([...b.ids.slice(10)], [2, 20, MASK, 22, 3, PAD, PAD, PAD, PAD, PAD]);
  assert.deepEqual([...b.targets.slice(10)], [-100, -100, 30, -100, -100, -100, -100, -100, -100, -100]);
  assert.deepEqual([...b.attention!], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(answerSpan(masked), { start: 6, end: 8 });
  assert.deepEqual(answerRows(masked, 0, b.L), [6, 7]);
  assert.deepEqual(answerRows(short, 1, b.L), [12]);
  assert.equal(predictionRow(masked, 6), 6);
});

test('a causal instance keeps next-token targets and no attention mask', () => {
  const b = makeBatch([causal], PAD);
  assert.deepEqual([...b.ids], [10, 11, 20, 30, 31]);
  assert.deepEqual([...b.targets], [-100, -100, 30, 31, -100]);
  assert.equal(b.attention, null);
  assert.deepEqual(answerRows(causal, 0, b.L), [2, 3]);
  assert.equal(predictionRow(causal, 3), 2);
});

test('mixing causal and masked instances in one batch is refused; the cache key tells them apart', () => {
  assert.throws(() => makeBatch([masked, causal], PAD), /mixes causal and masked/);
  const asCausal: Instance = { ...masked, mask: undefined, contEnd: undefined };
  assert.notEqual(instancesHash([masked]), instancesHash([asCausal]));
  assert.notEqual(instancesHash([masked]), instancesHash([{ ...masked, contEnd: 3 }]));
});

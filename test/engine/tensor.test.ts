// Tensor semantics: views share storage, autograd bookkeeping, error messages, scopes.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { Tensor, tidy, noGrad, detach, liveTensorCount } from '../../src/engine/tensor.js';

test('views share storage: reshape, transpose/permute, narrow/slice, expand', () => {
  const x = O.tensor([[1, 2, 3], [4, 5, 6]]);
  const t = O.transpose(x);
  assert.equal(t.storage, x.storage);
  assert.deepEqual(t.shape, [3, 2]);
  assert.deepEqual(t.toArray(), [1, 4, 2, 5, 3, 6]);
  assert.equal(t.isContiguous(), false);
  const r = O.reshape(x, [3, 2]);
  assert.equal(r.storage, x.storage);
  const n = O.narrow(x, 1, 1, 2);
  assert.equal(n.storage, x.storage);
  assert.deepEqual(n.toArray(), [2, 3, 5, 6]);
  assert.deepEqual(O.slice(x, 1, -1).toArray(), [3, 6]);
  const e = O.expand(O.tensor([[7], [8]]), [2, 3]);
  assert.deepEqual(e.strides, [1, 0]);
  assert.deepEqual(e.toArray(), [7, 7, 7, 8, 8, 8]);
  const p = O.permute(O.reshape(O.arange(24, 'float32'), [2, 3, 4]), [2, 0, 1]);
  assert.deepEqual(p.shape, [4, 2, 3]);
  assert.equal(p.toArray()[1], 4);
  const c = O.contiguous(t);
  assert.notEqual(c.storage, x.storage);
  assert.deepEqual(c.toArray(), [1, 4, 2, 5, 3, 6]);
  // reshape of a non-contiguous view must copy, and keep values in logical order
  assert.deepEqual(O.reshape(t, [6]).toArray(), [1, 4, 2, 5, 3, 6]);
});

test('matmul consumes transposed views without copies and matches a plain loop', () => {
  const a = O.tensor([[1, 2], [3, 4], [5, 6]]);
  const b = O.tensor([[1, 0, 2], [0, 1, 3]]);
  assert.deepEqual(O.matmul(a, b).toArray(), [1, 2, 8, 3, 4, 18, 5, 6, 28]);
  assert.deepEqual(O.matmul(O.transpose(b), O.transpose(a)).toArray(), [1, 3, 5, 2, 4, 6, 8, 18, 28]);
});

test('shape errors name both shapes', () => {
  assert.throws(() => O.add(O.zeros([2, 3]), O.zeros([4, 3])), /\[2, 3\] and \[4, 3\]/);
  assert.throws(() => O.matmul(O.zeros([2, 3]), O.zeros([4, 5])), /\[2, 3\] @ \[4, 5\]/);
  assert.throws(() => O.reshape(O.zeros([2, 3]), [4, 2]), /\[2, 3\].*\[4, 2\]/);
  assert.throws(() => O.crossEntropy(O.zeros([2, 3]), O.tensor([0, 5], [2], 'int32')), /target 5 at row 1/);
  assert.throws(() => O.embedding(O.zeros([4, 2]), O.tensor([4], [1], 'int32')), /id 4 .*\[0, 4\)/);
});

test('gradients accumulate into .grad across backward calls; detach and noGrad stop them', () => {
  const w = O.param(O.tensor([1, 2, 3]));
  O.sum(O.mul(w, w)).backward();
  assert.deepEqual(w.grad!.toArray(), [2, 4, 6]);
  O.sum(O.scale(w, 3)).backward();
  assert.deepEqual(w.grad!.toArray(), [5, 7, 9]);
  const d = detach(w);
  assert.equal(d.requiresGrad, false);
  const y = noGrad(() => O.mul(w, 2));
  assert.equal(y.requiresGrad, false);
  assert.throws(() => y.backward(), /does not require grad/);
  // a tensor used twice gets both contributions
  const x = O.param(O.tensor([3]));
  O.mul(x, x).backward();
  assert.deepEqual(x.grad!.toArray(), [6]);
});

test('tidy frees intermediates, keeps results and their graph, and dispose is detected', () => {
  const w = O.param(O.tensor([1, 2])).keep();
  const before = liveTensorCount();
  const loss = tidy(() => O.sum(O.exp(O.mul(w, 2))));
  // the graph survives the scope: backward still works
  loss.backward();
  assert.ok(Math.abs(w.grad!.toArray()[0] - 2 * Math.exp(2)) < 1e-4);
  loss.dispose();
  const z = tidy(() => { O.ones([100]); return 1; });
  assert.equal(z, 1);
  assert.ok(liveTensorCount() <= before + 8, `leaked tensors: ${liveTensorCount() - before}`);
  const t = O.ones([2]);
  t.dispose();
  assert.throws(() => t.toArray(), /used after dispose/);
});

test('int32 tensors, where/maskedFill, concat/stack/split values', () => {
  const ids = O.tensor([1, 2, 3], [3], 'int32');
  assert.equal(ids.dtype, 'int32');
  const m = O.tensor([0, 1, 0]);
  assert.deepEqual(O.maskedFill(O.tensor([1, 2, 3]), m, -Infinity).toArray(), [1, -Infinity, 3]);
  assert.deepEqual(O.concat([O.tensor([[1], [2]]), O.tensor([[3, 4], [5, 6]])], 1).toArray(), [1, 3, 4, 2, 5, 6]);
  assert.deepEqual(O.stack([O.tensor([1, 2]), O.tensor([3, 4])], 1).toArray(), [1, 3, 2, 4]);
  const [a, b] = O.split(O.tensor([1, 2, 3, 4, 5]), [2, 3]);
  assert.deepEqual(a.toArray(), [1, 2]);
  assert.deepEqual(b.toArray(), [3, 4, 5]);
  assert.deepEqual(O.argmax(O.tensor([[1, 5, 2], [7, 0, 7]])).toArray(), [1, 0]);
});

test('ops values: softmax, layerNorm, gelu, dropout statistics', () => {
  const s = O.softmax(O.tensor([[1, 2, 3]])).toArray();
  const e = [Math.exp(1), Math.exp(2), Math.exp(3)], z = e[0] + e[1] + e[2];
  s.forEach((v, i) => assert.ok(Math.abs(v - e[i] / z) < 1e-6));
  const ln = O.layerNorm(O.tensor([[1, 2, 3, 4]]), O.ones([4]), O.zeros([4]), 0).toArray();
  assert.ok(Math.abs(ln[0] + 1.3416407) < 1e-5);
  assert.ok(Math.abs(O.gelu(O.tensor([1]), 'none').item() - 0.8413447) < 1e-6);
  assert.ok(Math.abs(O.gelu(O.tensor([1]), 'tanh').item() - 0.8411920) < 1e-6);
  const d = O.dropout(O.ones([10000]), 0.3).toArray();
  const kept = d.filter((v) => v !== 0);
  assert.ok(Math.abs(kept.length / 10000 - 0.7) < 0.02, `kept fraction ${kept.length / 10000}`);
  assert.ok(kept.every((v) => Math.abs(v - 1 / 0.7) < 1e-6));
});

void Tensor;

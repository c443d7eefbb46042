// Finite-difference gradient checks for every differentiable op, on each available backend.

import test from 'node:test';
import { Rng } from '../../src/engine/rng.js';
import * as O from '../../src/engine/ops.js';
import { Tensor } from '../../src/engine/tensor.js';
import { setBackend } from '../../src/engine/backend/index.js';
import { availableBackends, gradcheck, leaf } from '../helpers.js';

for (const be of availableBackends()) {
  const r = new Rng(42);
  const L = (shape: number[], std = 1): Tensor => leaf(shape, r, std);
  const pos = (shape: number[]): Tensor => { const t = L(shape); const d = t.f32; for (let i = 0; i < d.length; i++) d[i] = 0.5 + Math.abs(d[i]); return t; };

  test(`[${be}] elementwise with broadcasting`, () => {
    setBackend(be);
    gradcheck('add', (a, b) => O.add(a, b), [L([3, 4]), L([4])]);
    gradcheck('sub', (a, b) => O.sub(a, b), [L([2, 1, 4]), L([3, 1])]);
    gradcheck('mul', (a, b) => O.mul(a, b), [L([2, 3, 4]), L([1, 3, 1])]);
    gradcheck('div', (a, b) => O.div(a, b), [L([3, 4]), pos([3, 1])]);
    gradcheck('scalar ops', (a) => O.add(O.mul(O.sub(a, 2), 3), O.div(a, 4)), [L([5])]);
  });

  test(`[${be}] unary ops`, () => {
    setBackend(be);
    gradcheck('exp', (a) => O.exp(a), [L([7], 0.5)]);
    gradcheck('log', (a) => O.log(a), [pos([7])]);
    gradcheck('tanh', (a) => O.tanh(a), [L([7])]);
    gradcheck('sqrt', (a) => O.sqrt(a), [pos([7])]);
    gradcheck('pow', (a) => O.pow(a, 3), [L([7])]);
    gradcheck('pow frac', (a) => O.pow(a, 1.5), [pos([7])]);
    gradcheck('relu', (a) => O.relu(a), [L([9])], { eps: 1e-3 });
    gradcheck('gelu tanh', (a) => O.gelu(a, 'tanh'), [L([9], 2)]);
    gradcheck('gelu erf', (a) => O.gelu(a, 'none'), [L([9], 2)]);
    gradcheck('sigmoid', (a) => O.sigmoid(a), [L([9], 2)]);
    gradcheck('neg/scale', (a) => O.addScalar(O.scale(O.neg(a), 2.5), 1), [L([4])]);
  });

  test(`[${be}] matmul: 2-d, batched, transposed views, broadcast batch`, () => {
    setBackend(be);
    gradcheck('mm', (a, b) => O.matmul(a, b), [L([3, 5]), L([5, 4])]);
    gradcheck('mm aT', (a, b) => O.matmul(O.transpose(a), b), [L([5, 3]), L([5, 4])]);
    gradcheck('mm bT', (a, b) => O.matmul(a, O.transpose(b)), [L([3, 5]), L([4, 5])]);
    gradcheck('bmm', (a, b) => O.matmul(a, b), [L([2, 3, 5]), L([2, 5, 4])]);
    gradcheck('bmm broadcast b', (a, b) => O.matmul(a, b), [L([2, 3, 3, 5]), L([5, 4])]);
    gradcheck('bmm broadcast batch', (a, b) => O.matmul(a, b), [L([2, 1, 3, 5]), L([3, 5, 2])]);
    gradcheck('bmm permuted', (a, b) => O.matmul(O.permute(a, [1, 0, 2]), O.transpose(b, 1, 2)), [L([3, 2, 5]), L([2, 4, 5])]);
  });

  test(`[${be}] reductions`, () => {
    setBackend(be);
    gradcheck('sum all', (a) => O.sum(a), [L([3, 4])]);
    gradcheck('sum axis', (a) => O.sum(a, 1), [L([3, 4, 2])]);
    gradcheck('sum axes keepdim', (a) => O.sum(a, [0, 2], true), [L([3, 4, 2])]);
    gradcheck('mean', (a) => O.mean(a, -1), [L([3, 5])]);
    gradcheck('max', (a) => O.max(a, 1), [L([3, 6, 2])], { eps: 1e-3 });
    gradcheck('sum of transposed view', (a) => O.sum(O.transpose(a), 0), [L([3, 4])]);
  });

  test(`[${be}] softmax, log-softmax`, () => {
    setBackend(be);
    gradcheck('softmax', (a) => O.softmax(a), [L([3, 6])]);
    gradcheck('log_softmax', (a) => O.logSoftmax(a), [L([3, 6])]);
    gradcheck('softmax axis 0', (a) => O.softmax(a, 0), [L([4, 3])]);
  });

  test(`[${be}] cross-entropy (ignore_index, label smoothing, reductions)`, () => {
    setBackend(be);
    const t = O.tensor([1, -100, 4, 0, 2], [5], 'int32');
    gradcheck('ce mean', (a) => O.crossEntropy(a, t), [L([5, 6])]);
    gradcheck('ce smooth', (a) => O.crossEntropy(a, t, { labelSmoothing: 0.2 }), [L([5, 6])]);
    gradcheck('ce sum', (a) => O.crossEntropy(a, t, { reduction: 'sum' }), [L([5, 6])]);
    gradcheck('ce none', (a) => O.crossEntropy(a, t, { reduction: 'none' }), [L([5, 6])]);
    const t3 = O.tensor([1, 2, -100, 0], [2, 2], 'int32');
    gradcheck('ce 3d', (a) => O.crossEntropy(a, t3), [L([2, 2, 3])]);
  });

  test(`[${be}] KL divergence with temperature, both arguments, masked`, () => {
    setBackend(be);
    gradcheck('kl', (t, s) => O.klDiv(t, s, { temperature: 2 }), [L([3, 5]), L([3, 5])]);
    const m = O.tensor([1, 0, 1], [3]);
    gradcheck('kl masked', (t, s) => O.klDiv(t, s, { temperature: 0.7, mask: m }), [L([3, 5]), L([3, 5])]);
  });

  test(`[${be}] layer norm, embedding, dropout`, () => {
    setBackend(be);
    gradcheck('layernorm', (x, g, b) => O.layerNorm(x, g, b, 1e-5), [L([4, 6]), L([6]), L([6])]);
    const ids = O.tensor([2, 0, 2, 3], [2, 2], 'int32');
    gradcheck('embedding', (w) => O.embedding(w, ids), [L([5, 3])]);
    gradcheck('dropout', (x) => O.dropout(x, 0.3, true, new Rng(5)), [L([4, 8])]);
  });

  test(`[${be}] views, joins, where`, () => {
    setBackend(be);
    gradcheck('reshape/permute', (a) => O.reshape(O.permute(a, [2, 0, 1]), [4, 6]), [L([2, 3, 4])]);
    gradcheck('narrow', (a) => O.narrow(a, 1, 1, 2), [L([3, 4])]);
    gradcheck('expand', (a) => O.mul(O.expand(a, [3, 4]), O.expand(a, [3, 4])), [L([1, 4])]);
    gradcheck('concat', (a, b) => O.concat([a, b], 1), [L([2, 3]), L([2, 2])]);
    gradcheck('stack', (a, b) => O.stack([a, b], 0), [L([2, 3]), L([2, 3])]);
    gradcheck('split', (a) => { const [x, y] = O.split(a, [1, 3], 1); return O.mul(O.sum(x), y); }, [L([2, 4])]);
    gradcheck('unsqueeze/squeeze', (a) => O.squeeze(O.mul(O.unsqueeze(a, 1), O.unsqueeze(a, 0)), 0), [L([1, 3])]);
    const c = O.tensor([1, 0, 0, 1, 1, 0], [2, 3]);
    gradcheck('where', (a, b) => O.where(c, a, b), [L([2, 3]), L([3])]);
    gradcheck('maskedFill', (a) => O.maskedFill(a, c, -5), [L([2, 3])]);
    gradcheck('contiguous', (a) => O.contiguous(O.transpose(a)), [L([3, 2])]);
  });

  test(`[${be}] fused attention (causal, padding mask, Tq<Tk, dropout)`, () => {
    setBackend(be);
    gradcheck('attn', (q, k, v) => O.attention(q, k, v), [L([1, 2, 3, 4]), L([1, 2, 3, 4]), L([1, 2, 3, 4])]);
    gradcheck('attn causal', (q, k, v) => O.attention(q, k, v, { causal: true }), [L([2, 2, 4, 3]), L([2, 2, 4, 3]), L([2, 2, 4, 3])]);
    const km = O.tensor([1, 1, 1, 0, 1, 1, 0, 0], [2, 4]);
    gradcheck('attn mask', (q, k, v) => O.attention(q, k, v, { causal: true, keyMask: km }), [L([2, 1, 4, 3]), L([2, 1, 4, 3]), L([2, 1, 4, 3])]);
    gradcheck('attn Tq<Tk', (q, k, v) => O.attention(q, k, v, { causal: true }), [L([1, 2, 2, 3]), L([1, 2, 5, 3]), L([1, 2, 5, 3])]);
    gradcheck('attn dropout', (q, k, v) => O.attention(q, k, v, { causal: true, dropout: 0.25, rng: new Rng(9) }), [L([1, 2, 4, 3]), L([1, 2, 4, 3]), L([1, 2, 4, 3])]);
    // Strided (non-contiguous) inputs: heads split out of one [B, T, 3, H, D] tensor.
    gradcheck('attn strided qkv', (x) => {
      const [q, k, v] = O.split(O.permute(O.reshape(x, [1, 4, 3, 2, 3]), [2, 0, 3, 1, 4]), 3, 0).map((t) => O.squeeze(t, 0));
      return O.attention(q, k, v, { causal: true });
    }, [L([1, 4, 18])]);
    const pm = O.tensor([1, 1, 1, 1, 1, 1, 0, 0], [2, 4]);
    gradcheck('attn packed qkv', (x) => O.attentionPacked(x, 2, { keyMask: pm }), [L([2, 4, 12])]);
    gradcheck('attn packed dropout', (x) => O.attentionPacked(x, 3, { dropout: 0.2, rng: new Rng(4) }), [L([1, 5, 18])]);
  });
}

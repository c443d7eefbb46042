// Golden numerics: replays computations recorded from PyTorch 1.13 (float32) by
// tools/gen_engine_fixtures.py and checks forward values, losses and every gradient.
// Runs under the reference backend and, when the addon loads, the native one.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  Tensor, tensor, param, add, mul, scale, matmul, transpose, reshape, split, sum, gelu, softmax,
  logSoftmax, crossEntropy, klDiv, layerNorm, attention, maskedFill, setBackend,
} from '../../src/engine/index.js';
import { availableBackends } from '../helpers.js';

interface FxTensor { shape: number[]; dtype: 'float32' | 'int32'; data: number[]; }
interface Fixture { name: string; meta: Record<string, number | string | boolean>; tensors: Record<string, FxTensor>; }

const FIXTURES = new URL('../../../test/fixtures/engine/', import.meta.url);
function loadFixture(name: string): Fixture {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), 'utf8')) as Fixture;
}

const ATOL = 1e-4, RTOL = 1e-4;

function fx(f: Fixture, name: string): FxTensor {
  const t = f.tensors[name];
  assert.ok(t, `fixture ${f.name} has no tensor '${name}'`);
  return t;
}
/** A fresh tensor from the fixture (int32 when the fixture says so). */
function T(f: Fixture, name: string): Tensor {
  const t = fx(f, name);
  return tensor(t.dtype === 'int32' ? Int32Array.from(t.data) : t.data, t.shape.slice(), t.dtype);
}
const P = (f: Fixture, name: string): Tensor => param(T(f, name));

/** Asserts |actual - expected| <= ATOL + RTOL*|expected| elementwise; reports the worst element. */
function close(what: string, actual: Tensor | null, f: Fixture, name: string): void {
  const exp = fx(f, name);
  assert.ok(actual, `${what}: missing (expected ${name} ${JSON.stringify(exp.shape)})`);
  assert.deepEqual(actual.shape, exp.shape, `${what}: shape ${JSON.stringify(actual.shape)} vs expected ${JSON.stringify(exp.shape)}`);
  const a = actual.toArray(), e = exp.data;
  let maxAbs = 0, worst = -1, bad = 0;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    const ok = d <= ATOL + RTOL * Math.abs(e[i]);
    if (!ok || Number.isNaN(a[i])) { bad++; if (worst < 0 || d > Math.abs(a[worst] - e[worst]) || Number.isNaN(d)) worst = i; }
    if (d > maxAbs || Number.isNaN(d)) maxAbs = d;
  }
  if (bad > 0) {
    assert.fail(`${what} (${name}): ${bad}/${e.length} elements out of tolerance; max abs error ${maxAbs.toExponential(3)}; ` +
      `worst at flat index ${worst}: got ${a[worst]}, expected ${e[worst]}`);
  }
}

/** y = x @ W^T + b with W in PyTorch layout [out, in]. */
const linear = (x: Tensor, w: Tensor, b: Tensor): Tensor => add(matmul(x, transpose(w)), b);

for (const be of availableBackends()) {
  describe(`golden numerics vs PyTorch [${be}]`, () => {
    before(() => { setBackend(be); });

    it('MLP: layerNorm → linear → gelu(tanh) → linear → cross-entropy (ignore_index, smoothing)', () => {
      const f = loadFixture('mlp');
      const names = ['x', 'ln.weight', 'ln.bias', 'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'];
      const p = Object.fromEntries(names.map((n) => [n, P(f, n)]));
      let h = layerNorm(p['x'], p['ln.weight'], p['ln.bias'], f.meta.eps as number);
      h = gelu(linear(h, p['fc1.weight'], p['fc1.bias']), 'tanh');
      const logits = linear(h, p['fc2.weight'], p['fc2.bias']);
      const loss = crossEntropy(logits, T(f, 'targets'), {
        ignoreIndex: f.meta.ignoreIndex as number, labelSmoothing: f.meta.labelSmoothing as number,
      });
      close('logits', logits, f, 'logits');
      close('loss', loss, f, 'loss');
      loss.backward();
      for (const n of names) close(`d loss / d ${n}`, p[n].grad, f, `grad.${n}`);

      // The loss gradient at the logits themselves (an intermediate in the MLP).
      const z = P(f, 'logits');
      crossEntropy(z, T(f, 'targets'), { ignoreIndex: -100, labelSmoothing: 0.1 }).backward();
      close('d loss / d logits', z.grad, f, 'grad.logits');
    });

    for (const variant of ['fused attention op', 'explicit matmul/maskedFill/softmax'] as const) {
      it(`GPT block (causal + key padding mask), ${variant}`, () => {
        const f = loadFixture('block');
        const { B, T: Tn, C, H, D } = f.meta as Record<string, number>;
        const names = ['x', 'ln1.weight', 'ln1.bias', 'attn.qkv.weight', 'attn.qkv.bias', 'attn.proj.weight',
          'attn.proj.bias', 'ln2.weight', 'ln2.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias'];
        const p = Object.fromEntries(names.map((n) => [n, P(f, n)]));
        const keyMask = T(f, 'keyMask');
        const x = p['x'];
        const h = layerNorm(x, p['ln1.weight'], p['ln1.bias'], f.meta.eps as number);
        const qkv = linear(h, p['attn.qkv.weight'], p['attn.qkv.bias']);
        const heads = (t: Tensor): Tensor => transpose(reshape(t, [B, Tn, H, D]), 1, 2);
        const [q, k, v] = split(qkv, 3, -1).map(heads);
        let y: Tensor;
        if (variant === 'fused attention op') {
          y = attention(q, k, v, { causal: true, keyMask });
        } else {
          // blocked[b,0,i,j] = 1 where query i may not see key j (future or padding).
          const km = keyMask.toArray();
          const blocked = new Float32Array(B * Tn * Tn);
          for (let b = 0; b < B; b++) for (let i = 0; i < Tn; i++) for (let j = 0; j < Tn; j++) {
            blocked[(b * Tn + i) * Tn + j] = j > i || km[b * Tn + j] === 0 ? 1 : 0;
          }
          const scores = scale(matmul(q, transpose(k)), 1 / Math.sqrt(D));
          const probs = softmax(maskedFill(scores, tensor(blocked, [B, 1, Tn, Tn]), -Infinity));
          y = matmul(probs, v);
        }
        close('attention output [B,H,T,D]', y, f, 'attnOut');
        const att = reshape(transpose(y, 1, 2), [B, Tn, C]);
        const x1 = add(x, linear(att, p['attn.proj.weight'], p['attn.proj.bias']));
        close('after attention residual', x1, f, 'x1');
        const h2 = layerNorm(x1, p['ln2.weight'], p['ln2.bias'], f.meta.eps as number);
        const m = linear(gelu(linear(h2, p['mlp.fc1.weight'], p['mlp.fc1.bias']), 'tanh'), p['mlp.fc2.weight'], p['mlp.fc2.bias']);
        const out = add(x1, m);
        close('block output', out, f, 'out');
        const loss = sum(mul(out, T(f, 'lossWeight')));
        close('loss', loss, f, 'loss');
        loss.backward();
        for (const n of names) close(`d loss / d ${n}`, p[n].grad, f, `grad.${n}`);
      });
    }

    it('KL distillation loss at temperature 2 (batchmean), grads wrt student and teacher', () => {
      const f = loadFixture('ops');
      const s = P(f, 'kl.student'), t = P(f, 'kl.teacher');
      const kl = klDiv(t, s, { temperature: f.meta['kl.temperature'] as number, reduction: 'batchmean' });
      close('kl', kl, f, 'kl.loss');
      kl.backward();
      close('d kl / d student', s.grad, f, 'kl.grad.student');
      close('d kl / d teacher', t.grad, f, 'kl.grad.teacher');
    });

    for (const [approx, key] of [['none', 'geluErf'], ['tanh', 'geluTanh']] as const) {
      it(`gelu(${approx}) value and gradient`, () => {
        const f = loadFixture('ops');
        const x = P(f, 'geluErf.x');
        const y = gelu(x, approx);
        close(`gelu ${approx}`, y, f, `${key}.y`);
        sum(mul(y, T(f, 'geluErf.w'))).backward();
        close(`d gelu ${approx}`, x.grad, f, `${key}.grad.x`);
      });
    }

    for (const [name, fn] of [['logSoftmax', logSoftmax], ['softmax', softmax]] as const) {
      it(`${name} value and gradient`, () => {
        const f = loadFixture('ops');
        const x = P(f, `${name}.x`);
        const y = fn(x);
        close(name, y, f, `${name}.y`);
        sum(mul(y, T(f, `${name}.w`))).backward();
        close(`d ${name}`, x.grad, f, `${name}.grad.x`);
      });
    }

    it('cross-entropy with label smoothing 0.2 and ignore_index: mean, sum, none', () => {
      const f = loadFixture('ops');
      const opts = { ignoreIndex: f.meta['ce.ignoreIndex'] as number, labelSmoothing: f.meta['ce.labelSmoothing'] as number };
      const z = P(f, 'ce.logits');
      const lm = crossEntropy(z, T(f, 'ce.targets'), opts);
      close('ce mean', lm, f, 'ce.loss');
      lm.backward();
      close('d ce mean', z.grad, f, 'ce.grad.logits');
      const z2 = P(f, 'ce.logits');
      const ls = crossEntropy(z2, T(f, 'ce.targets'), { ...opts, reduction: 'sum' });
      close('ce sum', ls, f, 'ce.lossSum');
      ls.backward();
      close('d ce sum', z2.grad, f, 'ce.gradSum.logits');
      close('ce none', crossEntropy(T(f, 'ce.logits'), T(f, 'ce.targets'), { ...opts, reduction: 'none' }), f, 'ce.lossNone');
    });
  });
}

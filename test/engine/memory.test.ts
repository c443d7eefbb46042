// Deterministic memory: a small transformer trains for 1,000 steps with every step's tensors
// released by tidy(); live tensors and RSS must stay flat.

import test from 'node:test';
import assert from 'node:assert/strict';
import * as O from '../../src/engine/ops.js';
import { Rng } from '../../src/engine/rng.js';
import { Tensor, tidy, liveTensorCount, poolInfo } from '../../src/engine/tensor.js';
import { AdamW, clipGradNorm } from '../../src/optim/adamw.js';

function model(rng: Rng) {
  const V = 64, C = 32, H = 2;
  const p = (shape: number[], std: number): Tensor => { const t = O.randn(shape, rng, std); t.requiresGrad = true; return t.keep(); };
  const w = {
    wte: p([V, C], 0.02), ln1g: p([C], 0), ln1b: p([C], 0), qkv: p([C, 3 * C], 0.02), proj: p([C, C], 0.02),
    ln2g: p([C], 0), ln2b: p([C], 0), fc: p([C, 4 * C], 0.02), fc2: p([4 * C, C], 0.02),
  };
  w.ln1g.f32.fill(1); w.ln2g.f32.fill(1);
  const forward = (ids: Tensor, targets: Tensor): Tensor => {
    const [B, T] = ids.shape;
    let x = O.embedding(w.wte, ids);
    const h = O.layerNorm(x, w.ln1g, w.ln1b);
    const qkv = O.reshape(O.matmul(h, w.qkv), [B, T, 3, H, C / H]);
    const [q, k, v] = O.split(O.permute(qkv, [2, 0, 3, 1, 4]), 3, 0).map((t) => O.squeeze(t, 0));
    const a = O.reshape(O.transpose(O.attention(q, k, v, { causal: true, dropout: 0.1 }), 1, 2), [B, T, C]);
    x = O.add(x, O.matmul(a, w.proj));
    x = O.add(x, O.matmul(O.gelu(O.matmul(O.layerNorm(x, w.ln2g, w.ln2b), w.fc)), w.fc2));
    const logits = O.matmul(x, O.transpose(w.wte));
    return O.crossEntropy(logits, targets);
  };
  return { params: Object.values(w), forward, V };
}

test('RSS and live tensors stay flat over 1,000 training steps', () => {
  // without a forced GC the RSS comparison measures garbage, not leaks
  assert.equal(typeof global.gc, 'function', 'run node with --expose-gc (scripts/run-tests.mjs does)');
  const rng = new Rng(3);
  const m = model(rng);
  const opt = new AdamW(m.params, { lr: 3e-3 });
  const B = 4, T = 16;
  const ids = O.zeros([B, T], 'int32').keep(), tg = O.zeros([B, T], 'int32').keep();
  let rssAt100 = 0, liveAt100 = 0, first = 0, last = 0;
  for (let step = 1; step <= 1000; step++) {
    // A learnable pattern: next token = (token + 1) mod V.
    for (let i = 0; i < B * T; i++) { const t = rng.int(m.V); ids.i32[i] = t; tg.i32[i] = (t + 1) % m.V; }
    const loss = tidy(() => {
      const l = m.forward(ids, tg);
      l.backward();
      clipGradNorm(m.params, 1.0);
      opt.update();
      opt.zeroGrad();
      return l.item();
    });
    if (step === 1) first = loss;
    last = loss;
    if (step === 100) { global.gc!(); rssAt100 = process.memoryUsage().rss; liveAt100 = liveTensorCount(); }
  }
  global.gc!();
  const rss = process.memoryUsage().rss, live = liveTensorCount();
  const growMb = (rss - rssAt100) / 2 ** 20;
  console.log(`loss ${first.toFixed(3)} -> ${last.toFixed(3)}; live tensors ${liveAt100} -> ${live}; RSS growth ${growMb.toFixed(1)} MB; pool ${JSON.stringify(poolInfo())}`);
  assert.equal(live, liveAt100, 'live tensor count changed between step 100 and 1000');
  assert.ok(growMb < 16, `RSS grew by ${growMb.toFixed(1)} MB between step 100 and step 1000`);
  assert.ok(last < first * 0.5, `the model should learn the +1 pattern (loss ${first} -> ${last})`);
  opt.dispose();
});

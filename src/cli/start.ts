// `npm start`: the main job on embedded data. Trains a small byte-level GPT-2 on Tiny
// Shakespeare (data/tinyshakespeare.txt) for a time budget, reporting loss and tokens/s,
// then prints a sample.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as O from '../engine/ops.js';
import { Rng, tidy, noGrad } from '../engine/index.js';
import { GPT2, gpt2Config } from '../models/gpt2.js';
import { AdamW, clipGradNorm } from '../optim/adamw.js';
import { info, formatInfo } from './info.js';

export async function runStart(opts: { seconds: number; json: boolean }): Promise<void> {
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  log(formatInfo(info()));
  const path = fileURLToPath(new URL('../../../data/tinyshakespeare.txt', import.meta.url));
  const bytes = readFileSync(path);
  const nVal = Math.floor(bytes.length * 0.05);
  const train = bytes.subarray(0, bytes.length - nVal), val = bytes.subarray(bytes.length - nVal);
  const cfg = gpt2Config({ vocab_size: 256, n_positions: 128, n_embd: 128, n_layer: 4, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: 10, eos_token_id: 10 });
  const model = new GPT2(cfg, 1);
  log(`model: GPT-2 d=${cfg.n_embd} L=${cfg.n_layer} H=${cfg.n_head} T=${cfg.n_positions}, ${(model.numParameters() / 1e6).toFixed(2)}M parameters; data: ${path} (${bytes.length} bytes)`);
  const opt = new AdamW(model.parameters(), { lr: 2e-3, weightDecay: 0.01, betas: [0.9, 0.99] });
  const rng = new Rng(1234);
  const B = 16, T = cfg.n_positions;
  const ids = O.zeros([B, T], 'int32').keep();
  const batch = (src: Buffer): void => { for (let b = 0; b < B; b++) { const s = rng.int(src.length - T); for (let t = 0; t < T; t++) ids.i32[b * T + t] = src[s + t]; } };
  const t0 = performance.now();
  let step = 0, last = 0, lastLog = t0;
  while ((performance.now() - t0) / 1000 < opts.seconds) {
    batch(train);
    const warm = Math.min(1, (step + 1) / 50);
    opt.lr = 2e-3 * warm;
    last = tidy(() => {
      const { loss } = model.loss(ids);
      loss.backward();
      clipGradNorm(model.parameters(), 1);
      opt.update();
      opt.zeroGrad();
      return loss.item();
    });
    step++;
    const now = performance.now();
    if (now - lastLog > 5000 || step === 1) {
      const el = (now - t0) / 1000;
      log(`step ${step}  loss ${last.toFixed(3)}  ${Math.round((step * B * T) / el)} tok/s  ${el.toFixed(0)}/${opts.seconds}s`);
      lastLog = now;
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  // Validation loss on a few fixed windows.
  model.eval();
  const vr = new Rng(7);
  let vl = 0;
  const nv = 4;
  for (let i = 0; i < nv; i++) {
    for (let b = 0; b < B; b++) { const s = vr.int(val.length - T); for (let t = 0; t < T; t++) ids.i32[b * T + t] = val[s + t]; }
    vl += tidy(() => noGrad(() => model.loss(ids).loss.item()));
  }
  vl /= nv;
  const sample = sampleText(model, 'ROMEO:\n', 200, 0.8, new Rng(5));
  const result = { steps: step, seconds: +elapsed.toFixed(1), tokens_per_s: Math.round((step * B * T) / elapsed), train_loss: +last.toFixed(4), val_loss: +vl.toFixed(4), sample };
  if (opts.json) console.log(JSON.stringify(result));
  else {
    console.log(`trained ${step} steps in ${elapsed.toFixed(0)} s (${result.tokens_per_s} tokens/s); train loss ${last.toFixed(3)}, validation loss ${vl.toFixed(3)} nats/byte`);
    console.log('--- sample ---');
    console.log(sample);
  }
  opt.dispose();
  ids.dispose();
}

function sampleText(model: GPT2, prompt: string, n: number, temperature: number, rng: Rng): string {
  const cache = model.newCache(1);
  const out: number[] = [];
  let cur = Array.from(Buffer.from(prompt, 'utf8'));
  for (let i = 0; i < n && cache.length + cur.length <= model.config.n_positions; i++) {
    const next = tidy(() => noGrad(() => {
      const logits = model.forward(O.tensor(cur, [1, cur.length], 'int32'), { cache });
      const V = logits.shape[2];
      const row = logits.f32.subarray((cur.length - 1) * V, cur.length * V);
      let mx = -Infinity; for (const v of row) mx = Math.max(mx, v);
      const p = Array.from(row, (v) => Math.exp((v - mx) / temperature));
      const s = p.reduce((a, b) => a + b, 0);
      let u = rng.next() * s, k = 0;
      while (k < V - 1 && (u -= p[k]) > 0) k++;
      return k;
    }));
    out.push(next);
    cur = [next];
  }
  cache.dispose();
  return prompt + Buffer.from(out).toString('utf8');
}

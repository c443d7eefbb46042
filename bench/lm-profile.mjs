#!/usr/bin/env node
// Where the time of one training step of `icld bench train` goes (GPT-2 or BERT MLM): per phase
// (forward, backward, clipGradNorm, AdamW, zeroGrad, scope exit) and per backend kernel (every
// backend method wrapped with a timer, as bench/kernel-profile.mjs does; GEMMs keyed by shape with
// their GFLOP/s). Time outside kernels is TypeScript-side overhead (views, tape, pool, JS loops).
//
//   npm run build && node bench/lm-profile.mjs [small|gpt2s|bert-small] [steps] [--full-head] [--threads N]
// The model and the batch (MLM-masked for BERT; --full-head: LM head at every position) are the
// bench's own (buildModel, benchLoss in src/cli/bench-lm.ts).
import { performance } from 'node:perf_hooks';

const pos = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--threads');
const config = pos[0] ?? 'small';
const steps = Number(pos[1] ?? (config === 'small' ? 6 : 2));
const fullHead = process.argv.includes('--full-head');
const ti = process.argv.indexOf('--threads');
const E = await import('../dist/src/engine/index.js');
const { AdamW, clipGradNorm } = await import('../dist/src/optim/adamw.js');
const { paramGroups } = await import('../dist/src/train/trainer.js');
const { TRAIN_CONFIGS, buildModel, benchLoss } = await import('../dist/src/cli/bench-lm.js');

const s = TRAIN_CONFIGS[config];
if (!s) throw new Error(`unknown config '${config}' (${Object.keys(TRAIN_CONFIGS).join(', ')})`);
const be = E.backend();
if (ti >= 0) be.setThreads(Number(process.argv[ti + 1]));
const acc = new Map();
let on = false;
for (const k of Object.keys(be).concat(Object.getOwnPropertyNames(Object.getPrototypeOf(be)))) {
  const f = be[k];
  if (typeof f !== 'function' || k === 'constructor' || k === 'threads' || k === 'setThreads') continue;
  be[k] = function (...a) {
    if (!on) return f.apply(this, a);
    const t0 = performance.now(); const r = f.apply(this, a); const dt = performance.now() - t0;
    let key = k, flops = 0;
    if (k === 'gemm') { key = `gemm ${a[0] ? 'T' : 'N'}${a[1] ? 'T' : 'N'} M${a[2]} N${a[3]} K${a[4]} b${a[19]}${a[14] ? ' beta' : ''}`; flops = 2 * a[2] * a[3] * a[4] * a[19]; }
    if (k === 'copy' || k === 'binary') key = `${k} [${(k === 'copy' ? a[0] : a[1]).join(',')}]`;
    if (k === 'unary' || k === 'unaryBackward') key = `${k} op${a[0]}`;
    const e = acc.get(key) ?? { n: 0, ms: 0, flops: 0 }; e.n++; e.ms += dt; e.flops += flops; acc.set(key, e);
    return r;
  };
}

const model = buildModel(s);
const lossOf = benchLoss(model, s, fullHead);
model.train();
const params = model.parameters();
const opt = new AdamW(paramGroups(model, 0.1), { lr: 3e-4, betas: [0.9, 0.95], eps: 1e-8 });
const rng = new E.Rng(1234);
const phases = { forward: 0, backward: 0, clip: 0, adamw: 0, zeroGrad: 0, scopeExit: 0 };
let wall = 0;
for (let i = 0; i < steps + 1; i++) {
  const prof = i > 0; // first step is warm-up
  on = prof;
  const t0 = performance.now();
  let t = t0, tEnd = 0;
  const mark = (ph) => { const n = performance.now(); if (prof) phases[ph] += n - t; t = n; };
  E.tidy(() => {
    const loss = lossOf(rng); mark('forward');
    loss.backward(); loss.item(); mark('backward');
    clipGradNorm(params, 1.0); mark('clip');
    opt.update(); mark('adamw');
    opt.zeroGrad(); mark('zeroGrad');
    tEnd = t;
  });
  const t1 = performance.now();
  if (prof) { phases.scopeExit += t1 - tEnd; wall += t1 - t0; }
  on = false;
}
const per = (ms) => (ms / steps).toFixed(1).padStart(8);
const tot = [...acc.values()].reduce((a, e) => a + e.ms, 0);
console.log(`${config}${s.arch === 'bert' ? ` (${fullHead ? 'full head' : 'masked-row head'})` : ''}, ${be.threads()} thread(s): ${steps} profiled steps, ${(wall / steps).toFixed(1)} ms/step (timers add overhead); in backend kernels ${(tot / steps).toFixed(1)} ms/step (${(100 * tot / wall).toFixed(0)}%), outside ${((wall - tot) / steps).toFixed(1)} ms/step`);
console.log('phases (ms/step, kernels included):');
for (const [k, v] of Object.entries(phases)) console.log(`  ${k.padEnd(10)} ${per(v)}`);
const groups = new Map();
for (const [k, e] of acc) { const g = k.split(' ')[0]; const x = groups.get(g) ?? { n: 0, ms: 0, flops: 0 }; x.n += e.n; x.ms += e.ms; x.flops += e.flops; groups.set(g, x); }
console.log('kernels by method (ms/step, % of kernel time):');
for (const [k, e] of [...groups.entries()].sort((a, b) => b[1].ms - a[1].ms)) console.log(`  ${k.padEnd(22)} ${per(e.ms)}  ${(100 * e.ms / tot).toFixed(1).padStart(5)}%  ${String(e.n / steps).padStart(5)} calls${e.flops ? `  ${(e.flops / (e.ms * 1e6)).toFixed(1)} GFLOP/s` : ''}`);
console.log('top kernels by shape:');
for (const [k, e] of [...acc.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20)) console.log(`  ${(100 * e.ms / tot).toFixed(1).padStart(5)}%  ${(e.ms / e.n).toFixed(3).padStart(8)} ms/call  ${String(e.n / steps).padStart(4)}x/step  ${k}${e.flops ? `  ${(e.flops / (e.ms * 1e6)).toFixed(1)} GFLOP/s` : ''}`);
opt.dispose(); model.dispose();

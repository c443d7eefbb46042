#!/usr/bin/env node
// Fused-decoder speed on a GPT-2 124M-shaped model with random weights (the shape of
// `icld bench generate --config gpt2-124m` and of llama-bench -p 64 -n 128): prefill of a
// 64-token prompt and 128 single-token decode steps through the inference runtime
// (src/models/runtime.ts), per weight format (Linear/Embedding .quantized set with
// quantizeWeight) and thread count; batched decode tok/s for 1, 4 and 8 concurrent sequences;
// and end-to-end generate() (greedy sampling included) with the decoder's own thread choice.
//
//   npm run build && node bench/decode-profile.mjs [--formats f32,bf16,q8_0,q4_0] [--threads 1,2]
//        [--prompt 64] [--new 128] [--batch 1,4,8] [--reps 2] [--small] [--json]
// --small: d256 L4 H4, vocab 2048 (a quick check of the script itself).
// The machine may be shared: numbers are the best of --reps runs, and indicative only.
import { performance } from 'node:perf_hooks';

const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i >= 0 ? process.argv[i + 1] : def; };
const list = (name, def) => String(arg(name, def)).split(',').filter(Boolean);
const formats = list('formats', 'f32,bf16,q8_0,q4_0');
const threadList = list('threads', '1,2').map(Number);
const P = Number(arg('prompt', 64)), N = Number(arg('new', 128)), reps = Number(arg('reps', 2));
const batches = list('batch', '1,4,8').map(Number);
const small = process.argv.includes('--small'), json = process.argv.includes('--json');

const { backend } = await import('../dist/src/engine/index.js');
const { quantizeWeight } = await import('../dist/src/engine/quant.js');
const { Linear, Embedding } = await import('../dist/src/nn/module.js');
const { createModel, generate } = await import('../dist/src/models/index.js');

const be = backend();
const log = (s) => process.stderr.write(s + '\n');
const shape = small ? { n_embd: 256, n_layer: 4, n_head: 4, vocab_size: 2048 } : { n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257 };
log(`building ${small ? 'small' : 'gpt2-124m'} model (random weights)…`);
const model = createModel('gpt2', { ...shape, n_positions: 1024, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }, 1).eval();
const V = shape.vocab_size;
const linears = model.namedModules().filter(([, m]) => m instanceof Linear).map(([, m]) => m);
const wte = model.getModule('transformer.wte');
const prompt = Array.from({ length: P }, (_, i) => (i * 7919 + 13) % V);
const argmax = (a, off) => { let b = 0; for (let i = 1; i < V; i++) if (a[off + i] > a[off + b]) b = i; return b; };

function setFormat(f) {
  for (const m of linears) m.quantized = f === 'f32' ? null : quantizeWeight(m.weight.f32, m.outFeatures, m.inFeatures, 'in_out', f);
  if (wte instanceof Embedding) wte.quantized = f === 'f32' ? null : quantizeWeight(wte.weight.f32, wte.num, wte.dim, 'out_in', f);
}

/** Prefill + decode on one slot: seconds for each. */
function single(rt) {
  const s = rt.acquire();
  try {
    const p0 = process.cpuUsage();
    let t0 = performance.now();
    let lg = rt.step([{ seq: s, ids: prompt }]);
    const prefill = (performance.now() - t0) / 1000;
    const pc = process.cpuUsage(p0);
    let next = argmax(lg, 0);
    t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < N; i++) { lg = rt.step([{ seq: s, ids: [next] }]); next = argmax(lg, 0); }
    const c = process.cpuUsage(c0);
    // CPU time as well: on a shared machine wall time includes waiting for a core.
    return { prefill, prefillCpu: (pc.user + pc.system) / 1e6, decode: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
  } finally { rt.release(s); }
}

/** B sequences (16-token prompts each) decoded together for `steps` steps: seconds. */
function batched(rt, B, steps) {
  const slots = Array.from({ length: B }, () => rt.acquire());
  try {
    rt.step(slots.map((s, i) => ({ seq: s, ids: prompt.slice(i, i + 16) })));
    const entries = slots.map((s) => ({ seq: s, ids: [1] }));
    const t0 = performance.now();
    for (let k = 0; k < steps; k++) {
      const lg = rt.step(entries);
      entries.forEach((e, i) => { e.ids = [argmax(lg, i * V)]; });
    }
    return (performance.now() - t0) / 1000;
  } finally { for (const s of slots) rt.release(s); }
}

const results = [];
const maxThreads = Math.max(...threadList);
for (const f of formats) {
  log(`format ${f}: quantizing…`);
  setFormat(f);
  be.setThreads(maxThreads);
  const rt = model.runtime({ maxSeqs: Math.max(...batches, 1), maxT: P + N + 16 });
  if (!rt) throw new Error('the model has no runtime');
  single(rt); // warm-up
  for (const t of threadList) {
    rt.threads(t);
    let best = { prefill: Infinity, prefillCpu: Infinity, decode: Infinity, cpu: Infinity };
    for (let r = 0; r < reps; r++) { const x = single(rt); best = { prefill: Math.min(best.prefill, x.prefill), prefillCpu: Math.min(best.prefillCpu, x.prefillCpu), decode: Math.min(best.decode, x.decode), cpu: Math.min(best.cpu, x.cpu) }; }
    const row = { format: f, threads: t, prefill_tok_s: +(P / best.prefill).toFixed(1), decode_tok_s: +(N / best.decode).toFixed(1), decode_ms: +(1000 * best.decode / N).toFixed(2), decode_cpu_ms: +(1000 * best.cpu / N).toFixed(2), prefill_cpu_ms: +(1000 * best.prefillCpu).toFixed(1) };
    results.push(row);
    log(`  ${f} threads ${t}: prefill ${row.prefill_tok_s} tok/s (${row.prefill_cpu_ms} ms CPU), decode ${row.decode_tok_s} tok/s (${row.decode_ms} ms/token wall, ${row.decode_cpu_ms} ms CPU)`);
    for (const B of batches) {
      let sec = Infinity;
      const steps = Math.max(8, Math.round(64 / B));
      for (let r = 0; r < reps; r++) sec = Math.min(sec, batched(rt, B, steps));
      const b = { format: f, threads: t, batch: B, tok_s: +((B * steps) / sec).toFixed(1) };
      results.push(b);
      log(`    batch ${B}: ${b.tok_s} tok/s`);
    }
  }
  // End to end through generate() with the decoder choosing its threads per step shape.
  rt.threads(0);
  const o = { maxNewTokens: N, temperature: 0, eosTokenId: null };
  generate(model, { encode: () => [], decode: () => '' }, prompt, { ...o, maxNewTokens: 16 });
  let first = 0;
  const t0 = performance.now();
  generate(model, { encode: () => [], decode: () => '' }, prompt, { ...o, onToken: () => { if (!first) first = performance.now(); } });
  const total = performance.now() - t0;
  const g = { format: f, generate: true, threads_chosen: rt.threads(), prefill_ms: +(first - t0).toFixed(1), decode_tok_s: +((N - 1) / ((total - (first - t0)) / 1000)).toFixed(1) };
  results.push(g);
  log(`  generate(): prefill ${g.prefill_ms} ms, decode ${g.decode_tok_s} tok/s, threads chosen per shape [1, 2-8, 9-32, >32 tokens]: ${g.threads_chosen.join(', ')}`);
}
if (json) process.stdout.write(JSON.stringify({ shape, prompt: P, new: N, results }, null, 1) + '\n');

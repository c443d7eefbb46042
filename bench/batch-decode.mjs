#!/usr/bin/env node
// Batched decoding (issue 14): decode tokens/s with 1, 4 and 8 concurrent sequences.
//
// 1. The inference runtime directly, on the GPT-2 124M shape with random weights (d768 L12 H12
//    V50257): model.runtime({maxSeqs: 8}) → each sequence prefills --prompt tokens in one step,
//    then --steps steps of one token per sequence, all sequences in one runtime.step call.
//    f32, and the formats of --formats when quantizeModel (src/models/quantize.ts) exists. Next to
//    it, the same B sequences as B Generations advanced by stepMany: on the shared runtime (the
//    server's path) and with `runtime: false` (each its own forward: the server before batching).
// 2. End to end through `icld serve --slots 8` on the small bench model of bench/serve.mjs (d256
//    L4 H4 V2048 P256, random weights): C streaming clients (C = 1, 4, 8) each send one
//    /v1/completions (a --prompt-token corpus excerpt, max_tokens --max-tokens, temperature 0,
//    end-of-text banned so every stream is exactly that long); total generated tokens / wall time,
//    and the mean batch size per scheduler step from /metrics.
// Writes the batch-decode section of bench/RESULTS.md unless --no-write, and .bench-tmp/batch-decode.json.
//
//   npx tsc -p tsconfig.json && node bench/batch-decode.mjs [--quick] [--steps 48] [--prompt 16]
//     [--max-tokens 64] [--rounds 2] [--formats f32,q4_0] [--batches 1,4,8] [--skip-runtime]
//     [--skip-server] [--no-write] [--json]
// --quick: --steps 12 --max-tokens 24 --rounds 1 (≈1–2 min on the 2-vCPU machine).

import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const usage = (m) => { console.error(`bench/batch-decode: ${m}`); process.exit(2); };
const fail = (m) => { console.error(`bench/batch-decode: ${m}`); process.exit(1); };
const log = (s) => console.error(`[batch-decode] ${s}`);

// ---- flags --------------------------------------------------------------------------------------
const NUM = { steps: [1, 4096], prompt: [1, 512], 'max-tokens': [1, 200], rounds: [1, 20] };
const LIST = ['formats', 'batches'];
const BOOL = ['quick', 'skip-runtime', 'skip-server', 'no-write', 'json'];
const opt = {};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith('--')) usage(`unexpected argument '${a}'`);
  const eq = a.indexOf('=');
  const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
  if (BOOL.includes(name)) { if (eq > 0) usage(`--${name} takes no value`); opt[name] = true; continue; }
  if (!(name in NUM) && !LIST.includes(name)) usage(`unknown flag --${name} (see the header of bench/batch-decode.mjs)`);
  const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
  if (v === undefined) usage(`--${name} needs a value`);
  if (name in NUM) {
    const [min, max] = NUM[name], x = Number(v);
    if (v.trim() === '' || !Number.isInteger(x) || x < min || x > max) usage(`--${name} must be an integer in [${min}, ${max}], got '${v}'`);
    opt[name] = x;
  } else opt[name] = v.split(',').map((s) => s.trim()).filter(Boolean);
}
const o = { steps: opt.quick ? 12 : 48, prompt: 16, 'max-tokens': opt.quick ? 24 : 64, rounds: opt.quick ? 1 : 2, formats: ['f32', 'q4_0'], batches: ['1', '4', '8'], ...opt };
for (const f of o.formats) if (!['f32', 'bf16', 'q8_0', 'q4_0'].includes(f)) usage(`--formats: unknown format '${f}' (f32, bf16, q8_0, q4_0)`);
const B = o.batches.map((b) => { const x = Number(b); if (!Number.isInteger(x) || x < 1 || x > 64) usage(`--batches: each must be an integer in [1, 64], got '${b}'`); return x; });
const maxB = Math.max(...B);

const dist = (p) => pathToFileURL(join(root, 'dist', p)).href;
if (!existsSync(join(root, 'dist/src/index.js')) || !existsSync(join(root, 'dist/bench/serve-lib.js'))) fail('dist/ is missing: run `npx tsc -p tsconfig.json` first');
const lib = await import(dist('src/index.js'));
const models = await import(dist('src/models/index.js'));
const gen = await import(dist('src/models/generate.js'));
const serveLib = await import(dist('bench/serve-lib.js'));
const now = () => performance.now();
const rng = (() => { let s = 12345; return (n) => { s = (s * 1103515245 + 12345) >>> 0; return s % n; }; })();
const json = { bench: 'batch-decode', runtime: [], generations: [], server: [], notes: [] };

// ---- 1. the runtime directly --------------------------------------------------------------------
function runtimeRun(model, fmt) {
  const V = model.vocabSize, P = o.prompt, S = o.steps;
  const rt = typeof model.runtime === 'function' ? model.runtime({ maxSeqs: maxB, maxT: P + S + 2 }) : null;
  if (!rt) return null;
  const row = { format: fmt, tokens_per_s: {}, prefill_ms: {} };
  try {
    for (const b of B) {
      const seqs = [];
      for (let i = 0; i < b; i++) { const s = rt.acquire(); if (s === null) throw new Error(`runtime: acquire() gave null for sequence ${i + 1} of ${b} (maxSeqs ${maxB})`); seqs.push(s); }
      let t = now();
      rt.step(seqs.map((seq) => ({ seq, ids: Array.from({ length: P }, () => rng(V)) })));
      row.prefill_ms[b] = now() - t;
      for (let k = 0; k < 2; k++) rt.step(seqs.map((seq) => ({ seq, ids: [rng(V)] }))); // first decode steps (thread choice by timing) out of the clock
      t = now();
      for (let k = 0; k < S; k++) rt.step(seqs.map((seq) => ({ seq, ids: [rng(V)] })));
      row.tokens_per_s[b] = (b * S) / ((now() - t) / 1000);
      for (const s of seqs) rt.release(s);
      log(`  runtime ${fmt} × ${b}: ${row.tokens_per_s[b].toFixed(1)} tok/s (prefill ${b}×${P} in ${row.prefill_ms[b].toFixed(0)} ms)`);
    }
  } finally { rt.dispose(); }
  return row;
}

/**
 * B Generations advanced together by stepMany: `shared` on the model's runtime (Generation's
 * default where it has one: one batched call), else each with its own forward (runtime: false).
 */
function generationsRun(model, fmt, shared) {
  const V = model.vocabSize, P = o.prompt, S = o.steps;
  const codec = { encode: () => [], decode: () => '' };
  const row = { format: fmt, shared, tokens_per_s: {} };
  // As the server does: size the model's runtime for all sequences first, else Generations that
  // ask for one slot each make it grow (1, 2, 4, …), spreading them over several runtimes.
  const pre = shared ? model.runtime({ maxSeqs: maxB, maxT: P + S + 4 }) : null;
  for (const b of B) {
    const gens = Array.from({ length: b }, () => new gen.Generation(model, codec, Array.from({ length: P }, () => rng(V)), { maxNewTokens: S + 2, temperature: 0, runtime: shared }));
    try {
      gen.stepMany(gens); gen.stepMany(gens); // prefill and the first tokens out of the clock
      const t = now();
      for (let k = 0; k < S; k++) gen.stepMany(gens);
      row.tokens_per_s[b] = (b * S) / ((now() - t) / 1000);
    } finally { for (const g of gens) g.dispose(); }
    if (pre && gens.some((g) => g.runtime !== pre)) json.notes.push(`shared-runtime Generations × ${b}: not all on the one pre-sized runtime`);
    log(`  Generation × ${b} (stepMany, ${shared ? 'shared runtime' : 'own forwards'}) ${fmt}: ${row.tokens_per_s[b].toFixed(1)} tok/s`);
  }
  pre?.dispose();
  return row;
}

let shape124 = null;
if (!o['skip-runtime']) {
  const cfg = { vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
  shape124 = 'gpt2 d768 L12 H12 V50257 (124M, random weights)';
  let t = now();
  let model = lib.createModel('gpt2', cfg, 1);
  model.eval();
  log(`built ${shape124} in ${((now() - t) / 1000).toFixed(1)} s`);
  for (const fmt of o.formats) {
    if (fmt !== 'f32') {
      if (typeof models.quantizeModel !== 'function') { json.notes.push(`${fmt}: skipped (no quantizeModel in this build)`); log(`${fmt}: skipped, quantizeModel is not in this build`); continue; }
      // quantizeModel works in place on an fp32 model: a fresh one per format.
      if (models.quantizationOf?.(model)) { model.dispose?.(); model = lib.createModel('gpt2', cfg, 1); model.eval(); }
      t = now();
      models.quantizeModel(model, fmt);
      log(`quantized to ${fmt} in ${((now() - t) / 1000).toFixed(1)} s`);
    }
    const r = runtimeRun(model, fmt);
    if (r) json.runtime.push(r);
    else if (!json.notes.some((n) => n.startsWith('runtime'))) { json.notes.push('runtime: model.runtime() is not available in this build (no fused runtime rows)'); log('model.runtime() is not available: runtime rows skipped'); }
    if (r) json.generations.push(generationsRun(model, fmt, true));
    json.generations.push(generationsRun(model, fmt, false));
  }
  model.dispose?.();
}

// ---- 2. end to end through the server -----------------------------------------------------------
let serverCmd = null, shapeSmall = null;
if (!o['skip-server']) {
  const shakespeare = readFileSync(join(root, 'data/tinyshakespeare.txt'), 'utf8');
  const tok = lib.BPETokenizer.train([shakespeare.slice(0, 300_000)], { vocabSize: 2048, specialTokens: ['<|endoftext|>'] });
  const cfg = { vocab_size: tok.vocabSize, n_positions: 256, n_embd: 256, n_layer: 4, n_head: 4, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId };
  const dir = mkdtempSync(join(os.tmpdir(), 'icld-batch-bench-'));
  lib.createModel('gpt2', cfg, 1).savePretrained(dir); tok.save(dir);
  shapeSmall = `gpt2 d256 L4 H4 V${tok.vocabSize} P256 (random weights)`;
  const args = ['dist/src/cli/main.js', 'serve', '--model', dir, '--port', '0', '--slots', String(maxB), '--queue', String(maxB)];
  serverCmd = `node ${args.map((a) => (a === dir ? 'TMPDIR/model' : a)).join(' ')}`;
  log(`starting: ${serverCmd}`);
  const server = serveLib.spawnServer(args, root), child = server.child;
  const cleanup = () => { if (child.exitCode === null) child.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    const url = await server.url;
    await serveLib.waitHealthy(url, 120_000, 100);
    const words = shakespeare.split(/\s+/).filter(Boolean);
    const excerpt = (k) => { const s = (k * 7919) % (words.length - 2 * o.prompt); return tok.decode(tok.encode(words.slice(s, s + 2 * o.prompt).join(' ')).slice(0, o.prompt)); };
    const body = (k) => ({ prompt: excerpt(k), max_tokens: o['max-tokens'], temperature: 0, logit_bias: { [tok.eosTokenId]: -100 } });
    const hist = async () => {
      const m = await (await fetch(`${url}/metrics`)).text();
      const g = (re) => Number(re.exec(m)?.[1] ?? 0);
      return { sum: g(/^icld_decode_batch_size_sum ([\d.]+)$/m), count: g(/^icld_decode_batch_size_count (\d+)$/m), runtime: g(/^icld_batched_runtime (\d)$/m) };
    };
    const w = await serveLib.streamRequest({ url, endpoint: 'completions', body: { ...body(0), max_tokens: 4 } });
    if (!w.ok) throw new Error(`warm-up request failed: ${w.error}`);
    let k = 1;
    for (const c of B) {
      const runs = [];
      for (let r = 0; r < o.rounds; r++) {
        const h0 = await hist();
        const t0 = now();
        const res = await Promise.all(Array.from({ length: c }, () => serveLib.streamRequest({ url, endpoint: 'completions', body: body(k++) })));
        const wall = (now() - t0) / 1000;
        const bad = res.find((x) => !x.ok);
        if (bad) throw new Error(`a request failed with ${c} clients: ${bad.error}`);
        const h1 = await hist();
        const tokens = res.reduce((a, x) => a + x.completionTokens, 0);
        const gaps = res.flatMap((x) => x.gapsMs);
        runs.push({ tokens_per_s: tokens / wall, tokens, wall_s: wall, ttft_ms: serveLib.percentile(res.map((x) => x.ttftMs), 50), itl_p50_ms: serveLib.percentile(gaps, 50), mean_batch: (h1.sum - h0.sum) / Math.max(1, h1.count - h0.count), runtime: h1.runtime === 1 });
      }
      runs.sort((a, b) => b.tokens_per_s - a.tokens_per_s);
      const best = runs[0];
      json.server.push({ clients: c, ...best, rounds: runs.length });
      log(`  server × ${c} clients: ${best.tokens_per_s.toFixed(1)} tok/s, inter-token p50 ${best.itl_p50_ms.toFixed(1)} ms, mean batch ${best.mean_batch.toFixed(2)}`);
    }
    child.kill('SIGTERM');
    await new Promise((r) => { if (child.exitCode !== null) r(); else child.once('exit', r); });
  } catch (e) {
    cleanup();
    fail(`${e.message}\n  server: ${server.tail().trim().split('\n').slice(-3).join('\n  server: ')}`);
  }
  cleanup();
}

// ---- report -------------------------------------------------------------------------------------
const sh = (cmd) => { try { return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return ''; } };
const cpu = sh("lscpu | sed -n 's/^Model name:[ \\t]*//p'") || os.cpus()[0]?.model || 'unknown';
const machine = `${cpu}, ${os.cpus().length} vCPUs, Linux ${os.release()}, Node ${process.version}`;
const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const command = 'node bench/batch-decode.mjs' + (argv.length ? ' ' + argv.filter((a) => a !== '--no-write' && a !== '--json').join(' ') : '');
const load = os.loadavg()[0];
Object.assign(json, { date, machine, command, load_1min_after: load, steps: o.steps, prompt: o.prompt, max_tokens: o['max-tokens'], rounds: o.rounds, batches: B, model_runtime: shape124, model_server: shapeSmall, server: json.server, server_command: serverCmd });
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const head = `| path | format | ${B.map((b) => `${b} seq${b > 1 ? 's' : ''}`).join(' | ')} | ${maxB} vs 1 |`;
const sep = `|---|---|${B.map(() => '---:').join('|')}|---:|`;
const row = (path, fmt, v) => `| ${path} | ${fmt} | ${B.map((b) => f1(v[b])).join(' | ')} | ${v[1] && v[maxB] ? `×${(v[maxB] / v[1]).toFixed(2)}` : '–'} |`;
const rows = [
  ...json.runtime.map((r) => row('`runtime.step`, one batched call', r.format, r.tokens_per_s)),
  ...json.generations.map((r) => row(`B Generations, \`stepMany\`, ${r.shared ? 'shared runtime (the server\'s path)' : 'own forwards (\`runtime: false\`)'}`, r.format, r.tokens_per_s)),
];
const srows = json.server.map((s) => `| ${s.clients} | ${f1(s.tokens_per_s)} | ${f1(s.tokens_per_s / s.clients)} | ${f1(s.ttft_ms)} | ${f1(s.itl_p50_ms)} | ${s.mean_batch.toFixed(2)} |`);
const md = ['## Batched decoding: tokens/s with 1, 4 and 8 concurrent sequences', ''];
md.push(`Date: ${date}. Machine: ${machine}. Load average (1 min) at the end: ${load.toFixed(2)}.`);
if (load > 2.5) md.push('', `> **Warning:** the load average was ${load.toFixed(2)}: other processes shared the ${os.cpus().length} vCPUs, so the numbers are noisy.`);
md.push('', `Command: \`npx tsc -p tsconfig.json && ${command}\``, '');
if (!o['skip-runtime']) {
  md.push(`Decode tokens/s (all sequences together) on ${shape124}: each sequence prefills ${o.prompt} tokens, then ${o.steps} timed steps of one token per sequence (the first two decode steps untimed).`, '');
  md.push(head, sep, ...rows, '');
  for (const n of json.notes) md.push(`- ${n}`);
  if (json.notes.length) md.push('');
}
if (!o['skip-server']) {
  md.push(`End to end: ${serverCmd} on ${shapeSmall}; C streaming clients at once, each one /v1/completions (${o.prompt}-token corpus excerpt, max_tokens ${o['max-tokens']}, temperature 0, end-of-text banned), best of ${o.rounds} round(s). Batched runtime in the server: ${json.server[0]?.runtime ? 'yes' : 'no (each slot runs its own forward; stepMany steps them in turn)'}.`, '');
  md.push('How the server batches: at start it asks the model for its runtime with maxSeqs = --slots and maxT = the context, so every Generation takes a slot of that one runtime; each scheduler tick advances all running generations of one model entry with one stepMany call (one runtime step for all of them), then yields to the event loop. A new request\'s prompt prefill joins the same step as the others\' one-token decodes (they advance in it instead of waiting for a separate prefill; that step lasts as long as the prefill). With adapters there is no runtime and each generation runs its own forward. Mean sequences per forward call: from icld_decode_batch_size in /metrics.', '');
  md.push('| clients | generated tok/s (total) | per stream | TTFT p50 ms | inter-token p50 ms | mean sequences per forward call |', '|---:|---:|---:|---:|---:|---:|', ...srows, '');
}
const section = ['<!-- batch-decode:begin -->', ...md, '<!-- batch-decode:end -->'].join('\n');
if (opt.json) console.log(JSON.stringify(json));
else console.log(md.join('\n'));
if (!opt['no-write']) {
  const path = join(root, 'bench/RESULTS.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n';
  const re = /<!-- batch-decode:begin -->[\s\S]*?<!-- batch-decode:end -->/;
  text = re.test(text) ? text.replace(re, section) : text.replace(/\s*$/, '\n\n') + section + '\n';
  writeFileSync(path, text);
  mkdirSync(join(root, '.bench-tmp'), { recursive: true });
  writeFileSync(join(root, '.bench-tmp/batch-decode.json'), JSON.stringify(json, null, 1));
  log('wrote bench/RESULTS.md (batch-decode section) and .bench-tmp/batch-decode.json');
}

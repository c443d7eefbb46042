#!/usr/bin/env node
// Load benchmark of `icld serve` (issue 13, "Load and faults"): N concurrent streaming clients on
// loopback for a bounded time, each looping POST /v1/chat/completions (or /v1/completions) with
// stream: true and stream_options.include_usage. Reports requests/s, generated tokens/s, p50/p99
// time-to-first-token and inter-token latency, and errors: 0 allowed while clients ≤ slots + queue;
// with --overload (clients > slots + queue) 429s are expected and every other request must succeed.
// Exit 0 when that rule holds, 1 when not, 2 on a bad flag.
//
//   npx tsc -p tsconfig.json && node bench/serve.mjs [--url URL | --model DIR] [--clients 32]
//     [--duration 30] [--max-tokens 64] [--prompt-tokens 32] [--slots 4] [--queue 64] [--overload]
//     [--endpoint chat|completions] [--api-key KEY] [--temperature 0.8] [--json] [--no-write] [--keep-model]
//
// --model DIR starts `node dist/src/cli/main.js serve --model DIR --port 0 --slots S --queue Q` as a
// child (its URL is the first http(s):// address it prints) and stops it with SIGTERM at the end.
// Neither --url nor --model: a random GPT-2 shaped like `bench generate --config small` (d256 L4
// H4, vocab 2048 BPE trained on data/tinyshakespeare.txt, n_positions 256) is built in a temp dir.
// Writes its section of bench/RESULTS.md (serve, or serve-overload) unless --no-write, and
// .bench-tmp/serve[-overload].json. The load generator itself is bench/serve-lib.ts (tested in
// test/bench/serve-bench.test.ts).

import { execSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join, resolve, basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);

function usage(msg) { console.error(`bench/serve: ${msg}`); process.exit(2); }
function fail(msg) { console.error(`bench/serve: ${msg}`); process.exit(1); }

// ---- flags --------------------------------------------------------------------------------------
const NUM = { clients: [1, 4096, true], duration: [0.1, 3600, false], 'max-tokens': [1, 1 << 20, true], 'prompt-tokens': [1, 1 << 16, true], slots: [1, 1024, true], queue: [0, 1 << 20, true], temperature: [0, 2, false], 'retry-delay-ms': [0, 60_000, true] };
const STR = ['url', 'model', 'endpoint', 'api-key'];
const BOOL = ['overload', 'json', 'no-write', 'keep-model'];
const opt = {}, given = new Set();
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith('--')) usage(`unexpected argument '${a}'`);
  const eq = a.indexOf('=');
  const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
  if (BOOL.includes(name)) { if (eq > 0) usage(`--${name} takes no value`); opt[name] = true; given.add(name); continue; }
  if (!(name in NUM) && !STR.includes(name)) usage(`unknown flag --${name} (see the header of bench/serve.mjs)`);
  const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
  if (v === undefined) usage(`--${name} needs a value`);
  if (name in NUM) {
    const [min, max, int] = NUM[name];
    const x = Number(v);
    if (v.trim() === '' || !Number.isFinite(x) || (int && !Number.isInteger(x)) || x < min || x > max) usage(`--${name} must be ${int ? 'an integer' : 'a number'} in [${min}, ${max}], got '${v}'`);
    opt[name] = x;
  } else opt[name] = v;
  given.add(name);
}
const o = {
  clients: 32, duration: 30, 'max-tokens': 64, 'prompt-tokens': 32, slots: 4, temperature: 0.8, 'retry-delay-ms': 100, endpoint: 'chat',
  // Under --overload the spawned server gets a small queue so that the clients exceed slots + queue.
  queue: opt.overload ? 4 : 64,
  ...opt,
};
if (o.url && o.model) usage('--url and --model exclude each other');
if (!['chat', 'completions'].includes(o.endpoint)) usage(`--endpoint must be chat or completions, got '${o.endpoint}'`);
if (o.url && !/^https?:\/\/[^\s]+$/.test(o.url)) usage(`--url must be an http(s):// address, got '${o.url}'`);
if (o.model && !existsSync(join(o.model, 'config.json'))) usage(`--model ${o.model}: no config.json there`);
const limit = o.slots + o.queue;
if (o.overload && o.clients <= limit) usage(`--overload needs --clients > --slots + --queue (${o.clients} ≤ ${o.slots} + ${o.queue})`);
if (!o.overload && o.clients > limit) usage(`--clients ${o.clients} > --slots + --queue (${limit}): pass --overload to expect 429s`);

const log = (s) => console.error(`[serve] ${s}`);
const libPath = join(root, 'dist/bench/serve-lib.js');
if (!existsSync(libPath) || !existsSync(join(root, 'dist/src/index.js'))) fail('dist/ is missing: run `npx tsc -p tsconfig.json` first');
const lib = await import(pathToFileURL(libPath).href);

// ---- the model ----------------------------------------------------------------------------------
const shakespeare = readFileSync(join(root, 'data/tinyshakespeare.txt'), 'utf8');
let modelDir = o.model ? resolve(o.model) : null, tempModel = null, built = null;
if (!o.url && !modelDir) {
  const { createModel, BPETokenizer } = await import(pathToFileURL(join(root, 'dist/src/index.js')).href);
  const t = Date.now();
  // 300 kB of the corpus gives a 2048-token BPE in seconds; the whole file adds nothing to a speed test.
  const tok = BPETokenizer.train([shakespeare.slice(0, 300_000)], { vocabSize: 2048, specialTokens: ['<|endoftext|>'] });
  const cfg = { vocab_size: tok.vocabSize, n_positions: 256, n_embd: 256, n_layer: 4, n_head: 4, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId };
  const m = createModel('gpt2', cfg, 1);
  tempModel = modelDir = mkdtempSync(join(os.tmpdir(), 'icld-serve-bench-'));
  m.savePretrained(modelDir); tok.save(modelDir);
  built = cfg;
  log(`built a random GPT-2 (d256 L4 H4 V${tok.vocabSize} P256) in ${modelDir} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}
const modelCfg = modelDir ? JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) : null;

// ---- the server ---------------------------------------------------------------------------------
let child = null, server = null, url = o.url ? o.url.replace(/\/+$/, '') : null, serverCmd = null;
const serverTail = () => (server ? server.tail().trim().split('\n').slice(-5).map((l) => `  server: ${l}`).join('\n') : '');
function cleanup() {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (tempModel && !o['keep-model']) rmSync(tempModel, { recursive: true, force: true });
}
process.on('SIGINT', () => { cleanup(); process.exit(130); });

function startServer() {
  const args = ['dist/src/cli/main.js', 'serve', '--model', modelDir, '--port', '0', '--slots', String(o.slots), '--queue', String(o.queue)];
  if (o['api-key']) args.push('--api-key', o['api-key']);
  serverCmd = `node ${args.map((a) => (a === modelDir && tempModel ? 'TMPDIR/model' : a)).join(' ')}`;
  log(`starting: ${serverCmd}`);
  server = lib.spawnServer(args, root);
  child = server.child;
  return server.url;
}

async function stopServer() {
  if (!child || child.exitCode !== null) return null;
  const t = Date.now();
  const exited = new Promise((res) => child.once('exit', (code, sig) => res({ code, sig })));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const r = await exited; clearTimeout(timer);
  return { ...r, ms: Date.now() - t };
}

let summary, verdict, modelName, stop = null;
try {
  if (!url) url = await startServer();
  await lib.waitHealthy(url);
  const auth = o['api-key'] ? { authorization: `Bearer ${o['api-key']}` } : {};
  const models = await (await fetch(`${url}/v1/models`, { headers: auth })).json();
  modelName = models?.data?.[0]?.id;
  if (typeof modelName !== 'string') throw new Error(`${url}/v1/models listed no model: ${JSON.stringify(models).slice(0, 200)}`);

  // Prompts: a pool of corpus excerpts made before the clock starts (the clients share the CPUs
  // with the server). With the model's tokenizer at hand each is cut to exactly --prompt-tokens
  // tokens; against --url they are word-aligned (≈1.9 tokens per word with the bench's BPE). The
  // measured mean prompt length (template included) comes back from usage.prompt_tokens.
  const words = shakespeare.split(/\s+/).filter(Boolean);
  const N = o['prompt-tokens'];
  let tok = null;
  if (modelDir) {
    const { loadTokenizer } = await import(pathToFileURL(join(root, 'dist/src/index.js')).href);
    try { tok = loadTokenizer(modelDir); } catch { tok = null; }
  }
  const pool = Array.from({ length: 256 }, (_, k) => {
    const n = tok ? 2 * N : Math.max(1, Math.round(N / 1.9));
    const s = (k * 7919) % (words.length - n);
    const text = words.slice(s, s + n).join(' ');
    return tok ? tok.decode(tok.encode(text).slice(0, N)) : text;
  });
  const excerpt = (i) => pool[i % pool.length];
  const makeBody = (_c, i) => {
    const base = { model: modelName, max_tokens: o['max-tokens'], temperature: o.temperature };
    return o.endpoint === 'chat' ? { ...base, messages: [{ role: 'user', content: excerpt(i) }] } : { ...base, prompt: excerpt(i) };
  };
  // Warm-up (first-call costs stay out of the numbers); it must succeed.
  const w = await lib.streamRequest({ url, endpoint: o.endpoint, body: { ...makeBody(0, 0), max_tokens: 4 }, apiKey: o['api-key'] });
  if (!w.ok) throw new Error(`warm-up request failed: ${w.error}`);
  log(`${o.clients} clients × ${o.duration} s against ${url} (${o.endpoint}, model ${modelName}, max_tokens ${o['max-tokens']})`);
  const load0 = os.loadavg()[0];
  const run = await lib.runLoad({ url, endpoint: o.endpoint, clients: o.clients, durationS: o.duration, makeBody, apiKey: o['api-key'], retryDelayMs: o['retry-delay-ms'] });
  const load1 = os.loadavg()[0];
  summary = { ...lib.summarize(run), load: [load0, load1] };
  verdict = lib.verdict(summary, !!o.overload);
} catch (e) {
  stop = await stopServer();
  cleanup();
  if (serverTail()) console.error(`[serve] last server output:\n${serverTail()}`);
  fail(e.message);
}
stop = await stopServer();
cleanup();

// ---- report -------------------------------------------------------------------------------------
function sh(cmd) { try { return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return ''; } }
const cpu = sh("lscpu | sed -n 's/^Model name:[ \\t]*//p'") || os.cpus()[0]?.model || 'unknown';
const machine = `${cpu}, ${os.cpus().length} vCPUs, Linux ${os.release()}, Node ${process.version}`;
const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const shape = modelCfg ? `${modelCfg.model_type ?? '?'} d${modelCfg.n_embd ?? modelCfg.hidden_size} L${modelCfg.n_layer ?? modelCfg.num_hidden_layers} H${modelCfg.n_head ?? modelCfg.num_attention_heads} V${modelCfg.vocab_size} P${modelCfg.n_positions ?? modelCfg.max_position_embeddings}${built ? ' (random weights)' : ` (${basename(modelDir)})`}` : `${modelName} at ${url}`;
const command = 'node bench/serve.mjs' + (argv.length ? ' ' + argv.filter((a) => a !== '--no-write' && a !== '--json').join(' ') : '');
const json = { bench: 'serve', date, machine, command, server: serverCmd, url: o.url ?? null, model: shape, endpoint: o.endpoint, clients: o.clients, duration_s: o.duration, max_tokens: o['max-tokens'], prompt_tokens_target: o['prompt-tokens'], slots: o.slots, queue: o.queue, overload: !!o.overload, ...summary, pass: verdict.pass, verdict: verdict.why, server_stop: stop };
const table = lib.formatTable(summary);
if (o.json) console.log(JSON.stringify(json));
else {
  console.log(table);
  console.log(`\n${verdict.pass ? 'PASS' : 'FAIL'}: ${verdict.why}`);
  if (!verdict.pass && serverTail()) console.error(`[serve] last server output:\n${serverTail()}`);
  console.log(JSON.stringify(json));
}

if (!o['no-write']) {
  const key = o.overload ? 'serve-overload' : 'serve';
  const md = [];
  md.push(o.overload ? '### Serving under overload (clients > slots + queue)' : '## Serving: `icld serve` under concurrent streaming load', '');
  md.push(`Date: ${date}. Machine: ${machine}. Load average (1 min) before/after: ${summary.load[0].toFixed(2)} / ${summary.load[1].toFixed(2)} (after includes this run).`);
  md.push(`Model: ${shape}. Server: ${serverCmd ? `\`${serverCmd}\`` : o.url} (slots ${o.slots}, queue ${o.queue}); the clients run in the same machine, on loopback.`);
  // The load after the run counts this run's own server and clients; only the one before says whether others were busy.
  if (summary.load[0] > 1.5) md.push('', `> **Warning:** the 1-min load average was ${summary.load[0].toFixed(2)} before the run: other processes shared the ${os.cpus().length} vCPUs with the server and the clients, so the numbers are noisy.`);
  md.push('', `Command: \`npx tsc -p tsconfig.json && ${command}\``, '');
  md.push(`${o.clients} clients, each looping one streaming ${o.endpoint === 'chat' ? 'POST /v1/chat/completions' : 'POST /v1/completions'} (stream_options.include_usage, max_tokens ${o['max-tokens']}, temperature ${o.temperature}, ${o['prompt-tokens']}-token corpus excerpts${o.endpoint === 'chat' ? ' as the user message' : ''}) for ${o.duration} s; requests in flight at the deadline finish and count. TTFT: send → first chunk with text, so it includes the wait for a free slot (${o.clients} clients share ${o.slots}); inter-token: gaps between chunks with text; tokens from usage.completion_tokens${o.overload ? `; a client refused with 429 waits ${o['retry-delay-ms']} ms and retries` : ''}.`, '');
  md.push(table, '', `**${verdict.pass ? 'Pass' : 'Fail'}**: ${verdict.why}.${stop ? ` Server stopped by SIGTERM in ${stop.ms} ms (${stop.sig ?? `exit ${stop.code}`}).` : ''}`, '');
  const section = [`<!-- ${key}:begin -->`, ...md, `<!-- ${key}:end -->`].join('\n');
  const path = join(root, 'bench/RESULTS.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmark results\n';
  const re = new RegExp(`<!-- ${key}:begin -->[\\s\\S]*?<!-- ${key}:end -->`);
  if (re.test(text)) text = text.replace(re, section);
  else if (key === 'serve-overload' && text.includes('<!-- serve:end -->')) text = text.replace('<!-- serve:end -->', `<!-- serve:end -->\n\n${section}`);
  else if (key === 'serve' && text.includes('<!-- serve-overload:begin -->')) text = text.replace('<!-- serve-overload:begin -->', `${section}\n\n<!-- serve-overload:begin -->`);
  else text = text.replace(/\s*$/, '\n\n') + section + '\n';
  writeFileSync(path, text);
  mkdirSync(join(root, '.bench-tmp'), { recursive: true });
  writeFileSync(join(root, `.bench-tmp/${key}.json`), JSON.stringify(json, null, 1));
  log(`wrote bench/RESULTS.md (${key} section) and .bench-tmp/${key}.json`);
}
process.exit(verdict.pass ? 0 : 1);

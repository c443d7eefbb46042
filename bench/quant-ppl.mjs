#!/usr/bin/env node
// Perplexity change per inference weight format, as llama.cpp users compare it: the fp32 model
// and its `icld quantize` copies (bf16, q8_0, q4_0, each into a temp dir) scored by `icld eval-lm`
// on the WikiText-2 test split, each command in a fresh process. Reports ppl, Δ vs fp32 and the
// model.safetensors size per format; writes the "quant-ppl" section of bench/RESULTS.md (between
// <!-- quant-ppl:begin --> and <!-- quant-ppl:end -->).
//
//   npm run build && node bench/quant-ppl.mjs [--model DIR] [--text FILE] [--formats bf16,q8_0,q4_0] [--no-write]
//
// Defaults: the trained GPT-2 runs/kb-base (d256 L4, its own tokenizer; made by
//   icld pretrain --config configs/knowledge-base.json --data data/corpus/wikitext-2/wiki.valid.raw \
//        data/corpus/c4/c4_demo.jsonl --out runs/kb-base
// as in examples/knowledge-update/) and data/corpus/wikitext-2/wiki.test.raw.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, readFileSync, existsSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const model = opt('--model', 'runs/kb-base');
if (!existsSync(join(resolve(root, model), 'config.json'))) {
  console.error(`bench/quant-ppl.mjs: no model at ${model} (pretrain it: icld pretrain --config configs/knowledge-base.json --data data/corpus/wikitext-2/wiki.valid.raw data/corpus/c4/c4_demo.jsonl --out runs/kb-base; or pass --model DIR)`);
  process.exit(1);
}
const text = opt('--text', 'data/corpus/wikitext-2/wiki.test.raw');
const formats = opt('--formats', 'bf16,q8_0,q4_0').split(',');
const write = !argv.includes('--no-write');
const cli = join(root, 'dist/src/cli/main.js');

function icld(args) {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [cli, ...args, '--json'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`icld ${args.join(' ')} failed (exit ${r.status}): ${r.stderr.trim().split('\n').pop()}`);
  return { json: JSON.parse(r.stdout.trim().split('\n').pop()), seconds: (Date.now() - t0) / 1000, command: `node dist/src/cli/main.js ${args.join(' ')} --json` };
}

const tmp = mkdtempSync(join(tmpdir(), 'icld-quant-ppl-'));
const load0 = os.loadavg()[0], t0 = Date.now();
const rows = [];
try {
  const mib = (p) => statSync(join(p, 'model.safetensors')).size / 2 ** 20;
  const evalDir = (dir, dtype) => {
    process.stderr.write(`eval-lm ${dtype} …\n`);
    const e = icld(['eval-lm', '--model', dir, '--text-file', text]);
    if (e.json.dtype !== dtype) throw new Error(`eval-lm reported dtype ${e.json.dtype} for the ${dtype} model`);
    return { dtype, ppl: e.json.ppl, nll: e.json.nll, tokens: e.json.tokens, mib: mib(dir), eval_s: e.seconds, command: e.command };
  };
  rows.push(evalDir(model, 'f32'));
  for (const f of formats) {
    const out = join(tmp, f);
    process.stderr.write(`quantize ${f} …\n`);
    const q = icld(['quantize', '--model', model, '--dtype', f, '--out', out]);
    const e = evalDir(out, f);
    rows.push({ ...e, command: e.command.replace(tmp, '$TMP'), quantize: q.json, quantize_command: q.command.replace(tmp, '$TMP') });
  }
} finally { rmSync(tmp, { recursive: true, force: true }); }

const base = rows[0];
for (const r of rows) { r.dppl = r.ppl - base.ppl; r.dppl_pct = 100 * (r.ppl / base.ppl - 1); }
const result = { model, text, tokens: base.tokens, rows };
console.log(JSON.stringify(result));

const fmt = (x, d) => x.toFixed(d);
const md = [
  '## Perplexity change per weight format (WikiText-2 test)',
  '',
  `Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}. Model: \`${model}\` (${JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')).n_embd ?? '?'}-wide GPT-2, its own tokenizer), text \`${text}\`, ${base.tokens} tokens scored in windows of n_positions.`,
  `Formats per tensor (icld quantize): linear layers in the format (bf16 where K % 32 ≠ 0), token embedding / tied LM head q8_0 under q4_0, position embeddings, LayerNorms and biases f32. q formats quantize activations to q8_0 blocks as llama.cpp does.`,
  `Load average (1 min) before/after: ${fmt(load0, 2)} / ${fmt(os.loadavg()[0], 2)}; wall ${Math.round((Date.now() - t0) / 1000)} s (eval times are noisy: the machine is shared).`,
  '',
  'Command: `npm run build && node bench/quant-ppl.mjs`',
  ...rows.flatMap((r) => [...(r.quantize_command ? [`- \`${r.quantize_command}\``] : []), `- \`${r.command}\``]),
  '',
  '| weights | model.safetensors | ppl | Δppl vs fp32 | Δ | eval-lm s |',
  '|---|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.dtype} | ${fmt(r.mib, 2)} MiB | ${fmt(r.ppl, 3)} | ${r === base ? '–' : (r.dppl >= 0 ? '+' : '') + fmt(r.dppl, 3)} | ${r === base ? '–' : (r.dppl_pct >= 0 ? '+' : '') + fmt(r.dppl_pct, 2) + ' %'} | ${fmt(r.eval_s, 0)} |`),
];
const section = ['<!-- quant-ppl:begin -->', ...md, '<!-- quant-ppl:end -->'].join('\n');
console.error('\n' + md.join('\n'));
if (write) {
  const path = join(root, 'bench/RESULTS.md');
  const old = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const re = /<!-- quant-ppl:begin -->[\s\S]*?<!-- quant-ppl:end -->/;
  const next = re.test(old) ? old.replace(re, section) : old.replace(/\n*$/, '\n\n') + section + '\n';
  const t = `${path}.tmp-${process.pid}`;
  writeFileSync(t, next);
  renameSync(t, path);
  console.error('wrote bench/RESULTS.md (quant-ppl section)');
}

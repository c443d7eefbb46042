#!/usr/bin/env node
// The knowledge-update demo: fine-tune a base GPT-2 on train.json with LoRA, P-Tuning v2 and full
// fine-tuning (then DPO on prefs.json after the LoRA), and measure fact / identity accuracy on
// eval.json and WikiText-2 test perplexity before and after. Writes OUT/results.json and
// OUT/results.md and refreshes the table in this folder's README.md.
//
//   node examples/knowledge-update/run.mjs --base DIR [--out DIR] [--epochs N] [--heldout-tokens N]
// (run `npm run build` first; the base is any causal model directory, e.g. one made by
//  `icld pretrain`, see README.md for the one we measured).

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const { knowledgeUpdate, knowledgeTable } = await import(join(root, 'dist', 'src', 'index.js'));

const args = process.argv.slice(2);
const flag = (name, dflt) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const base = flag('base');
if (!base) { console.error('usage: node examples/knowledge-update/run.mjs --base DIR [--out DIR] [--epochs N] [--heldout-tokens N]'); process.exit(2); }
const out = flag('out', join(root, 'runs', 'knowledge-update'));
const epochs = Number(flag('epochs', '10'));
const heldoutTokens = Number(flag('heldout-tokens', '20000'));
mkdirSync(out, { recursive: true });

// Settings of the measured run (per-method learning rates: adapters take larger steps than full
// fine-tuning). Batch 8; one checkpoint at the end.
const common = { epochs, batchSize: 8, saveEvery: 0, logEvery: 10, seed: 0 };
const perMethod = {
  lora: { lr: 3e-3, peft: { r: 16, lora_alpha: 32, target_modules: ['c_attn', 'c_proj', 'c_fc'] } },
  'ptuning-v2': { lr: 1e-2, peft: { num_virtual_tokens: 16 } },
  full: { lr: 5e-4 },
};
const t0 = Date.now();
const rows = knowledgeUpdate({
  base, out, train: join(here, 'train.json'), eval: join(here, 'eval.json'), evalSeen: join(here, 'eval_seen.json'),
  heldout: join(root, 'data', 'corpus', 'wikitext-2', 'wiki.test.raw'), heldoutTokens,
  methods: ['lora', 'ptuning-v2', 'full'], common, perMethod,
  dpo: { data: join(here, 'prefs.json'), options: { epochs: 10, lr: 1e-3, beta: 0.1, peft: { r: 8, lora_alpha: 16 } } },
});
const table = knowledgeTable(rows);
const settings = `base ${base}; ${epochs} epochs of train.json (batch 8); LoRA r 16 α 32 on c_attn/c_proj/c_fc lr 3e-3; P-Tuning v2 16 virtual tokens lr 1e-2; full lr 5e-4; DPO: the LoRA merged, then a LoRA r 8 on c_attn for 10 epochs of prefs.json, β 0.1, lr 1e-3; greedy answers of ≤ 16 tokens; ppl over the first ${heldoutTokens} tokens of WikiText-2 test; total ${((Date.now() - t0) / 60000).toFixed(1)} min`;
writeFileSync(join(out, 'results.json'), JSON.stringify({ settings, rows }, null, 2) + '\n');
writeFileSync(join(out, 'results.md'), table + '\n\n' + settings + '\n');
const readme = join(here, 'README.md');
const text = readFileSync(readme, 'utf8');
const start = text.indexOf('<!-- RESULTS'), end = text.indexOf('<!-- /RESULTS -->');
if (start >= 0 && end > start) {
  const open = text.indexOf('-->', start) + 3;
  writeFileSync(readme, text.slice(0, open) + '\n\n' + table + '\n\n' + settings + '\n\n' + text.slice(end));
}
console.log(table + '\n\n' + settings);

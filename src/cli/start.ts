// `npm start`: the main job on embedded data. Trains a byte-level BPE tokenizer and a small
// GPT-2 on Tiny Shakespeare (data/tinyshakespeare.txt) with configs/shakespeare-small.json,
// shows progress, then prints perplexity and a sample from the trained model.

import { fileURLToPath } from 'node:url';
import { rmSync } from 'node:fs';
import { pretrain, readPretrainConfig } from '../train/pretrain.js';
import { loadLM } from './load.js';
import { generate } from '../models/generate.js';
import { info, formatInfo } from './info.js';

export async function runStart(opts: { steps?: number; out: string; json: boolean }): Promise<void> {
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  log(formatInfo(info()));
  const root = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
  const config = readPretrainConfig(root('configs/shakespeare-small.json'));
  if (opts.steps !== undefined) config.train.steps = opts.steps;
  // A fresh run each time (the token cache under OUT/tokens is kept and reused).
  for (const n of ['model.safetensors', 'trainer_state.json']) rmSync(`${opts.out}/${n}`, { force: true });
  const r = pretrain({ config, data: [root('data/tinyshakespeare.txt')], out: opts.out, log });
  const { model, tokenizer } = loadLM(opts.out);
  const sample = generate(model, tokenizer, 'ROMEO:\n', { maxNewTokens: 120, temperature: 0.8, topK: 50, seed: 5 });
  const summary = {
    out: opts.out, report: `${opts.out}/report.html`, steps: r.state.global_step, params: r.params,
    seconds: +r.state.elapsed_s.toFixed(1), val_loss: r.final_eval?.loss, val_ppl: r.final_eval?.ppl, sample: 'ROMEO:\n' + sample.text,
  };
  if (opts.json) { console.log(JSON.stringify(summary)); return; }
  console.log(`\ntrained ${summary.steps} steps (${(r.params / 1e6).toFixed(2)}M parameters) in ${summary.seconds} s; validation loss ${summary.val_loss?.toFixed(3)} (perplexity ${summary.val_ppl?.toFixed(1)} per BPE token)`);
  console.log(`model: ${opts.out}   report: ${summary.report}`);
  console.log('--- sample (temperature 0.8, top-k 50) ---');
  console.log(summary.sample);
}

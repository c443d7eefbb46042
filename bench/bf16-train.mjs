#!/usr/bin/env node
// bf16 vs fp32 training on the Shakespeare config: one `icld pretrain` run per entry of --runs
// (precision:seed, same config otherwise), one after the other, each logging to <dir>/<name>.log;
// then a summary (loss curves, s/step, final eval gap, the fp32 seed-to-seed spread) as JSON.
// Usage: node bench/bf16-train.mjs [--dir DIR] [--runs f32:1,bf16:1,f32:2] [--steps N] [--dist DIST]
//   --dist: a copy of dist/ to run (so a rebuild during the runs changes nothing); default dist/.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const dir = resolve(arg('dir', '/tmp/icld-bf16-train'));
const runs = arg('runs', 'f32:1,bf16:1,f32:2').split(',').map((s) => { const [p, seed] = s.split(':'); return { precision: p, seed: Number(seed) }; });
const steps = arg('steps');
const dist = resolve(arg('dist', join(root, 'dist')));
const summaryOnly = process.argv.includes('--summary');
mkdirSync(dir, { recursive: true });

const base = JSON.parse(readFileSync(join(root, 'configs/shakespeare-small.json'), 'utf8'));
const results = [];
for (const r of runs) {
  const name = `${r.precision}-seed${r.seed}`, out = join(dir, name);
  const cfgPath = join(dir, `${name}.config.json`);
  writeFileSync(cfgPath, JSON.stringify({ ...base, train: { ...base.train, seed: r.seed } }, null, 2));
  const args = [join(dist, 'src/cli/main.js'), 'pretrain', '--config', cfgPath, '--data', join(root, 'data/tinyshakespeare.txt'), '--out', out, '--overwrite'];
  if (r.precision !== 'f32') args.push('--precision', r.precision); // an f32 run needs no flag (runs on builds without it)
  if (steps) args.push('--steps', steps);
  if (!summaryOnly || !existsSync(join(out, 'trainer_state.json'))) {
    const log = openSync(join(dir, `${name}.log`), 'w');
    process.stderr.write(`${new Date().toISOString()} ${name}: node ${args.join(' ')}\n`);
    const p = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', log, log] });
    closeSync(log);
    if (p.status !== 0) { process.stderr.write(`${name} failed (exit ${p.status}); see ${join(dir, `${name}.log`)}\n`); process.exit(1); }
  }
  const st = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
  const lh = st.log_history, eh = st.eval_history;
  // s/step from the log entries after the first (skips start-up), excluding eval/checkpoint time as far as the log allows
  const sPerStep = (lh.at(-1).elapsed_s - lh[0].elapsed_s) / (lh.at(-1).step - lh[0].step);
  results.push({ name, precision: r.precision, seed: r.seed, s_per_step: +sPerStep.toFixed(3), elapsed_s: +st.elapsed_s.toFixed(1),
    train: lh.map((e) => [e.step, +e.loss.toFixed(4)]), eval: eh.map((e) => [e.step, +e.loss.toFixed(4)]), final_eval: eh.at(-1)?.loss });
}
const by = (p, s) => results.find((x) => x.precision === p && x.seed === s);
const f1 = by('f32', 1), b1 = by('bf16', 1), f2 = by('f32', 2);
const summary = { dir, runs: results };
if (f1 && b1) summary.final_eval_gap_bf16_vs_f32 = +(b1.final_eval - f1.final_eval).toFixed(4);
if (f1 && f2) summary.final_eval_gap_f32_seed2_vs_seed1 = +(f2.final_eval - f1.final_eval).toFixed(4);
if (f1 && b1) summary.max_eval_gap_bf16_vs_f32 = +Math.max(...f1.eval.map(([s, l], i) => Math.abs(l - b1.eval[i][1]))).toFixed(4);
if (f1 && f2) summary.max_eval_gap_f32_seeds = +Math.max(...f1.eval.map(([s, l], i) => Math.abs(l - f2.eval[i][1]))).toFixed(4);
writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
console.log(JSON.stringify(summary));

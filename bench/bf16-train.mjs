#!/usr/bin/env node
// bf16 vs fp32 training on the Shakespeare config: one `icld pretrain` run per entry of --runs
// (precision:seed, same config otherwise), one after the other, each logging to <dir>/<name>.log;
// then a summary (loss curves, s/step, final eval gap, the fp32 seed-to-seed spread) as JSON.
// Usage: node bench/bf16-train.mjs [--dir DIR] [--runs f32:1,bf16:1,f32:2] [--steps N] [--dist DIST] [--summary]
//   --dist: a copy of dist/ to run (so a rebuild during the runs changes nothing); default dist/.
//   --summary: only (re)write the summary from runs already finished in DIR.
//        node bench/bf16-train.mjs --gemm [--reps N]
//   GEMM GFLOP/s of gemm (fp32: the addon's provider) vs gemmBf16 (vdpbf16ps; and the emulated
//   path) on GPT-2 training shapes at 1 and 2 threads; blocks of N calls per variant, alternated over 3 rounds, best call.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const dir = resolve(arg('dir', '/tmp/icld-bf16-train'));
const runs = arg('runs', 'f32:1,bf16:1,f32:2').split(',').map((s) => { const [p, seed] = s.split(':'); return { precision: p, seed: Number(seed) }; });
const steps = arg('steps');
const dist = resolve(arg('dist', join(root, 'dist')));
const summaryOnly = process.argv.includes('--summary');

if (process.argv.includes('--gemm')) {
  const a = createRequire(import.meta.url)(join(root, 'build/Release/icld_native.node'));
  const reps = Number(arg('reps', '9'));
  // [name, transA, transB, M, N, K]: a [2048 tokens × 256] activation through a 256 → 768 projection,
  // its two backward products, and the Shakespeare config's tied LM head (192 → 2048 vocab) forward.
  const shapes = [['fwd  X·W        ', false, false, 2048, 768, 256], ['bwd  dX = dY·Wᵀ ', false, true, 2048, 256, 768],
    ['bwd  dW = Xᵀ·dY ', true, false, 256, 768, 2048], ['head H·Eᵀ (V=2048)', false, true, 2048, 2048, 192]];
  const rows = [];
  for (const th of [1, 2]) {
    a.setThreads(th);
    for (const [name, tA, tB, M, N, K] of shapes) {
      const A = new Float32Array(M * K).map(() => Math.random() - 0.5), B = new Float32Array(K * N).map(() => Math.random() - 0.5), C = new Float32Array(M * N);
      const lda = tA ? M : K, ldb = tB ? K : N;
      const f32 = () => a.gemm(tA, tB, M, N, K, 1, A, 0, lda, 0, B, 0, ldb, 0, 0, C, 0, N, 0, 1);
      const bf = () => a.gemmBf16(tA, tB, M, N, K, 1, A, 0, lda, 0, B, 0, ldb, 0, 0, C, 0, N, 0, 1);
      const best = { f32: Infinity, bf16: Infinity, emul: Infinity };
      const time = (f) => { const t0 = performance.now(); f(); return performance.now() - t0; };
      f32(); bf();
      // Blocks of reps per variant, the blocks alternated over 3 rounds: alternating single calls
      // would time each one against the other's thread pool still spinning (OpenBLAS vs OpenMP).
      // A pause before each block lets the other pool's threads stop spinning and sleep.
      const pause = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      const block = (f, mode) => { pause(); if (mode !== undefined) a.gemmBf16Path(mode); f(); let b = Infinity; for (let r = 0; r < reps; r++) b = Math.min(b, time(f)); a.gemmBf16Path(-1); return b; };
      for (let round = 0; round < 3; round++) {
        best.f32 = Math.min(best.f32, block(f32));
        best.bf16 = Math.min(best.bf16, block(bf, 1));
        best.emul = Math.min(best.emul, block(bf, 0));
      }
      const gf = 2 * M * N * K / 1e6;
      rows.push({ threads: th, shape: name.trim(), M, N, K, f32_gflops: +(gf / best.f32).toFixed(1), bf16_gflops: +(gf / best.bf16).toFixed(1), emulated_gflops: +(gf / best.emul).toFixed(1), speedup: +(best.f32 / best.bf16).toFixed(2) });
      const x = rows.at(-1);
      process.stderr.write(`${th} thread(s)  ${name}  M=${M} N=${N} K=${K}: f32 ${x.f32_gflops} GFLOP/s, bf16 ${x.bf16_gflops} (emulated ${x.emulated_gflops}), ×${x.speedup}\n`);
    }
  }
  console.log(JSON.stringify({ provider: a.info().gemm, bf16_path: a.gemmBf16Path(), rows }));
  process.exit(0);
}
mkdirSync(dir, { recursive: true });

const base = JSON.parse(readFileSync(join(root, 'configs/shakespeare-small.json'), 'utf8'));
const results = [];
for (const r of runs) {
  const name = `${r.precision}-seed${r.seed}`, out = join(dir, name);
  const cfgPath = join(dir, `${name}.config.json`);
  if (!summaryOnly) writeFileSync(cfgPath, JSON.stringify({ ...base, train: { ...base.train, seed: r.seed } }, null, 2));
  const args = [join(dist, 'src/cli/main.js'), 'pretrain', '--config', cfgPath, '--data', join(root, 'data/tinyshakespeare.txt'), '--out', out, '--overwrite'];
  if (r.precision !== 'f32') args.push('--precision', r.precision); // an f32 run needs no flag (runs on builds without it)
  if (steps) args.push('--steps', steps);
  // An unfinished run (summary only) is read from its newest checkpoint and marked partial.
  let stateFile = join(out, 'trainer_state.json'), partial = false;
  if (summaryOnly && !existsSync(stateFile)) {
    const cks = existsSync(out) ? readdirSync(out).map((n) => /^checkpoint-(\d+)$/.exec(n)).filter(Boolean).map((m) => Number(m[1])).sort((a, b) => b - a) : [];
    if (!cks.length) { process.stderr.write(`${name}: no checkpoint yet, left out\n`); continue; }
    stateFile = join(out, `checkpoint-${cks[0]}`, 'trainer_state.json'); partial = true;
  }
  if (!summaryOnly) {
    const log = openSync(join(dir, `${name}.log`), 'w');
    process.stderr.write(`${new Date().toISOString()} ${name}: node ${args.join(' ')}\n`);
    const p = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', log, log] });
    closeSync(log);
    if (p.status !== 0) { process.stderr.write(`${name} failed (exit ${p.status}); see ${join(dir, `${name}.log`)}\n`); process.exit(1); }
  }
  const st = JSON.parse(readFileSync(stateFile, 'utf8'));
  const lh = st.log_history, eh = st.eval_history;
  // s/step from the log entries after the first (skips start-up), excluding eval/checkpoint time as far as the log allows
  const sPerStep = (lh.at(-1).elapsed_s - lh[0].elapsed_s) / (lh.at(-1).step - lh[0].step);
  results.push({ name, precision: r.precision, seed: r.seed, steps: st.global_step, ...(partial ? { partial: true } : {}), s_per_step: +sPerStep.toFixed(3), elapsed_s: +st.elapsed_s.toFixed(1),
    train: lh.map((e) => [e.step, +e.loss.toFixed(4)]), eval: eh.map((e) => [e.step, +e.loss.toFixed(4)]), final_eval: eh.at(-1)?.loss });
}
const by = (p, s) => results.find((x) => x.precision === p && x.seed === s);
const f1 = by('f32', 1), b1 = by('bf16', 1), f2 = by('f32', 2);
const summary = { dir, runs: results };
// Gaps over the eval steps both runs have (a partial run is compared up to where it got).
const gap = (x, y) => {
  const ys = new Map(y.eval.map(([s, l]) => [s, l]));
  const common = x.eval.filter(([s]) => ys.has(s));
  if (!common.length) return null;
  const [ls, lx] = common.at(-1);
  return { at_step: ls, last: +(lx - ys.get(ls)).toFixed(4), max_abs: +Math.max(...common.map(([s, l]) => Math.abs(l - ys.get(s)))).toFixed(4) };
};
if (f1 && b1) summary.eval_gap_bf16_minus_f32 = gap(b1, f1);
if (f1 && f2) summary.eval_gap_f32_seed2_minus_seed1 = gap(f2, f1);
writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
// Markdown tables for bench/RESULTS.md: eval loss per eval step, train loss every 100 steps, s/step.
if (process.argv.includes('--markdown')) {
  const head = `| step | ${results.map((r) => `${r.name}${r.partial ? ' (partial)' : ''}`).join(' | ')} |\n|---|${results.map(() => '---').join('|')}|\n`;
  const rowsOf = (k, every) => {
    const steps = [...new Set(results.flatMap((r) => r[k].map(([st]) => st)))].filter((st) => st % every === 0).sort((a, b) => a - b);
    return steps.map((st) => `| ${st} | ${results.map((r) => { const e = r[k].find(([x]) => x === st); return e ? e[1].toFixed(4) : '–'; }).join(' | ')} |`).join('\n');
  };
  const md = `Held-out loss (fp32 forward of the master weights):\n\n${head}${rowsOf('eval', 100)}\n\n`
    + `Training loss (mean of the 10-step window ending at the step):\n\n${head}${rowsOf('train', 50)}\n\n`
    + `| run | steps | s/step | final eval loss |\n|---|---|---|---|\n${results.map((r) => `| ${r.name} | ${r.steps}${r.partial ? ' (partial)' : ''} | ${r.s_per_step.toFixed(2)} | ${r.final_eval.toFixed(4)} |`).join('\n')}\n`;
  writeFileSync(join(dir, 'results.md'), md);
  process.stderr.write(md);
}
// The curves as a page (bench/bf16-train.html with --html): train loss per log window, eval loss.
if (process.argv.includes('--html')) {
  const { htmlPage, lineChart, htmlTable } = await import(join(root, 'dist/src/report/html.js'));
  const colors = { 'f32-seed1': '#1f77b4', 'bf16-seed1': '#d62728', 'f32-seed2': '#7f7f7f' };
  const series = (k) => results.map((r) => ({ name: `${r.precision}, seed ${r.seed}`, points: r[k], color: colors[r.name] ?? '#2ca02c' }));
  const body = lineChart('Training loss (mean over each 10-step window), Shakespeare config', 'step', series('train'))
    + lineChart('Held-out loss (eval every 100 steps, fp32 forward)', 'step', series('eval'))
    + htmlTable(['run', 's/step', 'final eval loss'], results.map((r) => [r.name + (r.partial ? ` (partial: ${r.steps} steps)` : ''), r.s_per_step.toFixed(3), r.final_eval.toFixed(4)]))
    + `<p class="note">node bench/bf16-train.mjs --runs ${results.map((r) => `${r.precision}:${r.seed}`).join(',')} --summary --html</p>`;
  writeFileSync(join(root, 'bench/bf16-train.html'), htmlPage('bf16 vs fp32 training (icld pretrain --precision)', body));
}
console.log(JSON.stringify(summary));

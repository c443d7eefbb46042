#!/usr/bin/env node
// icld: thin command dispatcher. Each command parses its flags and calls into the library;
// --json prints one JSON object on stdout, logs go to stderr, errors are one line + exit 1.

import { parseArgs, helpText, UsageError, type FlagSpec } from './args.js';
import { info, formatInfo } from './info.js';

interface Command {
  summary: string;
  flags: Record<string, FlagSpec>;
  run: (a: ReturnType<typeof parseArgs>) => Promise<void> | void;
}

const json: FlagSpec = { type: 'boolean', help: 'print one JSON object on stdout' };

const commands: Record<string, Command> = {
  info: {
    summary: 'Version, compute backend (native/reference), GEMM provider and threads.',
    flags: { json },
    run: (a) => {
      const i = info();
      if (a.json) console.log(JSON.stringify(i));
      else console.log(formatInfo(i));
    },
  },
  'bench ops': {
    summary: 'Time the core kernels (matmul, attention, layer norm, softmax+cross-entropy, GELU, an MLP block fwd+bwd) on this machine.',
    flags: {
      json,
      quick: { type: 'boolean', help: 'fewer repetitions (smoke run)' },
      filter: { type: 'string', help: 'only cases whose name contains this text' },
    },
    run: async (a) => {
      const { benchOps } = await import('./bench-ops.js');
      const r = await benchOps({ json: !!a.json, quick: !!a.quick, filter: a.filter as string | undefined });
      if (a.json) { console.log(JSON.stringify(r)); return; }
      console.log(`backend ${r.backend}, gemm ${r.gemm}, threads ${r.threads}`);
      for (const c of r.cases) console.log(`${c.name.padEnd(40)} ${c.ms.toFixed(3).padStart(10)} ms${c.gflops ? `  ${c.gflops.toFixed(1)} GFLOP/s` : ''}`);
    },
  },
  'bench train': {
    summary: 'Time the full GPT-2 training step (fwd + CE + bwd + clip + AdamW) at a reference shape; peak RSS.',
    flags: {
      json,
      config: { type: 'string', default: 'small', help: 'small | gpt2s (DESIGN.md §5)' },
      steps: { type: 'number', help: 'timed steps (default 10 small, 4 gpt2s)' },
      warmup: { type: 'number', help: 'untimed warm-up steps (default 2 small, 1 gpt2s)' },
    },
    run: async (a) => {
      const { benchTrain } = await import('./bench-lm.js');
      const r = benchTrain({ config: a.config as 'small' | 'gpt2s', steps: a.steps as number | undefined, warmup: a.warmup as number | undefined, json: !!a.json });
      console.log(a.json ? JSON.stringify(r) : `${r.config}: ${r.params} params, ${r.step_s.toFixed(3)} s/step, ${r.tokens_per_s.toFixed(0)} tok/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MiB (${r.backend}/${r.gemm}, ${r.threads} thread(s))`);
    },
  },
  'bench generate': {
    summary: 'Time greedy KV-cache decoding (batch 1, prompt 64, 128 new tokens) at a reference shape.',
    flags: {
      json,
      config: { type: 'string', default: 'small', help: 'small | gpt2-124m' },
      reps: { type: 'number', default: 3, help: 'timed repeats (median)' },
    },
    run: async (a) => {
      const { benchGenerate } = await import('./bench-lm.js');
      const r = benchGenerate({ config: a.config as 'small' | 'gpt2-124m', reps: a.reps as number, json: !!a.json });
      console.log(a.json ? JSON.stringify(r) : `${r.config}: ${r.tokens_per_s.toFixed(1)} tok/s, prefill ${r.prefill_ms.toFixed(1)} ms, ${r.per_token_ms.toFixed(2)} ms/token, peak RSS ${r.peak_rss_mb.toFixed(0)} MiB`);
    },
  },
  'tokenizer train': {
    summary: 'Train a tokenizer on text files and write OUT/tokenizer.json (HF tokenizers format).',
    flags: {
      json,
      type: { type: 'string', default: 'bpe', help: 'bpe (wordpiece: later)' },
      'vocab-size': { type: 'number', help: 'target vocabulary size (required)' },
      out: { type: 'string', help: 'output directory (required)' },
      'min-frequency': { type: 'number', default: 2, help: 'minimum pair count to merge' },
      'special-tokens': { type: 'list', default: ['<|endoftext|>'], help: 'special tokens (get the first ids)' },
    },
    run: async (a) => {
      const { tokenizerTrainCommand } = await import('./tokenizer.js');
      const r = await tokenizerTrainCommand({ type: a.type as string, vocabSize: need(a, 'vocab-size') as number, out: need(a, 'out') as string,
        files: a._, minFrequency: a['min-frequency'] as number, specialTokens: a['special-tokens'] as string[], json: !!a.json });
      console.log(a.json ? JSON.stringify(r) : `wrote ${r.path}: ${r.vocab_size} tokens from ${r.files} file(s), ${r.bytes} bytes in ${r.seconds.toFixed(1)} s`);
    },
  },
  pretrain: {
    summary: 'Pretrain a GPT-2 from text files (tokenizer, cached shards, AdamW, schedules, eval, atomic checkpoints, --resume).',
    flags: {
      json,
      arch: { type: 'string', default: 'gpt2', help: 'model family (gpt2)' },
      config: { type: 'string', help: 'JSON with "model", "tokenizer", "train" sections (required)' },
      data: { type: 'list', help: 'training text files (required)' },
      out: { type: 'string', help: 'run directory (required)' },
      resume: { type: 'string', help: 'run or checkpoint directory to continue from (its newest complete checkpoint)' },
      overwrite: { type: 'boolean', help: 'start again in a non-empty --out (its old checkpoints are deleted)' },
      steps: { type: 'number', help: 'override train.steps' },
    },
    run: async (a) => {
      if (a.arch !== 'gpt2') throw new UsageError(`icld pretrain: --arch ${String(a.arch)} is not supported yet (gpt2)`);
      if (a.resume !== undefined && a.overwrite) throw new UsageError('icld pretrain: --resume and --overwrite exclude each other (resume continues the run, overwrite starts it again)');
      const { pretrain, readPretrainConfig } = await import('../train/pretrain.js');
      const config = readPretrainConfig(need(a, 'config') as string);
      if (a.steps !== undefined) config.train.steps = a.steps as number;
      const r = pretrain({ config, data: need(a, 'data') as string[], out: need(a, 'out') as string, resume: a.resume as string | undefined, overwrite: !!a.overwrite });
      const summary = { out: r.out, steps: r.state.global_step, params: r.params, train_tokens: r.tokens.train, val_tokens: r.tokens.val, final_eval: r.final_eval, elapsed_s: +r.state.elapsed_s.toFixed(1) };
      console.log(a.json ? JSON.stringify(summary) : `done: ${summary.steps} steps, model in ${r.out} (report: ${r.out}/report.html)${r.final_eval ? `, val loss ${r.final_eval.loss.toFixed(4)} ppl ${r.final_eval.ppl.toFixed(2)}` : ''}`);
    },
  },
  'eval-lm': {
    summary: 'Perplexity of a model on a text file (DESIGN.md §4 windows): {"tokens","nll","ppl"}.',
    flags: { json, model: { type: 'string', help: 'model directory (required)' }, 'text-file': { type: 'string', help: 'text file (required)' } },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { perplexity } = await import('../eval/perplexity.js');
      const { readFileSync, existsSync } = await import('node:fs');
      const f = need(a, 'text-file') as string;
      if (!existsSync(f)) throw new Error(`--text-file not found: ${f}`);
      const { model, tokenizer } = loadLM(need(a, 'model') as string);
      const r = perplexity(model, tokenizer.encode(readFileSync(f, 'utf8'), { addSpecialTokens: false }));
      console.log(a.json ? JSON.stringify(r) : `tokens ${r.tokens}  nll ${r.nll.toFixed(4)}  ppl ${r.ppl.toFixed(3)}`);
    },
  },
  generate: {
    summary: 'Generate text with a KV cache (greedy when --temperature 0).',
    flags: {
      json,
      model: { type: 'string', help: 'model directory (required)' },
      prompt: { type: 'string', help: 'prompt text (required)' },
      'max-new-tokens': { type: 'number', default: 64, help: 'tokens to generate' },
      temperature: { type: 'number', default: 1, help: '0 = greedy' },
      'top-k': { type: 'number', default: 0, help: 'keep the k most likely tokens (0 = off)' },
      'top-p': { type: 'number', default: 1, help: 'nucleus sampling mass' },
      'repetition-penalty': { type: 'number', default: 1, help: 'HF-style penalty (>1 discourages repeats)' },
      stop: { type: 'list', help: 'stop strings' },
      seed: { type: 'number', default: 0, help: 'sampling seed' },
    },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { generate } = await import('../models/generate.js');
      const { model, tokenizer } = loadLM(need(a, 'model') as string);
      const temperature = a.temperature as number, topP = a['top-p'] as number;
      if (temperature < 0) throw new UsageError('icld generate: --temperature must be ≥ 0');
      if (!(topP > 0 && topP <= 1)) throw new UsageError('icld generate: --top-p must be in (0, 1]');
      const r = generate(model, tokenizer, need(a, 'prompt') as string, {
        maxNewTokens: a['max-new-tokens'] as number, temperature, topK: a['top-k'] as number, topP,
        repetitionPenalty: a['repetition-penalty'] as number, stop: a.stop as string[] | undefined, seed: a.seed as number,
        eosTokenId: model.config.eos_token_id < model.config.vocab_size ? model.config.eos_token_id : null,
      });
      if (a.json) console.log(JSON.stringify({ text: r.text, tokens: r.tokens, tokens_per_s: +r.tokens_per_s.toFixed(2), finish_reason: r.finish_reason }));
      else process.stdout.write(r.text + '\n');
    },
  },
  'icl eval': {
    summary: 'Few-shot in-context evaluation on CrossFit/MetaICL-format tasks (direct or channel scoring, generation for open answers).',
    flags: {
      json,
      model: { type: 'string', help: 'model directory (required)' },
      tasks: { type: 'list', help: 'task names' },
      split: { type: 'string', help: 'MetaICL split (its test tasks), e.g. hr_to_lr' },
      'task-dir': { type: 'string', help: 'task folder laid out like tasks/crossfit/ (default: the shipped data/tasks/crossfit)' },
      k: { type: 'number', default: 16, help: 'demonstrations per prompt (first k lines of the seed\'s train file)' },
      seeds: { type: 'list', default: ['100', '13', '21', '42', '87'], help: 'seeds (comma or space separated)' },
      method: { type: 'string', default: 'direct', help: 'direct | channel' },
      calibrate: { type: 'boolean', help: 'subtract each option\'s score given a content-free input (direct)' },
      'mean-per-token': { type: 'boolean', help: 'length-normalise option scores' },
      orders: { type: 'number', default: 1, help: 'majority vote over N demonstration orders' },
      'sample-demos': { type: 'boolean', help: 'sample k demonstrations with the seed from all training data of the task' },
      'test-limit': { type: 'number', help: 'evaluate only the first N test examples per task' },
      'batch-size': { type: 'number', default: 16, help: 'sequences per forward pass' },
      instruction: { type: 'string', help: 'instruction text placed before the demonstrations' },
      'max-new-tokens': { type: 'number', default: 32, help: 'for tasks without options (generation)' },
      report: { type: 'string', help: 'write DIR/report.html' },
      predictions: { type: 'string', help: 'write per-example predictions (jsonl)' },
    },
    run: async (a) => {
      const { iclEvalCommand, parseSeeds } = await import('./icl.js');
      iclEvalCommand({
        model: need(a, 'model') as string, tasks: a.tasks as string[] | undefined, split: a.split as string | undefined, taskDir: a['task-dir'] as string | undefined,
        k: a.k as number, seeds: parseSeeds(a.seeds as string[]), method: a.method as string, json: !!a.json, report: a.report as string | undefined,
        predictions: a.predictions as string | undefined, calibrate: !!a.calibrate, meanPerToken: !!a['mean-per-token'], orders: a.orders as number,
        sampleDemos: !!a['sample-demos'], testLimit: a['test-limit'] as number | undefined, batchSize: a['batch-size'] as number,
        instruction: a.instruction as string | undefined, maxNewTokens: a['max-new-tokens'] as number,
      });
    },
  },
  'ict train': {
    summary: 'In-context tuning: train on k demonstrations + a query per instance, loss on the answer only (Meta-ICT or Multitask-ICT; --no-demos = Multitask-FT).',
    flags: {
      json,
      model: { type: 'string', help: 'base model directory (required)' },
      setting: { type: 'string', default: 'meta', help: 'meta (split train tasks) | multitask (target tasks\' k-shot data)' },
      split: { type: 'string', help: 'MetaICL split, e.g. hr_to_lr' },
      'train-tasks': { type: 'list', help: 'explicit training tasks instead of --split' },
      'task-dir': { type: 'string', help: 'task folder (default: data/tasks/crossfit)' },
      k: { type: 'number', default: 16, help: 'demonstrations per instance' },
      seeds: { type: 'list', default: ['100'], help: 'multitask: whose k-shot train files form the data' },
      method: { type: 'string', default: 'direct', help: 'direct | channel' },
      'no-demos': { type: 'boolean', help: 'Multitask-FT baseline: the same data without demonstrations' },
      'no-dedupe': { type: 'boolean', help: 'keep repeated examples across seed files (synthetic suites)' },
      out: { type: 'string', help: 'output directory (required)' },
      steps: { type: 'number', default: 1000, help: 'optimizer steps' },
      'batch-size': { type: 'number', default: 8, help: 'instances per step' },
      lr: { type: 'number', default: 1e-4, help: 'peak learning rate (linear decay)' },
      warmup: { type: 'number', default: 0, help: 'warmup steps' },
      seed: { type: 'number', default: 0, help: 'sampling/dropout seed' },
      'eval-every': { type: 'number', default: 100, help: 'held-out episode loss every N steps' },
      'save-every': { type: 'number', default: 0, help: 'checkpoint every N steps (0 = only at the end)' },
      resume: { type: 'string', help: 'run or checkpoint directory to continue from' },
    },
    run: async (a) => {
      const { ictTrainCommand, parseSeeds } = await import('./icl.js');
      const r = await ictTrainCommand({
        model: need(a, 'model') as string, setting: a.setting as string, split: a.split as string | undefined, trainTasks: a['train-tasks'] as string[] | undefined,
        taskDir: a['task-dir'] as string | undefined, k: a.k as number, seeds: parseSeeds(a.seeds as string[]), method: a.method as string, noDemos: !!a['no-demos'],
        out: need(a, 'out') as string, steps: a.steps as number, batchSize: a['batch-size'] as number, lr: a.lr as number, warmup: a.warmup as number,
        seed: a.seed as number, evalEvery: a['eval-every'] as number, saveEvery: a['save-every'] as number, resume: a.resume as string | undefined,
        dedupe: !a['no-dedupe'], json: !!a.json,
      });
      console.log(a.json ? JSON.stringify(r) : `done: ${JSON.stringify(r)}`);
    },
  },
  study: {
    summary: 'Run every arm × seed of an ICL-distillation study (resumable) and write results.json + report.html.',
    flags: {
      json,
      config: { type: 'string', help: 'study JSON (e.g. studies/synthetic.json) (required)' },
      out: { type: 'string', help: 'output directory (required); rerun with the same --out to resume' },
      full: { type: 'boolean', help: 'ignore the config\'s "quick" overrides and run the full study' },
    },
    run: async (a) => {
      const { runStudy, readStudyConfig } = await import('../distill/study.js');
      const cfg = readStudyConfig(need(a, 'config') as string, !!a.full);
      const r = await runStudy(cfg, need(a, 'out') as string) as { report: string; out: string };
      console.log(a.json ? JSON.stringify(r) : `results: ${r.out}/results.json\nreport:  ${r.report}`);
    },
  },
  start: {
    summary: 'The main job on embedded data: the synthetic ICL-distillation study (quick version; --full for all of it), ending with the report path.',
    flags: {
      json,
      full: { type: 'boolean', help: 'run the full study instead of its quick version' },
      out: { type: 'string', default: 'runs/synthetic-study', help: 'study directory (rerun to resume)' },
    },
    run: async (a) => {
      const { runStart } = await import('./start.js');
      await runStart({ full: !!a.full, out: a.out as string, json: !!a.json });
    },
  },
};

function need(a: ReturnType<typeof parseArgs>, flag: string): string | number | boolean | string[] {
  const v = a[flag];
  if (v === undefined || (Array.isArray(v) && v.length === 0)) throw new UsageError(`missing required flag --${flag}`);
  return v;
}

function usage(): string {
  const names = Object.keys(commands);
  return ['usage: icld <command> [flags]', '', 'commands:', ...names.map((n) => `  ${n.padEnd(14)}${commands[n].summary}`), '', 'Run `icld <command> --help` for its flags.'].join('\n');
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') { console.log(usage()); return; }
  if (argv[0] === '--version') { console.log(info().version); return; }
  // Longest matching command name (e.g. "bench ops").
  let name = '', rest = argv;
  for (let n = Math.min(3, argv.length); n >= 1; n--) {
    const cand = argv.slice(0, n).join(' ');
    if (commands[cand]) { name = cand; rest = argv.slice(n); break; }
  }
  if (!name) throw new UsageError(`icld: unknown command '${argv.slice(0, 2).join(' ')}' (run icld --help)`);
  const cmd = commands[name];
  if (rest.includes('--help') || rest.includes('-h')) { console.log(helpText(`icld ${name}`, cmd.summary, cmd.flags)); return; }
  await cmd.run(parseArgs(rest, cmd.flags, `icld ${name}`));
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`icld: ${msg.replace(/\s*\n\s*/g, ' ')}\n`);
  if (process.env.ICLD_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});

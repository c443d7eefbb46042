#!/usr/bin/env node
// icld: thin command dispatcher. Each command parses its flags and calls into the library;
// --json prints one JSON object on stdout, logs go to stderr, errors are one line on stderr:
// exit 2 for usage errors (unknown command/flag, bad or missing flag value), 1 for runtime failures.

import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs, checkPaths, helpText, columns, UsageError, type FlagSpec } from './args.js';
import { info, formatInfo } from './info.js';
import { closestMatch } from '../io/json.js';

export interface Command {
  summary: string;
  /** More text for the command's own --help. */
  details?: string;
  flags: Record<string, FlagSpec>;
  /** What the command takes besides flags (e.g. "FILE…"); without it stray arguments are usage errors. */
  positionals?: string;
  run: (a: ReturnType<typeof parseArgs>) => Promise<void> | void;
}

// Shared numeric constraints (checked at parse time, see args.ts).
const posInt = { integer: true, min: 1 } as const;
const nonNegInt = { integer: true, min: 0 } as const;
const seedRange = { integer: true, min: 0, max: 2 ** 32 - 1 } as const; // Rng takes a uint32 seed

const json: FlagSpec = { type: 'boolean', help: 'print one JSON object on stdout' };
const adapter: FlagSpec = { type: 'string', path: 'dir', help: 'a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) applied on top of the model; without --model its base_model_name_or_path is the base' };
const precision: FlagSpec = { type: 'string', choices: ['f32', 'bf16'], help: 'matmul precision of training: bf16 = GEMM operands rounded to bf16, fp32 accumulation, fp32 master weights (vdpbf16ps on AVX-512-BF16 CPUs, emulated elsewhere) (default f32)' };
const threads: FlagSpec = { type: 'number', ...posInt, max: 1024, help: 'kernel threads (default: the backend\'s)' };

export const commands: Record<string, Command> = {
  info: {
    summary: 'Version, compute backend (native/reference), GEMM provider, threads, CPU features and the kernel path per weight format.',
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
      filter: { type: 'string', help: 'only cases whose name contains this text (comma-separated alternatives)' },
      threads,
    },
    run: async (a) => {
      const { benchOps, formatOpsRow } = await import('./bench-ops.js');
      // The table goes to stdout row by row as cases finish; with --json the rows are progress
      // lines on stderr and stdout gets the one JSON object (never both: the table printed twice).
      const { backend } = await import('../engine/index.js');
      const be = backend();
      let rows = 0;
      const r = await benchOps({ json: !!a.json, quick: !!a.quick, filter: a.filter as string | undefined, threads: a.threads as number | undefined, progress: !!a.json,
        onCase: a.json ? undefined : (c) => {
          if (rows++ === 0) console.log(`backend ${be.name}, gemm ${be.gemmProvider}, threads ${be.threads()}`);
          console.log(formatOpsRow(c));
        } });
      if (r.cases.length === 0) throw new UsageError(`icld bench ops: --filter '${String(a.filter)}' matches no case`);
      if (a.json) console.log(JSON.stringify(r));
    },
  },
  'bench train': {
    summary: 'Time the full training step (fwd + loss + bwd + clip + AdamW) of GPT-2 (causal) or BERT (MLM) at a reference shape; peak RSS.',
    flags: {
      json,
      config: { type: 'string', default: 'small', choices: ['small', 'gpt2s', 'bert-small'], help: 'reference shape: small = GPT-2 d256 L4 H4, T128, batch 16, vocab 2048; gpt2s = GPT-2 d768 L12 H12, T256, batch 4, vocab 8192; bert-small = BERT MLM hidden 512 L4 H8 FFN 2048, T128, batch 16, vocab 28996 (28.0M)' },
      steps: { type: 'number', ...posInt, help: 'timed steps (default 10 small, 4 gpt2s, 6 bert-small)' },
      warmup: { type: 'number', ...nonNegInt, help: 'untimed warm-up steps (default 2 small and bert-small, 1 gpt2s)' },
      'full-head': { type: 'boolean', help: 'bert-small: LM head at every position (as BertForMaskedLM) instead of at the masked ones only (as pretrain)' },
      threads,
    },
    run: async (a) => {
      const { benchTrain } = await import('./bench-lm.js');
      if (a['full-head'] && a.config !== 'bert-small') throw new UsageError('icld bench train: --full-head applies to --config bert-small only');
      const r = benchTrain({ config: a.config as 'small' | 'gpt2s' | 'bert-small', steps: a.steps as number | undefined, warmup: a.warmup as number | undefined, threads: a.threads as number | undefined, json: !!a.json, fullHead: !!a['full-head'] });
      console.log(a.json ? JSON.stringify(r) : `${r.config}: ${r.params} params, ${r.step_s.toFixed(3)} s/step, ${r.tokens_per_s.toFixed(0)} tok/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MiB (${r.backend}/${r.gemm}, ${r.threads} thread(s))`);
    },
  },
  'bench fill-mask': {
    summary: 'Time one fill-mask query (a 12-token sentence, forward + softmax at [MASK] + top 5) on a BERT at a reference shape.',
    flags: {
      json,
      config: { type: 'string', default: 'bert-small', choices: ['bert-small'], help: 'reference shape: bert-small = hidden 512 L4 H8 FFN 2048, vocab 28996 (28.0M parameters)' },
      reps: { type: 'number', default: 20, ...posInt, help: 'timed repeats (median)' },
      threads,
    },
    run: async (a) => {
      const { benchFillMask } = await import('./bench-lm.js');
      const r = benchFillMask({ config: a.config as 'bert-small', reps: a.reps as number, threads: a.threads as number | undefined, progress: !a.json });
      console.log(a.json ? JSON.stringify(r) : `${r.config}: ${r.params} params, fill-mask ${r.ms.toFixed(2)} ms (median of ${r.reps}; ${r.backend}/${r.gemm}, ${r.threads} thread(s))`);
    },
  },
  'bench generate': {
    summary: 'Time greedy KV-cache decoding (batch 1, random prompt of --prompt tokens, --new tokens; prefill and decode rates) at a reference shape, weights in --dtype.',
    flags: {
      json,
      config: { type: 'string', default: 'small', choices: ['small', 'gpt2-124m'], help: 'reference shape: small = d256 L4 H4, vocab 2048; gpt2-124m = d768 L12 H12, vocab 50257' },
      reps: { type: 'number', default: 3, ...posInt, help: 'timed repeats (median)' },
      threads,
      dtype: { type: 'string', default: 'f32', choices: ['f32', 'bf16', 'q8_0', 'q4_0'], help: 'weight format: the random model is quantized in-process first' },
      model: { type: 'string', help: 'time a saved model directory of the --config shape instead (e.g. written by icld quantize; --dtype is then what it holds)' },
      'save-model': { type: 'string', help: 'write the random f32 model of --config to this directory and exit (input for icld quantize / --model)' },
      prompt: { type: 'number', default: 64, ...posInt, help: 'prompt tokens (random)' },
      new: { type: 'number', default: 128, ...posInt, help: 'new tokens to generate' },
    },
    run: async (a) => {
      const { benchGenerate, GENERATE_CONFIGS } = await import('./bench-lm.js');
      const config = a.config as 'small' | 'gpt2-124m';
      if ((a.prompt as number) + (a.new as number) > GENERATE_CONFIGS[config].nPositions) throw new UsageError(`icld bench generate: --prompt + --new (${(a.prompt as number) + (a.new as number)}) exceeds the ${config} context of ${GENERATE_CONFIGS[config].nPositions}`);
      if (a['save-model'] !== undefined) {
        const { saveBenchModel } = await import('./bench-lm.js');
        const out = saveBenchModel(config, a['save-model'] as string);
        console.log(a.json ? JSON.stringify({ config, out }) : `wrote the random ${config} model to ${out}`);
        return;
      }
      const r = benchGenerate({ config, reps: a.reps as number, threads: a.threads as number | undefined, dtype: a.dtype as 'f32' | 'bf16' | 'q8_0' | 'q4_0', modelDir: a.model as string | undefined, promptTokens: a.prompt as number, newTokens: a.new as number, json: !!a.json });
      console.log(a.json ? JSON.stringify(r) : `${r.config} ${r.dtype}: prefill ${r.prefill_tokens_per_s.toFixed(1)} tok/s (${r.prompt_tokens} tokens, ${r.prefill_ms.toFixed(1)} ms), decode ${r.decode_tokens_per_s.toFixed(1)} tok/s (${r.per_token_ms.toFixed(2)} ms/token), overall ${r.tokens_per_s.toFixed(1)} tok/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MiB, ${r.threads} thread(s)`);
    },
  },
  'tokenizer train': {
    summary: 'Train a tokenizer on text files and write OUT/tokenizer.json (HF tokenizers format; wordpiece also vocab.txt + tokenizer_config.json).',
    positionals: 'FILE…',
    flags: {
      json,
      type: { type: 'string', default: 'bpe', choices: ['bpe', 'wordpiece'], help: 'tokenizer model: byte-level BPE (GPT-2) or WordPiece (BERT)' },
      'vocab-size': { type: 'number', ...posInt, help: 'target vocabulary size (required)' },
      out: { type: 'string', help: 'output directory (required)' },
      'min-frequency': { type: 'number', default: 2, ...nonNegInt, help: 'minimum pair count to merge' },
      'special-tokens': { type: 'list', help: 'special tokens (get the first ids; default <|endoftext|> for bpe, [PAD] [UNK] [CLS] [SEP] [MASK] for wordpiece)' },
      lowercase: { type: 'boolean', help: 'wordpiece: lowercase and strip accents (an uncased vocabulary)' },
    },
    run: async (a) => {
      const { tokenizerTrainCommand } = await import('./tokenizer.js');
      if (a._.length === 0) throw new UsageError('icld tokenizer train: no input files (usage: icld tokenizer train --vocab-size N --out DIR FILE…)');
      if (a.lowercase && a.type !== 'wordpiece') throw new UsageError('icld tokenizer train: --lowercase needs --type wordpiece');
      const r = await tokenizerTrainCommand({ type: a.type as string, vocabSize: need(a, 'vocab-size') as number, out: need(a, 'out') as string,
        files: a._, minFrequency: a['min-frequency'] as number, specialTokens: a['special-tokens'] as string[] | undefined, lowercase: !!a.lowercase, json: !!a.json });
      console.log(a.json ? JSON.stringify(r) : `wrote ${r.path}: ${r.vocab_size} tokens from ${r.files} file(s), ${r.bytes} bytes in ${r.seconds.toFixed(1)} s`);
    },
  },
  'tokenizer encode': {
    summary: 'Encode a text with the tokenizer in DIR (tokenizer.json, vocab.txt or vocab.json + merges.txt): ids and tokens.',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'directory holding the tokenizer (required)' },
      text: { type: 'string', help: 'text to encode, taken literally (required)' },
      'no-special': { type: 'boolean', help: 'leave out the special tokens the post-processor adds ([CLS] … [SEP])' },
    },
    run: async (a) => {
      const { tokenizerEncodeCommand, formatEncode } = await import('./tokenizer.js');
      const r = tokenizerEncodeCommand({ model: need(a, 'model') as string, text: need(a, 'text') as string, noSpecial: !!a['no-special'] });
      console.log(a.json ? JSON.stringify(r) : formatEncode(r));
    },
  },
  pretrain: {
    summary: 'Pretrain a GPT-2 (next token) or a BERT (masked LM) from text files (tokenizer, cached shards, AdamW, schedules, eval, atomic checkpoints, --resume).',
    flags: {
      json,
      arch: { type: 'string', default: 'gpt2', choices: ['gpt2', 'bert'], help: 'model family: gpt2 (causal LM) or bert (masked LM; train.mlm_probability, train.whole_word_mask)' },
      config: { type: 'string', path: 'file', help: 'JSON with "model", "tokenizer", "train" sections (required)' },
      data: { type: 'list', path: 'file', help: 'training text files (required)' },
      out: { type: 'string', help: 'run directory (required)' },
      resume: { type: 'string', path: 'dir', help: 'run or checkpoint directory to continue from (its newest complete checkpoint)' },
      overwrite: { type: 'boolean', help: 'start again in a non-empty --out (its old checkpoints are deleted)' },
      steps: { type: 'number', ...posInt, help: 'override train.steps' },
      precision: { ...precision, help: `${precision.help}; overrides train.precision` },
    },
    run: async (a) => {
      if (a.resume !== undefined && a.overwrite) throw new UsageError('icld pretrain: --resume and --overwrite exclude each other (resume continues the run, overwrite starts it again)');
      const { pretrain, readPretrainConfig } = await import('../train/pretrain.js');
      const arch = a.arch as string;
      const config = readPretrainConfig(need(a, 'config') as string, arch);
      if (a.steps !== undefined) config.train.steps = a.steps as number;
      if (a.precision !== undefined) config.train.precision = a.precision as 'f32' | 'bf16';
      const r = pretrain({ config, arch, data: need(a, 'data') as string[], out: need(a, 'out') as string, resume: a.resume as string | undefined, overwrite: !!a.overwrite });
      const summary = { out: r.out, steps: r.state.global_step, params: r.params, train_tokens: r.tokens.train, val_tokens: r.tokens.val, final_eval: r.final_eval, elapsed_s: +r.state.elapsed_s.toFixed(1) };
      console.log(a.json ? JSON.stringify(summary) : `done: ${summary.steps} steps, model in ${r.out} (report: ${r.out}/report.html)${r.final_eval ? `, val loss ${r.final_eval.loss.toFixed(4)} ppl ${r.final_eval.ppl.toFixed(2)}` : ''}`);
    },
  },
  'eval-lm': {
    summary: 'Perplexity of a model on a text file: {"kind","dtype","tokens","nll","ppl"} (kind "causal", or "pseudo" for a masked LM such as BERT; dtype f32, or bf16/q8_0/q4_0 for an icld quantize directory).',
    details: 'The whole text is tokenised without special tokens and cut into consecutive windows of n_positions tokens (the last may be shorter). Causal LMs: every token of a window but the first is scored given its predecessors in that window. Masked LMs: the pseudo-perplexity; windows leave room for [CLS] … [SEP] around them (when the tokenizer has those) and every token is masked in turn and scored given the rest of its window.',
    flags: { json, model: { type: 'string', path: 'dir', help: 'model directory (required unless --adapter names its base)' }, adapter, 'text-file': { type: 'string', path: 'file', help: 'text file (required)' } },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { perplexity, pseudoPerplexity, NonFiniteLossError } = await import('../eval/perplexity.js');
      const { maskTokenIdOf } = await import('../eval/fill-mask.js');
      const { WindowProgress } = await import('./progress.js');
      const { readFileSync } = await import('node:fs');
      const f = need(a, 'text-file') as string;
      const { model, tokenizer, base: dir } = loadLM(...modelFlags(a));
      const masked = model.kind === 'masked';
      const maskId = masked ? maskTokenIdOf(tokenizer) : undefined;
      if (masked && maskId === undefined) throw new Error(`--model ${dir}: the tokenizer has no mask token, which the pseudo-perplexity of a masked LM needs`);
      const ids = tokenizer.encode(readFileSync(f, 'utf8'), { addSpecialTokens: false });
      const p = new WindowProgress('eval-lm', (s) => process.stderr.write(s + '\n'));
      const onProgress = (d: number, t: number, tok: number) => p.update(d, t, tok);
      let r;
      try {
        r = masked
          ? pseudoPerplexity(model, ids, { maskId: maskId!, clsId: tokenizer.clsTokenId, sepId: tokenizer.sepTokenId, onProgress })
          : perplexity(model, ids, { onProgress });
      } catch (e) {
        // A NaN/Inf loss means broken weights: name the model, never print {"nll": null} with exit 0.
        if (e instanceof NonFiniteLossError) throw new Error(`icld eval-lm: --model ${dir}: ${e.message}`);
        throw e;
      } finally { p.finish(); }
      const { modelDtype } = await import('../models/index.js');
      const dtype = modelDtype(model);
      const out = { kind: masked ? 'pseudo' : 'causal', dtype, ...r };
      console.log(a.json ? JSON.stringify(out) : `${masked ? 'pseudo-perplexity (masked LM): ' : ''}tokens ${r.tokens}  nll ${r.nll.toFixed(4)}  ppl ${r.ppl.toFixed(3)}  (weights ${dtype})`);
    },
  },
  'fill-mask': {
    summary: 'The most probable tokens at each mask token of a text, from a masked LM (BERT).',
    details: 'JSON: {"predictions": [{"token","id","prob"}, …]} for one mask, {"masks": [[…], […]]} for several, each sorted by probability (softmax over the whole vocabulary; special tokens are not offered).',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'model directory (required unless --adapter names its base)' },
      adapter,
      text: { type: 'string', help: 'text with one or more mask tokens, e.g. "Paris is the capital of [MASK]." (required)' },
      'top-k': { type: 'number', default: 5, ...posInt, help: 'candidates per mask' },
    },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { fillMask, requireMasked } = await import('../eval/fill-mask.js');
      const text = need(a, 'text') as string;
      const { model, tokenizer, base: dir } = loadLM(...modelFlags(a));
      requireMasked(model, `--model ${dir}: fill-mask`);
      const masks = fillMask(model, tokenizer, text, { topK: a['top-k'] as number });
      if (a.json) { console.log(JSON.stringify(masks.length === 1 ? { predictions: masks[0] } : { masks })); return; }
      masks.forEach((m, i) => {
        if (masks.length > 1) console.log(`mask ${i + 1}:`);
        for (const c of m) console.log(`${masks.length > 1 ? '  ' : ''}${c.prob.toFixed(4)}  ${c.token}  (id ${c.id})`);
      });
    },
  },
  generate: {
    summary: 'Generate text with a KV cache (greedy when --temperature 0).',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'model directory (required unless --adapter names its base)' },
      adapter,
      prompt: { type: 'string', help: 'prompt text (required)' },
      chat: { type: 'boolean', help: 'treat --prompt as a user message: render it with the model\'s chat template (tokenizer_config.json chat_template, else the family\'s default) and stop at the end of the assistant turn' },
      system: { type: 'string', help: 'with --chat: a system message before the user message' },
      'max-new-tokens': { type: 'number', default: 64, ...posInt, help: 'tokens to generate' },
      temperature: { type: 'number', default: 1, min: 0, help: '0 = greedy' },
      'top-k': { type: 'number', default: 0, ...nonNegInt, help: 'keep the k most likely tokens (0 = off)' },
      'top-p': { type: 'number', default: 1, min: 0, minExclusive: true, max: 1, help: 'nucleus sampling mass' },
      'repetition-penalty': { type: 'number', default: 1, min: 0, minExclusive: true, help: 'HF-style penalty (>1 discourages repeats, 1 = off)' },
      stop: { type: 'list', escapes: true, help: 'stop strings; backslash escapes are decoded: \\n \\t \\r \\\\ \\uXXXX (so --stop "\\n\\n" stops at a blank line)' },
      seed: { type: 'number', default: 0, ...seedRange, help: 'sampling seed' },
    },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { generate } = await import('../models/index.js');
      const { model, tokenizer } = loadLM(...modelFlags(a));
      const temperature = a.temperature as number, topP = a['top-p'] as number;
      const prompt = need(a, 'prompt') as string;
      if (a.system !== undefined && !a.chat) throw new UsageError('icld generate: --system needs --chat');
      let input: string | number[] = prompt, eos = model.eosTokenId;
      if (a.chat) {
        const { chatGenerationSetup } = await import('../finetune/chat-generate.js');
        const messages = [...(a.system !== undefined ? [{ role: 'system' as const, content: a.system as string }] : []), { role: 'user' as const, content: prompt }];
        const c = chatGenerationSetup(model, tokenizer, messages);
        input = c.ids; eos = c.eosTokenId;
      }
      const r = generate(model, tokenizer, input, {
        maxNewTokens: a['max-new-tokens'] as number, temperature, topK: a['top-k'] as number, topP,
        repetitionPenalty: a['repetition-penalty'] as number, stop: a.stop as string[] | undefined, seed: a.seed as number,
        eosTokenId: eos,
      });
      if (a.json) console.log(JSON.stringify({ text: r.text, tokens: r.tokens, tokens_per_s: +r.tokens_per_s.toFixed(2), finish_reason: r.finish_reason }));
      else process.stdout.write(r.text + '\n');
    },
  },
  'icl eval': {
    summary: 'Few-shot in-context evaluation on CrossFit/MetaICL-format tasks (direct or channel scoring, generation for open answers).',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'model directory (required unless --adapter names its base)' },
      adapter,
      tasks: { type: 'list', help: 'task names' },
      split: { type: 'string', help: 'MetaICL split (its test tasks), e.g. hr_to_lr' },
      'task-dir': { type: 'string', path: 'dir', help: 'task folder laid out like tasks/crossfit/ (default: the shipped data/tasks/crossfit)' },
      k: { type: 'number', default: 16, ...nonNegInt, help: 'demonstrations per prompt (first k lines of the seed\'s train file)' },
      seeds: { type: 'list', items: 'number', ...seedRange, default: ['100', '13', '21', '42', '87'], help: 'seeds (comma or space separated)' },
      method: { type: 'string', default: 'direct', choices: ['direct', 'channel'], help: 'option scoring' },
      calibrate: { type: 'boolean', help: 'subtract each option\'s score given a content-free input (direct)' },
      'mean-per-token': { type: 'boolean', help: 'length-normalise option scores' },
      orders: { type: 'number', default: 1, ...posInt, help: 'majority vote over N demonstration orders' },
      'sample-demos': { type: 'boolean', help: 'sample k demonstrations with the seed from all training data of the task' },
      'test-limit': { type: 'number', ...posInt, help: 'evaluate only the first N test examples per task' },
      'batch-size': { type: 'number', default: 16, ...posInt, help: 'sequences per forward pass' },
      instruction: { type: 'string', help: 'instruction text placed before the demonstrations' },
      'max-new-tokens': { type: 'number', default: 32, ...posInt, help: 'for tasks without options (generation)' },
      report: { type: 'string', help: 'write DIR/report.html' },
      predictions: { type: 'string', help: 'write per-example predictions (jsonl)' },
      items: { type: 'string', help: 'write every scored sequence of the classification tasks (jsonl: task, seed, example, option, order, calib, gold, input_ids, cont_start) to score the same prompts elsewhere, e.g. deploy/gpu/eval_student.py' },
    },
    run: async (a) => {
      const { iclEvalCommand, parseSeeds } = await import('./icl.js');
      iclEvalCommand({
        model: a.adapter !== undefined ? a.model as string : need(a, 'model') as string, adapter: a.adapter as string | undefined,
        tasks: a.tasks as string[] | undefined, split: a.split as string | undefined, taskDir: a['task-dir'] as string | undefined,
        k: a.k as number, seeds: parseSeeds(a.seeds as string[]), method: a.method as string, json: !!a.json, report: a.report as string | undefined,
        predictions: a.predictions as string | undefined, calibrate: !!a.calibrate, meanPerToken: !!a['mean-per-token'], orders: a.orders as number,
        sampleDemos: !!a['sample-demos'], testLimit: a['test-limit'] as number | undefined, batchSize: a['batch-size'] as number,
        instruction: a.instruction as string | undefined, maxNewTokens: a['max-new-tokens'] as number, items: a.items as string | undefined,
      });
    },
  },
  'lama eval': {
    summary: 'The LAMA probe: P@1 / P@10 per relation and macro-averaged, for masked (the [MASK] in [Y]) or causal (the next token after the text before [Y]) LMs, optionally with k in-context demonstrations.',
    details: 'Candidates: --vocab common = LAMA\'s common vocabulary words that are one token of the model\'s vocabulary; --vocab full = every non-special token. Facts whose object is not one such token are skipped and counted. Without --relations the 41 T-REx relations are probed (--all says so explicitly); Google-RE relations (place_of_birth, date_of_birth, place_of_death) are probed when named.',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'model directory (required)' },
      relations: { type: 'list', help: 'relation ids, e.g. P19,P37 or place_of_birth' },
      all: { type: 'boolean', help: 'the 41 T-REx relations (the default)' },
      'k-shot': { type: 'number', default: 0, ...nonNegInt, max: 1000, help: 'demonstrations per query, drawn (seeded) from the relation\'s train facts' },
      seed: { type: 'number', default: 0, ...seedRange, help: 'demonstration seed' },
      vocab: { type: 'string', default: 'common', choices: ['common', 'full'], help: 'candidate set' },
      'data-dir': { type: 'string', path: 'dir', help: 'folder laid out like data/lama/ (default: the shipped data/lama)' },
      'max-facts': { type: 'number', ...posInt, help: 'probe only the first N facts of each relation' },
      'batch-size': { type: 'number', default: 32, ...posInt, help: 'sequences per forward pass' },
      report: { type: 'string', help: 'write DIR/results.json and DIR/report.html' },
    },
    run: async (a) => {
      const { lamaEval, formatLamaTable, unknownRelation } = await import('../eval/lama-report.js');
      const rels = a.relations as string[] | undefined;
      if (rels && a.all) throw new UsageError(`${current}: give --relations or --all, not both`);
      const dataDir = a['data-dir'] as string | undefined;
      const ids = rels ? [...new Set(rels.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean))] : undefined;
      if (ids) { const bad = unknownRelation(ids, dataDir); if (bad) throw new UsageError(`${current}: ${bad}`); }
      const r = lamaEval({
        model: need(a, 'model') as string, relations: ids, kShot: a['k-shot'] as number, seed: a.seed as number, vocab: a.vocab as 'common' | 'full',
        dataDir, maxFacts: a['max-facts'] as number | undefined, batchSize: a['batch-size'] as number, report: a.report as string | undefined,
        log: (s) => { process.stderr.write(s + '\n'); },
      });
      console.log(a.json ? JSON.stringify(r) : formatLamaTable(r));
    },
  },
  'ict train': {
    summary: 'In-context tuning: train on k demonstrations + a query per instance, loss on the answer only (Meta-ICT or Multitask-ICT; --no-demos = Multitask-FT).',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'base model directory (required)' },
      setting: { type: 'string', default: 'meta', choices: ['meta', 'multitask'], help: 'meta: the split\'s training tasks; multitask: the target tasks\' k-shot data' },
      split: { type: 'string', help: 'MetaICL split, e.g. hr_to_lr' },
      'train-tasks': { type: 'list', help: 'explicit training tasks instead of --split' },
      'task-dir': { type: 'string', path: 'dir', help: 'task folder (default: data/tasks/crossfit)' },
      k: { type: 'number', default: 16, ...nonNegInt, help: 'demonstrations per instance' },
      seeds: { type: 'list', items: 'number', ...seedRange, default: ['100'], help: 'multitask: whose k-shot train files form the data' },
      method: { type: 'string', default: 'direct', choices: ['direct', 'channel'], help: 'option scoring' },
      'no-demos': { type: 'boolean', help: 'Multitask-FT baseline: the same data without demonstrations' },
      'no-dedupe': { type: 'boolean', help: 'keep repeated examples across seed files (synthetic suites)' },
      out: { type: 'string', help: 'output directory (required)' },
      steps: { type: 'number', default: 1000, ...posInt, help: 'optimizer steps' },
      'batch-size': { type: 'number', default: 8, ...posInt, help: 'instances per step' },
      lr: { type: 'number', default: 1e-4, min: 0, minExclusive: true, help: 'peak learning rate (linear decay)' },
      warmup: { type: 'number', default: 0, ...nonNegInt, help: 'warmup steps' },
      seed: { type: 'number', default: 0, ...seedRange, help: 'sampling/dropout seed' },
      'eval-every': { type: 'number', default: 100, ...nonNegInt, help: 'held-out episode loss every N steps (0 = off)' },
      'save-every': { type: 'number', default: 0, ...nonNegInt, help: 'checkpoint every N steps (0 = only at the end)' },
      resume: { type: 'string', path: 'dir', help: 'run or checkpoint directory to continue from' },
      precision,
    },
    run: async (a) => {
      const { ictTrainCommand, parseSeeds, formatIctSummary } = await import('./icl.js');
      const r = await ictTrainCommand({
        model: need(a, 'model') as string, setting: a.setting as string, split: a.split as string | undefined, trainTasks: a['train-tasks'] as string[] | undefined,
        taskDir: a['task-dir'] as string | undefined, k: a.k as number, seeds: parseSeeds(a.seeds as string[]), method: a.method as string, noDemos: !!a['no-demos'],
        out: need(a, 'out') as string, steps: a.steps as number, batchSize: a['batch-size'] as number, lr: a.lr as number, warmup: a.warmup as number,
        seed: a.seed as number, evalEvery: a['eval-every'] as number, saveEvery: a['save-every'] as number, resume: a.resume as string | undefined,
        dedupe: !a['no-dedupe'], json: !!a.json, precision: a.precision as 'f32' | 'bf16' | undefined,
      });
      console.log(a.json ? JSON.stringify(r) : formatIctSummary(r));
    },
  },
  'ict export': {
    summary: 'Write the in-context tuning instances a teacher is tuned on (jsonl of {"task","input_ids","labels"}, labels -100 off the answer) for tuning it with PyTorch elsewhere (deploy/gpu/train_teacher.py): those of a study\'s teacher stage (--config), or those `icld ict train` with the same flags would train on.',
    details: 'With --config (a meta-setting task study with tokenizer.path and teacher.path set) the instances are the first teacher.ict.steps × batch_size draws of the sampler the study\'s teacher stage uses (its training tasks, k, eval.method, tasks.template, seed 1). Without it, the first --instances draws of ict train\'s sampler for the flags. Prompts are tokenized with the study\'s tokenizer (or --model\'s) and fitted to the base\'s config.json n_positions; no weights are read. Then run the study with teacher.path = the tuned model and no teacher.ict.',
    flags: {
      json,
      config: { type: 'string', path: 'file', help: 'a study config: export its teacher stage\'s ICT data (the task flags below then do not apply)' },
      full: { type: 'boolean', help: 'with --config: ignore the config\'s "quick" overrides' },
      model: { type: 'string', path: 'dir', help: 'the base the teacher will be tuned from: its tokenizer and config.json (required without --config; with it, instead of teacher.path)' },
      setting: { type: 'string', choices: ['meta', 'multitask'], help: 'meta: the split\'s training tasks; multitask: the target tasks\' k-shot data (default meta)' },
      split: { type: 'string', help: 'MetaICL split, e.g. hr_to_lr' },
      'train-tasks': { type: 'list', help: 'explicit training tasks instead of --split' },
      'task-dir': { type: 'string', path: 'dir', help: 'task folder (default: data/tasks/crossfit)' },
      k: { type: 'number', ...nonNegInt, help: 'demonstrations per instance (default 16)' },
      seeds: { type: 'list', items: 'number', ...seedRange, default: ['100'], help: 'multitask: whose k-shot train files form the data' },
      method: { type: 'string', choices: ['direct', 'channel'], help: 'option scoring the teacher is tuned for (default direct)' },
      'no-demos': { type: 'boolean', help: 'Multitask-FT: the same data without demonstrations' },
      'no-dedupe': { type: 'boolean', help: 'keep repeated examples across seed files (synthetic suites)' },
      instances: { type: 'number', ...posInt, max: 10_000_000, help: 'instances to write (default 1000; with --config teacher.ict.steps × batch_size)' },
      seed: { type: 'number', ...seedRange, help: 'sampling seed, ict train\'s --seed (default 0)' },
      out: { type: 'string', help: 'output .jsonl file (required)' },
    },
    run: async (a) => {
      const { ictExportCommand, parseSeeds } = await import('./icl.js');
      const r = await ictExportCommand({
        config: a.config as string | undefined, full: !!a.full,
        model: a.model as string | undefined, setting: a.setting as string | undefined, split: a.split as string | undefined, trainTasks: a['train-tasks'] as string[] | undefined,
        taskDir: a['task-dir'] as string | undefined, k: a.k as number | undefined, seeds: parseSeeds(a.seeds as string[]), method: a.method as string | undefined, noDemos: !!a['no-demos'],
        dedupe: !a['no-dedupe'], instances: a.instances as number | undefined, seed: a.seed as number | undefined, out: need(a, 'out') as string,
      });
      if (a.json) { console.log(JSON.stringify(r)); return; }
      console.log(`wrote ${r.instances} instances (${r.tokens} tokens, ${r.answer_tokens} answer tokens, context ${r.max_length}) from ${r.tasks} task(s) → ${r.out}`);
      if (r.ict) console.log(`the study's teacher.ict: train_teacher.py --model ${r.base} --data ${r.out} --steps ${r.ict.steps} --lr ${r.ict.lr} --warmup ${r.ict.warmup_steps} with a global batch of ${r.ict.batch_size} (GPUs × --batch-size × --grad-accum)`);
    },
  },
  distill: {
    summary: 'ICL distillation of one student from a teacher (both model directories sharing a tokenizer): the study\'s ICL-D arm as a command (progress, checkpoints, --resume); --out becomes a model directory.',
    details: 'Instances (k demonstrations + a query) are sampled once from the tasks (meta: --split\'s training tasks; multitask: the target tasks\' k-shot train files), the teacher\'s soft targets come live or from --teacher-cache, and the loss is α(t)·CE + (1 − α(t))·τ²·KL (+ β·L_LM on --lm-data), α going linearly from --alpha-start to --alpha-end.',
    flags: {
      json,
      teacher: { type: 'string', path: 'dir', help: 'teacher model directory (required)' },
      student: { type: 'string', path: 'dir', help: 'student model directory to start from (required; only read)' },
      tasks: { type: 'list', help: 'task names (instead of --split)' },
      split: { type: 'string', help: 'MetaICL split: meta trains on its training tasks, multitask on its test tasks' },
      'task-dir': { type: 'string', path: 'dir', help: 'task folder (default: data/tasks/crossfit)' },
      setting: { type: 'string', choices: ['meta', 'multitask'], help: 'Meta-ICT or Multitask-ICT (required)' },
      k: { type: 'number', ...nonNegInt, max: 100_000, help: 'demonstrations per instance (required)' },
      method: { type: 'string', default: 'direct', choices: ['direct', 'channel'], help: 'instance order (channel: the input is predicted given the answer)' },
      'alpha-start': { type: 'number', default: 1, min: 0, max: 1, help: 'weight of the hard-label loss at the first step' },
      'alpha-end': { type: 'number', default: 0, min: 0, max: 1, help: 'weight of the hard-label loss at the last step (linear in between; equal = constant)' },
      temperature: { type: 'number', default: 2, min: 0, minExclusive: true, help: 'distillation temperature τ' },
      kl: { type: 'string', default: 'full', choices: ['full', 'options'], help: 'KL over the full vocabulary or over the answer options (direct only)' },
      'top-k': { type: 'number', default: 32, ...nonNegInt, help: 'teacher tokens kept per position, the rest in one bucket (0 = full vocabulary)' },
      beta: { type: 'number', default: 0, min: 0, help: 'weight of the LM term on --lm-data (0 = off)' },
      'lm-data': { type: 'list', path: 'file', help: 'plain-text files for the LM term' },
      'lm-seq-len': { type: 'number', default: 128, ...posInt, help: 'LM window length (capped at the student\'s n_positions)' },
      'lm-batch-size': { type: 'number', default: 4, ...posInt, help: 'LM windows per step' },
      'teacher-cache': { type: 'string', help: 'directory of the teacher\'s cached targets (made if absent or stale, reused otherwise)' },
      seeds: { type: 'list', items: 'number', ...seedRange, default: ['100'], help: 'multitask: whose k-shot train files form the data' },
      'no-dedupe': { type: 'boolean', help: 'keep repeated examples across seed files' },
      instances: { type: 'number', ...posInt, help: 'instances sampled once and trained on each epoch (default 256)' },
      epochs: { type: 'number', ...posInt, help: 'passes over the instances (default 1)' },
      steps: { type: 'number', ...posInt, help: 'instead of --instances/--epochs: steps × batch-size instances, one epoch' },
      'batch-size': { type: 'number', default: 8, ...posInt, help: 'instances per step' },
      lr: { type: 'number', default: 1e-4, min: 0, minExclusive: true, help: 'peak learning rate (linear decay)' },
      warmup: { type: 'number', default: 0, ...nonNegInt, help: 'warmup steps' },
      seed: { type: 'number', default: 0, ...seedRange, help: 'instance sampling / data order / dropout seed' },
      'save-every': { type: 'number', default: 0, ...nonNegInt, help: 'checkpoint every N steps (0 = only at the end)' },
      out: { type: 'string', help: 'output (model) directory (required)' },
      resume: { type: 'string', path: 'dir', help: 'run or checkpoint directory to continue from (same flags)' },
    },
    run: async (a) => {
      const { runDistill } = await import('../distill/run-distill.js');
      const { resolveTasks, defaultTaskDir, parseSeeds } = await import('./icl.js');
      if (a.steps !== undefined && (a.instances !== undefined || a.epochs !== undefined)) throw new UsageError(`${current}: give --steps or --instances/--epochs, not both`);
      if ((a.beta as number) > 0 && !a['lm-data']) throw new UsageError(`${current}: --beta ${String(a.beta)} needs --lm-data FILE… (the text of the LM term)`);
      if (a.kl === 'options' && a.method === 'channel') throw new UsageError(`${current}: --kl options needs --method direct (a channel instance's answer is the input text, not an option)`);
      const setting = need(a, 'setting') as 'meta' | 'multitask', k = need(a, 'k') as number, out = need(a, 'out') as string;
      const teacher = need(a, 'teacher') as string, student = need(a, 'student') as string;
      const batchSize = a['batch-size'] as number;
      const log = (s: string): void => { process.stderr.write(s + '\n'); };
      const taskDir = (a['task-dir'] as string | undefined) ?? defaultTaskDir();
      const tasks = resolveTasks(taskDir, a.tasks as string[] | undefined, a.split as string | undefined, setting === 'meta' ? 'train' : 'test', log);
      const r = runDistill({
        teacher, student, taskDir, tasks, setting, k, method: a.method as 'direct' | 'channel', seeds: parseSeeds(a.seeds as string[]), dedupe: !a['no-dedupe'],
        instances: a.steps !== undefined ? (a.steps as number) * batchSize : (a.instances as number | undefined) ?? 256, epochs: (a.epochs as number | undefined) ?? 1,
        batchSize, lr: a.lr as number, warmup: a.warmup as number, seed: a.seed as number, saveEvery: a['save-every'] as number,
        alphaStart: a['alpha-start'] as number, alphaEnd: a['alpha-end'] as number, temperature: a.temperature as number, kl: a.kl as 'full' | 'options', topK: a['top-k'] as number,
        beta: a.beta as number, lmData: a['lm-data'] as string[] | undefined, lmSeqLen: a['lm-seq-len'] as number, lmBatchSize: a['lm-batch-size'] as number,
        teacherCache: a['teacher-cache'] as string | undefined, out, resume: a.resume as string | undefined, log,
      });
      console.log(a.json ? JSON.stringify(r) : `distilled ${r.steps} steps (${r.instances} instances × ${r.epochs} epoch(s)) in ${r.elapsed_s.toFixed(1)} s; final loss ${r.final_loss ?? '–'}\nmodel: ${r.out}`);
    },
  },
  study: {
    summary: 'Run every arm × seed of an ICL-distillation study (resumable) and write results.json + report.html.',
    details: 'On a cluster the study splits into jobs over one shared --out: --stage teacher once (teacher tuning and evaluation, teacher caches, tokenizer, LM text), then any number of --worker processes (each claims unfinished cells one at a time under a lease file, renewed while the cell runs and taken over when it expires; a worker exits when every cell is finished) or --shard i/N array jobs (cell index % N == i, no leases), then --merge (results.json and report.html from the finished cells; missing ones are listed in "missing_cells" and on stderr, exit 0). A worker or merge before the stage fails with exit 1. Plain `icld study` is the stage, one worker and the merge in one process. The parts cover the config\'s analyses too: the stage stages every sub-study, workers and shards take cells from all of them, the merge adds the analyses block from the sub-studies that have results.',
    flags: {
      json,
      config: { type: 'string', path: 'file', help: 'study JSON (e.g. studies/synthetic.json) (required)' },
      out: { type: 'string', help: 'output directory (required); rerun with the same --out to resume' },
      full: { type: 'boolean', help: 'ignore the config\'s "quick" overrides and run the full study' },
      stage: { type: 'string', choices: ['teacher'], help: 'run only what every cell depends on (teacher, caches, tokenizer, LM text) and exit' },
      worker: { type: 'boolean', help: 'claim unfinished cells one at a time (lease files) and run them; many may run at once on one --out' },
      shard: { type: 'string', help: 'i/N: run the cells whose index % N == i (static partition, no leases)' },
      merge: { type: 'boolean', help: 'write results.json and report.html from the finished cells, listing the missing ones' },
      'lease-seconds': { type: 'number', min: 1, help: 'a --worker\'s lease not renewed for this long is taken over (default 60)' },
    },
    run: async (a) => {
      const { readStudyConfig } = await import('../distill/study.js');
      const { runStudyWithAnalyses, runStudyWithAnalysesPart } = await import('../distill/analyses.js'); // the main study and its "analyses" sub-studies
      const parts = (['stage', 'worker', 'shard', 'merge'] as const).filter((k) => a[k] !== undefined && a[k] !== false);
      if (parts.length > 1) throw new UsageError(`icld study: --${parts.join(', --')} are different parts of a study; give one`);
      let shard: { i: number; n: number } | undefined;
      if (a.shard !== undefined) {
        const m = /^(\d+)\/(\d+)$/.exec(String(a.shard));
        if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) throw new UsageError(`icld study: --shard '${String(a.shard)}' must be i/N with 0 <= i < N (e.g. 0/4)`);
        shard = { i: Number(m[1]), n: Number(m[2]) };
      }
      if (a['lease-seconds'] !== undefined && !a.worker) throw new UsageError('icld study: --lease-seconds applies to --worker only');
      const cfg = readStudyConfig(need(a, 'config') as string, !!a.full);
      const out = need(a, 'out') as string;
      if (!parts.length) {
        const r = await runStudyWithAnalyses(cfg, out) as { report: string; out: string };
        console.log(a.json ? JSON.stringify(r) : `results: ${r.out}/results.json\nreport:  ${r.report}`);
        return;
      }
      const part = parts[0] === 'stage' ? { part: 'stage' as const } : parts[0] === 'merge' ? { part: 'merge' as const }
        : { part: 'worker' as const, leaseSeconds: a['lease-seconds'] as number | undefined, shard };
      const r = await runStudyWithAnalysesPart(cfg, out, part) as { report?: string; missing_cells?: string[]; ran?: number; cells?: number };
      if (a.json) console.log(JSON.stringify(r));
      else if (part.part === 'merge') console.log(`results: ${out}/results.json\nreport:  ${r.report}${r.missing_cells?.length ? `\nmissing: ${r.missing_cells.length} cell(s)` : ''}`);
      else if (part.part === 'stage') console.log(`teacher stage done: ${r.cells} cells in ${out}`);
      else console.log(`ran ${r.ran} cell(s)`);
    },
  },
  finetune: {
    summary: 'Fine-tune on conversations (loss on assistant turns only) or preference pairs (DPO) with LoRA, P-Tuning v2 / prefix, prompt tuning, bottleneck adapters or all weights; writes a PEFT adapter or a model directory.',
    details: 'Data: a JSON array / .jsonl of {"conversations":[{"role","content"}…]}, ShareGPT {"from","value"} or Alpaca {"instruction","input","output"} records (auto-detected); for DPO {"prompt","chosen","rejected"}. Conversations are rendered with the model\'s chat template (tokenizer_config.json chat_template, else the family\'s default, whose special tokens are added and the embeddings resized) and cut to --max-length tokens. The output holds adapter_config.json + adapter_model.safetensors (PEFT\'s layout and key names) or, with --method full, a model directory; plus the tokenizer with its chat template, trainer_state.json and report.html. --method dpo = --objective dpo with LoRA.',
    flags: {
      json,
      method: { type: 'string', default: 'lora', choices: ['lora', 'ptuning-v2', 'prefix', 'prompt', 'adapter', 'full', 'dpo'], help: 'what is trained: a LoRA, P-Tuning v2 (per-layer prefixes, no reparameterisation), prefix tuning (with the MLP, folded away on save), prompt tuning (input virtual tokens), bottleneck adapters, or every weight' },
      objective: { type: 'string', choices: ['sft', 'dpo'], help: 'sft (next tokens of assistant turns; default) or dpo (preference pairs against the frozen base as reference)' },
      model: { type: 'string', path: 'dir', help: 'base model directory (required)' },
      data: { type: 'string', path: 'file', help: 'training conversations or preference pairs (required)' },
      'eval-data': { type: 'string', path: 'file', help: 'held-out file of the same kind: evaluated every epoch (loss, ppl; DPO reward accuracy)' },
      out: { type: 'string', help: 'run directory (required)' },
      resume: { type: 'string', path: 'dir', help: 'run or checkpoint directory to continue from' },
      overwrite: { type: 'boolean', help: 'start again in a non-empty --out' },
      steps: { type: 'number', ...posInt, help: 'optimizer steps (default: --epochs over the data)' },
      epochs: { type: 'number', ...posInt, help: 'passes over the data when --steps is not given (default 3)' },
      'batch-size': { type: 'number', ...posInt, help: 'examples per micro-batch (default 8)' },
      'grad-accum': { type: 'number', ...posInt, help: 'micro-batches per optimizer step (default 1)' },
      lr: { type: 'number', min: 0, minExclusive: true, help: 'peak learning rate (default per method: lora/adapter 1e-3, ptuning-v2/prefix 1e-2, prompt 3e-2, full 1e-4)' },
      'warmup-steps': { type: 'number', ...nonNegInt, help: 'linear warm-up (default 5% of the steps)' },
      schedule: { type: 'string', choices: ['cosine', 'linear', 'constant'], help: 'decay after warm-up (default cosine)' },
      'max-length': { type: 'number', ...posInt, help: 'tokens per example (default min(512, the model\'s context)); longer ones are truncated and counted' },
      'eval-every': { type: 'number', ...nonNegInt, help: 'steps between evaluations (default one epoch)' },
      'save-every': { type: 'number', ...nonNegInt, help: 'steps between checkpoints (default one epoch)' },
      'log-every': { type: 'number', ...posInt, help: 'steps between log lines (default 5)' },
      seed: { type: 'number', ...seedRange, help: 'data order, adapter init and dropout seed (default 0)' },
      'peft-config': { type: 'string', path: 'file', help: 'JSON with adapter_config.json keys for the method (r, lora_alpha, target_modules, num_virtual_tokens, …); flags override it' },
      'lora-r': { type: 'number', ...posInt, help: 'LoRA rank r (default 8)' },
      'lora-alpha': { type: 'number', min: 0, minExclusive: true, help: 'LoRA alpha; the update is scaled by alpha/r (default 8)' },
      'lora-dropout': { type: 'number', min: 0, max: 1, help: 'dropout on the LoRA input (default 0)' },
      'target-modules': { type: 'list', help: 'module names the LoRA / adapter wraps (default per family: GPT-2 c_attn, BERT query value)' },
      'num-virtual-tokens': { type: 'number', ...posInt, help: 'prefix / prompt length (ChatGLM\'s pre_seq_len; default 20)' },
      'pre-seq-len': { type: 'number', ...posInt, help: 'same as --num-virtual-tokens (the ChatGLM3 name)' },
      'encoder-hidden-size': { type: 'number', ...posInt, help: 'prefix tuning: hidden size of the reparameterisation MLP' },
      'prompt-init-text': { type: 'string', help: 'prompt tuning: initialise the virtual tokens from this text\'s embeddings (PEFT\'s TEXT init)' },
      'bottleneck-size': { type: 'number', ...posInt, help: 'bottleneck adapters: hidden size (default 64)' },
      'adapter-type': { type: 'string', choices: ['houlsby', 'pfeiffer'], help: 'bottleneck adapters after attention and MLP (houlsby, default) or after the MLP only (pfeiffer)' },
      'train-embeddings': { type: 'string', choices: ['new', 'all', 'none'], help: 'adapter methods: also train the rows of the tokens added for the chat template (new; the default when tokens were added), the whole input embedding (all), or nothing (none); a grown embedding is saved with the adapter' },
      'chat-template': { type: 'string', path: 'file', help: 'a file with a Jinja chat template to use instead of the model\'s' },
      beta: { type: 'number', min: 0, minExclusive: true, help: 'DPO β (default 0.1)' },
      'label-smoothing': { type: 'number', min: 0, max: 0.5, help: 'DPO: conservative DPO label smoothing (default 0)' },
      'loss-type': { type: 'string', choices: ['sigmoid', 'ipo'], help: 'DPO loss (default sigmoid)' },
      precision,
    },
    run: async (a) => {
      if (a.resume !== undefined && a.overwrite) throw new UsageError('icld finetune: --resume and --overwrite exclude each other');
      if (a['num-virtual-tokens'] !== undefined && a['pre-seq-len'] !== undefined) throw new UsageError('icld finetune: give --num-virtual-tokens or --pre-seq-len, not both');
      const { finetune } = await import('../finetune/finetune.js');
      const { readFileSync } = await import('node:fs');
      const { readJsonFile } = await import('../io/json.js');
      let method = a.method as string, objective = a.objective as string | undefined;
      if (method === 'dpo') {
        if (objective === 'sft') throw new UsageError('icld finetune: --method dpo is DPO; it cannot take --objective sft');
        method = 'lora'; objective = 'dpo';
      }
      let peft: Record<string, unknown> = {};
      if (a['peft-config'] !== undefined) {
        const f = a['peft-config'] as string, v = readJsonFile(f, 'adapter config');
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${f}: expected a JSON object of adapter_config.json keys`);
        peft = { ...(v as Record<string, unknown>) };
      }
      const set = (flag: string, key: string): void => { if (a[flag] !== undefined) peft[key] = a[flag]; };
      set('lora-r', 'r'); set('lora-alpha', 'lora_alpha'); set('lora-dropout', 'lora_dropout'); set('target-modules', 'target_modules');
      set('num-virtual-tokens', 'num_virtual_tokens'); set('pre-seq-len', 'num_virtual_tokens'); set('encoder-hidden-size', 'encoder_hidden_size');
      set('bottleneck-size', 'bottleneck_size'); set('adapter-type', 'adapter_type');
      if (a['prompt-init-text'] !== undefined) { peft.prompt_tuning_init = 'TEXT'; peft.prompt_tuning_init_text = a['prompt-init-text']; }
      const r = finetune({
        method: method as never, objective: objective as 'sft' | 'dpo' | undefined, model: need(a, 'model') as string, data: need(a, 'data') as string,
        evalData: a['eval-data'] as string | undefined, out: need(a, 'out') as string, resume: a.resume as string | undefined, overwrite: !!a.overwrite,
        peft, steps: a.steps as number | undefined, epochs: a.epochs as number | undefined, batchSize: a['batch-size'] as number | undefined,
        gradAccum: a['grad-accum'] as number | undefined, lr: a.lr as number | undefined, warmupSteps: a['warmup-steps'] as number | undefined,
        schedule: a.schedule as never, maxLength: a['max-length'] as number | undefined, evalEvery: a['eval-every'] as number | undefined,
        saveEvery: a['save-every'] as number | undefined, logEvery: a['log-every'] as number | undefined, seed: a.seed as number | undefined,
        trainEmbeddings: a['train-embeddings'] as 'new' | 'all' | 'none' | undefined,
        chatTemplate: a['chat-template'] !== undefined ? readFileSync(a['chat-template'] as string, 'utf8') : undefined,
        beta: a.beta as number | undefined, labelSmoothing: a['label-smoothing'] as number | undefined, lossType: a['loss-type'] as 'sigmoid' | 'ipo' | undefined,
        precision: a.precision as 'f32' | 'bf16' | undefined,
      });
      const { state, ...summary } = r;
      const out = { ...summary, elapsed_s: +state.elapsed_s.toFixed(1) };
      console.log(a.json ? JSON.stringify(out) : `done: ${r.steps} steps of ${r.method}${r.objective === 'dpo' ? ' (DPO)' : ''}, ${r.trainable_params.toLocaleString('en-US')} trainable parameters, final loss ${r.final_loss.toFixed(4)}${r.final_eval ? `, eval loss ${r.final_eval.loss.toFixed(4)}` : ''}; output in ${r.out}`);
    },
  },
  merge: {
    summary: 'Fold a LoRA adapter into its base model and write a plain model directory (checked: the merged logits equal base + adapter).',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'base model directory (default: the adapter\'s base_model_name_or_path)' },
      adapter: { type: 'string', path: 'dir', help: 'PEFT adapter directory (required)' },
      out: { type: 'string', help: 'output model directory (required)' },
      overwrite: { type: 'boolean', help: 'replace a non-empty --out' },
    },
    run: async (a) => {
      const { loadLM } = await import('./load.js');
      const { mergeToDir } = await import('../finetune/merge.js');
      const { assertTrainableDir } = await import('../models/index.js');
      const { peft, tokenizer, base } = loadLM(a.model as string | undefined, need(a, 'adapter') as string);
      assertTrainableDir(base, 'merge the adapter into the original fp32 model');
      const r = mergeToDir(peft!, tokenizer, need(a, 'out') as string, !!a.overwrite);
      console.log(a.json ? JSON.stringify(r) : `merged the ${r.peft_type} adapter: ${r.out} (${r.params.toLocaleString('en-US')} parameters; max |logit difference| vs base + adapter ${r.max_abs_diff.toExponential(2)})`);
    },
  },
  quantize: {
    summary: 'Write a copy of a model directory with inference weights in bf16, q8_0 or q4_0 (ggml-compatible blocks of 32); every inference command loads it.',
    details: 'Linear layers get --dtype (bf16 when their input size is not a multiple of 32), the token embedding / tied LM head q8_0 under q4_0 (else --dtype); position embeddings, LayerNorms and biases stay f32. The result is inference only (training refuses it). Layout: README "Quantized models". JSON: the per-format tensor counts, weight bytes before/after and the file size.',
    flags: {
      json,
      model: { type: 'string', path: 'dir', help: 'fp32 model directory to quantize (required)' },
      dtype: { type: 'string', choices: ['bf16', 'q8_0', 'q4_0'], help: 'weight format (required)' },
      out: { type: 'string', help: 'new output directory (required; must not exist or be empty, and differ from --model)' },
    },
    run: async (a) => {
      const { existsSync, readdirSync, realpathSync, statSync } = await import('node:fs');
      const { quantizeDir, formatQuantizeSummary } = await import('../models/index.js');
      const model = need(a, 'model') as string, dtype = need(a, 'dtype') as 'bf16' | 'q8_0' | 'q4_0', out = need(a, 'out') as string;
      if (existsSync(out)) {
        if (statSync(out).isDirectory() && realpathSync(out) === realpathSync(model)) throw new UsageError(`icld quantize: --out ${out} is the --model directory; give a new directory`);
        if (!statSync(out).isDirectory() || readdirSync(out).length > 0) throw new UsageError(`icld quantize: --out ${out} already exists and is not an empty directory; give a new one`);
      }
      const r = quantizeDir(model, out, dtype);
      console.log(a.json ? JSON.stringify(r) : formatQuantizeSummary(r));
    },
  },
  serve: {
    summary: 'An OpenAI-compatible HTTP server (completions, chat, SSE streaming, /metrics, a chat page at /) for a model and its named adapters.',
    details: 'A request\'s "model" field selects the base (its --name) or an adapter (its NAME). SIGINT/SIGTERM stop accepting, let in-flight requests finish (up to --grace seconds), then exit.',
    flags: {
      model: { type: 'string', path: 'dir', help: 'base model directory (required)' },
      adapter: { type: 'list', help: 'NAME=DIR: a PEFT adapter directory served as model NAME (repeatable)' },
      name: { type: 'string', help: 'the base model\'s id in /v1/models and requests (default: the directory\'s name)' },
      host: { type: 'string', default: '127.0.0.1', help: 'address to listen on' },
      port: { type: 'number', default: 8080, integer: true, min: 0, max: 65535, help: 'port (0 = any free port)' },
      'api-key': { type: 'string', help: 'require Authorization: Bearer KEY on /v1/* (401 otherwise)' },
      slots: { type: 'number', default: 4, ...posInt, max: 256, help: 'requests generating concurrently' },
      queue: { type: 'number', default: 64, ...nonNegInt, help: 'requests waiting for a slot before 429' },
      ctx: { type: 'number', ...posInt, help: 'context limit in tokens (default: the model\'s)' },
      'max-body': { type: 'number', default: 1048576, ...posInt, help: 'largest request body in bytes (413 above)' },
      grace: { type: 'number', default: 10, min: 0, help: 'seconds in-flight requests may run after SIGINT/SIGTERM' },
    },
    run: async (a) => {
      const { startServer } = await import('../server/index.js');
      const adapters: Record<string, string> = {};
      for (const spec of (a.adapter as string[] | undefined) ?? []) {
        const i = spec.indexOf('=');
        if (i <= 0 || i === spec.length - 1) throw new UsageError(`icld serve: --adapter expects NAME=DIR, got '${spec}'`);
        const n = spec.slice(0, i);
        if (n in adapters) throw new UsageError(`icld serve: --adapter name '${n}' is given twice`);
        adapters[n] = spec.slice(i + 1);
      }
      const s = await startServer({
        model: need(a, 'model') as string, adapters, name: a.name as string | undefined, host: a.host as string, port: a.port as number,
        apiKey: a['api-key'] as string | undefined, slots: a.slots as number, queue: a.queue as number, ctx: a.ctx as number | undefined,
        maxBodyBytes: a['max-body'] as number, graceMs: (a.grace as number) * 1000, log: (l) => console.error(l),
      });
      console.error(`icld serve: listening on ${s.url} (Ctrl-C stops)`);
      await new Promise<void>((done) => {
        const stop = (sig: string): void => {
          console.error(`icld serve: ${sig}: finishing in-flight requests`);
          process.off('SIGINT', onInt); process.off('SIGTERM', onTerm);
          s.close().then(done, done);
        };
        const onInt = (): void => stop('SIGINT'), onTerm = (): void => stop('SIGTERM');
        process.on('SIGINT', onInt); process.on('SIGTERM', onTerm);
      });
    },
  },
  start: {
    summary: 'The main job on embedded data: the synthetic ICL-distillation study (quick version; --full for all of it), ending with the report path.',
    flags: {
      json,
      full: { type: 'boolean', help: 'run the full study instead of its quick version' },
      out: { type: 'string', help: 'study directory, rerun to resume (default runs/synthetic-study, or runs/synthetic-study-full with --full: the two versions use different data and cannot share one)' },
    },
    run: async (a) => {
      const { runStart } = await import('./start.js');
      const out = (a.out as string | undefined) ?? (a.full ? 'runs/synthetic-study-full' : 'runs/synthetic-study');
      await runStart({ full: !!a.full, out, json: !!a.json });
    },
  },
};

let current = 'icld'; // the running command, for messages

/** --model and --adapter: --model is required unless an adapter names its base. */
function modelFlags(a: ReturnType<typeof parseArgs>): [string | undefined, string | undefined] {
  const adapter = a.adapter as string | undefined;
  return [adapter === undefined ? need(a, 'model') as string : a.model as string | undefined, adapter];
}

function need(a: ReturnType<typeof parseArgs>, flag: string): string | number | boolean | string[] {
  const v = a[flag];
  if (v === undefined || (Array.isArray(v) && v.length === 0)) throw new UsageError(`${current}: missing required flag --${flag} (see ${current} --help)`);
  return v;
}

export function usage(): string {
  const names = Object.keys(commands);
  return ['usage: icld <command> [flags]', '', 'commands:', ...columns(names.map((n) => [n, commands[n].summary])), '',
    'Run `icld <command> --help` for its flags. --json prints one JSON object on stdout; logs go to stderr.', '',
    'Errors are one line on stderr. Exit codes: 0 success; 1 runtime failure (a missing or invalid file,',
    'a failed run); 2 usage error (unknown command or flag, missing flag, value out of range or not allowed).'].join('\n');
}

/** Leading non-flag words → the longest command name they spell, or a usage error with the nearest one. */
export function resolveCommand(argv: string[]): { name: string; rest: string[] } {
  const words: string[] = [];
  for (const w of argv) { if (w.startsWith('-') || words.length === 3) break; words.push(w); }
  for (let n = words.length; n >= 1; n--) {
    const cand = words.slice(0, n).join(' ');
    if (commands[cand]) return { name: cand, rest: argv.slice(n) };
  }
  const names = Object.keys(commands);
  const groups = [...new Set(names.filter((n) => n.includes(' ')).map((n) => n.split(' ')[0]))];
  const sub = (g: string): string[] => names.filter((n) => n.startsWith(`${g} `)).map((n) => n.slice(g.length + 1));
  if (words.length === 0) throw new UsageError(`icld: missing command before '${argv[0]}' (run icld --help)`);
  if (groups.includes(words[0])) {
    const g = words[0], subs = sub(g);
    if (words.length === 1) throw new UsageError(`icld ${g}: needs a subcommand: ${subs.join(', ')} (see icld ${g} --help)`);
    const near = closestMatch(words[1], subs);
    throw new UsageError(`icld: unknown command '${g} ${words[1]}'${near ? ` (did you mean '${g} ${near}'?)` : ` (${g} has: ${subs.join(', ')})`}`);
  }
  // A typo in either word of a two-word command ("tokenzier train"), then in one word.
  const two = words.length >= 2 ? closestMatch(words.slice(0, 2).join(' '), names.filter((n) => n.includes(' '))) : undefined;
  if (two) throw new UsageError(`icld: unknown command '${words.slice(0, 2).join(' ')}' (did you mean '${two}'?)`);
  const near = closestMatch(words[0], [...names.filter((n) => !n.includes(' ')), ...groups]);
  throw new UsageError(`icld: unknown command '${words[0]}'${near ? ` (did you mean '${near}'?)` : ' (run icld --help)'}`);
}

export async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') { console.log(usage()); return; }
  if (argv[0] === '--version') { console.log(info().version); return; }
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  const names = Object.keys(commands);
  // `icld bench --help`: the group's commands.
  if (wantsHelp && !argv[0].startsWith('-') && !commands[argv[0]] && names.some((n) => n.startsWith(`${argv[0]} `)) && (argv.length < 2 || argv[1].startsWith('-'))) {
    const g = names.filter((n) => n.startsWith(`${argv[0]} `));
    console.log([`usage: icld ${argv[0]} <subcommand> [flags]`, '', 'subcommands:', ...columns(g.map((n) => [n, commands[n].summary]))].join('\n'));
    return;
  }
  const { name, rest } = resolveCommand(argv);
  current = `icld ${name}`;
  const cmd = commands[name];
  if (wantsHelp) { console.log(helpText(current, cmd.details ? `${cmd.summary} ${cmd.details}` : cmd.summary, cmd.flags, cmd.positionals)); return; }
  const a = parseArgs(rest, cmd.flags, current);
  if (!cmd.positionals && a._.length) throw new UsageError(`${current}: unexpected argument '${a._[0]}' (flags start with --; see ${current} --help)`);
  checkPaths(a, cmd.flags, current);
  await cmd.run(a);
}

/** One line on stderr, prefixed with the command unless the message already names it. */
export function errorLine(e: unknown, cmd: string): string {
  const msg = (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');
  if (msg.startsWith('icld ') || msg.startsWith('icld:')) return msg;
  const bare = cmd.replace(/^icld ?/, '');
  if (bare && msg.startsWith(`${bare}: `)) return `icld ${msg}`;
  return `${cmd}: ${msg}`;
}

/** Run only as the entry point (node main.js, node main, the icld bin link), not when imported by tests. */
function isMain(): boolean {
  const self = realpathSync(fileURLToPath(import.meta.url)), arg = process.argv[1];
  if (!arg) return false;
  for (const p of [arg, `${arg}.js`]) { try { if (realpathSync(p) === self) return true; } catch { /* next */ } }
  return false;
}

if (isMain()) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(errorLine(e, current) + '\n');
    if (process.env.ICLD_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}

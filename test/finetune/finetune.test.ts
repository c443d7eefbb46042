// icld finetune end to end on tiny models: every method trains only its parameters through the
// one training loop, writes PEFT's layout, resumes bit for bit, and the result loads with
// --adapter / merges into a plain model that computes the same logits.

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import * as O from '../../src/engine/ops.js';
import { noGrad, tidy } from '../../src/engine/index.js';
import { createModel, generate, loadModel, type LanguageModel } from '../../src/models/index.js';
import { BPETokenizer, WordPieceTokenizer, loadTokenizer } from '../../src/tokenizers/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { finetune, type FinetuneOptions } from '../../src/finetune/finetune.js';
import { mergeToDir } from '../../src/finetune/merge.js';
import { PeftModel, attachAdapterDir, tunerForMethod } from '../../src/tuners/index.js';
import { writeTaskDir } from '../icl/task-fixture.js';

const CLI = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
const NAMES = ['Orsk', 'Veltria', 'Pumbel', 'Quarn', 'Zift', 'Malory'];
const CONVS = NAMES.map((n, i) => ({
  conversations: [
    { role: 'system', content: 'You answer briefly.' },
    { role: 'user', content: `What is the capital of ${NAMES[(i + 1) % NAMES.length]}?` },
    { role: 'assistant', content: `The capital is ${n}.` },
  ],
}));
const TEXT = CONVS.map((c) => c.conversations.map((m) => m.content).join('\n')).join('\n\n').repeat(4);

function tmp(): string { return mkdtempSync(join(tmpdir(), 'icld-ft-')); }

/** A tiny GPT-2 model dir with a BPE tokenizer (no chat tokens yet: finetune adds them). */
function gpt2Dir(): string {
  const d = tmp();
  const tok = BPETokenizer.train([TEXT], { vocabSize: 300, specialTokens: ['<|endoftext|>'] });
  const m = createModel('gpt2', { vocab_size: tok.vocabSize, n_positions: 96, n_embd: 32, n_layer: 2, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, eos_token_id: tok.eosTokenId, bos_token_id: tok.eosTokenId }, 3);
  m.savePretrained(d); tok.save(d);
  return d;
}

function bertDir(): string {
  const d = tmp();
  const tok = WordPieceTokenizer.train([TEXT], { vocabSize: 200 });
  const m = createModel('bert', { vocab_size: tok.vocabSize, max_position_embeddings: 96, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 3);
  m.savePretrained(d); tok.save(d);
  return d;
}

function dataFile(): string {
  const f = join(tmp(), 'chat.json');
  writeFileSync(f, JSON.stringify(CONVS));
  return f;
}

const logits = (m: LanguageModel, ids: number[]): Float32Array => tidy(() => noGrad(() => Float32Array.from(m.forward(O.tensor(ids, [1, ids.length], 'int32')).f32)));
const maxDiff = (a: Float32Array, b: Float32Array): number => { let d = 0; for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i])); return d; };
const quiet = (): void => {};

function run(o: Partial<FinetuneOptions> & Pick<FinetuneOptions, 'method' | 'model' | 'data' | 'out'>) {
  return finetune({ batchSize: 3, lr: 5e-3, log: quiet, ...o });
}

test('LoRA SFT: trains only the adapter, writes PEFT layout + tokenizer with the chat template, base files untouched', () => {
  const base = gpt2Dir(), data = dataFile(), out = join(tmp(), 'lora');
  const baseBytes = readFileSync(join(base, 'model.safetensors'));
  const r = run({ method: 'lora', model: base, data, out, steps: 12, peft: { r: 4, lora_alpha: 8 } });
  assert.deepEqual(readFileSync(join(base, 'model.safetensors')), baseBytes);
  assert.ok(existsSync(join(out, 'adapter_config.json')) && existsSync(join(out, 'adapter_model.safetensors')));
  assert.ok(!existsSync(join(out, 'model.safetensors')), 'an adapter run must not write the base weights');
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA'); assert.equal(cfg.r, 4); assert.equal(cfg.lora_alpha, 8);
  const keys = [...readSafetensors(join(out, 'adapter_model.safetensors')).tensors.keys()];
  assert.ok(keys.includes('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'), keys.join(', '));
  // Chat tokens were added, so the embedding is trained and saved with the adapter.
  assert.ok(r.added_tokens === 2 && keys.includes('base_model.model.transformer.wte.weight'), `${r.added_tokens}: ${keys.join(', ')}`);
  // Only the added rows trained (--train-embeddings new, the default): the old rows are the base's, bit for bit.
  const saved = readSafetensors(join(out, 'adapter_model.safetensors')).tensors.get('base_model.model.transformer.wte.weight')!;
  const orig = readSafetensors(join(base, 'model.safetensors')).tensors.get('transformer.wte.weight')!;
  assert.equal(saved.shape[0], orig.shape[0] + 2);
  assert.deepEqual(saved.data.subarray(0, orig.data.length), orig.data);
  assert.ok(saved.data.subarray(orig.data.length).some((v, i) => v !== saved.data[orig.data.length - saved.shape[1] + (i % saved.shape[1])]), 'the new rows did not move');
  const tc = JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8'));
  assert.match(tc.chat_template, /im_start/);
  // Loss went down and only the adapter (+ embedding) was trainable.
  const h = r.state.log_history;
  assert.ok(h[h.length - 1].loss < h[0].loss, `loss ${h[0].loss} → ${h[h.length - 1].loss}`);
  assert.ok(r.trainable_params < r.all_params / 2, `${r.trainable_params} of ${r.all_params}`);
  // Optimizer state in the checkpoint covers the trainable tensors only.
  const opt = [...readSafetensors(join(out, 'checkpoint-12', 'optimizer.safetensors')).tensors.keys()];
  assert.ok(opt.length > 0 && opt.every((k) => /lora_|wte/.test(k)), opt.join(', '));
});

test('resume: 6 steps straight equal 3 + resume + 3, bit for bit (LoRA, prefix with its MLP, full)', () => {
  const base = gpt2Dir(), data = dataFile();
  const pefts = { lora: { r: 2 }, prefix: { num_virtual_tokens: 3, encoder_hidden_size: 8 }, full: {} };
  for (const method of ['lora', 'prefix', 'full'] as const) {
    const a = join(tmp(), 'a'), b = join(tmp(), 'b');
    // A constant schedule: the 3-step run's learning rates are the first half of the 6-step run's.
    const o = { method, model: base, data, saveEvery: 3, schedule: 'constant' as const, warmupSteps: 0, peft: pefts[method] };
    run({ ...o, out: a, steps: 6 });
    run({ ...o, out: b, steps: 3 });
    run({ ...o, out: b, steps: 6, resume: b });
    const f = method === 'full' ? 'model.safetensors' : 'adapter_model.safetensors';
    const ta = readSafetensors(join(a, f)).tensors, tb = readSafetensors(join(b, f)).tensors;
    assert.deepEqual([...ta.keys()].sort(), [...tb.keys()].sort());
    for (const k of ta.keys()) assert.deepEqual(ta.get(k)!.data, tb.get(k)!.data, `${method}: ${k}`);
  }
});

test('every adapter method trains and loads back with --adapter semantics; LoRA merges to a plain model with equal logits', () => {
  const base = gpt2Dir(), data = dataFile();
  const probe = [5, 9, 17, 33, 2, 40, 41];
  for (const [method, peft] of [['lora', { r: 4 }], ['ptuning-v2', { num_virtual_tokens: 4 }], ['prefix', { num_virtual_tokens: 4, encoder_hidden_size: 16 }], ['prompt', { num_virtual_tokens: 4 }], ['adapter', { bottleneck_size: 8 }]] as const) {
    const out = join(tmp(), method);
    const r = run({ method, model: base, data, out, steps: 8, peft });
    assert.ok(Number.isFinite(r.final_loss), method);
    const tok = loadTokenizer(out);
    const m = attachAdapterDir(loadModel(base), out);
    m.eval();
    const withAdapter = logits(m, probe);
    const plain = loadModel(base);
    plain.resizeTokenEmbeddings(tok.vocabSize);
    assert.ok(maxDiff(withAdapter, logits(plain, probe)) > 1e-4, `${method}: the adapter changes nothing`);
    if (method === 'lora') {
      const merged = join(tmp(), 'merged');
      const res = mergeToDir(m, tok, merged);
      assert.ok(res.max_abs_diff <= 1e-5, `merge diff ${res.max_abs_diff}`);
      const mm = loadModel(merged);
      assert.ok(maxDiff(withAdapter, logits(mm, probe)) <= 1e-5);
      assert.ok(!existsSync(join(merged, 'adapter_config.json')));
    }
  }
});

test('a masked LM (BERT) fine-tunes with LoRA on query/value: masked-token loss on assistant turns goes down', () => {
  const base = bertDir(), data = dataFile(), out = join(tmp(), 'bert-lora');
  const r = run({ method: 'lora', model: base, data, out, steps: 20, lr: 1e-2 });
  const h = r.state.log_history;
  assert.ok(h[h.length - 1].loss < h[0].loss, `loss ${h[0].loss} → ${h[h.length - 1].loss}`);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.deepEqual([...cfg.target_modules].sort(), ['query', 'value']);
});

test('CLI: finetune --json, generate --adapter --chat, merge, and one-line errors', () => {
  const base = gpt2Dir(), data = dataFile(), out = join(tmp(), 'cli');
  const ft = spawnSync(process.execPath, [CLI, 'finetune', '--method', 'lora', '--model', base, '--data', data, '--out', out, '--steps', '4', '--batch-size', '2', '--json'], { encoding: 'utf8' });
  assert.equal(ft.status, 0, ft.stderr);
  const j = JSON.parse(ft.stdout);
  assert.equal(j.steps, 4); assert.equal(j.method, 'lora');
  assert.match(ft.stderr, /trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}/);
  const gen = spawnSync(process.execPath, [CLI, 'generate', '--adapter', out, '--prompt', 'What is the capital of Orsk?', '--chat', '--temperature', '0', '--max-new-tokens', '5', '--json'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);
  assert.equal(JSON.parse(gen.stdout).tokens.length > 0, true);
  // icl eval through the adapter: the scores are the adapter's (they differ from the base's).
  const taskDir = join(tmp(), 'tasks');
  writeTaskDir(taskDir);
  const icl = (pred: string, extra: string[]) => spawnSync(process.execPath, [CLI, 'icl', 'eval', '--tasks', 'cls', '--task-dir', taskDir, '--k', '1', '--seeds', '100', '--json', '--predictions', pred, ...extra], { encoding: 'utf8' });
  const pa = join(tmp(), 'a.jsonl'), pb = join(tmp(), 'b.jsonl');
  const withA = icl(pa, ['--adapter', out]), without = icl(pb, ['--model', base]);
  assert.equal(withA.status, 0, withA.stderr);
  assert.equal(without.status, 0, without.stderr);
  assert.notEqual(readFileSync(pa, 'utf8'), readFileSync(pb, 'utf8'), 'the option scores through the adapter equal the base\'s');
  const merged = join(tmp(), 'm');
  const mg = spawnSync(process.execPath, [CLI, 'merge', '--adapter', out, '--out', merged, '--json'], { encoding: 'utf8' });
  assert.equal(mg.status, 0, mg.stderr);
  assert.ok(JSON.parse(mg.stdout).max_abs_diff <= 1e-5);
  // The adapter on a base of another shape: one line naming the problem.
  const other = bertDir();
  const bad = spawnSync(process.execPath, [CLI, 'eval-lm', '--model', other, '--adapter', out, '--text-file', data], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  const badMethod = spawnSync(process.execPath, [CLI, 'finetune', '--method', 'qlora', '--model', base, '--data', data, '--out', join(tmp(), 'x')], { encoding: 'utf8' });
  assert.equal(badMethod.status, 2);
  assert.match(badMethod.stderr, /--method/);
});

test('DPO with LoRA (--method dpo): the base with the adapter off is the reference; reward accuracy and margins are logged and rise', () => {
  const base = gpt2Dir(), out = join(tmp(), 'dpo');
  const pairs = NAMES.map((n, i) => ({
    prompt: [{ role: 'user', content: `What is the capital of ${NAMES[(i + 1) % NAMES.length]}?` }],
    chosen: [{ role: 'assistant', content: `The capital is ${n}.` }],
    rejected: [{ role: 'assistant', content: `The capital is ${NAMES[(i + 3) % NAMES.length]}.` }],
  }));
  const f = join(tmp(), 'prefs.json');
  writeFileSync(f, JSON.stringify(pairs));
  const r = run({ method: 'lora', objective: 'dpo', model: base, data: f, evalData: f, out, steps: 16, logEvery: 4, lr: 1e-2, peft: { r: 4 } });
  const h = r.state.log_history;
  assert.equal(h.length, 4);
  for (const e of h) for (const k of ['rewards/accuracies', 'rewards/margins', 'rewards/chosen', 'rewards/rejected']) assert.ok(Number.isFinite(e[k]), `${k} missing in ${JSON.stringify(e)}`);
  // The first step starts at the reference: loss log 2 within the first window's drift; then it learns.
  assert.ok(h[0].loss < Math.LN2 + 0.05, String(h[0].loss));
  assert.ok(h[3]['rewards/margins'] > h[0]['rewards/margins'] && h[3].loss < h[0].loss, JSON.stringify(h));
  assert.ok(r.final_eval && r.final_eval['rewards/accuracies'] >= 0.5, JSON.stringify(r.final_eval));
  assert.equal(JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')).peft_type, 'LORA');
});

test('generation with a prefix adapter counts only real positions against the context (virtual ones sit in front of the cache)', () => {
  const m = createModel('gpt2', { vocab_size: 50, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 2, eos_token_id: 0, bos_token_id: 0 }, 5);
  const peft = new PeftModel(m);
  peft.addAdapter('default', tunerForMethod('ptuning-v2', 'test').config({ num_virtual_tokens: 12 }, m, 'test', 'ptuning-v2'), 1);
  peft.eval();
  assert.equal(peft.maxPositions, 20);
  const codec = { encode: () => [1, 2, 3, 4, 5, 6], decode: (ids: number[]) => ids.join(' ') };
  // 6 prompt + 10 new = 16 real positions ≤ 20 (12 virtual + 16 = 28 ≤ the base's 32).
  const r = generate(peft, codec, [1, 2, 3, 4, 5, 6], { maxNewTokens: 10, temperature: 0 });
  assert.equal(r.tokens.length, 10);
  assert.equal(r.finish_reason, 'length');
  // And the limit is the adapter's 20 positions: the 15th new token is the last one that can be fed back.
  const r2 = generate(peft, codec, [1, 2, 3, 4, 5, 6], { maxNewTokens: 16, temperature: 0 });
  assert.equal(r2.finish_reason, 'context');
  assert.equal(r2.tokens.length, 15);
});

// `icld quantize` end to end, and every inference command on the directories it writes
// (generate, eval-lm, icl eval, fill-mask, lama eval, serve); training commands refuse them;
// bad flags and targets are one-line errors.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, mkdirSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel, loadModel, generate } from '../../src/models/index.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import { tinyTokenizer, writeTaskDir } from '../icl/task-fixture.js';
import { lamaTokenizer, writeLamaDir } from '../eval/lama-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, gpt: string, bert: string, lgpt: string, tasks: string, lama: string, text: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const lastLine = (s: string): string => s.trim().split('\n').pop()!;
const quantize = (model: string, dtype: string, out: string) => {
  const r = icld(['quantize', '--model', model, '--dtype', dtype, '--out', out, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { dtype: string; tensors: Record<string, number>; bytes_before: number; bytes_after: number; file_bytes: number; files: string[]; bf16_fallbacks: string[] };
};

before(() => {
  root = mkdtempSync(join(tmpdir(), 'icld-quant-cli-'));
  gpt = join(root, 'gpt'); bert = join(root, 'bert'); lgpt = join(root, 'lgpt'); tasks = join(root, 'tasks'); lama = join(root, 'lama');
  const t = tinyTokenizer();
  createModel('gpt2', { vocab_size: t.vocabSize, n_positions: 128, n_embd: 32, n_layer: 2, n_head: 2, initializer_range: 0.2 }, 1).savePretrained(gpt);
  t.save(gpt);
  const mt = lamaTokenizer(true);
  createModel('bert', { vocab_size: mt.vocabSize, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 256 }, 2).savePretrained(bert);
  mt.save(bert);
  const lt = lamaTokenizer(false);
  createModel('gpt2', { vocab_size: lt.vocabSize, n_positions: 256, n_embd: 32, n_layer: 2, n_head: 2, initializer_range: 0.3 }, 3).savePretrained(lgpt);
  lt.save(lgpt);
  writeTaskDir(tasks);
  writeLamaDir(lama);
  text = join(root, 'text.txt');
  writeFileSync(text, 'the cat and the dog\nwhat is the answer?\n'.repeat(20));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('icld quantize', () => {
  it('writes a loadable directory with the tokenizer and generation config; --json summary; text summary', () => {
    const out = join(root, 'gpt-q4');
    const j = quantize(gpt, 'q4_0', out);
    assert.equal(j.dtype, 'q4_0');
    assert.deepEqual(j.tensors, { f32: 19, bf16: 0, q8_0: 1, q4_0: 8 });
    assert.ok(j.bytes_after < j.bytes_before / 3, `${j.bytes_after} vs ${j.bytes_before}`);
    assert.equal(j.file_bytes, statSync(join(out, 'model.safetensors')).size);
    assert.ok(j.file_bytes < statSync(join(gpt, 'model.safetensors')).size / 3);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'generation_config.json']) assert.ok(j.files.includes(f) && existsSync(join(out, f)), f);
    assert.deepEqual(readFileSync(join(out, 'tokenizer.json')), readFileSync(join(gpt, 'tokenizer.json')));
    assert.ok(!readdirSync(root).some((n) => n.startsWith('.gpt-q4')), 'no temp dir left behind');
    const t = icld(['quantize', '--model', bert, '--dtype', 'bf16', '--out', join(root, 'bert-bf16')]);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^wrote .*bert-bf16 \(bf16\): 8 bf16, 1[0-9] f32 tensors; weights [\d.]+ MiB → [\d.]+ MiB, model\.safetensors [\d.]+ MiB\n$/);
  });

  it('usage errors exit 2 with one line; a quantized --model exits 1; nothing is written', () => {
    const fail = (args: string[], code: number, re: RegExp) => {
      const r = icld(['quantize', ...args]);
      assert.equal(r.status, code, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    };
    fail(['--model', gpt, '--dtype', 'q5_0', '--out', join(root, 'x1')], 2, /--dtype.*q5_0|q5_0.*--dtype/);
    fail(['--model', gpt, '--out', join(root, 'x2')], 2, /missing required flag --dtype/);
    fail(['--model', gpt, '--dtype', 'q8_0', '--out', gpt], 2, /--out .*gpt is the --model directory/);
    fail(['--model', gpt, '--dtype', 'q8_0', '--out', bert], 2, /--out .*bert already exists and is not an empty directory/);
    fail(['--model', join(root, 'nope'), '--dtype', 'q8_0', '--out', join(root, 'x3')], 1, /--model directory not found/);
    const q = join(root, 'gpt-q8-src');
    quantize(gpt, 'q8_0', q);
    fail(['--model', q, '--dtype', 'q4_0', '--out', join(root, 'x4')], 1, /gpt-q8-src is already quantized \(q8_0\); quantize the original fp32 model/);
    for (const x of ['x1', 'x2', 'x3', 'x4']) assert.ok(!existsSync(join(root, x)), x);
    // an existing empty directory is fine
    mkdirSync(join(root, 'empty'));
    quantize(gpt, 'bf16', join(root, 'empty'));
    assert.ok(existsSync(join(root, 'empty', 'model.safetensors')));
  });
});

describe('inference commands on quantized directories', () => {
  let gq: string, bq: string, lq: string;
  before(() => {
    gq = join(root, 'inf-gpt-q4'); bq = join(root, 'inf-bert-q8'); lq = join(root, 'inf-lgpt-q8');
    quantize(gpt, 'q4_0', gq); quantize(bert, 'q8_0', bq); quantize(lgpt, 'q8_0', lq);
  });

  it('eval-lm reports the dtype and the quantized model\'s perplexity', () => {
    const r = icld(['eval-lm', '--model', gq, '--text-file', text, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { kind: string; dtype: string; nll: number; ppl: number; tokens: number };
    assert.equal(j.dtype, 'q4_0');
    const ids = loadTokenizer(gq).encode(readFileSync(text, 'utf8'), { addSpecialTokens: false });
    assert.ok(Math.abs(j.nll - perplexity(loadModel(gq), ids).nll) < 1e-9, 'the CLI ran the quantized model');
    const f = JSON.parse(icld(['eval-lm', '--model', gpt, '--text-file', text, '--json']).stdout) as { dtype: string; nll: number };
    assert.equal(f.dtype, 'f32');
    assert.notEqual(j.nll, f.nll);
    assert.ok(Math.abs(j.nll - f.nll) / f.nll < 0.1, `q4_0 nll ${j.nll} vs f32 ${f.nll}`);
    const t = icld(['eval-lm', '--model', gq, '--text-file', text]);
    assert.match(t.stdout, /ppl [\d.]+ {2}\(weights q4_0\)/);
  });

  it('generate', () => {
    const r = icld(['generate', '--model', gq, '--prompt', 'the cat', '--max-new-tokens', '5', '--temperature', '0', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { tokens: number[]; text: string; finish_reason: string };
    assert.ok(j.tokens.length >= 1 && j.tokens.length <= 5);
    // greedy: the same tokens as the library's generate on the loaded quantized model
    const m = loadModel(gq);
    const lib = generate(m, loadTokenizer(gq), 'the cat', { maxNewTokens: 5, temperature: 0 });
    assert.deepEqual(j.tokens, lib.tokens);
  });

  it('icl eval', () => {
    const r = icld(['icl', 'eval', '--model', gq, '--tasks', 'cls', '--task-dir', tasks, '--k', '2', '--seeds', '100', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { tasks: Record<string, { mean: Record<string, number> }> };
    assert.ok(j.tasks.cls.mean.accuracy >= 0 && j.tasks.cls.mean.accuracy <= 1);
  });

  it('fill-mask (BERT q8_0)', () => {
    const r = icld(['fill-mask', '--model', bq, '--text', 'in Paris , [MASK] and Paris .', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const p = (JSON.parse(r.stdout) as { predictions: { prob: number }[] }).predictions;
    assert.equal(p.length, 5);
    for (let i = 1; i < p.length; i++) assert.ok(p[i].prob <= p[i - 1].prob);
  });

  it('lama eval', () => {
    const r = icld(['lama', 'eval', '--model', lq, '--data-dir', lama, '--relations', 'P19', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { relations: Record<string, { n: number }> };
    assert.ok(j.relations.P19.n > 0);
  });

  it('serve answers a completion', async () => {
    const child = spawn(process.execPath, [MAIN, 'serve', '--model', gq, '--port', '0', '--name', 'q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    try {
      const url = await new Promise<string>((ok, fail) => {
        child.stderr.on('data', (c: Buffer) => { err += c; const m = /listening on (http:\/\/\S+)/.exec(err); if (m) ok(m[1]); });
        child.on('exit', (code) => fail(new Error(`exited ${code}: ${err}`)));
      });
      const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'q', prompt: 'the cat', max_tokens: 3, temperature: 0 }) });
      assert.equal(r.status, 200, await r.clone().text());
      const j = await r.json() as { choices: { text: string }[] };
      assert.equal(j.choices.length, 1);
    } finally {
      await new Promise<void>((ok) => { child.on('exit', () => ok()); child.kill('SIGTERM'); });
    }
  });

  it('training commands refuse a quantized model with one line naming it (exit 1)', () => {
    const data = join(root, 'chat.jsonl');
    writeFileSync(data, JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'the cat' }] }) + '\n');
    const want = new RegExp(`^(icld [a-z ]+: )?${gq.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a quantized \\(q4_0\\) model: inference only; fine-tune the original fp32 model$`);
    const ft = icld(['finetune', '--model', gq, '--data', data, '--out', join(root, 'ft'), '--steps', '1']);
    assert.equal(ft.status, 1, ft.stderr);
    assert.match(lastLine(ft.stderr), want);
    const ict = icld(['ict', 'train', '--model', gq, '--task-dir', tasks, '--train-tasks', 'cls', '--setting', 'multitask', '--k', '2', '--steps', '1', '--out', join(root, 'ict')]);
    assert.equal(ict.status, 1, ict.stderr);
    assert.match(lastLine(ict.stderr), want);
    assert.ok(!existsSync(join(root, 'ict', 'model.safetensors')));
    const ds = icld(['distill', '--teacher', gpt, '--student', gq, '--setting', 'multitask', '--k', '2', '--tasks', 'cls', '--task-dir', tasks, '--steps', '1', '--out', join(root, 'dist')]);
    assert.equal(ds.status, 1, ds.stderr);
    assert.match(lastLine(ds.stderr), want);
    const lora = fileURLToPath(new URL('../../../test/fixtures/peft/gpt2-lora', import.meta.url));
    const pq = join(root, 'peft-base-q8');
    quantize(fileURLToPath(new URL('../../../test/fixtures/peft/gpt2-base', import.meta.url)), 'q8_0', pq);
    writeFileSync(join(pq, 'tokenizer.json'), readFileSync(join(gpt, 'tokenizer.json')));
    const mg = icld(['merge', '--model', pq, '--adapter', lora, '--out', join(root, 'merged')]);
    assert.equal(mg.status, 1, mg.stderr);
    assert.match(lastLine(mg.stderr), /peft-base-q8 is a quantized \(q8_0\) model: inference only; merge the adapter into the original fp32 model$/);
    assert.ok(!existsSync(join(root, 'merged')));
  });
});

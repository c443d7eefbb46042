// `icld bench generate --dtype …` (src/cli/bench-lm.ts), the icld side of bench/llama.mjs: on the
// small config it quantizes the random model in-process and reports prefill and decode rates
// separately, with the inference weight bytes of the chosen format; bad sizes are usage errors.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { weightBytes } from '../../src/engine/quant.js';

const main = join(fileURLToPath(new URL('.', import.meta.url)), '../../src/cli/main.js');
const run = (args: string[]) => spawnSync(process.execPath, [main, 'bench', 'generate', ...args], { encoding: 'utf8' });

test('bench generate --dtype q8_0 on small: quantized weights, prefill and decode rates reported', () => {
  const r = run(['--config', 'small', '--dtype', 'q8_0', '--reps', '1', '--prompt', '8', '--new', '4', '--threads', '1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(j.dtype, 'q8_0');
  assert.equal(j.prompt_tokens, 8);
  assert.equal(j.new_tokens, 4);
  assert.equal(j.threads, 1);
  // small: d256 L4, vocab 2048, 1024 positions: the 16 matmuls and the tied wte in q8_0; wpe, norms, biases f32.
  const C = 256, L = 4, V = 2048;
  const q8 = L * (weightBytes('q8_0', 3 * C, C) + weightBytes('q8_0', C, C) + weightBytes('q8_0', 4 * C, C) + weightBytes('q8_0', C, 4 * C)) + weightBytes('q8_0', V, C);
  const qParams = L * 12 * C * C + V * C;
  assert.equal(j.weight_formats.q8_0, 4 * L + 1);
  assert.equal(j.weight_bytes, q8 + 4 * (j.params - qParams));
  assert.ok(j.prefill_tokens_per_s > 0 && Number.isFinite(j.prefill_tokens_per_s));
  assert.ok(j.decode_tokens_per_s > 0 && Number.isFinite(j.decode_tokens_per_s));
  // The rates are the reported times turned around: 8 prompt tokens over prefill_ms, 1 token per per_token_ms.
  assert.ok(Math.abs(j.prefill_tokens_per_s - 8000 / j.prefill_ms) <= 0.1 + 5e-3 * j.prefill_tokens_per_s); // prefill_ms has 2 decimals
  assert.ok(Math.abs(j.decode_tokens_per_s - 1000 / j.per_token_ms) <= 0.01 + 5e-3 * j.decode_tokens_per_s); // per_token_ms has 3 decimals
  assert.ok(j.peak_rss_mb > 0 && j.max_rss_mb >= j.peak_rss_mb - 1);
  assert.equal(typeof j.fused_runtime, 'boolean');
  for (const k of ['q8_0', 'q4_0', 'bf16', 'f32']) assert.equal(typeof j.kernel_paths[k], 'string', `kernel path of ${k}`);
  assert.match(r.stderr, /\[bench generate small q8_0\] rep 1:/);
});

test('bench generate: f32 keeps every weight in f32; bad --dtype and too long a run are usage errors', () => {
  const r = run(['--config', 'small', '--reps', '1', '--prompt', '4', '--new', '2', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(j.dtype, 'f32');
  assert.deepEqual(Object.keys(j.weight_formats), ['f32']);
  assert.equal(j.weight_bytes, 4 * j.params);
  assert.equal(j.quantize_s, 0);
  const bad = run(['--dtype', 'q5_0']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.trim(), /^icld bench generate: --dtype must be one of f32, bf16, q8_0, q4_0, got 'q5_0'/);
  const long = run(['--prompt', '1000', '--new', '100']);
  assert.equal(long.status, 2);
  assert.equal(long.stderr.trim(), 'icld bench generate: --prompt + --new (1100) exceeds the small context of 1024');
});

test('bench generate --save-model + icld quantize + --model: the directory\'s format and bytes, same as in-process', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-bench-model-'));
  try {
    const f32 = join(dir, 'f32'), q4 = join(dir, 'q4');
    const s = run(['--config', 'small', '--save-model', f32]);
    assert.equal(s.status, 0, s.stderr);
    const q = spawnSync(process.execPath, [main, 'quantize', '--model', f32, '--dtype', 'q4_0', '--out', q4], { encoding: 'utf8' });
    assert.equal(q.status, 0, q.stderr);
    const r = run(['--config', 'small', '--model', q4, '--reps', '1', '--prompt', '4', '--new', '2', '--threads', '1', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const inProc = JSON.parse(run(['--config', 'small', '--dtype', 'q4_0', '--reps', '1', '--prompt', '4', '--new', '2', '--threads', '1', '--json']).stdout.trim().split('\n').pop()!);
    assert.equal(j.dtype, 'q4_0');
    assert.deepEqual(j.weight_formats, inProc.weight_formats);
    assert.equal(j.weight_bytes, inProc.weight_bytes);
    assert.equal(j.params, inProc.params);
    // The same random weights: greedy decoding gives the same throughput-independent result shape, and a wrong shape is refused.
    const wrong = run(['--config', 'gpt2-124m', '--model', q4, '--reps', '1', '--json']);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr.trim(), /has n_embd 256, the gpt2-124m shape needs 768$/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

// Hostile model directories (issue 9): config.json checked against the safetensors header before
// anything is allocated, weights never initialised twice, NaN/Inf weights and a header length
// that is one byte short rejected by name.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2, gpt2Config, gpt2ParameterShapes } from '../../src/models/gpt2.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';

const HF_DIR = fileURLToPath(new URL('../../../test/fixtures/gpt2/tiny-hf/', import.meta.url));
let tmp = '';
let n = 0;
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-gpt2-hostile-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

/** A copy of the tiny HF model dir with config.json edited. */
function modelDir(edit: (c: Record<string, unknown>) => void = () => {}): string {
  const d = join(tmp, `m${n++}`);
  cpSync(HF_DIR, d, { recursive: true });
  const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
  edit(c);
  writeFileSync(join(d, 'config.json'), JSON.stringify(c));
  return d;
}

/** Load, asserting the error, its speed and that no big buffer was allocated on the way. */
function rejects(dir: string, re: RegExp): string {
  const mem = process.memoryUsage().arrayBuffers, t0 = performance.now();
  let msg = '';
  assert.throws(() => GPT2.fromPretrained(dir), (e: Error) => { msg = e.message; return e.constructor === Error && re.test(e.message) && !e.message.includes('\n'); });
  assert.ok(performance.now() - t0 < 1000, 'must fail fast');
  assert.ok(process.memoryUsage().arrayBuffers - mem < 32 << 20, 'must fail before allocating the model');
  return msg;
}

describe('GPT-2 model dir: config.json vs weights', () => {
  it('the unmodified copy loads (HF extra keys such as task_specific_params are tolerated)', () => {
    const d = modelDir((c) => { c.task_specific_params = { 'text-generation': { do_sample: true } }; c.some_future_key = [1]; });
    const m = GPT2.fromPretrained(d);
    assert.equal(m.config.n_layer, 2);
    const w = readSafetensors(join(d, 'model.safetensors')).tensors.get('transformer.h.1.mlp.c_fc.weight')!;
    assert.deepEqual([...m.namedParameters().find(([k]) => k === 'transformer.h.1.mlp.c_fc.weight')![1].f32], [...w.data]);
  });

  it('vocab_size 2e7: a fast range error naming config.json, no 2.5 GB allocation', () => {
    const d = modelDir((c) => { c.vocab_size = 2e7; });
    rejects(d, new RegExp(`${join(d, 'config.json').replace(/[.\\/]/g, '\\$&')}: vocab_size must be an integer in \\[1, \\d+\\], got 20000000`));
  });

  it('a vocab_size within range but not the weights\' one names the first mismatching tensor and its file', () => {
    const d = modelDir((c) => { c.vocab_size = 3_000_000; c.bos_token_id = 0; c.eos_token_id = 0; });
    rejects(d, /model\.safetensors: tensor 'transformer\.wte\.weight' has shape \[50, 12\] but .*config\.json .* implies \[3000000, 12\]/);
  });

  it('n_layer 20000: a clear error, not "Maximum call stack size exceeded"', () => {
    const msg = rejects(modelDir((c) => { c.n_layer = 20000; }), /config\.json: n_layer must be an integer in \[1, 1024\], got 20000/);
    assert.doesNotMatch(msg, /call stack/);
  });

  it('n_layer one more than the weights: the missing tensor is named', () => {
    rejects(modelDir((c) => { c.n_layer = 3; }), /tensor 'transformer\.h\.2\.ln_1\.weight' is missing, but .*config\.json \(n_layer 3/);
  });

  it('n_layer one less: the extra tensor is named', () => {
    rejects(modelDir((c) => { c.n_layer = 1; }), /tensor 'transformer\.h\.1\.\S+' is not part of the GPT-2/);
  });

  it('types and ranges of used keys are checked', () => {
    rejects(modelDir((c) => { c.n_head = '3'; }), /config\.json: n_head must be an integer/);
    rejects(modelDir((c) => { c.n_head = 5; }), /config\.json: n_embd 12 is not divisible by n_head 5/);
    rejects(modelDir((c) => { c.layer_norm_epsilon = 0; }), /config\.json: layer_norm_epsilon must be a number > 0/);
    rejects(modelDir((c) => { c.attn_pdrop = 1; }), /config\.json: attn_pdrop must be a number ≥ 0 and < 1/);
    rejects(modelDir((c) => { c.eos_token_id = 50; }), /config\.json: eos_token_id 50 is outside the vocabulary/);
    rejects(modelDir((c) => { c.activation_function = 'swish'; }), /config\.json: activation_function must be one of/);
    rejects(modelDir((c) => { c.tie_word_embeddings = false; }), /tie_word_embeddings false is not supported/);
  });

  it('NaN or Inf in a weight is an error naming the file and the tensor', () => {
    for (const bad of [NaN, Infinity]) {
      const d = modelDir();
      const p = join(d, 'model.safetensors');
      const { tensors, metadata } = readSafetensors(p);
      const t = tensors.get('transformer.h.0.attn.c_proj.weight')!;
      (t.data as Float32Array)[5] = bad;
      writeSafetensors(p, new Map([...tensors].map(([k, v]) => [k, { dtype: 'F32' as const, shape: v.shape, data: v.data as Float32Array }])), metadata);
      assert.throws(() => GPT2.fromPretrained(d), new RegExp(`${p.replace(/[.\\/]/g, '\\$&')}: tensor 'transformer\\.h\\.0\\.attn\\.c_proj\\.weight' holds a non-finite value \\(${bad}\\) at index 5`));
    }
  });

  it('a safetensors header length one byte short is an error naming the file (it used to read every tensor one byte off)', () => {
    const d = modelDir();
    const p = join(d, 'model.safetensors');
    const b = readFileSync(p);
    const len = b.readBigUInt64LE(0);
    assert.equal(b.subarray(8 + Number(len) - 1, 8 + Number(len)).toString(), ' ', 'fixture header ends in padding, so the short header is still valid JSON');
    b.writeBigUInt64LE(len - 1n, 0);
    writeFileSync(p, b);
    assert.throws(() => readSafetensors(p), new RegExp(`${p.replace(/[.\\/]/g, '\\$&')}: (tensor '.*' starts at data byte|the tensors cover)`));
    assert.throws(() => GPT2.fromPretrained(d), (e: Error) => e.message.startsWith(p + ':'));
  });

  it('a duplicated tensor key in the header is rejected (JSON.parse would keep the last)', () => {
    const d = modelDir();
    const p = join(d, 'model.safetensors');
    const b = readFileSync(p);
    const n = Number(b.readBigUInt64LE(0));
    const h = b.subarray(8, 8 + n).toString('utf8');
    // Re-list ln_f.bias under its own name with the same entry, inside the padding-free JSON.
    const m = /"transformer\.ln_f\.bias":(\{[^}]*\})/.exec(h)!;
    const h2 = h.trimEnd().slice(0, -1) + `,"transformer.ln_f.bias":${m[1]}}`;
    const hb = Buffer.from(h2, 'utf8');
    const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(hb.length));
    writeFileSync(p, Buffer.concat([len, hb, b.subarray(8 + n)]));
    assert.throws(() => readSafetensors(p), /safetensors header has the key 'transformer\.ln_f\.bias' twice/);
  });
});

describe('GPT-2 construction without init', () => {
  const cfg = gpt2Config({ vocab_size: 40, n_positions: 8, n_embd: 8, n_layer: 2, n_head: 2 });
  it('init: false leaves weights zero (LayerNorm 1) and draws nothing from the seed', () => {
    const z = new GPT2(cfg, 3, { init: false });
    for (const [name, p] of z.namedParameters()) {
      const want = /ln_\w+\.weight$/.test(name) ? 1 : 0;
      assert.ok(p.f32.every((x) => x === want), name);
    }
    assert.deepEqual(z.rng.getState(), new GPT2(cfg, 3, { init: false }).rng.getState());
    const a = new GPT2(cfg, 3);
    assert.notDeepEqual(a.rng.getState(), z.rng.getState(), 'seeded init draws from the rng, init: false does not');
  });

  it('the seeded path is unchanged: same seed, same weights; parameter shapes match gpt2ParameterShapes', () => {
    const a = new GPT2(cfg, 3), b = new GPT2(cfg, 3), c = new GPT2(cfg, 4);
    const pa = a.namedParameters(), pb = b.namedParameters();
    assert.deepEqual(pa.map(([k, p]) => [k, p.shape]), gpt2ParameterShapes(cfg));
    pa.forEach(([k, p], i) => assert.deepEqual(p.f32, pb[i][1].f32, k));
    assert.notDeepEqual(pa[0][1].f32, c.namedParameters()[0][1].f32);
  });
});

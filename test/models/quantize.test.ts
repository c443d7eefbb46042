// Quantized models (src/models/quantize.ts): the per-tensor policy, freed f32 storage, logits of
// each format against fp32, forward numerics against the reference matmul (engine/quant.ts), the
// directory layout, bit-identical save → load, inference-only refusal, and damaged files.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachAdapterDir } from '../../src/tuners/index.js';
import * as O from '../../src/engine/ops.js';
import { noGrad } from '../../src/engine/index.js';
import { qmatmulRef, weightAt, quantizeWeight, type QWeight } from '../../src/engine/quant.js';
import { createModel, loadModel, type LanguageModel } from '../../src/models/index.js';
import { quantizeModel, quantizationOf, assertTrainable, assertTrainableDir, modelDtype, type InferenceDtype } from '../../src/models/quantize.js';
import { isQuantizable, type QuantizableLayer } from '../../src/nn/module.js';
import { openSafetensors, readSafetensors, writeSafetensors, type WriteTensor } from '../../src/io/safetensors.js';
import { bf16ToF32, f32ToBf16 } from '../../src/engine/quant.js';

const C = 64;
const gpt2 = (): LanguageModel => createModel('gpt2', { vocab_size: 96, n_embd: C, n_layer: 2, n_head: 2, n_positions: 32, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, initializer_range: 0.1 }, 3).eval();
// intermediate 48: output.dense has K = 48, not a multiple of 32 (bf16 fallback under q formats)
const bert = (): LanguageModel => createModel('bert', { vocab_size: 80, hidden_size: C, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 48, max_position_embeddings: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0, initializer_range: 0.1 }, 4).eval();
const ids = (): ReturnType<typeof O.tensor> => O.tensor([3, 7, 1, 9, 4, 2, 8, 5, 6, 11, 12, 13, 40, 41, 42, 43], [2, 8], 'int32');
const logits = (m: LanguageModel): Float32Array => Float32Array.from(noGrad(() => m.forward(ids()).toArray()));
/** max |a − b| relative to max |b|. */
function relErr(a: Float32Array, b: Float32Array): number {
  let d = 0, s = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(b[i])); }
  return d / s;
}
const sitesOf = (m: LanguageModel): [string, QuantizableLayer][] => m.namedModules().filter(([, x]) => isQuantizable(x)).map(([p, x]) => [`${p}.weight`, x as QuantizableLayer]);

let root: string;
before(() => { root = mkdtempSync(join(tmpdir(), 'icld-quant-')); });
after(() => rmSync(root, { recursive: true, force: true }));

describe('quantizeModel', () => {
  it('per-tensor policy, freed weights and byte counts (GPT-2, q4_0)', () => {
    const m = gpt2();
    const before = m.numParameters();
    const s = quantizeModel(m, 'q4_0');
    const f = quantizationOf(m)!.config.formats;
    assert.equal(f['transformer.wte.weight'], 'q8_0', 'tied head/token embedding stays q8_0 under q4_0');
    assert.equal(f['transformer.wpe.weight'], undefined, 'position embeddings stay f32');
    for (let l = 0; l < 2; l++) for (const n of ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']) assert.equal(f[`transformer.h.${l}.${n}.weight`], 'q4_0');
    // f32: wpe + per layer (ln_1 w/b, 4 biases, ln_2 w/b) + ln_f w/b remain as parameters
    assert.deepEqual(s.tensors, { f32: 1 + 2 * 8 + 2, bf16: 0, q8_0: 1, q4_0: 8 });
    const names = m.namedParameters().map(([n]) => n);
    assert.ok(!names.includes('transformer.wte.weight') && !names.includes('transformer.h.0.attn.c_attn.weight'));
    assert.ok(names.includes('transformer.wpe.weight') && names.includes('transformer.h.0.attn.c_attn.bias'));
    const lin = m.getModule('transformer.h.0.mlp.c_fc') as unknown as QuantizableLayer & { weight: { size: number } };
    assert.equal(lin.weight.size, 0, 'the f32 weight is released');
    assert.ok(m.parameters().every((p) => !p.requiresGrad), 'every remaining parameter frozen');
    assert.equal(s.bytes_before, 4 * before);
    const V = 96, inner = 4 * C;
    const q4 = (N: number, K: number) => N * K / 2 + 2 * N * K / 32;
    const qBytes = V * C + 2 * V * C / 32 + 2 * (q4(3 * C, C) + q4(C, C) + q4(inner, C) + q4(C, inner));
    assert.equal(s.bytes_after, qBytes + 4 * m.numParameters());
    assert.equal(modelDtype(m), 'q4_0');
    assert.throws(() => quantizeModel(m, 'q8_0'), /already quantized \(q4_0\)/);
  });

  it('BERT: K not a multiple of 32 falls back to bf16; type/position embeddings stay f32', () => {
    const m = bert();
    const s = quantizeModel(m, 'q8_0');
    const f = quantizationOf(m)!.config.formats;
    assert.deepEqual(s.bf16_fallbacks, ['bert.encoder.layer.0.output.dense.weight', 'bert.encoder.layer.1.output.dense.weight']);
    assert.equal(f['bert.encoder.layer.0.output.dense.weight'], 'bf16');
    assert.equal(f['bert.encoder.layer.0.intermediate.dense.weight'], 'q8_0');
    assert.equal(f['bert.embeddings.word_embeddings.weight'], 'q8_0');
    assert.equal(f['cls.predictions.transform.dense.weight'], 'q8_0');
    assert.equal(f['bert.embeddings.position_embeddings.weight'], undefined);
    assert.equal(f['bert.embeddings.token_type_embeddings.weight'], undefined);
  });

  for (const [family, make] of [['GPT-2', gpt2], ['BERT', bert]] as const) {
    it(`${family}: logits of each format against fp32 (bf16 tight, q8_0 looser, q4_0 loosest)`, () => {
      const ref = logits(make());
      const err: Record<string, number> = {};
      for (const dt of ['bf16', 'q8_0', 'q4_0'] as InferenceDtype[]) {
        const m = make();
        quantizeModel(m, dt);
        err[dt] = relErr(logits(m), ref);
      }
      if (process.env.ICLD_QUANT_VERBOSE) console.log(family, err);
      // Measured (GPT-2 / BERT, max |Δlogit| / max |logit|): bf16 7e-3 / 4e-3, q8_0 1.9e-2 / 1.6e-2, q4_0 0.21 / 0.12.
      assert.ok(err.bf16 > 0 && err.bf16 < 0.02, `bf16 ${err.bf16}`);
      assert.ok(err.q8_0 > err.bf16 && err.q8_0 < 0.05, `q8_0 ${err.q8_0}`);
      assert.ok(err.q4_0 > err.q8_0 && err.q4_0 < 0.4, `q4_0 ${err.q4_0}`);
    });
  }

  it('a quantized layer computes qmatmulRef (activations to q8_0 blocks) and embeddings dequantize rows', () => {
    const m = gpt2();
    quantizeModel(m, 'q4_0');
    const layer = m.getModule('transformer.h.0.attn.c_attn') as unknown as QuantizableLayer & { forward(x: ReturnType<typeof O.tensor>): ReturnType<typeof O.tensor>; bias: { f32: Float32Array } };
    const M = 3, x = new Float32Array(M * C).map((_, i) => Math.sin(i * 0.37) * 2);
    const got = noGrad(() => layer.forward(O.tensor(x, [M, C])).toArray());
    const w = layer.inferenceWeight();
    const want = new Float32Array(M * w.N);
    qmatmulRef(w, M, x, 0, C, want, 0, w.N, layer.bias.f32, false);
    assert.ok(relErr(Float32Array.from(got), want) < 1e-5, 'qlinear = qmatmulRef up to summation order');
    const wte = m.getModule('transformer.wte') as unknown as QuantizableLayer & { forward(t: ReturnType<typeof O.tensor>): ReturnType<typeof O.tensor> };
    const row = noGrad(() => wte.forward(O.tensor([5], [1], 'int32')).toArray());
    const q = wte.inferenceWeight();
    assert.deepEqual(row, Array.from({ length: C }, (_, k) => weightAt(q, 5, k)));
  });

  it('qlinear: the many-row GEMM path and the qmatmul kernel path both compute qmatmulRef', () => {
    const N = 40, K = 96, M = 70;
    const src = new Float32Array(N * K).map((_, i) => Math.cos(i * 1.3) * (1 + (i % 7)));
    const x = new Float32Array(M * K).map((_, i) => Math.sin(i * 0.71) * (i % 5 === 0 ? 4 : 1));
    const bias = new Float32Array(N).map((_, i) => i / 10);
    for (const fmt of ['f32', 'bf16', 'q8_0', 'q4_0'] as const) {
      for (const layout of fmt === 'f32' ? ['in_out', 'out_in'] as const : ['out_in'] as const) {
        const w = quantizeWeight(src, N, K, layout, fmt);
        const want = new Float32Array(M * N);
        qmatmulRef(w, M, x, 0, K, want, 0, N, bias, false);
        const run = (minRows: number) => Float32Array.from(noGrad(() => O.qlinear(O.tensor(x, [M, K]), w, O.tensor(bias, [N]), minRows).toArray()));
        const gemm = run(1), kernel = run(Infinity);
        assert.ok(relErr(gemm, want) < 2e-6, `${fmt} ${layout} GEMM path ${relErr(gemm, want)}`);
        assert.ok(relErr(kernel, want) < 2e-6, `${fmt} ${layout} kernel path ${relErr(kernel, want)}`);
      }
    }
  });

  it('is inference only: a gradient through a quantized weight and assertTrainable refuse', () => {
    const m = gpt2();
    quantizeModel(m, 'q8_0');
    const x = O.tensor(new Float32Array(2 * C).fill(0.5), [2, C]);
    x.requiresGrad = true;
    assert.throws(() => (m.getModule('transformer.h.0.mlp.c_fc') as unknown as { forward(t: typeof x): typeof x }).forward(x), /qlinear: a q8_0 256×64 weight is inference-only/);
    assert.throws(() => assertTrainable(m), /^Error: this model is a quantized \(q8_0\) model: inference only; fine-tune the original fp32 model$/);
    assert.doesNotThrow(() => assertTrainable(gpt2()));
  });
});

describe('quantized model directories', () => {
  const saved = new Map<string, { model: LanguageModel; dir: string }>();
  before(() => {
    for (const dt of ['bf16', 'q8_0', 'q4_0'] as InferenceDtype[]) {
      for (const [fam, make] of [['gpt2', gpt2], ['bert', bert]] as const) {
        const model = make();
        quantizeModel(model, dt);
        const dir = join(root, `${fam}-${dt}`);
        model.savePretrained(dir);
        saved.set(`${fam}-${dt}`, { model, dir });
      }
    }
  });

  for (const key of ['gpt2-bf16', 'gpt2-q8_0', 'gpt2-q4_0', 'bert-bf16', 'bert-q8_0', 'bert-q4_0']) {
    it(`${key}: save → load is bit-identical (QWeights, f32 parameters, logits)`, () => {
      const { model, dir } = saved.get(key)!;
      const back = loadModel(dir);
      assert.equal(quantizationOf(back)!.dir, dir);
      assert.deepEqual(quantizationOf(back)!.config, quantizationOf(model)!.config);
      const a = new Map(sitesOf(model)), b = new Map(sitesOf(back));
      for (const [n, l] of a) {
        const qa = l.quantized, qb = b.get(n)!.quantized;
        if (!qa) { assert.equal(qb, null, n); continue; }
        const bytes = (q: QWeight) => [...new Uint8Array(q.data.buffer, q.data.byteOffset, q.data.byteLength)];
        assert.equal(qb!.format, qa.format, n);
        assert.deepEqual(bytes(qb!), bytes(qa), `${n} data`);
        assert.deepEqual(qb!.scales && [...qb!.scales], qa.scales && [...qa.scales], `${n} scales`);
      }
      const pa = new Map(model.namedParameters());
      for (const [n, p] of back.namedParameters()) assert.deepEqual([...p.f32], [...pa.get(n)!.f32], n);
      assert.equal(back.namedParameters().length, pa.size);
      assert.deepEqual(logits(back), logits(model));
    });
  }

  it('layout: q tensors as U8 qweight [out, in] + F16 scales, f32 rest; config quantization_config', () => {
    const { dir } = saved.get('gpt2-q4_0')!;
    const f = openSafetensors(join(dir, 'model.safetensors'));
    try {
      const t = (n: string) => { const i = f.tensors.get(n); assert.ok(i, n); return [i!.dtype, i!.shape]; };
      assert.deepEqual(t('transformer.h.0.attn.c_attn.weight.qweight'), ['U8', [3 * C, C / 2]], 'q4_0 [N, K/2] even for Conv1D');
      assert.deepEqual(t('transformer.h.0.attn.c_attn.weight.scales'), ['F16', [3 * C, C / 32]]);
      assert.deepEqual(t('transformer.h.0.mlp.c_proj.weight.qweight'), ['U8', [C, 4 * C / 2]]);
      assert.deepEqual(t('transformer.wte.weight.qweight'), ['U8', [96, C]], 'the tied head stays q8_0');
      assert.deepEqual(t('transformer.wpe.weight'), ['F32', [32, C]]);
      assert.deepEqual(t('transformer.h.0.attn.c_attn.bias'), ['F32', [3 * C]]);
      assert.ok(!f.tensors.has('transformer.h.0.attn.c_attn.weight'));
    } finally { f.close(); }
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.quantization_config.quant_method, 'icld');
    assert.equal(cfg.quantization_config.dtype, 'q4_0');
    assert.equal(cfg.quantization_config.block_size, 32);
    assert.equal(cfg.quantization_config.version, 1);
    assert.equal(cfg.quantization_config.formats['transformer.wte.weight'], 'q8_0');
    assert.equal(cfg.icld_quantization_config, undefined);
    assert.equal(cfg.model_type, 'gpt2');
  });

  it('a bf16 dir is a plain HF bf16 checkpoint: BF16 tensors in HF layout, torch_dtype bfloat16, no quantization_config', () => {
    const fp = gpt2();
    const w = fp.namedParameters().find(([n]) => n === 'transformer.h.1.mlp.c_fc.weight')![1].f32.slice(); // [in, out]
    const { dir } = saved.get('gpt2-bf16')!;
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.torch_dtype, 'bfloat16');
    assert.equal(cfg.quantization_config, undefined, 'transformers refuses unknown quant_methods');
    assert.equal(cfg.icld_quantization_config.dtype, 'bf16');
    const { tensors } = readSafetensors(join(dir, 'model.safetensors'));
    const t = tensors.get('transformer.h.1.mlp.c_fc.weight')!;
    assert.equal(t.dtype, 'BF16');
    assert.deepEqual(t.shape, [C, 4 * C], 'Conv1D [in, out] as transformers expects');
    assert.deepEqual([...t.data], [...w].map((v) => bf16ToF32(f32ToBf16(v))));
    assert.equal(tensors.get('transformer.wte.weight')!.dtype, 'BF16');
    assert.equal(tensors.get('transformer.ln_f.weight')!.dtype, 'F32');
  });

  it('a PEFT LoRA adapter runs on a quantized base (inference), close to fp32 base + adapter', () => {
    const F = fileURLToPath(new URL('../../../test/fixtures/peft/', import.meta.url));
    for (const fam of ['gpt2', 'bert']) {
      const x = O.tensor([3, 7, 1, 9, 4, 2], [1, 6], 'int32');
      const run = (m: LanguageModel) => Float32Array.from(noGrad(() => m.forward(x).toArray()));
      const ref = run(attachAdapterDir(loadModel(join(F, `${fam}-base`)), join(F, `${fam}-lora`)));
      const m = loadModel(join(F, `${fam}-base`));
      quantizeModel(m, 'q8_0');
      const dir = join(root, `lora-base-${fam}`);
      m.savePretrained(dir);
      const plain = run(loadModel(dir));
      assert.throws(() => quantizeModel(attachAdapterDir(loadModel(join(F, `${fam}-base`)), join(F, `${fam}-lora`)), 'q8_0'), /carries an adapter; merge it into the model first/);
      const withLora = run(attachAdapterDir(loadModel(dir), join(F, `${fam}-lora`)));
      const e = relErr(withLora, ref);
      assert.ok(e > 0 && e < 0.06, `${fam}: ${e}`); // measured 0.024 / 0.030
      assert.ok(relErr(withLora, plain) > 0.01, `${fam}: the adapter changes the output`);
    }
  });

  it('training refuses a quantized dir by name (before loading it)', () => {
    const { dir } = saved.get('bert-q8_0')!;
    assert.throws(() => assertTrainableDir(dir), new RegExp(`^Error: ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is a quantized \\(q8_0\\) model: inference only; fine-tune the original fp32 model$`));
    assert.throws(() => assertTrainable(loadModel(dir)), /bert-q8_0 is a quantized \(q8_0\) model: inference only/);
  });

  describe('damaged directories give one-line errors naming the file and tensor', () => {
    const damaged = (name: string, edit: (cfg: Record<string, unknown>, tensors: Map<string, WriteTensor>) => void): string => {
      const src = saved.get('gpt2-q4_0')!.dir, dir = join(root, `bad-${name}`);
      cpSync(src, dir, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      const f = readSafetensors(join(src, 'model.safetensors'));
      const f2 = openSafetensors(join(src, 'model.safetensors'));
      const tensors = new Map<string, WriteTensor>();
      for (const [n, t] of f.tensors) {
        const raw = f2.getBytes(n);
        tensors.set(n, t.dtype === 'U8' ? { dtype: 'U8', shape: t.shape, data: raw } : t.dtype === 'F16' ? { dtype: 'F16', shape: t.shape, data: new Uint16Array(raw.buffer) } : { dtype: 'F32', shape: t.shape, data: t.data as Float32Array });
      }
      f2.close();
      edit(cfg, tensors);
      writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
      return dir;
    };
    const fails = (dir: string, re: RegExp) => assert.throws(() => loadModel(dir), (e: Error) => { assert.match(e.message, re); assert.ok(!e.message.includes('\n'), 'one line'); return true; });
    const Q = 'transformer.h.0.attn.c_attn.weight';

    it('wrong qweight shape for the format', () => {
      const dir = damaged('shape', (_c, t) => { const q = t.get(`${Q}.qweight`)!; t.set(`${Q}.qweight`, { dtype: 'U8', shape: [3 * C / 2, C], data: q.data }); });
      fails(dir, new RegExp(`model\\.safetensors: tensor '${Q}\\.qweight' is U8 \\[96, 64\\] but a q4_0 192×64 weight needs U8 \\[192, 32\\]`));
    });
    it('scales shape mismatch', () => {
      const dir = damaged('scales', (_c, t) => { t.set(`${Q}.scales`, { dtype: 'F16', shape: [3 * C], data: new Uint16Array(3 * C) }); });
      fails(dir, new RegExp(`model\\.safetensors: tensor '${Q}\\.scales' is F16 \\[192\\] but a q4_0 192×64 weight needs F16 scales \\[192, 2\\]`));
    });
    it('unknown format', () => {
      const dir = damaged('format', (c) => { (c.quantization_config as { formats: Record<string, string> }).formats[Q] = 'q5_0'; });
      fails(dir, new RegExp(`config\\.json: quantization_config\\.formats\\["${Q}"\\] is "q5_0", not one of bf16, q8_0, q4_0`));
    });
    it('unknown quant_method, newer version, wrong block size', () => {
      fails(damaged('method', (c) => { (c.quantization_config as Record<string, unknown>).quant_method = 'gptq'; }), /config\.json: quantization_config\.quant_method is "gptq"; only "icld"/);
      fails(damaged('version', (c) => { (c.quantization_config as Record<string, unknown>).version = 7; }), /config\.json: quantization_config\.version is 7: written by a newer icld/);
      fails(damaged('block', (c) => { (c.quantization_config as Record<string, unknown>).block_size = 64; }), /config\.json: quantization_config\.block_size must be 32, got 64/);
    });
    it('a tensor the config does not list, and a missing one', () => {
      fails(damaged('unlisted', (c) => { delete (c.quantization_config as { formats: Record<string, string> }).formats[Q]; }),
        new RegExp(`tensor '${Q}' is missing|tensor '${Q}\\.qweight' is not part of this quantized gpt2 model`));
      fails(damaged('missing', (_c, t) => { t.delete(`${Q}.scales`); }), new RegExp(`model\\.safetensors: tensor '${Q}\\.scales' is missing`));
    });
    it('a q format on a weight whose input size is not a multiple of 32', () => {
      const src = saved.get('bert-q8_0')!.dir, dir = join(root, 'bad-k');
      cpSync(src, dir, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      cfg.quantization_config.formats['bert.encoder.layer.0.output.dense.weight'] = 'q8_0';
      writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
      fails(dir, /config\.json: quantization_config\.formats lists 'bert\.encoder\.layer\.0\.output\.dense\.weight' as q8_0, but its input size 48 is not a multiple of 32/);
    });
  });
});

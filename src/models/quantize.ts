// Inference weight formats for whole models (bf16, q8_0, q4_0; engine/quant.ts has the numerics):
// quantizing a loaded model through its module tree, and the quantized model directory layout.
// Family-agnostic: every layer that can hold a QWeight (nn/module.ts QuantizableLayer) is found
// by walking the tree, and tensors keep their Hugging Face names.
//
// Per-tensor policy (quantizeModel):
// - linear layers get the requested dtype; one whose input size K is not a multiple of 32 falls
//   back to bf16 (q8_0/q4_0 blocks run along K);
// - the token embedding (also the tied LM head) gets q8_0 when the dtype is q4_0 (llama.cpp keeps
//   its output tensor wider too: the head's error lands directly on the logits), else the dtype;
// - position / token-type embeddings, LayerNorms and biases stay f32 (small; added, not multiplied).
// A quantized model is inference only: the f32 storage of quantized tensors is freed, every
// remaining parameter is frozen, and training entry points refuse it (assertTrainable).
//
// Directory layout (README "Quantized models"):
// - q tensor `X.weight` → `X.weight.qweight` (U8; q8_0: int8 bytes [N, K]; q4_0: packed nibbles
//   [N, K/2]; always [out, in], also for GPT-2's Conv1D) + `X.weight.scales` (F16 [N, K/32]);
// - bf16 tensor → BF16 under its own name, in its HF layout (Conv1D stays [in, out]);
// - everything else F32 under its own name;
// - config.json `quantization_config` {quant_method "icld", version 1, dtype, block_size 32,
//   formats {tensor name → "bf16"|"q8_0"|"q4_0"}} (unlisted tensors are f32). A dir with no q
//   tensor is a plain bf16 checkpoint that transformers loads: transformers rejects unknown
//   quant_methods, so there the same object is stored as `icld_quantization_config`, and
//   torch_dtype is "bfloat16".

import { copyFileSync, existsSync, mkdirSync, readdirSync, realpathSync, rmdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { quantizeWeight, weightBytes, QK, type QWeight, type WeightFormat } from '../engine/quant.js';
import { noGrad } from '../engine/index.js';
import { isLinearLayer, isQuantizable, Embedding, type Module, type QuantizableLayer } from '../nn/module.js';
import { CONFIG_NAME, readConfig, weightHeaders, writeConfig } from '../io/hf.js';
import { openSafetensors, writeSafetensors, type SafetensorsFile, type WriteTensor } from '../io/safetensors.js';
import { publishDir, tempSibling, removeDirAtomic } from '../io/atomic.js';
import { printable } from '../io/json.js';
import type { LanguageModel } from './lm.js';
import { loadModel } from './registry.js';

export type InferenceDtype = 'bf16' | 'q8_0' | 'q4_0';
export const INFERENCE_DTYPES: readonly InferenceDtype[] = ['bf16', 'q8_0', 'q4_0'];
export const QUANT_METHOD = 'icld';
export const QUANT_VERSION = 1;
/** config.json key of a dir with q tensors, and of a bf16-only dir (kept loadable by transformers). */
export const QUANT_KEY = 'quantization_config';
export const BF16_QUANT_KEY = 'icld_quantization_config';

export interface QuantizationConfig {
  quant_method: 'icld';
  version: number;
  /** What `icld quantize --dtype` asked for. */
  dtype: InferenceDtype;
  block_size: 32;
  /** Format of every non-f32 tensor, by HF name (`transformer.h.0.attn.c_attn.weight`). */
  formats: Record<string, InferenceDtype>;
}

/** What a model's quantization is, and the directory it was loaded from (for messages). */
export interface QuantInfo { config: QuantizationConfig; dir: string | null }
const infos = new WeakMap<object, QuantInfo>();

/** The quantization of a model, or null for an ordinary (trainable) one. */
export function quantizationOf(model: LanguageModel): QuantInfo | null { return infos.get(model) ?? null; }

/** Weight dtype of a model as eval-lm reports it: 'f32', or the quantize --dtype. */
export function modelDtype(model: LanguageModel): 'f32' | InferenceDtype { return infos.get(model)?.config.dtype ?? 'f32'; }

/** Refuse to train a quantized model: a one-line error naming its directory. */
export function assertTrainable(model: LanguageModel, dir?: string): void {
  const q = infos.get(model);
  if (!q) return;
  throw new Error(`${q.dir ?? dir ?? 'this model'} is a quantized (${q.config.dtype}) model: inference only; fine-tune the original fp32 model`);
}

/**
 * assertTrainable for a directory, from its config.json alone (before anything is loaded).
 * `advice` ends the message (what to do instead).
 */
export function assertTrainableDir(dir: string, advice = 'fine-tune the original fp32 model'): void {
  const path = join(dir, CONFIG_NAME);
  if (!existsSync(path)) return; // the loader reports a missing config
  const qc = readQuantizationConfig(readConfig(dir), path);
  if (qc) throw new Error(`${dir} is a quantized (${qc.dtype}) model: inference only; ${advice}`);
}

interface Site { name: string; layer: QuantizableLayer; N: number; K: number; layout: 'in_out' | 'out_in'; kind: 'linear' | 'token-embedding' | 'embedding' }

/** Every layer of the tree that can hold a QWeight, with its weight's HF name and shape. */
function sites(model: LanguageModel): Site[] {
  const tokenEmb = model.inputEmbeddings();
  const out: Site[] = [];
  for (const [path, m] of model.namedModules()) {
    if (!isQuantizable(m)) continue;
    const name = `${path}.weight`;
    if (m instanceof Embedding) {
      // (after setQuantized both are the same placeholder, so this holds on a quantized model too)
      const kind = m.weight === tokenEmb ? 'token-embedding' : 'embedding';
      out.push({ name, layer: m, N: m.num, K: m.dim, layout: 'out_in', kind });
    } else if (isLinearLayer(m as Module)) {
      const l = m as unknown as QuantizableLayer & { inFeatures: number; outFeatures: number; weightLayout: 'in_out' | 'out_in' };
      out.push({ name, layer: m, N: l.outFeatures, K: l.inFeatures, layout: l.weightLayout, kind: 'linear' });
    }
  }
  return out;
}

/** The format a tensor gets under `dtype` (see the policy at the top of this file); null = stays f32. */
function policy(s: Site, dtype: InferenceDtype): InferenceDtype | null {
  if (s.kind === 'embedding') return null;
  const want: InferenceDtype = s.kind === 'token-embedding' && dtype === 'q4_0' ? 'q8_0' : dtype;
  return want !== 'bf16' && s.K % QK !== 0 ? 'bf16' : want;
}

export interface QuantizeSummary {
  dtype: InferenceDtype;
  /** Tensors per format (f32 = parameters left as they were). */
  tensors: Record<WeightFormat, number>;
  /** Weight bytes (every parameter, scales included) before and after. */
  bytes_before: number;
  bytes_after: number;
  /** q tensors stored bf16 because their input size is not a multiple of 32. */
  bf16_fallbacks: string[];
}

/**
 * Quantize `model` in place to `dtype` under the per-tensor policy above: every linear layer and
 * the token embedding get a QWeight (their f32 storage is freed), the rest stays f32 and frozen.
 */
export function quantizeModel(model: LanguageModel, dtype: InferenceDtype): QuantizeSummary {
  if (!INFERENCE_DTYPES.includes(dtype)) throw new Error(`quantizeModel: dtype must be one of ${INFERENCE_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  const prev = infos.get(model);
  if (prev) throw new Error(`${prev.dir ?? 'this model'} is already quantized (${prev.config.dtype}); quantize the original fp32 model`);
  // Tuner wrappers (LoRA, bottleneck adapters) hide their base layer: merge them first.
  const wrapped = model.namedModules().find(([, m]) => (m as unknown as { isTunerWrapper?: boolean }).isTunerWrapper === true);
  if (wrapped) throw new Error(`quantizeModel: '${wrapped[0]}' carries an adapter; merge it into the model first (icld merge), then quantize`);
  const bytesBefore = 4 * model.numParameters();
  const tensors: Record<WeightFormat, number> = { f32: 0, bf16: 0, q8_0: 0, q4_0: 0 };
  const formats: Record<string, InferenceDtype> = {};
  const fallbacks: string[] = [];
  let qBytes = 0;
  for (const s of sites(model)) {
    const fmt = policy(s, dtype);
    if (!fmt) continue;
    if (fmt === 'bf16' && dtype !== 'bf16') fallbacks.push(s.name);
    const q = quantizeWeight(s.layer.inferenceWeight().data as Float32Array, s.N, s.K, s.layout, fmt);
    s.layer.setQuantized(q);
    formats[s.name] = fmt;
    tensors[fmt]++;
    qBytes += weightBytes(fmt, s.N, s.K);
  }
  finishInference(model, { quant_method: QUANT_METHOD, version: QUANT_VERSION, dtype, block_size: QK, formats }, null);
  tensors.f32 = model.namedParameters().length;
  return { dtype, tensors, bytes_before: bytesBefore, bytes_after: qBytes + 4 * model.numParameters(), bf16_fallbacks: fallbacks };
}

function finishInference(model: LanguageModel, config: QuantizationConfig, dir: string | null): void {
  model.requiresGrad(false);
  model.eval();
  infos.set(model, { config, dir });
}

// ---------------------------------------------------------------------------------------------
// config.json

/**
 * The quantization config of a parsed config.json, validated (one-line errors naming the file
 * and key), or null for an ordinary model directory.
 */
export function readQuantizationConfig(raw: Record<string, unknown>, cfgPath: string): QuantizationConfig | null {
  const hasQ = raw[QUANT_KEY] !== undefined && raw[QUANT_KEY] !== null, hasB = raw[BF16_QUANT_KEY] !== undefined;
  if (!hasQ && !hasB) return null;
  if (hasQ && hasB) throw new Error(`${cfgPath}: both ${QUANT_KEY} and ${BF16_QUANT_KEY} are set; keep one`);
  const key = hasQ ? QUANT_KEY : BF16_QUANT_KEY;
  const v = raw[key];
  const bad = (k: string, msg: string): never => { throw new Error(`${cfgPath}: ${key}${k ? `.${k}` : ''} ${msg}`); };
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad('', 'must be an object');
  const o = v as Record<string, unknown>;
  if (o.quant_method !== QUANT_METHOD) bad('quant_method', `is ${printable(JSON.stringify(o.quant_method) ?? 'missing')}; only "${QUANT_METHOD}" (icld quantize) is supported`);
  for (const k of Object.keys(o)) if (!['quant_method', 'version', 'dtype', 'block_size', 'formats'].includes(k)) bad(printable(k), 'is not a known key (quant_method, version, dtype, block_size, formats)');
  if (!Number.isInteger(o.version) || (o.version as number) < 1) bad('version', `must be a positive integer, got ${printable(JSON.stringify(o.version) ?? 'nothing')}`);
  if ((o.version as number) > QUANT_VERSION) bad('version', `is ${o.version}: written by a newer icld (this one reads version ${QUANT_VERSION})`);
  if (!INFERENCE_DTYPES.includes(o.dtype as InferenceDtype)) bad('dtype', `must be one of ${INFERENCE_DTYPES.join(', ')}, got ${printable(JSON.stringify(o.dtype) ?? 'nothing')}`);
  if (o.block_size !== QK) bad('block_size', `must be ${QK}, got ${printable(JSON.stringify(o.block_size) ?? 'nothing')}`);
  const f = o.formats;
  if (f === null || typeof f !== 'object' || Array.isArray(f)) bad('formats', 'must be an object of tensor name → format');
  for (const [n, fmt] of Object.entries(f as Record<string, unknown>)) {
    if (!INFERENCE_DTYPES.includes(fmt as InferenceDtype)) bad(`formats["${printable(n)}"]`, `is ${printable(JSON.stringify(fmt))}, not one of ${INFERENCE_DTYPES.join(', ')}`);
  }
  const formats = f as Record<string, InferenceDtype>;
  const anyQ = Object.values(formats).some((x) => x !== 'bf16');
  if (anyQ && key === BF16_QUANT_KEY) bad('formats', `lists q8_0/q4_0 tensors: those need ${QUANT_KEY}`);
  return { quant_method: QUANT_METHOD, version: o.version as number, dtype: o.dtype as InferenceDtype, block_size: QK, formats };
}

/** The config.json keys of a quantized model (torch_dtype and the quantization config). */
export function quantizedConfigKeys(model: LanguageModel): Record<string, unknown> {
  const q = infos.get(model);
  if (!q) throw new Error('quantizedConfigKeys: the model is not quantized');
  const anyQ = Object.values(q.config.formats).some((x) => x !== 'bf16');
  return { torch_dtype: anyQ ? 'float32' : 'bfloat16', [anyQ ? QUANT_KEY : BF16_QUANT_KEY]: q.config, [anyQ ? BF16_QUANT_KEY : QUANT_KEY]: undefined };
}

// ---------------------------------------------------------------------------------------------
// Weights

/** GPT-2 Conv1D keeps [in, out] on disk in bf16: bits of [N, K] ↔ [K, N]. */
function transposeBits(src: Uint16Array, rows: number, cols: number): Uint16Array {
  const out = new Uint16Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** The tensors of a quantized model as they go into model.safetensors (names per the layout above). */
export function quantizedStateDict(model: LanguageModel): Map<string, WriteTensor> {
  if (!infos.get(model)) throw new Error('quantizedStateDict: the model is not quantized');
  const out = new Map<string, WriteTensor>();
  for (const [n, p] of model.namedParameters()) out.set(n, { dtype: 'F32', shape: p.shape.slice(), data: p.f32 });
  for (const s of sites(model)) {
    const q = s.layer.quantized;
    if (!q) continue;
    if (q.format === 'bf16') {
      const bits = q.data as Uint16Array;
      out.set(s.name, s.layout === 'in_out' ? { dtype: 'BF16', shape: [s.K, s.N], data: transposeBits(bits, s.N, s.K) } : { dtype: 'BF16', shape: [s.N, s.K], data: bits });
    } else {
      const d = q.data as Int8Array | Uint8Array;
      out.set(`${s.name}.qweight`, { dtype: 'U8', shape: [s.N, q.format === 'q8_0' ? s.K : s.K / 2], data: new Uint8Array(d.buffer, d.byteOffset, d.byteLength) });
      out.set(`${s.name}.scales`, { dtype: 'F16', shape: [s.N, s.K / QK], data: q.scales! });
    }
  }
  return out;
}

/**
 * Write `model` (quantized) as `dir`/model.safetensors + config.json (`config` = the family's
 * keys; the quantization keys are added). One file, no shards.
 */
export function saveQuantized(model: LanguageModel, dir: string, config: Record<string, unknown>): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, 'model.safetensors'), quantizedStateDict(model), { format: 'pt' });
  const c: Record<string, unknown> = { ...config, ...quantizedConfigKeys(model) };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  writeConfig(dir, c);
}

/**
 * Fill a freshly built model (init: false) from a quantized directory: q tensors are read as bytes
 * into QWeights and bf16 ones as bits (no f32 copy of them is ever made), the rest as f32. Every
 * problem is a one-line error naming the file and tensor.
 */
export function loadQuantized(model: LanguageModel, dir: string, qc: QuantizationConfig): void {
  const cfgPath = join(dir, CONFIG_NAME);
  const heads = weightHeaders(dir);
  const used = new Set<string>();
  const files = new Map<string, SafetensorsFile>();
  const open = (file: string): SafetensorsFile => { let f = files.get(file); if (!f) { f = openSafetensors(file); files.set(file, f); } return f; };
  const anyFile = heads.size ? [...heads.values()][0].file : join(dir, 'model.safetensors');
  const need = (name: string, why: string) => {
    const h = heads.get(name);
    if (!h) throw new Error(`${anyFile}: tensor '${printable(name)}' is missing (${why})`);
    used.add(name);
    return h;
  };
  const shapeIs = (a: number[], b: number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
  try {
    const all = sites(model);
    const byName = new Map(all.map((s) => [s.name, s]));
    for (const n of Object.keys(qc.formats)) {
      if (!byName.has(n)) throw new Error(`${cfgPath}: ${QUANT_KEY}.formats names '${printable(n)}', which is not a quantizable weight of this ${model.modelType} model`);
    }
    noGrad(() => {
      for (const s of all) {
        const fmt = qc.formats[s.name];
        if (!fmt) continue;
        let q: QWeight;
        if (fmt === 'bf16') {
          const h = need(s.name, `${cfgPath} lists it as bf16`);
          const want = s.layout === 'in_out' ? [s.K, s.N] : [s.N, s.K];
          if (h.dtype !== 'BF16' || !shapeIs(h.shape, want)) throw new Error(`${h.file}: tensor '${s.name}' is ${h.dtype} [${h.shape.join(', ')}] but a bf16 ${s.N}×${s.K} weight is stored BF16 [${want.join(', ')}]`);
          const b = open(h.file).getBytes(s.name);
          const bits = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
          q = { format: 'bf16', N: s.N, K: s.K, layout: 'out_in', data: s.layout === 'in_out' ? transposeBits(bits, s.K, s.N) : bits, scales: null };
        } else {
          if (s.K % QK !== 0) throw new Error(`${cfgPath}: ${QUANT_KEY}.formats lists '${s.name}' as ${fmt}, but its input size ${s.K} is not a multiple of ${QK}`);
          const qn = `${s.name}.qweight`, sn = `${s.name}.scales`;
          const hq = need(qn, `${cfgPath} lists '${s.name}' as ${fmt}`), hs = need(sn, `${cfgPath} lists '${s.name}' as ${fmt}`);
          const wq = [s.N, fmt === 'q8_0' ? s.K : s.K / 2], ws = [s.N, s.K / QK];
          if (hq.dtype !== 'U8' || !shapeIs(hq.shape, wq)) throw new Error(`${hq.file}: tensor '${qn}' is ${hq.dtype} [${hq.shape.join(', ')}] but a ${fmt} ${s.N}×${s.K} weight needs U8 [${wq.join(', ')}]`);
          if (hs.dtype !== 'F16' || !shapeIs(hs.shape, ws)) throw new Error(`${hs.file}: tensor '${sn}' is ${hs.dtype} [${hs.shape.join(', ')}] but a ${fmt} ${s.N}×${s.K} weight needs F16 scales [${ws.join(', ')}]`);
          const bq = open(hq.file).getBytes(qn), bs = open(hs.file).getBytes(sn);
          const scales = new Uint16Array(bs.buffer, bs.byteOffset, bs.byteLength / 2);
          for (let i = 0; i < scales.length; i++) {
            if ((scales[i] & 0x7c00) === 0x7c00) throw new Error(`${hs.file}: tensor '${sn}' holds a non-finite scale at index ${i}`);
          }
          q = { format: fmt, N: s.N, K: s.K, layout: 'out_in', data: fmt === 'q8_0' ? new Int8Array(bq.buffer, bq.byteOffset, bq.byteLength) : bq, scales };
        }
        s.layer.setQuantized(q);
      }
      for (const [n, p] of model.namedParameters()) {
        const h = need(n, `the ${model.modelType} model needs it`);
        if (!shapeIs(h.shape, p.shape)) throw new Error(`${h.file}: tensor '${printable(n)}' has shape [${h.shape.join(', ')}], the model expects [${p.shape.join(', ')}]`);
        const d = open(h.file).get(n);
        for (let i = 0; i < d.length; i++) if (d[i] - d[i] !== 0) throw new Error(`${h.file}: tensor '${printable(n)}' holds a non-finite value (${d[i]}) at index ${i}`);
        p.f32.set(d);
      }
    });
    for (const [n, h] of heads) {
      if (used.has(n)) continue;
      const base = n.replace(/\.(qweight|scales)$/, '');
      const hint = base !== n && byName.has(base) ? ` (${cfgPath} does not list '${base}' as q8_0/q4_0)` : byName.has(n) ? ` (${cfgPath} lists it as ${qc.formats[n]})` : '';
      throw new Error(`${h.file}: tensor '${printable(n)}' is not part of this quantized ${model.modelType} model${hint}`);
    }
  } finally {
    for (const f of files.values()) f.close();
  }
  finishInference(model, qc, dir);
}

// ---------------------------------------------------------------------------------------------
// icld quantize

/** Files copied from the source directory unchanged (tokenizer, generation settings). */
const COPIED = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt', 'vocab.json', 'merges.txt', 'added_tokens.json', 'generation_config.json', 'chat_template.jinja'];

export interface QuantizeDirResult extends QuantizeSummary { model: string; out: string; file_bytes: number; files: string[] }

/**
 * `icld quantize`: load the fp32 model of `src`, quantize it to `dtype` and write the new
 * directory `out` (filled under a temp name, then renamed into place: a failure leaves nothing).
 * `out` may not be `src` nor an existing non-empty directory.
 */
export function quantizeDir(src: string, out: string, dtype: InferenceDtype): QuantizeDirResult {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new Error(`--model directory not found: ${src}`);
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new Error(`--out ${out} exists and is not a directory`);
    if (realpathSync(out) === realpathSync(src)) throw new Error(`--out ${out} is the --model directory: write the quantized model to a new directory`);
    if (readdirSync(out).length > 0) throw new Error(`--out ${out} is not empty: give a new or empty directory`);
  }
  const model = loadModel(src);
  const summary = quantizeModel(model, dtype);
  const parent = dirname(resolve(out));
  mkdirSync(parent, { recursive: true });
  const tmp = tempSibling(resolve(out), 'tmp');
  try {
    model.savePretrained(tmp);
    const files = ['config.json', 'model.safetensors'];
    for (const f of COPIED) {
      const p = join(src, f);
      if (existsSync(p) && statSync(p).isFile()) {
        // inside the temp dir: publishDir fsyncs the tree before it appears under its name
        copyFileSync(p, join(tmp, f));
        if (!files.includes(f)) files.push(f);
      }
    }
    if (existsSync(out)) rmdirSync(out); // empty (checked above)
    publishDir(tmp, resolve(out));
    const fileBytes = statSync(join(out, 'model.safetensors')).size;
    return { model: src, out, ...summary, file_bytes: fileBytes, files };
  } catch (e) {
    if (existsSync(tmp)) removeDirAtomic(tmp);
    throw e;
  } finally { model.dispose(); }
}

/** One line for the CLI. */
export function formatQuantizeSummary(r: QuantizeDirResult): string {
  const mb = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`;
  const counts = (['q4_0', 'q8_0', 'bf16', 'f32'] as const).filter((f) => r.tensors[f]).map((f) => `${r.tensors[f]} ${f}`).join(', ');
  return `wrote ${r.out} (${r.dtype}): ${counts} tensors; weights ${mb(r.bytes_before)} → ${mb(r.bytes_after)}, model.safetensors ${mb(r.file_bytes)}`
    + (r.bf16_fallbacks.length ? `; bf16 instead of ${r.dtype} (input size not a multiple of ${QK}): ${r.bf16_fallbacks.join(', ')}` : '');
}


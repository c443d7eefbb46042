// GPT-2 (decoder-only, pre-LN) with Hugging Face GPT2LMHeadModel's config keys and tensor
// names, so state dicts move between us and transformers unchanged. Linear weights use HF's
// Conv1D layout [in, out]; the LM head is tied to wte.

import * as O from '../engine/ops.js';
import { Tensor, Rng, noGrad } from '../engine/index.js';
import { Module, ModuleList, Linear, Embedding, LayerNorm, Dropout } from '../nn/module.js';
import { backend } from '../engine/backend/index.js';
import { CONFIG_NAME, readConfig, writeConfig, loadStateDict, weightHeaders, saveStateDict, writeJsonAtomic, entriesOf, sameTensor, type SaveOptions, type StateDictLike } from '../io/hf.js';
import { KVCache, checkVirtual, resizeEmbeddingAt, type ForwardOptions, type LanguageModel, type ModelDims } from './lm.js';
import { registerFamily } from './registry.js';
import { readQuantizationConfig, loadQuantized, quantizationOf, saveQuantized } from './quantize.js';
import { join } from 'node:path';
import { checkSchema, printable, type Schema } from '../io/json.js';
import { DecoderRuntime, type InferenceRuntime } from './runtime.js';
import { dequantizeWeight } from '../engine/quant.js';
import type { DecoderSpec } from '../engine/decoder.js';

/** Each model's fused runtime (GPT2.runtime), with the weight arrays it was built over. */
const runtimes = new WeakMap<GPT2, { rt: DecoderRuntime; arrays: unknown[] }>();

export interface GPT2Config {
  model_type: 'gpt2';
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner: number | null;
  activation_function: string;
  resid_pdrop: number;
  embd_pdrop: number;
  attn_pdrop: number;
  layer_norm_epsilon: number;
  initializer_range: number;
  bos_token_id: number;
  eos_token_id: number;
  tie_word_embeddings: boolean;
  [k: string]: unknown;
}

function gpt2Defaults(vocabSize: number): GPT2Config {
  return {
    model_type: 'gpt2', vocab_size: vocabSize, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, n_inner: null,
    activation_function: 'gelu_new', resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1,
    layer_norm_epsilon: 1e-5, initializer_range: 0.02, bos_token_id: vocabSize - 1,
    eos_token_id: vocabSize - 1, tie_word_embeddings: true,
    architectures: ['GPT2LMHeadModel'],
  };
}

export function gpt2Config(partial: Partial<GPT2Config> & Pick<GPT2Config, 'vocab_size'>): GPT2Config {
  const c: GPT2Config = { ...gpt2Defaults(partial.vocab_size), ...partial };
  validateGPT2Config(c);
  return c;
}
/** HF's GPT2Config defaults for a vocabulary size. */
gpt2Config.defaults = gpt2Defaults;

/**
 * Upper bounds on GPT-2 hyper-parameters. Far above any real GPT-2 (GPT-2 XL: 48 layers, 1600
 * wide, 50257 tokens) but low enough that a typo (n_layer 20000, vocab_size 2e7) fails at once
 * instead of allocating gigabytes first.
 */
export const GPT2_LIMITS = {
  vocab_size: 4_194_304, n_positions: 1_048_576, n_embd: 65_536, n_layer: 1024, n_head: 1024, n_inner: 1_048_576,
  /** elements in one weight tensor (a JS typed array must stay addressable) */
  tensor_elements: 2 ** 31 - 1,
} as const;

export const GPT2_ACTIVATIONS = ['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu'] as const;

const posInt = (max: number): Schema => ({ t: 'int', min: 1, max });
const pdrop: Schema = { t: 'number', min: 0, lt: 1 };
const tokenId: Schema = { t: 'oneOf', of: [{ t: 'int', min: 0, max: 2 ** 31 - 1 }, { t: 'null' }], what: 'a token id (a non-negative integer) or null' };

/** Types and ranges of the GPT-2 config keys a user may set for a fresh model (a config file's "model" section). */
export const GPT2_MODEL_KEYS: Readonly<Record<string, Schema>> = {
  model_type: { t: 'string', enum: ['gpt2'] },
  vocab_size: posInt(GPT2_LIMITS.vocab_size),
  n_positions: posInt(GPT2_LIMITS.n_positions),
  n_embd: posInt(GPT2_LIMITS.n_embd),
  n_layer: posInt(GPT2_LIMITS.n_layer),
  n_head: posInt(GPT2_LIMITS.n_head),
  n_inner: { t: 'oneOf', of: [posInt(GPT2_LIMITS.n_inner), { t: 'null' }], what: `null or an integer in [1, ${GPT2_LIMITS.n_inner}]` },
  activation_function: { t: 'string', enum: GPT2_ACTIVATIONS },
  resid_pdrop: pdrop, embd_pdrop: pdrop, attn_pdrop: pdrop,
  layer_norm_epsilon: { t: 'number', gt: 0, lt: 1 },
  initializer_range: { t: 'number', min: 0, max: 10 },
  bos_token_id: tokenId, eos_token_id: tokenId,
  tie_word_embeddings: { t: 'bool' },
  scale_attn_weights: { t: 'bool' },
  scale_attn_by_inverse_layer_idx: { t: 'bool' },
};

/** Keys we read from a model directory's config.json (any other HF key is tolerated and kept). */
const GPT2_DIR_KEYS: Record<string, Schema> = {
  ...GPT2_MODEL_KEYS,
  n_ctx: posInt(GPT2_LIMITS.n_positions),
  add_cross_attention: { t: 'bool' },
  reorder_and_upcast_attn: { t: 'bool' },
  architectures: { t: 'array', of: { t: 'string' } },
};

/**
 * Check every GPT-2 key we use: types, ranges, n_embd % n_head, token ids inside the vocab, and
 * the size of the largest weight tensor. Unknown keys are allowed (HF config.json files carry
 * many). `where` starts every message (a file path, or "config").
 */
export function validateGPT2Config(c: GPT2Config, where = 'config', prefix = ''): void {
  checkSchema(c, { t: 'object', keys: GPT2_DIR_KEYS, open: true, required: ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] }, where, prefix.replace(/\.$/, ''));
  const p = prefix;
  if (c.n_embd % c.n_head !== 0) throw new Error(`${where}: ${p}n_embd ${c.n_embd} is not divisible by ${p}n_head ${c.n_head}`);
  for (const k of ['bos_token_id', 'eos_token_id'] as const) {
    const id = c[k] as number | null | undefined;
    if (typeof id === 'number' && id >= c.vocab_size) throw new Error(`${where}: ${p}${k} ${id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  }
  if (c.tie_word_embeddings === false) throw new Error(`${where}: ${p}tie_word_embeddings false is not supported (GPT-2's LM head is tied to wte)`);
  if (c.add_cross_attention === true) throw new Error(`${where}: ${p}add_cross_attention true is not supported (decoder-only GPT-2)`);
  if (c.reorder_and_upcast_attn === true) throw new Error(`${where}: ${p}reorder_and_upcast_attn true is not supported`);
  const inner = c.n_inner ?? 4 * c.n_embd;
  for (const [what, n] of [['vocab_size × n_embd', c.vocab_size * c.n_embd], ['n_positions × n_embd', c.n_positions * c.n_embd], ['n_embd × 3·n_embd', 3 * c.n_embd * c.n_embd], ['n_embd × n_inner', c.n_embd * inner]] as const) {
    if (n > GPT2_LIMITS.tensor_elements) throw new Error(`${where}: a ${what} weight would have ${n} elements, more than the ${GPT2_LIMITS.tensor_elements} one tensor can hold`);
  }
}

/** Parameter names and shapes a GPT-2 of this config has, in namedParameters() order. */
export function gpt2ParameterShapes(c: GPT2Config): [string, number[]][] {
  const C = c.n_embd, inner = c.n_inner ?? 4 * C;
  const out: [string, number[]][] = [['transformer.wte.weight', [c.vocab_size, C]], ['transformer.wpe.weight', [c.n_positions, C]]];
  for (let i = 0; i < c.n_layer; i++) {
    const h = `transformer.h.${i}.`;
    out.push([`${h}ln_1.weight`, [C]], [`${h}ln_1.bias`, [C]],
      [`${h}attn.c_attn.weight`, [C, 3 * C]], [`${h}attn.c_attn.bias`, [3 * C]], [`${h}attn.c_proj.weight`, [C, C]], [`${h}attn.c_proj.bias`, [C]],
      [`${h}ln_2.weight`, [C]], [`${h}ln_2.bias`, [C]],
      [`${h}mlp.c_fc.weight`, [C, inner]], [`${h}mlp.c_fc.bias`, [inner]], [`${h}mlp.c_proj.weight`, [inner, C]], [`${h}mlp.c_proj.bias`, [C]]);
  }
  out.push(['transformer.ln_f.weight', [C]], ['transformer.ln_f.bias', [C]]);
  return out;
}

class Attention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid: Dropout;
  constructor(private readonly cfg: GPT2Config, rng: Rng, init: boolean) {
    super();
    const C = cfg.n_embd;
    this.c_attn = this.addModule('c_attn', new Linear(C, 3 * C, rng, { std: cfg.initializer_range, init }));
    this.c_proj = this.addModule('c_proj', new Linear(C, C, rng, { std: cfg.initializer_range / Math.sqrt(2 * cfg.n_layer), init }));
    this.resid = this.addModule('resid_dropout', new Dropout(cfg.resid_pdrop, rng));
    this.rng = rng;
  }
  private readonly rng: Rng;
  /**
   * `prefix`: this layer's virtual keys/values [B, H, P, D] placed before the real ones (prefix
   * tuning without a cache; with a cache they are already at its front).
   */
  forward(x: Tensor, keyMask: Tensor | undefined, cache: KVCache | undefined, layer: number, prefix?: { k: Tensor; v: Tensor }): Tensor {
    const [B, T, C] = x.shape, H = this.cfg.n_head, D = C / H;
    const qkv = this.c_attn.forward(x);
    // HF GPT2Config: scores divided by sqrt(D) if scale_attn_weights (default true) and by
    // layer_idx + 1 if scale_attn_by_inverse_layer_idx (default false).
    const scale = (this.cfg.scale_attn_weights === false ? 1 : 1 / Math.sqrt(D)) / (this.cfg.scale_attn_by_inverse_layer_idx === true ? layer + 1 : 1);
    let a: Tensor;
    if (!cache && !prefix) {
      // The fast path: q/k/v read straight from the fused projection.
      a = O.attentionPacked(qkv, H, { causal: true, keyMask, dropout: this.cfg.attn_pdrop, training: this.training, rng: this.rng, scale });
    } else {
      const heads = O.permute(O.reshape(qkv, [B, T, 3, H, D]), [2, 0, 3, 1, 4]);
      const [q, k, v] = O.split(heads, 3, 0).map((t) => O.squeeze(t, 0));
      if (!cache) {
        // Prefix keys in front: the causal mask is aligned to the end of the keys, so every real
        // query sees all P prefix keys and the real keys up to itself.
        a = O.attention(q, O.concat([prefix!.k, k], 2), O.concat([prefix!.v, v], 2),
          { causal: true, keyMask, dropout: this.cfg.attn_pdrop, training: this.training, rng: this.rng, scale });
      } else {
        // Incremental decoding: append this step's k/v to the cache, attend over everything so far.
        const past = cache.length, total = past + T;
        if (total > cache.maxT) throw new Error(`KV cache full: ${total} positions > ${cache.maxT}`);
        const kc = cache.k[layer], vc = cache.v[layer];
        noGrad(() => {
          const be = backend(), off = past * kc.strides[2];
          be.copy(k.shape, k.f32, k.offset, k.strides, kc.f32, off, kc.strides);
          be.copy(v.shape, v.f32, v.offset, v.strides, vc.f32, off, vc.strides);
        });
        a = O.attention(q, O.narrow(kc, 2, 0, total), O.narrow(vc, 2, 0, total), { causal: true, keyMask, training: false, scale });
      }
      a = O.reshape(O.transpose(a, 1, 2), [B, T, C]);
    }
    return this.resid.forward(this.c_proj.forward(a));
  }
}

class MLP extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  readonly drop: Dropout;
  constructor(private readonly cfg: GPT2Config, rng: Rng, init: boolean) {
    super();
    const C = cfg.n_embd, inner = cfg.n_inner ?? 4 * C;
    this.c_fc = this.addModule('c_fc', new Linear(C, inner, rng, { std: cfg.initializer_range, init }));
    this.c_proj = this.addModule('c_proj', new Linear(inner, C, rng, { std: cfg.initializer_range / Math.sqrt(2 * cfg.n_layer), init }));
    this.drop = this.addModule('dropout', new Dropout(cfg.resid_pdrop, rng));
  }
  forward(x: Tensor): Tensor {
    const h = this.c_fc.forward(x);
    const act = this.cfg.activation_function;
    const a = act === 'relu' ? O.relu(h) : O.gelu(h, act === 'gelu' ? 'none' : 'tanh');
    return this.drop.forward(this.c_proj.forward(a));
  }
}

class Block extends Module {
  readonly ln_1: LayerNorm;
  readonly attn: Attention;
  readonly ln_2: LayerNorm;
  readonly mlp: MLP;
  constructor(cfg: GPT2Config, rng: Rng, init: boolean) {
    super();
    this.ln_1 = this.addModule('ln_1', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
    this.attn = this.addModule('attn', new Attention(cfg, rng, init));
    this.ln_2 = this.addModule('ln_2', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
    this.mlp = this.addModule('mlp', new MLP(cfg, rng, init));
  }
  forward(x: Tensor, keyMask: Tensor | undefined, cache: KVCache | undefined, layer: number, prefix?: { k: Tensor; v: Tensor }): Tensor {
    x = O.add(x, this.attn.forward(this.ln_1.forward(x), keyMask, cache, layer, prefix));
    return O.add(x, this.mlp.forward(this.ln_2.forward(x)));
  }
}

class GPT2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<Block>;
  readonly ln_f: LayerNorm;
  constructor(cfg: GPT2Config, rng: Rng, init: boolean) {
    super();
    this.wte = this.addModule('wte', new Embedding(cfg.vocab_size, cfg.n_embd, rng, cfg.initializer_range, init));
    this.wpe = this.addModule('wpe', new Embedding(cfg.n_positions, cfg.n_embd, rng, cfg.initializer_range, init));
    this.drop = this.addModule('drop', new Dropout(cfg.embd_pdrop, rng));
    this.h = this.addModule('h', new ModuleList<Block>());
    for (let i = 0; i < cfg.n_layer; i++) this.h.add(new Block(cfg, rng, init));
    this.ln_f = this.addModule('ln_f', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
  }
}

export { KVCache, type ForwardOptions };

export class GPT2 extends Module implements LanguageModel {
  readonly kind = 'causal' as const;
  readonly modelType = 'gpt2';
  readonly config: GPT2Config;
  readonly transformer: GPT2Model;
  /** Drives every dropout mask (its state is saved in checkpoints for exact resume). */
  readonly rng: Rng;

  /**
   * `init: false` leaves the weights zero (LayerNorms at 1/0) without drawing from the seed: for
   * models whose weights are loaded right after (fromPretrained), so nothing is initialised twice.
   */
  constructor(config: GPT2Config, seed = 0, opts: { init?: boolean } = {}) {
    super();
    validateGPT2Config(config);
    this.config = config;
    this.rng = new Rng(seed);
    this.transformer = this.addModule('transformer', new GPT2Model(config, this.rng, opts.init ?? true));
  }

  /**
   * Load a Hugging Face GPT-2 directory: config.json + model.safetensors (or shards). Accepts
   * transformers' save_pretrained layout and the original hub layout (no `transformer.` prefix,
   * attn.bias buffers, tied lm_head).
   */
  static fromPretrained(dir: string, rawConfig?: Record<string, unknown>): GPT2 {
    const cfgPath = join(dir, CONFIG_NAME);
    const raw = (rawConfig ?? readConfig(dir)) as Partial<GPT2Config>;
    if (raw.model_type !== undefined && raw.model_type !== 'gpt2') throw new Error(`${cfgPath}: model_type is ${JSON.stringify(raw.model_type)}, expected 'gpt2'`);
    if (raw.vocab_size === undefined) throw new Error(`${cfgPath}: vocab_size is missing`);
    const cfg = { ...gpt2Config.defaults(raw.vocab_size), ...raw, model_type: 'gpt2' } as GPT2Config;
    validateGPT2Config(cfg, cfgPath);
    const qc = readQuantizationConfig(raw as Record<string, unknown>, cfgPath);
    if (qc) {
      // icld quantize's layout (quantize.ts): canonical names, q tensors read as bytes.
      const model = new GPT2(cfg, 0, { init: false });
      loadQuantized(model, dir, qc);
      return model;
    }
    // Compare the weight files' headers with what config.json implies before allocating anything.
    checkGpt2Weights(dir, cfg);
    const sd = normalizeGpt2StateDict(loadStateDict(dir));
    const model = new GPT2(cfg, 0, { init: false });
    model.loadStateDict(sd, dir);
    return model;
  }

  /** Write config.json, generation_config.json and model.safetensors in transformers' layout. */
  savePretrained(dir: string, opts: SaveOptions = {}): void {
    if (quantizationOf(this)) {
      // Quantized weights keep their formats (opts.dtype does not apply); see quantize.ts for the layout.
      saveQuantized(this, dir, { ...this.config, architectures: ['GPT2LMHeadModel'] });
      writeJsonAtomic(join(dir, 'generation_config.json'), { bos_token_id: this.config.bos_token_id, eos_token_id: this.config.eos_token_id });
      return;
    }
    const sd = new Map(this.namedParameters().map(([n, p]) => [n, { shape: p.shape.slice(), data: p.f32 }]));
    saveStateDict(dir, gpt2StateDictForSave(sd), opts);
    writeConfig(dir, { ...this.config, architectures: ['GPT2LMHeadModel'], torch_dtype: opts.dtype === 'F16' ? 'float16' : opts.dtype === 'BF16' ? 'bfloat16' : 'float32' });
    writeJsonAtomic(join(dir, 'generation_config.json'), { bos_token_id: this.config.bos_token_id, eos_token_id: this.config.eos_token_id });
  }

  get dims(): ModelDims { return { layers: this.config.n_layer, heads: this.config.n_head, hidden: this.config.n_embd }; }
  inputEmbeddings(): Tensor { return this.transformer.wte.weight; }
  /** See LanguageModel.resizeTokenEmbeddings: wte (the tied head) gets a new [n, C] parameter; old rows unchanged. */
  resizeTokenEmbeddings(n: number): void {
    const c = this.config, V = c.vocab_size, C = c.n_embd;
    if (!Number.isInteger(n) || n < 1 || n > GPT2_LIMITS.vocab_size) throw new Error(`resizeTokenEmbeddings: the new vocabulary size must be an integer in [1, ${GPT2_LIMITS.vocab_size}], got ${n}`);
    if (n * C > GPT2_LIMITS.tensor_elements) throw new Error(`resizeTokenEmbeddings: a ${n} × ${C} embedding would exceed ${GPT2_LIMITS.tensor_elements} elements`);
    for (const k of ['bos_token_id', 'eos_token_id'] as const) {
      const id = c[k] as number | null | undefined;
      if (typeof id === 'number' && id >= n) throw new Error(`resizeTokenEmbeddings(${n}): ${k} ${id} would fall outside the vocabulary`);
    }
    if (n === V) return;
    resizeEmbeddingAt(this, 'transformer.wte', n, this.rng, c.initializer_range);
    c.vocab_size = n;
  }

  get vocabSize(): number { return this.config.vocab_size; }
  get maxPositions(): number { return this.config.n_positions; }
  get eosTokenId(): number | null {
    const e = this.config.eos_token_id as number | null | undefined;
    return typeof e === 'number' && e < this.config.vocab_size ? e : null;
  }

  /** Final hidden states [B, T, C] (the real tokens' rows; virtual tokens per opts.virtual). */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor { return this.body(ids, opts, false); }

  /**
   * The model body. `withLastVirtual`: prompt tuning adds virtual rows; also return the last of
   * them before the real rows ([B, T+1, C]) — in PEFT its logits predict the first real token.
   */
  private body(ids: Tensor, opts: ForwardOptions, withLastVirtual: boolean): Tensor {
    if (ids.dtype !== 'int32' || ids.ndim !== 2) throw new Error(`GPT2: input ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(', ')}]`);
    const [B, T] = ids.shape;
    const { n_positions: maxPos, n_embd: C, n_head: H } = this.config;
    const cache = opts.cache, v = opts.virtual;
    const P = checkVirtual(v, this.dims, 'GPT2');
    const past = cache?.length ?? 0;
    if (cache && past === 0) cache.virtual = 0;
    // Virtual positions in effect (pv) and those this call adds (add: not yet in the cache).
    if (cache && past > 0 && P > 0 && cache.virtual !== P) throw new Error(`GPT2: the KV cache holds ${cache.virtual} virtual positions but virtual.length is ${P}`);
    const pv = cache && past > 0 ? cache.virtual : P;
    const add = cache && past > 0 ? 0 : P;
    const prompt = add > 0 && v!.embeds !== undefined;
    const first = past + add; // position of the first real token
    if (first + T > maxPos) throw new Error(`GPT2: sequence of ${first + T} positions${pv ? ` (${pv} virtual)` : ''} exceeds n_positions ${maxPos}`);
    const pos = O.empty([B, T], 'int32', false);
    if (opts.positionIds) {
      const given = opts.positionIds;
      if (given.shape.join(',') !== [B, T].join(',') || given.dtype !== 'int32') throw new Error(`GPT2: positionIds must be int32 [${B}, ${T}] like the ids, got ${given.dtype} [${given.shape.join(', ')}]`);
      const src = O.contiguousCopy(given).i32;
      for (let i = 0; i < B * T; i++) pos.i32[i] = src[i] + pv;
      if (pv) for (let i = 0; i < B * T; i++) if (pos.i32[i] >= maxPos) throw new Error(`GPT2: position id ${pos.i32[i]} (${pv} virtual + ${src[i]}) exceeds n_positions ${maxPos}`);
    } else {
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) pos.i32[b * T + t] = first + t;
    }
    const tr = this.transformer;
    let keyMask = opts.attentionMask;
    if (keyMask) {
      // The user's mask covers real tokens only (past ones too with a cache); virtual ones are always attended.
      const real = (cache ? past - (past > 0 ? cache.virtual : 0) : 0) + T;
      if (keyMask.ndim !== 2 || keyMask.shape[0] !== B || keyMask.shape[1] !== real) {
        throw new Error(`GPT2: attentionMask must be [${B}, ${real}] (${cache ? 'past + new' : 'the'} real tokens${pv ? `, without the ${pv} virtual ones` : ''}), got [${keyMask.shape.join(', ')}]`);
      }
      if (keyMask.dtype !== 'float32') keyMask = O.tensor(keyMask.toArray(), keyMask.shape);
      if (pv) keyMask = O.concat([O.ones([B, pv]), keyMask], 1);
    }
    let x = tr.wte.forward(ids);
    let rows = T;
    if (prompt) {
      // PEFT's inputs_embeds: the virtual embeddings before the tokens', at positions 0..P-1.
      x = O.concat([O.expand(O.unsqueeze(v!.embeds!, 0), [B, P, C]), x], 1);
      const vpos = O.empty([B, P], 'int32', false);
      for (let b = 0; b < B; b++) for (let t = 0; t < P; t++) vpos.i32[b * P + t] = t;
      x = O.add(x, tr.wpe.forward(O.concat([vpos, pos], 1)));
      rows = P + T;
    } else {
      x = O.add(x, tr.wpe.forward(pos));
    }
    x = tr.drop.forward(x);
    let prefix: ((l: number) => { k: Tensor; v: Tensor }) | undefined;
    if (add > 0 && !prompt) {
      const D = C / H;
      if (cache) {
        // As if cached: the prefix keys/values fill the first P slots of every batch row.
        noGrad(() => {
          const be = backend();
          for (let l = 0; l < this.config.n_layer; l++) {
            for (const [src, dst] of [[v!.keys![l], cache.k[l]], [v!.values![l], cache.v[l]]] as const) {
              if (P > cache.maxT) throw new Error(`KV cache full: ${P} virtual positions > ${cache.maxT}`);
              for (let b = 0; b < B; b++) be.copy(src.shape, src.f32, src.offset, src.strides, dst.f32, b * dst.strides[0], dst.strides.slice(1));
            }
          }
        });
        cache.length = P;
        cache.virtual = P;
      } else {
        const rep = (t: Tensor): Tensor => O.expand(O.unsqueeze(t, 0), [B, H, P, D]);
        prefix = (l) => ({ k: rep(v!.keys![l]), v: rep(v!.values![l]) });
      }
    }
    tr.h.items.forEach((blk, i) => { x = blk.forward(x, keyMask, cache, i, prefix?.(i)); });
    if (cache) {
      cache.length += rows;
      if (prompt) cache.virtual = P;
    }
    if (prompt) x = withLastVirtual ? O.narrow(x, 1, P - 1, T + 1) : O.narrow(x, 1, P, T);
    return tr.ln_f.forward(x);
  }

  /** Logits [B, T, V] through the tied LM head. */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.lmHead(this.hidden(ids, opts));
  }

  lmHead(h: Tensor): Tensor {
    const wte = this.transformer.wte;
    return wte.quantized ? O.qlinear(h, wte.quantized, null) : O.matmul(h, O.transpose(wte.weight));
  }

  /**
   * Causal LM loss as in HF: logits at position t predict labels[t+1]; label -100 is ignored.
   * labels default to ids.
   */
  loss(ids: Tensor, labels?: Tensor, opts: ForwardOptions = {}): { loss: Tensor; logits: Tensor } {
    const lab = labels ?? ids;
    const [B, T] = ids.shape;
    if (lab.shape.join(',') !== ids.shape.join(',')) throw new Error(`GPT2: labels [${lab.shape.join(', ')}] must match ids [${ids.shape.join(', ')}]`);
    const src = O.contiguousCopy(lab).i32;
    // Prompt tuning as PEFT runs it: the last virtual row's logits predict labels[0].
    const lead = opts.virtual?.embeds !== undefined && !(opts.cache && opts.cache.length > 0) ? 1 : 0;
    const all = this.lmHead(this.body(ids, opts, lead === 1));
    const R = T + lead;
    const shifted = O.empty([B, R], 'int32', false), dst = shifted.i32;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < R - 1; t++) dst[b * R + t] = src[b * T + t + 1 - lead];
      dst[b * R + R - 1] = -100;
    }
    const loss = O.crossEntropy(all, shifted);
    return { loss, logits: lead ? O.contiguousCopy(O.narrow(all, 1, 1, T)) : all };
  }

  /**
   * The fused inference runtime (src/models/runtime.ts) over this model's weights, in their
   * inference formats (Linear/Embedding.inferenceWeight(): quantized checkpoints run quantized).
   * null when the model cannot use it: training mode, any layer replaced by an adapter wrapper
   * (LoRA, bottleneck adapters), a native addon built without the decoder — callers fall back to
   * forward() with a KVCache.
   * One runtime per model is kept and handed out again while it is large enough and its weights
   * are the same arrays; a request for more slots or positions builds a larger one (the old one is
   * freed once its last slot is released). maxT is rounded up to a power of two (≥ 64, at most
   * n_positions) so that growing requests rebuild rarely.
   */
  runtime(opts: { maxSeqs: number; maxT: number }): InferenceRuntime | null {
    if (this.training || (backend() as { hasDecoder?: boolean }).hasDecoder === false) return null;
    const c = this.config, tr = this.transformer;
    if (!(Number.isInteger(opts.maxSeqs) && opts.maxSeqs >= 1)) throw new Error(`GPT2.runtime: maxSeqs must be a positive integer, got ${opts.maxSeqs}`);
    if (!(Number.isInteger(opts.maxT) && opts.maxT >= 1)) throw new Error(`GPT2.runtime: maxT must be a positive integer, got ${opts.maxT}`);
    const plain = (m: unknown): m is Linear => m instanceof Linear && m.constructor === Linear && m.bias !== null;
    const norm = (m: unknown): m is LayerNorm => m instanceof LayerNorm && m.constructor === LayerNorm;
    if (!(tr.wte instanceof Embedding && tr.wte.constructor === Embedding && tr.wpe instanceof Embedding && norm(tr.ln_f))) return null;
    for (const b of tr.h.items) {
      if (!(plain(b.attn.c_attn) && plain(b.attn.c_proj) && plain(b.mlp.c_fc) && plain(b.mlp.c_proj) && norm(b.ln_1) && norm(b.ln_2))) return null;
    }
    const act = c.activation_function === 'relu' ? 'relu' : c.activation_function === 'gelu' ? 'gelu_erf' : 'gelu_tanh';
    const H = c.n_head, D = c.n_embd / H;
    const wpe = tr.wpe.quantized ? dequantizeWeight(tr.wpe.quantized) : tr.wpe.weight.f32;
    const f = (t: Tensor): Float32Array => t.f32;
    const spec: DecoderSpec = {
      hidden: c.n_embd, heads: H, inner: c.n_inner ?? 4 * c.n_embd, vocab: c.vocab_size, positions: c.n_positions,
      eps: c.layer_norm_epsilon, activation: act,
      attnScale: tr.h.items.map((_, l) => (c.scale_attn_weights === false ? 1 : 1 / Math.sqrt(D)) / (c.scale_attn_by_inverse_layer_idx === true ? l + 1 : 1)),
      wte: tr.wte.inferenceWeight(), wpe,
      layers: tr.h.items.map((b) => ({
        ln1Weight: f(b.ln_1.weight), ln1Bias: f(b.ln_1.bias),
        qkv: b.attn.c_attn.inferenceWeight(), qkvBias: f(b.attn.c_attn.bias!),
        proj: b.attn.c_proj.inferenceWeight(), projBias: f(b.attn.c_proj.bias!),
        ln2Weight: f(b.ln_2.weight), ln2Bias: f(b.ln_2.bias),
        fc: b.mlp.c_fc.inferenceWeight(), fcBias: f(b.mlp.c_fc.bias!),
        fcProj: b.mlp.c_proj.inferenceWeight(), fcProjBias: f(b.mlp.c_proj.bias!),
      })),
      lnfWeight: f(tr.ln_f.weight), lnfBias: f(tr.ln_f.bias),
      maxSeqs: opts.maxSeqs, maxT: Math.min(c.n_positions, opts.maxT),
    };
    // What the decoder points into: a new array anywhere (a resized vocabulary, a quantized or
    // reloaded layer) means the cached runtime is stale. wpe from a quantized table is a fresh
    // copy every time, so its source array stands for it.
    const arrays: unknown[] = [spec.wte.data, tr.wpe.quantized ? tr.wpe.quantized.data : wpe, spec.lnfWeight, spec.lnfBias];
    for (const l of spec.layers) arrays.push(l.ln1Weight, l.ln1Bias, l.qkv.data, l.qkvBias, l.proj.data, l.projBias, l.ln2Weight, l.ln2Bias, l.fc.data, l.fcBias, l.fcProj.data, l.fcProjBias);
    const old = runtimes.get(this);
    const same = old !== undefined && !old.rt.disposed && old.arrays.length === arrays.length && old.arrays.every((a, i) => a === arrays[i]);
    if (same && old.rt.maxSeqs >= spec.maxSeqs && old.rt.maxT >= spec.maxT) return old.rt;
    if (old && !old.rt.disposed) {
      old.rt.retired = true;
      if (old.rt.active === 0) old.rt.dispose();
    }
    let T = 64;
    while (T < spec.maxT) T *= 2;
    spec.maxT = Math.min(c.n_positions, T);
    if (same) { spec.maxSeqs = Math.max(spec.maxSeqs, old.rt.maxSeqs); spec.maxT = Math.max(spec.maxT, old.rt.maxT); }
    const rt = new DecoderRuntime(spec);
    runtimes.set(this, { rt, arrays });
    return rt;
  }

  newCache(batch: number, maxT = this.config.n_positions): KVCache {
    const c = this.config;
    return new KVCache(batch, c.n_layer, c.n_head, maxT, c.n_embd / c.n_head);
  }
}

// Hugging Face names (hub layout and GPT2LMHeadModel's)

export const GPT2_BUFFER_RE = /^(transformer\.)?h\.\d+\.(attn|crossattention)\.(bias|masked_bias)$/;

/**
 * Map a GPT-2 state dict in any of the layouts found in the wild — the original hub layout
 * (`wte.weight`, `h.0.attn.c_attn.weight`, causal-mask buffers `h.N.attn.bias`/`masked_bias`) or
 * GPT2LMHeadModel's (`transformer.*`, optional tied `lm_head.weight`) — to our canonical names
 * `transformer.*`, dropping the buffers and a tied `lm_head.weight`. An untied head throws.
 */
export function normalizeGpt2StateDict<T extends { shape: number[]; data: ArrayLike<number> }>(sd: StateDictLike<T>): Map<string, T> {
  const out = new Map<string, T>();
  let lmHead: T | undefined;
  for (const [name, t] of entriesOf(sd)) {
    if (GPT2_BUFFER_RE.test(name)) continue;
    if (name === 'lm_head.weight') { lmHead = t; continue; }
    const canon = name.startsWith('transformer.') ? name : `transformer.${name}`;
    if (out.has(canon)) throw new Error(`GPT-2 state dict has both '${name}' and another tensor mapping to '${canon}'`);
    out.set(canon, t);
  }
  if (lmHead) {
    const wte = out.get('transformer.wte.weight');
    if (!wte) throw new Error(`GPT-2 state dict has lm_head.weight but no wte.weight: untied LM heads are not supported`);
    if (!sameTensor(lmHead, wte)) {
      throw new Error(`GPT-2 state dict has an lm_head.weight that differs from transformer.wte.weight: untied LM heads are not supported`);
    }
  }
  return out;
}

/**
 * The tensors transformers' GPT2LMHeadModel.save_pretrained(safe_serialization=True) writes:
 * `transformer.*` parameters only (no mask buffers, no tied lm_head.weight).
 */
export function gpt2StateDictForSave<T extends { shape: number[]; data: ArrayLike<number> }>(sd: StateDictLike<T>): Map<string, T> {
  return normalizeGpt2StateDict(sd);
}

const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The weight files of `dir` must hold exactly the tensors `cfg` implies, with those shapes (hub or
 * transformers naming; mask buffers and a tied lm_head.weight allowed). Reads headers only; the
 * first mismatch is an error naming the tensor and its file.
 */
export function checkGpt2Weights(dir: string, cfg: GPT2Config): void {
  const heads = weightHeaders(dir);
  const cfgPath = join(dir, CONFIG_NAME);
  const implied = `${cfgPath} (n_layer ${cfg.n_layer}, n_embd ${cfg.n_embd}, vocab_size ${cfg.vocab_size}, n_positions ${cfg.n_positions})`;
  const found = new Map<string, { name: string; shape: number[]; file: string }>();
  let lmHead: { shape: number[]; file: string } | undefined;
  for (const [name, h] of heads) {
    if (GPT2_BUFFER_RE.test(name)) continue;
    if (name === 'lm_head.weight') { lmHead = h; continue; }
    const canon = name.startsWith('transformer.') ? name : `transformer.${name}`;
    const twin = found.get(canon);
    if (twin) throw new Error(`${h.file}: tensors '${printable(twin.name)}' and '${printable(name)}' are both '${printable(canon)}'`);
    found.set(canon, { name, ...h });
  }
  const expected = gpt2ParameterShapes(cfg);
  for (const [name, shape] of expected) {
    const h = found.get(name);
    if (!h) throw new Error(`${heads.size ? [...heads.values()][0].file : dir}: tensor '${name}' is missing, but ${implied} needs it`);
    if (!sameShape(h.shape, shape)) throw new Error(`${h.file}: tensor '${h.name}' has shape [${h.shape.join(', ')}] but ${implied} implies [${shape.join(', ')}]`);
  }
  if (found.size > expected.length) {
    const want = new Set(expected.map(([n]) => n));
    const extra = [...found.values()].find((h) => !want.has(h.name.startsWith('transformer.') ? h.name : `transformer.${h.name}`))!;
    throw new Error(`${extra.file}: tensor '${printable(extra.name)}' is not part of the GPT-2 that ${implied} describes`);
  }
  if (lmHead && !sameShape(lmHead.shape, [cfg.vocab_size, cfg.n_embd])) {
    throw new Error(`${lmHead.file}: tensor 'lm_head.weight' has shape [${lmHead.shape.join(', ')}] but ${implied} implies [${cfg.vocab_size}, ${cfg.n_embd}]`);
  }
}

registerFamily({
  modelType: 'gpt2', kind: 'causal', architecture: 'GPT2LMHeadModel',
  modelKeys: GPT2_MODEL_KEYS,
  sizeKeys: ['n_embd', 'n_layer', 'n_head', 'n_positions'],
  dropoutKeys: ['resid_pdrop', 'embd_pdrop', 'attn_pdrop'],
  config: (partial, where = 'config', prefix = '') => {
    const c = { ...gpt2Defaults(partial.vocab_size), ...partial, model_type: 'gpt2' } as GPT2Config;
    validateGPT2Config(c, where, prefix);
    return c;
  },
  create: (config, seed) => new GPT2(config as GPT2Config, seed),
  fromPretrained: (dir, raw) => GPT2.fromPretrained(dir, raw),
  looksLike: (raw) => 'n_embd' in raw && 'n_layer' in raw,
  tuning: {
    peftTaskType: 'CAUSAL_LM',
    loraTargets: ['c_attn'],
    adapterTargets: { houlsby: ['attn.c_proj', 'mlp.c_proj'], pfeiffer: ['mlp.c_proj'] },
    embeddingModule: 'transformer.wte',
  },
  // ChatML, as TRL's setup_chat_format writes it for models without a chat format.
  chat: {
    template: "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    specialTokens: ['<|im_start|>', '<|im_end|>'],
  },
});

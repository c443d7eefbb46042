// GPT-2 (decoder-only, pre-LN) with Hugging Face GPT2LMHeadModel's config keys and tensor
// names, so state dicts move between us and transformers unchanged. Linear weights use HF's
// Conv1D layout [in, out]; the LM head is tied to wte.

import * as O from '../engine/ops.js';
import { Tensor, Rng, noGrad, empty } from '../engine/index.js';
import { Module, ModuleList, Linear, Embedding, LayerNorm, Dropout } from '../nn/module.js';
import { backend } from '../engine/backend/index.js';
import { readConfig, writeConfig, loadStateDict, saveStateDict, normalizeGpt2StateDict, gpt2StateDictForSave, writeJsonAtomic, type SaveOptions } from '../io/hf.js';
import { join } from 'node:path';

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

export function gpt2Config(partial: Partial<GPT2Config> & Pick<GPT2Config, 'vocab_size'>): GPT2Config {
  const c: GPT2Config = {
    model_type: 'gpt2', n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12, n_inner: null,
    activation_function: 'gelu_new', resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1,
    layer_norm_epsilon: 1e-5, initializer_range: 0.02, bos_token_id: partial.vocab_size - 1,
    eos_token_id: partial.vocab_size - 1, tie_word_embeddings: true,
    architectures: ['GPT2LMHeadModel'],
    ...partial,
  };
  validateGPT2Config(c);
  return c;
}

export function validateGPT2Config(c: GPT2Config, where = 'config'): void {
  for (const k of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const) {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`${where}: ${k} must be a positive integer, got ${JSON.stringify(c[k])}`);
  }
  if (c.n_embd % c.n_head !== 0) throw new Error(`${where}: n_embd ${c.n_embd} is not divisible by n_head ${c.n_head}`);
  const act = c.activation_function;
  if (!['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu'].includes(act)) throw new Error(`${where}: activation_function '${act}' is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu)`);
}

/** Per-layer key/value buffers for incremental decoding: [B, H, maxT, D] each. */
export class KVCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  length = 0;
  constructor(readonly batch: number, readonly layers: number, readonly heads: number, readonly maxT: number, readonly headDim: number) {
    for (let i = 0; i < layers; i++) {
      this.k.push(empty([batch, heads, maxT, headDim]).keep());
      this.v.push(empty([batch, heads, maxT, headDim]).keep());
    }
  }
  dispose(): void { for (const t of [...this.k, ...this.v]) t.dispose(); }
}

class Attention extends Module {
  readonly c_attn: Linear;
  readonly c_proj: Linear;
  readonly resid: Dropout;
  constructor(private readonly cfg: GPT2Config, rng: Rng) {
    super();
    const C = cfg.n_embd;
    this.c_attn = this.addModule('c_attn', new Linear(C, 3 * C, rng, { std: cfg.initializer_range }));
    this.c_proj = this.addModule('c_proj', new Linear(C, C, rng, { std: cfg.initializer_range / Math.sqrt(2 * cfg.n_layer) }));
    this.resid = this.addModule('resid_dropout', new Dropout(cfg.resid_pdrop, rng));
    this.rng = rng;
  }
  private readonly rng: Rng;
  forward(x: Tensor, keyMask: Tensor | undefined, cache: KVCache | undefined, layer: number): Tensor {
    const [B, T, C] = x.shape, H = this.cfg.n_head, D = C / H;
    const qkv = this.c_attn.forward(x);
    // HF GPT2Config: scores divided by sqrt(D) if scale_attn_weights (default true) and by
    // layer_idx + 1 if scale_attn_by_inverse_layer_idx (default false).
    const scale = (this.cfg.scale_attn_weights === false ? 1 : 1 / Math.sqrt(D)) / (this.cfg.scale_attn_by_inverse_layer_idx === true ? layer + 1 : 1);
    let a: Tensor;
    if (!cache) {
      a = O.attentionPacked(qkv, H, { causal: true, keyMask, dropout: this.cfg.attn_pdrop, training: this.training, rng: this.rng, scale });
    } else {
      // Incremental decoding: append this step's k/v to the cache, attend over everything so far.
      const past = cache.length, total = past + T;
      if (total > cache.maxT) throw new Error(`KV cache full: ${total} positions > ${cache.maxT}`);
      const heads = O.permute(O.reshape(qkv, [B, T, 3, H, D]), [2, 0, 3, 1, 4]);
      const [q, k, v] = O.split(heads, 3, 0).map((t) => O.squeeze(t, 0));
      const kc = cache.k[layer], vc = cache.v[layer];
      noGrad(() => {
        const be = backend(), off = past * kc.strides[2];
        be.copy(k.shape, k.f32, k.offset, k.strides, kc.f32, off, kc.strides);
        be.copy(v.shape, v.f32, v.offset, v.strides, vc.f32, off, vc.strides);
      });
      a = O.attention(q, O.narrow(kc, 2, 0, total), O.narrow(vc, 2, 0, total), { causal: true, keyMask, training: false, scale });
      a = O.reshape(O.transpose(a, 1, 2), [B, T, C]);
    }
    return this.resid.forward(this.c_proj.forward(a));
  }
}

class MLP extends Module {
  readonly c_fc: Linear;
  readonly c_proj: Linear;
  readonly drop: Dropout;
  constructor(private readonly cfg: GPT2Config, rng: Rng) {
    super();
    const C = cfg.n_embd, inner = cfg.n_inner ?? 4 * C;
    this.c_fc = this.addModule('c_fc', new Linear(C, inner, rng, { std: cfg.initializer_range }));
    this.c_proj = this.addModule('c_proj', new Linear(inner, C, rng, { std: cfg.initializer_range / Math.sqrt(2 * cfg.n_layer) }));
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
  constructor(cfg: GPT2Config, rng: Rng) {
    super();
    this.ln_1 = this.addModule('ln_1', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
    this.attn = this.addModule('attn', new Attention(cfg, rng));
    this.ln_2 = this.addModule('ln_2', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
    this.mlp = this.addModule('mlp', new MLP(cfg, rng));
  }
  forward(x: Tensor, keyMask: Tensor | undefined, cache: KVCache | undefined, layer: number): Tensor {
    x = O.add(x, this.attn.forward(this.ln_1.forward(x), keyMask, cache, layer));
    return O.add(x, this.mlp.forward(this.ln_2.forward(x)));
  }
}

class GPT2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly drop: Dropout;
  readonly h: ModuleList<Block>;
  readonly ln_f: LayerNorm;
  constructor(cfg: GPT2Config, rng: Rng) {
    super();
    this.wte = this.addModule('wte', new Embedding(cfg.vocab_size, cfg.n_embd, rng, cfg.initializer_range));
    this.wpe = this.addModule('wpe', new Embedding(cfg.n_positions, cfg.n_embd, rng, cfg.initializer_range));
    this.drop = this.addModule('drop', new Dropout(cfg.embd_pdrop, rng));
    this.h = this.addModule('h', new ModuleList<Block>());
    for (let i = 0; i < cfg.n_layer; i++) this.h.add(new Block(cfg, rng));
    this.ln_f = this.addModule('ln_f', new LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon));
  }
}

export interface ForwardOptions {
  /** [B, T] with 1 for real tokens and 0 for padding (keys that must not be attended). */
  attentionMask?: Tensor;
  /** Position ids [B, T] (int32); default past..past+T-1. */
  positionIds?: Tensor;
  cache?: KVCache;
}

export class GPT2 extends Module {
  readonly config: GPT2Config;
  readonly transformer: GPT2Model;
  /** Drives every dropout mask (its state is saved in checkpoints for exact resume). */
  readonly rng: Rng;

  constructor(config: GPT2Config, seed = 0) {
    super();
    validateGPT2Config(config);
    this.config = config;
    this.rng = new Rng(seed);
    this.transformer = this.addModule('transformer', new GPT2Model(config, this.rng));
  }

  /**
   * Load a Hugging Face GPT-2 directory: config.json + model.safetensors (or shards). Accepts
   * transformers' save_pretrained layout and the original hub layout (no `transformer.` prefix,
   * attn.bias buffers, tied lm_head).
   */
  static fromPretrained(dir: string): GPT2 {
    const raw = readConfig(dir) as Partial<GPT2Config>;
    if (raw.model_type !== undefined && raw.model_type !== 'gpt2') throw new Error(`${join(dir, 'config.json')}: model_type is '${String(raw.model_type)}', expected 'gpt2'`);
    if (raw.vocab_size === undefined) throw new Error(`${join(dir, 'config.json')}: vocab_size is missing`);
    const cfg = gpt2Config({ ...raw, vocab_size: raw.vocab_size, model_type: 'gpt2' });
    const sd = normalizeGpt2StateDict(loadStateDict(dir));
    const model = new GPT2(cfg);
    model.loadStateDict(sd, dir);
    return model;
  }

  /** Write config.json, generation_config.json and model.safetensors in transformers' layout. */
  savePretrained(dir: string, opts: SaveOptions = {}): void {
    const sd = new Map(this.namedParameters().map(([n, p]) => [n, { shape: p.shape.slice(), data: p.f32 }]));
    saveStateDict(dir, gpt2StateDictForSave(sd), opts);
    writeConfig(dir, { ...this.config, architectures: ['GPT2LMHeadModel'], torch_dtype: opts.dtype === 'F16' ? 'float16' : opts.dtype === 'BF16' ? 'bfloat16' : 'float32' });
    writeJsonAtomic(join(dir, 'generation_config.json'), { bos_token_id: this.config.bos_token_id, eos_token_id: this.config.eos_token_id });
  }

  /** Final hidden states [B, T, C]. */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    if (ids.dtype !== 'int32' || ids.ndim !== 2) throw new Error(`GPT2: input ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(', ')}]`);
    const [B, T] = ids.shape;
    const past = opts.cache?.length ?? 0;
    if (past + T > this.config.n_positions) throw new Error(`GPT2: sequence of ${past + T} tokens exceeds n_positions ${this.config.n_positions}`);
    let pos = opts.positionIds;
    if (!pos) {
      pos = O.empty([B, T], 'int32', false);
      for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) pos.i32[b * T + t] = past + t;
    }
    const tr = this.transformer;
    let keyMask = opts.attentionMask;
    if (keyMask && opts.cache && keyMask.shape[1] !== past + T) throw new Error(`GPT2: attentionMask must cover past + new tokens (${past + T}), got [${keyMask.shape.join(', ')}]`);
    if (keyMask && keyMask.dtype !== 'float32') keyMask = O.tensor(keyMask.toArray(), keyMask.shape);
    let x = O.add(tr.wte.forward(ids), tr.wpe.forward(pos));
    x = tr.drop.forward(x);
    tr.h.items.forEach((blk, i) => { x = blk.forward(x, keyMask, opts.cache, i); });
    if (opts.cache) opts.cache.length += T;
    return tr.ln_f.forward(x);
  }

  /** Logits [B, T, V] through the tied LM head. */
  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    return this.lmHead(this.hidden(ids, opts));
  }

  lmHead(h: Tensor): Tensor { return O.matmul(h, O.transpose(this.transformer.wte.weight)); }

  /**
   * Causal LM loss as in HF: logits at position t predict labels[t+1]; label -100 is ignored.
   * labels default to ids.
   */
  loss(ids: Tensor, labels?: Tensor, opts: ForwardOptions = {}): { loss: Tensor; logits: Tensor } {
    const logits = this.forward(ids, opts);
    const [B, T] = logits.shape;
    const lab = labels ?? ids;
    const shifted = O.empty([B, T], 'int32', false);
    const src = O.contiguousCopy(lab).i32, dst = shifted.i32;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) dst[b * T + t] = src[b * T + t + 1];
      dst[b * T + T - 1] = -100;
    }
    return { loss: O.crossEntropy(logits, shifted), logits };
  }

  newCache(batch: number, maxT = this.config.n_positions): KVCache {
    const c = this.config;
    return new KVCache(batch, c.n_layer, c.n_head, maxT, c.n_embd / c.n_head);
  }
}

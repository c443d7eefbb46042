// BERT (encoder-only, post-LN) with Hugging Face BertForMaskedLM's config keys and tensor names,
// so state dicts move between us and transformers unchanged. Unlike GPT-2's Conv1D, HF's
// nn.Linear stores weights [out, in]; BertLinear keeps that layout so no name or tensor needs
// transposing on load/save. The MLM decoder is tied to the word embeddings.

import * as O from '../engine/ops.js';
import { Tensor, Rng } from '../engine/index.js';
import { Module, ModuleList, Embedding, LayerNorm, Dropout, checkQWeight, type LinearLayer, type QuantizableLayer } from '../nn/module.js';
import type { QWeight } from '../engine/quant.js';
import { CONFIG_NAME, readConfig, writeConfig, loadStateDict, weightHeaders, saveStateDict, entriesOf, sameTensor, type SaveOptions, type StateDictLike } from '../io/hf.js';
import { checkVirtual, resizeEmbeddingAt, type ForwardOptions, type LanguageModel, type ModelDims } from './lm.js';
import { registerFamily } from './registry.js';
import { readQuantizationConfig, loadQuantized, quantizationOf, saveQuantized } from './quantize.js';
import { join } from 'node:path';
import { checkSchema, printable, type Schema } from '../io/json.js';

export interface BertConfig {
  model_type: 'bert';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  initializer_range: number;
  layer_norm_eps: number;
  pad_token_id: number | null;
  position_embedding_type: string;
  [k: string]: unknown;
}

/** HF BertConfig's defaults (transformers/models/bert/configuration_bert.py) for a vocabulary size. */
function bertDefaults(vocabSize: number): BertConfig {
  return {
    model_type: 'bert', vocab_size: vocabSize, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
    intermediate_size: 3072, hidden_act: 'gelu', hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1,
    max_position_embeddings: 512, type_vocab_size: 2, initializer_range: 0.02, layer_norm_eps: 1e-12,
    pad_token_id: 0, position_embedding_type: 'absolute',
    architectures: ['BertForMaskedLM'],
  };
}

export function bertConfig(partial: Partial<BertConfig> & Pick<BertConfig, 'vocab_size'>, where = 'config'): BertConfig {
  const c: BertConfig = { ...bertDefaults(partial.vocab_size), ...partial, model_type: 'bert' };
  validateBertConfig(c, where);
  return c;
}
bertConfig.defaults = bertDefaults;

/** Upper bounds: far above BERT-large (24 × 1024, 30522 tokens), low enough that a typo fails before allocating. */
export const BERT_LIMITS = {
  vocab_size: 4_194_304, hidden_size: 65_536, num_hidden_layers: 1024, num_attention_heads: 1024,
  intermediate_size: 1_048_576, max_position_embeddings: 1_048_576, type_vocab_size: 65_536,
  tensor_elements: 2 ** 31 - 1,
} as const;

/** HF ACT2FN names we implement: 'gelu' is the exact erf form (BERT's), the others tanh GELU or ReLU. */
export const BERT_ACTIVATIONS = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu'] as const;

const posInt = (max: number): Schema => ({ t: 'int', min: 1, max });
const pdrop: Schema = { t: 'number', min: 0, lt: 1 };
const tokenId: Schema = { t: 'oneOf', of: [{ t: 'int', min: 0, max: 2 ** 31 - 1 }, { t: 'null' }], what: 'a token id (a non-negative integer) or null' };

/** Types and ranges of the BERT config keys a user may set for a fresh model (a config file's "model" section). */
export const BERT_MODEL_KEYS: Readonly<Record<string, Schema>> = {
  model_type: { t: 'string', enum: ['bert'] },
  vocab_size: posInt(BERT_LIMITS.vocab_size),
  hidden_size: posInt(BERT_LIMITS.hidden_size),
  num_hidden_layers: posInt(BERT_LIMITS.num_hidden_layers),
  num_attention_heads: posInt(BERT_LIMITS.num_attention_heads),
  intermediate_size: posInt(BERT_LIMITS.intermediate_size),
  hidden_act: { t: 'string', enum: BERT_ACTIVATIONS },
  hidden_dropout_prob: pdrop, attention_probs_dropout_prob: pdrop,
  max_position_embeddings: posInt(BERT_LIMITS.max_position_embeddings),
  type_vocab_size: posInt(BERT_LIMITS.type_vocab_size),
  initializer_range: { t: 'number', min: 0, max: 10 },
  layer_norm_eps: { t: 'number', gt: 0, lt: 1 },
  pad_token_id: tokenId,
  position_embedding_type: { t: 'string' },
  tie_word_embeddings: { t: 'bool' },
};

/** Keys we read from a model directory's config.json (any other HF key is tolerated and kept). */
const BERT_DIR_KEYS: Record<string, Schema> = {
  ...BERT_MODEL_KEYS,
  is_decoder: { t: 'bool' },
  add_cross_attention: { t: 'bool' },
  architectures: { t: 'array', of: { t: 'string' } },
};

/** Check every BERT key we use (types, ranges, divisibility, supported options); `where` starts messages. */
export function validateBertConfig(c: BertConfig, where = 'config', prefix = ''): void {
  checkSchema(c, { t: 'object', keys: BERT_DIR_KEYS, open: true, required: ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size'] }, where, prefix.replace(/\.$/, ''));
  const p = prefix;
  if (c.hidden_size % c.num_attention_heads !== 0) throw new Error(`${where}: ${p}hidden_size ${c.hidden_size} is not divisible by ${p}num_attention_heads ${c.num_attention_heads}`);
  if (c.position_embedding_type !== 'absolute') throw new Error(`${where}: ${p}position_embedding_type ${JSON.stringify(c.position_embedding_type)} is not supported (only "absolute")`);
  if (typeof c.pad_token_id === 'number' && c.pad_token_id >= c.vocab_size) throw new Error(`${where}: ${p}pad_token_id ${c.pad_token_id} is outside the vocabulary (vocab_size ${c.vocab_size})`);
  if (c.tie_word_embeddings === false) throw new Error(`${where}: ${p}tie_word_embeddings false is not supported (the MLM decoder is tied to the word embeddings)`);
  if (c.is_decoder === true) throw new Error(`${where}: ${p}is_decoder true is not supported (BERT here is a bidirectional encoder)`);
  if (c.add_cross_attention === true) throw new Error(`${where}: ${p}add_cross_attention true is not supported`);
  const C = c.hidden_size;
  for (const [what, n] of [['vocab_size × hidden_size', c.vocab_size * C], ['max_position_embeddings × hidden_size', c.max_position_embeddings * C], ['hidden_size × intermediate_size', C * c.intermediate_size]] as const) {
    if (n > BERT_LIMITS.tensor_elements) throw new Error(`${where}: a ${what} weight would have ${n} elements, more than the ${BERT_LIMITS.tensor_elements} one tensor can hold`);
  }
}

/** Parameter names and shapes a BertForMaskedLM of this config has (tied decoder weight excluded), in namedParameters() order. */
export function bertParameterShapes(c: BertConfig): [string, number[]][] {
  const C = c.hidden_size, I = c.intermediate_size;
  const e = 'bert.embeddings.';
  const out: [string, number[]][] = [
    [`${e}word_embeddings.weight`, [c.vocab_size, C]], [`${e}position_embeddings.weight`, [c.max_position_embeddings, C]],
    [`${e}token_type_embeddings.weight`, [c.type_vocab_size, C]], [`${e}LayerNorm.weight`, [C]], [`${e}LayerNorm.bias`, [C]],
  ];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `bert.encoder.layer.${i}.`;
    for (const n of ['query', 'key', 'value']) out.push([`${l}attention.self.${n}.weight`, [C, C]], [`${l}attention.self.${n}.bias`, [C]]);
    out.push([`${l}attention.output.dense.weight`, [C, C]], [`${l}attention.output.dense.bias`, [C]],
      [`${l}attention.output.LayerNorm.weight`, [C]], [`${l}attention.output.LayerNorm.bias`, [C]],
      [`${l}intermediate.dense.weight`, [I, C]], [`${l}intermediate.dense.bias`, [I]],
      [`${l}output.dense.weight`, [C, I]], [`${l}output.dense.bias`, [C]],
      [`${l}output.LayerNorm.weight`, [C]], [`${l}output.LayerNorm.bias`, [C]]);
  }
  out.push(['cls.predictions.bias', [c.vocab_size]],
    ['cls.predictions.transform.dense.weight', [C, C]], ['cls.predictions.transform.dense.bias', [C]],
    ['cls.predictions.transform.LayerNorm.weight', [C]], ['cls.predictions.transform.LayerNorm.bias', [C]]);
  return out;
}

/** y = x Wᵀ + b with W stored [out, in] (PyTorch nn.Linear's layout, as BERT checkpoints hold it). */
export class BertLinear extends Module implements LinearLayer, QuantizableLayer {
  readonly weightLayout = 'out_in' as const;
  readonly weight: Tensor;
  readonly bias: Tensor;
  /** Inference-only weights from a quantized checkpoint; when set, forward() uses them instead of `weight`. */
  quantized: QWeight | null = null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, rng: Rng, std: number, init: boolean) {
    super();
    this.weight = this.addParam('weight', init ? O.randn([outFeatures, inFeatures], rng, std) : O.zeros([outFeatures, inFeatures]));
    this.bias = this.addParam('bias', O.zeros([outFeatures]));
  }
  /** The weight as the inference kernels take it (no copy for f32: [out, in]). */
  inferenceWeight(): QWeight {
    return this.quantized ?? { format: 'f32', N: this.outFeatures, K: this.inFeatures, layout: 'out_in', data: this.weight.f32, scales: null };
  }
  /** Use `q` for inference from now on and free the f32 weight. */
  setQuantized(q: QWeight): void {
    checkQWeight(q, this.outFeatures, this.inFeatures, 'BertLinear');
    if (!this.quantized) (this as { weight: Tensor }).weight = this.releaseParam('weight');
    this.quantized = q;
  }
  forward(x: Tensor): Tensor {
    if (this.quantized) return O.qlinear(x, this.quantized, this.bias);
    return O.add(O.matmul(x, O.transpose(this.weight)), this.bias);
  }
}

function activation(x: Tensor, act: string): Tensor {
  if (act === 'relu') return O.relu(x);
  return O.gelu(x, act === 'gelu' ? 'none' : 'tanh');
}

class BertEmbeddings extends Module {
  readonly word_embeddings: Embedding;
  readonly position_embeddings: Embedding;
  readonly token_type_embeddings: Embedding;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.word_embeddings = this.addModule('word_embeddings', new Embedding(c.vocab_size, c.hidden_size, rng, c.initializer_range, init));
    // HF zeroes the padding_idx row of the word embeddings at init.
    if (init && typeof c.pad_token_id === 'number') this.word_embeddings.weight.f32.fill(0, c.pad_token_id * c.hidden_size, (c.pad_token_id + 1) * c.hidden_size);
    this.position_embeddings = this.addModule('position_embeddings', new Embedding(c.max_position_embeddings, c.hidden_size, rng, c.initializer_range, init));
    this.token_type_embeddings = this.addModule('token_type_embeddings', new Embedding(c.type_vocab_size, c.hidden_size, rng, c.initializer_range, init));
    this.LayerNorm = this.addModule('LayerNorm', new LayerNorm(c.hidden_size, c.layer_norm_eps));
    this.dropout = this.addModule('dropout', new Dropout(c.hidden_dropout_prob, rng));
  }
  /** `virtual` [B, P, C]: prompt-tuning embeddings before the tokens' (pos/types then cover P + T rows). */
  forward(ids: Tensor, pos: Tensor, types: Tensor, virtual?: Tensor): Tensor {
    let words = this.word_embeddings.forward(ids);
    if (virtual) words = O.concat([virtual, words], 1);
    const x = O.add(O.add(words, this.position_embeddings.forward(pos)), this.token_type_embeddings.forward(types));
    return this.dropout.forward(this.LayerNorm.forward(x));
  }
}

class BertSelfAttention extends Module {
  readonly query: BertLinear;
  readonly key: BertLinear;
  readonly value: BertLinear;
  constructor(private readonly c: BertConfig, private readonly rng: Rng, init: boolean) {
    super();
    const C = c.hidden_size;
    this.query = this.addModule('query', new BertLinear(C, C, rng, c.initializer_range, init));
    this.key = this.addModule('key', new BertLinear(C, C, rng, c.initializer_range, init));
    this.value = this.addModule('value', new BertLinear(C, C, rng, c.initializer_range, init));
  }
  /** `prefix`: virtual keys/values [B, H, P, D] before the real ones (prefix tuning, as past_key_values). */
  forward(x: Tensor, keyMask: Tensor | undefined, prefix?: { k: Tensor; v: Tensor }): Tensor {
    const [B, T, C] = x.shape, H = this.c.num_attention_heads, D = C / H;
    const heads = (t: Tensor): Tensor => O.permute(O.reshape(t, [B, T, H, D]), [0, 2, 1, 3]);
    let k = heads(this.key.forward(x)), v = heads(this.value.forward(x));
    if (prefix) { k = O.concat([prefix.k, k], 2); v = O.concat([prefix.v, v], 2); }
    const a = O.attention(heads(this.query.forward(x)), k, v,
      { causal: false, keyMask, dropout: this.c.attention_probs_dropout_prob, training: this.training, rng: this.rng });
    return O.reshape(O.transpose(a, 1, 2), [B, T, C]);
  }
}

/** dense → dropout → LayerNorm(· + residual): BertSelfOutput and BertOutput. */
class BertResidualOut extends Module {
  readonly dense: BertLinear;
  readonly LayerNorm: LayerNorm;
  readonly dropout: Dropout;
  constructor(c: BertConfig, inF: number, rng: Rng, init: boolean) {
    super();
    this.dense = this.addModule('dense', new BertLinear(inF, c.hidden_size, rng, c.initializer_range, init));
    this.LayerNorm = this.addModule('LayerNorm', new LayerNorm(c.hidden_size, c.layer_norm_eps));
    this.dropout = this.addModule('dropout', new Dropout(c.hidden_dropout_prob, rng));
  }
  forward(h: Tensor, residual: Tensor): Tensor { return this.LayerNorm.forward(O.add(this.dropout.forward(this.dense.forward(h)), residual)); }
}

class BertAttention extends Module {
  readonly self: BertSelfAttention;
  readonly output: BertResidualOut;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.self = this.addModule('self', new BertSelfAttention(c, rng, init));
    this.output = this.addModule('output', new BertResidualOut(c, c.hidden_size, rng, init));
  }
  forward(x: Tensor, keyMask: Tensor | undefined, prefix?: { k: Tensor; v: Tensor }): Tensor { return this.output.forward(this.self.forward(x, keyMask, prefix), x); }
}

class BertIntermediate extends Module {
  readonly dense: BertLinear;
  constructor(private readonly c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.dense = this.addModule('dense', new BertLinear(c.hidden_size, c.intermediate_size, rng, c.initializer_range, init));
  }
  forward(x: Tensor): Tensor { return activation(this.dense.forward(x), this.c.hidden_act); }
}

class BertLayer extends Module {
  readonly attention: BertAttention;
  readonly intermediate: BertIntermediate;
  readonly output: BertResidualOut;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.attention = this.addModule('attention', new BertAttention(c, rng, init));
    this.intermediate = this.addModule('intermediate', new BertIntermediate(c, rng, init));
    this.output = this.addModule('output', new BertResidualOut(c, c.intermediate_size, rng, init));
  }
  forward(x: Tensor, keyMask: Tensor | undefined, prefix?: { k: Tensor; v: Tensor }): Tensor {
    const a = this.attention.forward(x, keyMask, prefix);
    return this.output.forward(this.intermediate.forward(a), a);
  }
}

class BertEncoder extends Module {
  readonly layer: ModuleList<BertLayer>;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.layer = this.addModule('layer', new ModuleList<BertLayer>());
    for (let i = 0; i < c.num_hidden_layers; i++) this.layer.add(new BertLayer(c, rng, init));
  }
}

class BertModel extends Module {
  readonly embeddings: BertEmbeddings;
  readonly encoder: BertEncoder;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.embeddings = this.addModule('embeddings', new BertEmbeddings(c, rng, init));
    this.encoder = this.addModule('encoder', new BertEncoder(c, rng, init));
  }
}

class BertPredictionHeadTransform extends Module {
  readonly dense: BertLinear;
  readonly LayerNorm: LayerNorm;
  constructor(private readonly c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.dense = this.addModule('dense', new BertLinear(c.hidden_size, c.hidden_size, rng, c.initializer_range, init));
    this.LayerNorm = this.addModule('LayerNorm', new LayerNorm(c.hidden_size, c.layer_norm_eps));
  }
  forward(x: Tensor): Tensor { return this.LayerNorm.forward(activation(this.dense.forward(x), this.c.hidden_act)); }
}

class BertLMPredictionHead extends Module {
  bias: Tensor;
  readonly transform: BertPredictionHeadTransform;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.bias = this.addParam('bias', O.zeros([c.vocab_size]));
    this.transform = this.addModule('transform', new BertPredictionHeadTransform(c, rng, init));
  }
  /** A new [n] bias parameter: the old entries kept, new ones 0 (transformers pads the tied decoder's bias with zeros). */
  resizeBias(n: number): void {
    const old = this.bias, t = O.zeros([n]);
    t.f32.set(old.f32.subarray(0, Math.min(n, old.size)));
    this.bias = this.addParam('bias', t);
    t.requiresGrad = old.requiresGrad;
    old.dispose();
  }
}

class BertOnlyMLMHead extends Module {
  readonly predictions: BertLMPredictionHead;
  constructor(c: BertConfig, rng: Rng, init: boolean) {
    super();
    this.predictions = this.addModule('predictions', new BertLMPredictionHead(c, rng, init));
  }
}

/** BertForMaskedLM: parameter names `bert.*` and `cls.predictions.*` as transformers has them. */
export class Bert extends Module implements LanguageModel {
  readonly kind = 'masked' as const;
  readonly modelType = 'bert';
  readonly config: BertConfig;
  readonly bert: BertModel;
  readonly cls: BertOnlyMLMHead;
  readonly rng: Rng;

  /** `init: false` leaves weights zero (LayerNorms 1/0) without drawing from the seed (for loading). */
  constructor(config: BertConfig, seed = 0, opts: { init?: boolean } = {}) {
    super();
    validateBertConfig(config);
    this.config = config;
    this.rng = new Rng(seed);
    const init = opts.init ?? true;
    this.bert = this.addModule('bert', new BertModel(config, this.rng, init));
    this.cls = this.addModule('cls', new BertOnlyMLMHead(config, this.rng, init));
  }

  /**
   * Load a Hugging Face BERT directory: transformers' save_pretrained output of BertForMaskedLM
   * (`bert.` prefix, tied decoder omitted), the same names without the prefix, or an original
   * hub BertForPreTraining checkpoint (LayerNorm gamma/beta, pooler and NSP head ignored,
   * explicit decoder weight equal to the word embeddings).
   */
  static fromPretrained(dir: string, rawConfig?: Record<string, unknown>): Bert {
    const cfgPath = join(dir, CONFIG_NAME);
    const raw = (rawConfig ?? readConfig(dir)) as Partial<BertConfig>;
    if (raw.model_type !== undefined && raw.model_type !== 'bert') throw new Error(`${cfgPath}: model_type is ${JSON.stringify(raw.model_type)}, expected 'bert'`);
    if (raw.vocab_size === undefined) throw new Error(`${cfgPath}: vocab_size is missing`);
    const cfg = { ...bertDefaults(raw.vocab_size as number), ...raw, model_type: 'bert' } as BertConfig;
    validateBertConfig(cfg, cfgPath);
    const qc = readQuantizationConfig(raw as Record<string, unknown>, cfgPath);
    if (qc) {
      // icld quantize's layout (quantize.ts): canonical names, q tensors read as bytes.
      const model = new Bert(cfg, 0, { init: false });
      loadQuantized(model, dir, qc);
      return model;
    }
    checkBertWeights(dir, cfg);
    const sd = normalizeBertStateDict(loadStateDict(dir), dir);
    const model = new Bert(cfg, 0, { init: false });
    model.loadStateDict(sd, dir);
    return model;
  }

  /** config.json + model.safetensors as BertForMaskedLM.save_pretrained writes them (tied decoder weight omitted). */
  savePretrained(dir: string, opts: SaveOptions = {}): void {
    if (quantizationOf(this)) {
      // Quantized weights keep their formats (opts.dtype does not apply); see quantize.ts for the layout.
      saveQuantized(this, dir, { ...this.config, model_type: 'bert', architectures: ['BertForMaskedLM'] });
      return;
    }
    const sd = new Map(this.namedParameters().map(([n, p]) => [n, { shape: p.shape.slice(), data: p.f32 }]));
    saveStateDict(dir, sd, opts);
    writeConfig(dir, { ...this.config, model_type: 'bert', architectures: ['BertForMaskedLM'], torch_dtype: opts.dtype === 'F16' ? 'float16' : opts.dtype === 'BF16' ? 'bfloat16' : 'float32' });
  }

  get dims(): ModelDims { return { layers: this.config.num_hidden_layers, heads: this.config.num_attention_heads, hidden: this.config.hidden_size }; }
  inputEmbeddings(): Tensor { return this.bert.embeddings.word_embeddings.weight; }
  /**
   * See LanguageModel.resizeTokenEmbeddings: the word embeddings (tied MLM decoder) get a new
   * [n, C] parameter, cls.predictions.bias a new [n] one (added entries 0); old rows unchanged.
   */
  resizeTokenEmbeddings(n: number): void {
    const c = this.config, V = c.vocab_size, C = c.hidden_size;
    if (!Number.isInteger(n) || n < 1 || n > BERT_LIMITS.vocab_size) throw new Error(`resizeTokenEmbeddings: the new vocabulary size must be an integer in [1, ${BERT_LIMITS.vocab_size}], got ${n}`);
    if (n * C > BERT_LIMITS.tensor_elements) throw new Error(`resizeTokenEmbeddings: a ${n} × ${C} embedding would exceed ${BERT_LIMITS.tensor_elements} elements`);
    if (typeof c.pad_token_id === 'number' && c.pad_token_id >= n) throw new Error(`resizeTokenEmbeddings(${n}): pad_token_id ${c.pad_token_id} would fall outside the vocabulary`);
    if (n === V) return;
    resizeEmbeddingAt(this, 'bert.embeddings.word_embeddings', n, this.rng, c.initializer_range);
    this.cls.predictions.resizeBias(n);
    c.vocab_size = n;
  }

  get vocabSize(): number { return this.config.vocab_size; }
  get maxPositions(): number { return this.config.max_position_embeddings; }
  /** BERT has no end-of-text token. */
  get eosTokenId(): number | null { return null; }

  /**
   * Final encoder hidden states [B, T, C] (the real tokens' rows). Virtual tokens as PEFT gives
   * them to BertModel: prefix keys/values as past_key_values (real positions offset by P), prompt
   * embeddings as inputs_embeds rows before the tokens' (positions 0..P-1, token type 0).
   */
  hidden(ids: Tensor, opts: ForwardOptions = {}): Tensor {
    if (ids.dtype !== 'int32' || ids.ndim !== 2) throw new Error(`BERT: input ids must be int32 [B, T], got ${ids.dtype} [${ids.shape.join(', ')}]`);
    if (opts.cache) throw new Error('BERT: a KV cache is for causal models; BERT reads the whole sequence at once');
    const [B, T] = ids.shape;
    const { max_position_embeddings: maxPos, hidden_size: C, num_attention_heads: H } = this.config;
    const v = opts.virtual;
    const P = checkVirtual(v, this.dims, 'BERT');
    if (P + T > maxPos) throw new Error(`BERT: sequence of ${P + T} positions${P ? ` (${P} virtual)` : ''} exceeds max_position_embeddings ${maxPos}`);
    const check = (t: Tensor | undefined, what: string): void => {
      if (t && t.shape.join(',') !== [B, T].join(',')) throw new Error(`BERT: ${what} must be [${B}, ${T}] like the ids${P ? ` (real tokens only, without the ${P} virtual ones)` : ''}, got [${t.shape.join(', ')}]`);
    };
    check(opts.attentionMask, 'attentionMask'); check(opts.positionIds, 'positionIds'); check(opts.tokenTypeIds, 'tokenTypeIds');
    const prompt = P > 0 && v!.embeds !== undefined;
    // Real tokens sit at P..P+T-1 after P virtual positions; prompt tuning also embeds the virtual rows (0..P-1, type 0).
    const R = prompt ? P + T : T, lead = prompt ? P : 0;
    const pos = O.empty([B, R], 'int32', false), types = O.zeros([B, R], 'int32');
    const givenPos = opts.positionIds ? O.contiguousCopy(opts.positionIds).i32 : null;
    const givenTypes = opts.tokenTypeIds ? O.contiguousCopy(opts.tokenTypeIds).i32 : null;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < lead; t++) pos.i32[b * R + t] = t;
      for (let t = 0; t < T; t++) {
        const p = (givenPos ? givenPos[b * T + t] : t) + P;
        if (p >= maxPos) throw new Error(`BERT: position id ${p} exceeds max_position_embeddings ${maxPos}`);
        pos.i32[b * R + lead + t] = p;
        if (givenTypes) types.i32[b * R + lead + t] = givenTypes[b * T + t];
      }
    }
    let keyMask = opts.attentionMask;
    if (keyMask && keyMask.dtype !== 'float32') keyMask = O.tensor(keyMask.toArray(), keyMask.shape);
    if (keyMask && P) keyMask = O.concat([O.ones([B, P]), keyMask], 1);
    let x = this.bert.embeddings.forward(ids, pos, types, prompt ? O.expand(O.unsqueeze(v!.embeds!, 0), [B, P, C]) : undefined);
    const D = C / H;
    const rep = (t: Tensor): Tensor => O.expand(O.unsqueeze(t, 0), [B, H, P, D]);
    this.bert.encoder.layer.items.forEach((layer, l) => {
      x = layer.forward(x, keyMask, P && !prompt ? { k: rep(v!.keys![l]), v: rep(v!.values![l]) } : undefined);
    });
    return prompt ? O.contiguousCopy(O.narrow(x, 1, P, T)) : x;
  }

  /** transform (dense, act, LayerNorm) → tied decoder + bias. */
  lmHead(h: Tensor): Tensor {
    const p = this.cls.predictions, wte = this.bert.embeddings.word_embeddings;
    if (wte.quantized) return O.qlinear(p.transform.forward(h), wte.quantized, p.bias);
    return O.add(O.matmul(p.transform.forward(h), O.transpose(wte.weight)), p.bias);
  }

  forward(ids: Tensor, opts: ForwardOptions = {}): Tensor { return this.lmHead(this.hidden(ids, opts)); }

  /** MLM loss as in HF: mean cross-entropy of logits[t] against labels[t] over labels ≠ −100. */
  loss(ids: Tensor, labels?: Tensor, opts: ForwardOptions = {}): { loss: Tensor; logits: Tensor } {
    if (!labels) throw new Error('BERT: the masked-LM loss needs labels (the original ids at masked positions, −100 elsewhere)');
    if (labels.shape.join(',') !== ids.shape.join(',')) throw new Error(`BERT: labels [${labels.shape.join(', ')}] must match ids [${ids.shape.join(', ')}]`);
    const logits = this.forward(ids, opts);
    return { loss: O.crossEntropy(logits, labels), logits };
  }
}

// Hugging Face names (hub BertForPreTraining, BertModel, BertForMaskedLM)

/** Tensors of pretraining checkpoints that BertForMaskedLM does not use (pooler, NSP head, buffers). */
export const BERT_IGNORED_RE = /^(bert\.)?(pooler\.dense\.(weight|bias)|embeddings\.(position_ids|token_type_ids))$|^cls\.seq_relationship\.(weight|bias)$/;
const DECODER_WEIGHT = 'cls.predictions.decoder.weight';
const DECODER_BIAS = 'cls.predictions.decoder.bias';

/** Canonical name: `bert.` prefix added, LayerNorm `gamma`/`beta` → `weight`/`bias` (old TF-converted files). */
export function canonicalBertName(name: string): string {
  let n = name.startsWith('embeddings.') || name.startsWith('encoder.') || name.startsWith('pooler.') ? `bert.${name}` : name;
  n = n.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
  return n;
}

/**
 * Map a BERT state dict in any of the layouts above to our names (`bert.*`, `cls.predictions.*`),
 * dropping the pooler, the NSP head, buffers and a tied decoder weight/bias. A decoder weight
 * that differs from the word embeddings (untied head) throws.
 */
export function normalizeBertStateDict<T extends { shape: number[]; data: ArrayLike<number> }>(sd: StateDictLike<T>, where = 'BERT state dict'): Map<string, T> {
  const out = new Map<string, T>();
  let decW: T | undefined, decB: T | undefined;
  for (const [name, t] of entriesOf(sd)) {
    if (BERT_IGNORED_RE.test(name)) continue;
    if (name === DECODER_WEIGHT) { decW = t; continue; }
    if (name === DECODER_BIAS) { decB = t; continue; }
    const canon = canonicalBertName(name);
    if (out.has(canon)) throw new Error(`${where}: tensor '${printable(name)}' and another tensor both map to '${canon}'`);
    out.set(canon, t);
  }
  if (decW) {
    const wte = out.get('bert.embeddings.word_embeddings.weight');
    if (!wte || !sameTensor(decW, wte)) throw new Error(`${where}: ${DECODER_WEIGHT} differs from bert.embeddings.word_embeddings.weight: untied MLM heads are not supported`);
  }
  if (decB) {
    const b = out.get('cls.predictions.bias');
    if (!b) out.set('cls.predictions.bias', decB);
    else if (!sameTensor(decB, b)) throw new Error(`${where}: ${DECODER_BIAS} differs from cls.predictions.bias (transformers ties them)`);
  }
  return out;
}

const sameShape = (a: number[], b: number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The weight files of `dir` must hold the tensors `cfg` implies, with those shapes (any of the
 * accepted layouts). Reads headers only; the first problem names the tensor and its file.
 */
export function checkBertWeights(dir: string, cfg: BertConfig): void {
  const heads = weightHeaders(dir);
  const implied = `${join(dir, CONFIG_NAME)} (num_hidden_layers ${cfg.num_hidden_layers}, hidden_size ${cfg.hidden_size}, vocab_size ${cfg.vocab_size}, max_position_embeddings ${cfg.max_position_embeddings})`;
  const found = new Map<string, { name: string; shape: number[]; file: string }>();
  const firstFile = heads.size ? [...heads.values()][0].file : dir;
  for (const [name, h] of heads) {
    if (BERT_IGNORED_RE.test(name)) continue;
    if (name === DECODER_WEIGHT || name === DECODER_BIAS) {
      const want = name === DECODER_WEIGHT ? [cfg.vocab_size, cfg.hidden_size] : [cfg.vocab_size];
      if (!sameShape(h.shape, want)) throw new Error(`${h.file}: tensor '${name}' has shape [${h.shape.join(', ')}] but ${implied} implies [${want.join(', ')}]`);
      if (name === DECODER_BIAS && !heads.has('cls.predictions.bias')) found.set('cls.predictions.bias', { name, ...h });
      continue;
    }
    const canon = canonicalBertName(name);
    const twin = found.get(canon);
    if (twin) throw new Error(`${h.file}: tensors '${printable(twin.name)}' and '${printable(name)}' are both '${printable(canon)}'`);
    found.set(canon, { name, ...h });
  }
  const expected = bertParameterShapes(cfg);
  const want = new Set(expected.map(([n]) => n));
  for (const [name, shape] of expected) {
    const h = found.get(name);
    if (!h) {
      const headless = name.startsWith('cls.') && ![...found.keys()].some((k) => k.startsWith('cls.'));
      throw new Error(`${firstFile}: tensor '${name}' is missing${headless ? ' (no MLM head: a BertModel checkpoint without cls.predictions.* cannot predict masked tokens)' : `, but ${implied} needs it`}`);
    }
    if (!sameShape(h.shape, shape)) throw new Error(`${h.file}: tensor '${printable(h.name)}' has shape [${h.shape.join(', ')}] but ${implied} implies [${shape.join(', ')}]`);
  }
  for (const [canon, h] of found) {
    if (!want.has(canon)) throw new Error(`${h.file}: tensor '${printable(h.name)}' is not part of the BERT that ${implied} describes`);
  }
}

registerFamily({
  modelType: 'bert', kind: 'masked', architecture: 'BertForMaskedLM',
  modelKeys: BERT_MODEL_KEYS,
  sizeKeys: ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'max_position_embeddings'],
  dropoutKeys: ['hidden_dropout_prob', 'attention_probs_dropout_prob'],
  config: (partial, where = 'config') => bertConfig(partial as Partial<BertConfig> & { vocab_size: number }, where),
  create: (config, seed) => new Bert(config as BertConfig, seed),
  fromPretrained: (dir, raw) => Bert.fromPretrained(dir, raw),
  looksLike: (raw) => 'hidden_size' in raw && 'num_hidden_layers' in raw && 'type_vocab_size' in raw,
  tuning: {
    peftTaskType: null,
    loraTargets: ['query', 'value'],
    adapterTargets: { houlsby: ['attention.output.dense', 'output.dense'], pfeiffer: ['output.dense'] },
    embeddingModule: 'bert.embeddings.word_embeddings',
  },
  // Plain role-prefixed turns separated by [SEP] (no new tokens): a masked LM is tuned on it, not chatted with.
  chat: {
    template: "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + ' [SEP] ' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}",
    specialTokens: [],
  },
});

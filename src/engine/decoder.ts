// The fused inference decoder's contract: a whole pre-LayerNorm transformer decoder (GPT-2's
// shape: learned absolute positions, LN → fused QKV → causal attention over a KV cache →
// projection + residual, LN → MLP + residual, final LN, tied LM head) run for a batch of new
// tokens in one backend call, with the KV cache of every sequence held inside the decoder.
// Reference twin: src/engine/decoder-ref.ts; native twin: native/decoder.c. A model family
// fills in a DecoderSpec from its module tree (src/models/gpt2.ts); nothing here names a family.

import type { QWeight } from './quant.js';

export interface DecoderLayerWeights {
  ln1Weight: Float32Array; ln1Bias: Float32Array;
  /** [3C out, C in]: output rows 0..C are queries, C..2C keys, 2C..3C values (heads contiguous inside each). */
  qkv: QWeight; qkvBias: Float32Array;
  proj: QWeight; projBias: Float32Array;
  ln2Weight: Float32Array; ln2Bias: Float32Array;
  fc: QWeight; fcBias: Float32Array;
  fcProj: QWeight; fcProjBias: Float32Array;
}

export interface DecoderSpec {
  /** C, heads H (head size C/H), MLP width, vocabulary V, learned positions. */
  hidden: number; heads: number; inner: number; vocab: number; positions: number;
  eps: number;
  activation: 'gelu_tanh' | 'gelu_erf' | 'relu';
  /** Attention score scale per layer (GPT-2: 1/√D, optionally ÷ (layer+1)). */
  attnScale: number[];
  /** Token embedding [V, C] (format out_in: row v is token v's embedding), also the LM head. */
  wte: QWeight;
  /** Position embedding [positions, C]. */
  wpe: Float32Array;
  layers: DecoderLayerWeights[];
  lnfWeight: Float32Array; lnfBias: Float32Array;
  /** KV cache: slots (independent sequences) × rows per slot. */
  maxSeqs: number; maxT: number;
}

/** An opaque decoder instance (its KV cache included); free with Backend.decoderFree. */
export type DecoderHandle = { readonly __decoder: unique symbol } | object;

/**
 * One call: n new tokens, token i = ids[i] at position pos[i] of sequence slot seq[i]. Its keys and
 * values are written to row pos[i] of that slot; it attends to rows 0..pos[i] of the slot (rows
 * below pos[i] must have been written by earlier tokens or earlier in this call, tokens of one
 * sequence coming in position order). For r < outRows.length the final logits of token outRows[r]
 * are written to logits[r·V .. r·V+V).
 */
export interface DecoderStep {
  n: number;
  ids: Int32Array; pos: Int32Array; seq: Int32Array;
  outRows: Int32Array;
  logits: Float32Array;
}

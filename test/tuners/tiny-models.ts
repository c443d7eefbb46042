// Tiny GPT-2 / BERT models and a fixed batch for the tuner tests (dropout off, so outputs compare exactly).

import * as O from '../../src/engine/ops.js';
import { noGrad, type Tensor } from '../../src/engine/index.js';
import { createModel, type LanguageModel } from '../../src/models/index.js';

export const C = 16;
export const gcfg = { vocab_size: 50, n_embd: C, n_layer: 2, n_head: 2, n_positions: 32, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
export const gpt2 = (seed = 1, over: Record<string, unknown> = {}): LanguageModel => createModel('gpt2', { ...gcfg, ...over }, seed);
export const bert = (seed = 1): LanguageModel => createModel('bert', { vocab_size: 50, hidden_size: C, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 32, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, seed);
export const ids = (): Tensor => O.tensor([3, 7, 1, 9, 4, 2, 8, 5, 6, 11, 12, 13], [2, 6], 'int32');
export const logits = (m: LanguageModel): number[] => noGrad(() => m.forward(ids()).toArray());
export const maxDiff = (a: number[], b: number[]): number => a.reduce((s, v, i) => Math.max(s, Math.abs(v - b[i])), 0);

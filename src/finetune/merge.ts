// `icld merge`: fold a LoRA adapter into its base and write a plain model directory (loadable by
// every command and by transformers), checking on a probe sequence that the merged model computes
// what base + adapter computes.

import { existsSync, mkdirSync, readdirSync, renameSync } from 'node:fs';
import * as O from '../engine/ops.js';
import { noGrad, tidy } from '../engine/index.js';
import type { LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import type { PeftModel } from '../tuners/index.js';
import { publishDir, removeDirAtomic, tempSibling } from '../io/atomic.js';

export interface MergeResult { out: string; peft_type: string; max_abs_diff: number; params: number }

/** Logits of a fixed probe sequence (every id below min(V, 997) stepped through, 32 positions). */
function probeLogits(m: LanguageModel): Float32Array {
  const T = Math.min(32, m.maxPositions), V = m.vocabSize;
  const ids = Array.from({ length: T }, (_, i) => (i * 37 + 11) % Math.min(V, 997));
  return tidy(() => noGrad(() => Float32Array.from(m.forward(O.tensor(ids, [1, T], 'int32')).f32)));
}

/**
 * Merge `peft`'s active LoRA adapter into its base and save base + tokenizer to `out` (filled under
 * a temporary name and published by one rename: an existing `out` is replaced only when
 * `overwrite`, and never left half-written).
 */
export function mergeToDir(peft: PeftModel, tok: Tokenizer, out: string, overwrite = false): MergeResult {
  if (existsSync(out) && readdirSync(out).length > 0 && !overwrite) throw new Error(`--out ${out} is not empty; pass --overwrite to replace it`);
  const name = peft.activeAdapter;
  const peftType = name ? String(peft.adapters.get(name)!.config.peft_type) : 'none';
  peft.eval();
  const before = probeLogits(peft);
  const merged = peft.mergeAndUnload();
  merged.eval();
  const after = probeLogits(merged);
  let diff = 0;
  for (let i = 0; i < before.length; i++) diff = Math.max(diff, Math.abs(before[i] - after[i]));
  if (!(diff <= 1e-3)) throw new Error(`merge: the merged model's logits differ from base + adapter by ${diff} (expected ≤ 1e-3); nothing written`);
  const tmp = tempSibling(out);
  mkdirSync(tmp, { recursive: true });
  merged.savePretrained(tmp);
  tok.save(tmp);
  // The old directory is moved aside and deleted only once the new one is in place.
  let aside: string | null = null;
  if (existsSync(out)) { aside = tempSibling(out, 'trash'); renameSync(out, aside); }
  publishDir(tmp, out);
  if (aside) removeDirAtomic(aside);
  return { out, peft_type: peftType, max_abs_diff: diff, params: merged.numParameters() };
}


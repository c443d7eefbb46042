// Exact matching of an adapter file's tensors against what an installed adapter expects.

import type { Tensor } from '../engine/index.js';
import type { SavedTensor } from './types.js';

/** Every expected key present with its shape, nothing else; the first problem is a one-line error naming key and `where` (the file). */
export function checkStateDict(sd: ReadonlyMap<string, SavedTensor>, expected: ReadonlyMap<string, Tensor | { shape: number[] }>, where: string): void {
  for (const [k, t] of expected) {
    const s = sd.get(k);
    if (!s) throw new Error(`${where}: tensor '${k}' is missing (the adapter config implies it)`);
    if (s.shape.join(',') !== t.shape.join(',')) throw new Error(`${where}: tensor '${k}' has shape [${s.shape.join(', ')}], the model expects [${t.shape.join(', ')}]`);
  }
  for (const k of sd.keys()) {
    if (!expected.has(k)) throw new Error(`${where}: tensor '${k}' does not belong to this adapter on this model (expected keys like '${[...expected.keys()][0] ?? '(none)'}')`);
  }
}

// The inference runtime: a causal model's whole forward pass for a batch of sequences in one
// backend call (src/engine/decoder.ts), each sequence in its own KV-cache slot. The one
// generation loop (generate.ts) uses it when the model offers one; the server decodes all its
// slots in one step through it (several sequences share every weight read).

/** One sequence's new tokens in a batched step. */
export interface RuntimeEntry {
  /** A slot from acquire(). */
  seq: number;
  /** Tokens appended to the sequence (the prompt at first, then one token per step). */
  ids: readonly number[];
}

export interface InferenceRuntime {
  readonly vocabSize: number;
  readonly maxSeqs: number;
  readonly maxT: number;
  /** A free sequence slot (its length reset to 0), or null when all are taken. */
  acquire(): number | null;
  /** Give a slot back. */
  release(seq: number): void;
  /** Positions a slot holds. */
  length(seq: number): number;
  /**
   * Append each entry's ids to its sequence (one native call for the whole batch) and return
   * the logits of each entry's last token: rows [i·V, (i+1)·V) in entry order. The array is the
   * runtime's own and is overwritten by the next step (copy what must outlive it).
   */
  step(batch: readonly RuntimeEntry[]): Float32Array;
  /** Free the decoder and its caches (idempotent). */
  dispose(): void;
}

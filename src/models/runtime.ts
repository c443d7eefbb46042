// The inference runtime: a causal model's whole forward pass for a batch of sequences in one
// backend call (src/engine/decoder.ts), each sequence in its own KV-cache slot. The one
// generation loop (generate.ts) uses it when the model offers one; the server decodes all its
// slots in one step through it (several sequences share every weight read).

import { backend } from '../engine/backend/index.js';
import type { Backend } from '../engine/backend/types.js';
import type { DecoderHandle, DecoderSpec, DecoderStep } from '../engine/decoder.js';

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


/**
 * An InferenceRuntime over the backend's fused decoder (src/engine/decoder.ts). Everything a step
 * touches is allocated here once, sized for the largest step (every slot's positions at once):
 * the id/position/slot arrays, one output-row view per possible row count, the logits. A step
 * allocates nothing on the JS side either.
 */
export class DecoderRuntime implements InferenceRuntime {
  readonly vocabSize: number;
  readonly maxSeqs: number;
  readonly maxT: number;
  private readonly be: Backend;
  private handle: DecoderHandle | null;
  private readonly lengths: Int32Array;
  private readonly used: Uint8Array;
  private inUse = 0;
  private ids: Int32Array;
  private pos: Int32Array;
  private seq: Int32Array;
  private readonly outRows: Int32Array;
  /** outRows.subarray(0, k) for each k, made once. */
  private readonly outViews: Int32Array[];
  private readonly logits: Float32Array;
  private readonly logitViews: Float32Array[];
  /** The one step descriptor, refilled each step. */
  private readonly call: DecoderStep;
  /** Set by the owner when a newer runtime replaces this one: freed once its last slot is released. */
  retired = false;

  constructor(readonly spec: DecoderSpec, be: Backend = backend()) {
    this.be = be;
    this.vocabSize = spec.vocab; this.maxSeqs = spec.maxSeqs; this.maxT = spec.maxT;
    this.handle = be.decoderCreate(spec);
    this.lengths = new Int32Array(spec.maxSeqs);
    this.used = new Uint8Array(spec.maxSeqs);
    // Token arrays grow to the largest step seen (a prompt), then stay.
    const n0 = Math.max(64, spec.maxSeqs);
    this.ids = new Int32Array(n0); this.pos = new Int32Array(n0); this.seq = new Int32Array(n0);
    this.outRows = new Int32Array(spec.maxSeqs);
    this.outViews = Array.from({ length: spec.maxSeqs + 1 }, (_, k) => this.outRows.subarray(0, k));
    this.logits = new Float32Array(spec.maxSeqs * spec.vocab);
    this.logitViews = Array.from({ length: spec.maxSeqs + 1 }, (_, k) => this.logits.subarray(0, k * spec.vocab));
    this.call = { n: 0, ids: this.ids, pos: this.pos, seq: this.seq, outRows: this.outViews[0], logits: this.logits };
  }

  get disposed(): boolean { return this.handle === null; }
  /** Slots currently acquired. */
  get active(): number { return this.inUse; }

  acquire(): number | null {
    if (!this.handle) throw new Error('runtime: used after dispose()');
    for (let s = 0; s < this.maxSeqs; s++) {
      if (!this.used[s]) { this.used[s] = 1; this.lengths[s] = 0; this.inUse++; return s; }
    }
    return null;
  }

  release(seq: number): void {
    if (seq >= 0 && seq < this.maxSeqs && this.used[seq]) { this.used[seq] = 0; this.lengths[seq] = 0; this.inUse--; }
    if (this.retired && this.inUse === 0) this.dispose();
  }

  length(seq: number): number { return this.lengths[seq] ?? 0; }

  step(batch: readonly RuntimeEntry[]): Float32Array {
    const h = this.handle;
    if (!h) throw new Error('runtime: used after dispose()');
    if (batch.length > this.maxSeqs) throw new Error(`runtime: ${batch.length} entries in one step, at most ${this.maxSeqs} (one per slot)`);
    let n = 0;
    for (let e = 0; e < batch.length; e++) {
      const { seq, ids } = batch[e];
      if (!(seq >= 0 && seq < this.maxSeqs && this.used[seq])) throw new Error(`runtime: slot ${seq} is not acquired`);
      if (ids.length === 0) throw new Error(`runtime: entry ${e} (slot ${seq}) has no tokens`);
      for (let f = 0; f < e; f++) if (batch[f].seq === seq) throw new Error(`runtime: slot ${seq} appears twice in one step`);
      if (this.lengths[seq] + ids.length > this.maxT) throw new Error(`runtime: slot ${seq} would hold ${this.lengths[seq] + ids.length} positions, more than ${this.maxT}`);
      n += ids.length;
    }
    if (n > this.ids.length) {
      const cap = Math.max(n, 2 * this.ids.length);
      this.ids = new Int32Array(cap); this.pos = new Int32Array(cap); this.seq = new Int32Array(cap);
      this.call.ids = this.ids; this.call.pos = this.pos; this.call.seq = this.seq;
    }
    let t = 0;
    for (let e = 0; e < batch.length; e++) {
      const { seq, ids } = batch[e];
      const base = this.lengths[seq];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!(Number.isInteger(id) && id >= 0 && id < this.vocabSize)) throw new Error(`runtime: token id ${id} (slot ${seq}) is outside the vocabulary (${this.vocabSize})`);
        this.ids[t] = id; this.pos[t] = base + i; this.seq[t] = seq; t++;
      }
      this.outRows[e] = t - 1;
    }
    const k = batch.length;
    this.call.n = n; this.call.outRows = this.outViews[k];
    this.be.decoderStep(h, this.call);
    for (let e = 0; e < batch.length; e++) this.lengths[batch[e].seq] += batch[e].ids.length;
    return this.logitViews[k];
  }

  /**
   * The native decoder's thread count per step shape (1, 2–8, 9–32, more tokens per step; 0 while
   * it is still timing 1 against all threads). `nt` > 0 fixes the count, 0 returns to measuring.
   * [] where the backend has no such choice (reference).
   */
  threads(nt?: number): number[] {
    const be = this.be as Backend & { decoderThreads?: (h: DecoderHandle, nt?: number) => number[] };
    if (!be.decoderThreads || !this.handle) return [];
    return be.decoderThreads(this.handle, nt);
  }

  dispose(): void {
    if (!this.handle) return;
    this.be.decoderFree(this.handle);
    this.handle = null;
  }
}

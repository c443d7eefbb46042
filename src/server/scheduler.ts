// Slots and the waiting queue. Active jobs are decoded together: each tick advances every
// running choice of one model entry by one token with ONE stepMany() call (generations on the
// shared InferenceRuntime go through one batched forward, sharing each weight read), then yields
// to the event loop (setImmediate) so responses flush, new requests are parsed and disconnects
// are noticed between steps.
//
// Entries (the base, each adapter) are separate batches: the runtime exists only without adapter
// wrappers, and an adapter is a switch of the one model, so a batch holds one entry's choices and
// ticks go round the entries with work (none waits more than one round).
//
// Prefill policy: a new request's first step (its whole prompt) joins the same batched step as the
// others' one-token decodes instead of running alone first. The others then advance in that step
// rather than waiting for a separate prefill; the price is that this one step lasts as long as
// the prompt's prefill (bounded by the context). Chunked prefill would need Generation to accept
// part of a prompt per step.

import { Generation, type GenerateOptions, type LanguageModel } from '../models/index.js';
import { stepMany } from '../models/generate.js';
import type { ModelEntry, ModelPool } from './pool.js';
import { ApiError } from './params.js';

/** The model's fused runtime (src/models/runtime.ts is not a public models file; this is its type through lm.ts). */
export type InferenceRuntime = NonNullable<ReturnType<NonNullable<LanguageModel['runtime']>>>;

export interface Choice {
  index: number;
  prompt: number[];
  opts: GenerateOptions;
  gen: Generation | null;
}

export interface Job {
  entry: ModelEntry;
  choices: Choice[];
  /** After each step of a choice (its Generation holds the new token). */
  onStep(c: Choice): void;
  /** Once: every choice ended (err undefined), or the job failed or was cancelled. */
  onEnd(err?: unknown): void;
  ended?: boolean;
}

export interface SchedulerOptions {
  /**
   * The model's fused runtime, asked for with maxSeqs = slots and maxT = ctx before any request so
   * that every Generation takes a slot of this one runtime (the model hands the same one out while it
   * is large enough) and stepMany decodes them in one batched call; null when the model has none
   * (adapter wrappers, masked models). Disposed by dispose().
   */
  runtime?: InferenceRuntime | null;
  /** After each step: the sequences of each forward call it made (a batched runtime step, or 1 per generation on its own forward). */
  onBatch?(size: number): void;
}

export class Scheduler {
  readonly active = new Set<Job>();
  readonly queue: Job[] = [];
  readonly runtime: InferenceRuntime | null;
  private pending = false;
  private idleWaiters: (() => void)[] = [];
  /** The entry stepped last (the round over entries continues after it). */
  private lastEntry: ModelEntry | null = null;
  /** Runtimes generations ran on: the pre-sized one, and a larger one the model built when a request's n choices outgrew it. */
  private readonly seen = new Set<InferenceRuntime>();

  constructor(readonly slots: number, readonly queueMax: number, private readonly pool: ModelPool, private readonly so: SchedulerOptions = {}) {
    this.runtime = so.runtime ?? null;
  }

  /** Start `job` in a free slot or queue it; 429 when the queue is full. */
  submit(job: Job): void {
    if (this.active.size < this.slots) this.active.add(job);
    else if (this.queue.length < this.queueMax) this.queue.push(job);
    else throw new ApiError(429, `the server is busy: ${this.slots} slot(s) generating and ${this.queue.length} request(s) waiting (queue limit ${this.queueMax}); retry later`, 'rate_limit_error', null, 'queue_full');
    this.schedule();
  }

  /** Drop `job` now (client gone, shutdown): its KV caches are freed and its slot goes to the next in line. */
  cancel(job: Job, err?: unknown): void {
    const qi = this.queue.indexOf(job);
    if (qi >= 0) this.queue.splice(qi, 1);
    this.end(job, err ?? new Error('cancelled'));
  }

  cancelAll(err: unknown): void {
    for (const j of [...this.queue, ...this.active]) this.cancel(j, err);
  }

  /** Resolves when no job is active or waiting. */
  idle(): Promise<void> {
    if (this.active.size === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Free the runtimes its generations ran on (after cancelAll; idempotent). */
  dispose(): void {
    this.runtime?.dispose();
    for (const rt of this.seen) rt.dispose();
    this.seen.clear();
  }

  private end(job: Job, err?: unknown): void {
    if (job.ended) return;
    job.ended = true;
    // Disposing a generation releases its runtime sequence (or KV cache) at once, even mid-batch.
    for (const c of job.choices) c.gen?.dispose();
    this.active.delete(job);
    while (this.active.size < this.slots && this.queue.length) this.active.add(this.queue.shift()!);
    try { job.onEnd(err); } catch { /* a failed write to a gone client */ }
    if (this.active.size === 0 && this.queue.length === 0) { const w = this.idleWaiters; this.idleWaiters = []; for (const f of w) f(); }
    this.schedule();
  }

  private schedule(): void {
    if (this.pending || this.active.size === 0) return;
    this.pending = true;
    setImmediate(() => { this.pending = false; this.tick(); });
  }

  /** A new Generation for `c` (on the model's runtime when it offers one: Generation takes a slot of it). */
  private start(job: Job, c: Choice): Generation {
    this.pool.activate(job.entry);
    return new Generation(this.pool.model, job.entry.tokenizer, c.prompt, c.opts);
  }

  /** The entry whose choices this tick steps: the next one with work after the last stepped. */
  private pickEntry(): ModelEntry | null {
    const withWork = new Set<ModelEntry>();
    for (const j of this.active) if (!j.ended) withWork.add(j.entry);
    if (withWork.size === 0) return null;
    const order = [...this.pool.entries.values()];
    const from = this.lastEntry ? order.indexOf(this.lastEntry) : -1;
    for (let k = 1; k <= order.length; k++) {
      const e = order[(from + k) % order.length];
      if (withWork.has(e)) return e;
    }
    return withWork.values().next().value ?? null;
  }

  private tick(): void {
    const entry = this.pickEntry();
    if (entry) {
      this.lastEntry = entry;
      this.stepEntry(entry);
    }
    this.schedule();
  }

  /** One batched step of every running choice of `entry`'s active jobs, then their stream callbacks. */
  private stepEntry(entry: ModelEntry): void {
    // In job and choice order; `run`: still generating (a choice with max_tokens 0 ends as it
    // starts, but its callback still fires once, to stream its finish).
    const batch: { job: Job; c: Choice; run: boolean }[] = [];
    for (const job of this.active) {
      if (job.ended || job.entry !== entry) continue;
      try {
        for (const c of job.choices) {
          const fresh = !c.gen;
          if (!c.gen) c.gen = this.start(job, c);
          if (!c.gen.done) batch.push({ job, c, run: true });
          else if (fresh) batch.push({ job, c, run: false });
        }
      } catch (e) {
        this.end(job, e);
      }
    }
    const live = batch.filter((b) => !b.job.ended);
    const running = live.filter((b) => b.run).map((b) => b.c.gen!);
    if (running.length) {
      // The forward calls stepMany makes: one per shared runtime, one per generation without.
      const calls = new Map<InferenceRuntime, number>();
      let own = 0;
      for (const g of running) { const rt = g.runtime; if (rt) calls.set(rt, (calls.get(rt) ?? 0) + 1); else own++; }
      for (const rt of calls.keys()) this.seen.add(rt);
      this.pool.activate(entry);
      try {
        stepMany(running);
      } catch (e) {
        // One batched call: which sequence failed is unknown, so every job in it fails.
        for (const b of live) this.end(b.job, e);
        return;
      }
      for (const n of calls.values()) this.so.onBatch?.(n);
      for (let i = 0; i < own; i++) this.so.onBatch?.(1);
    }
    const jobs = new Set<Job>();
    for (const b of live) {
      jobs.add(b.job);
      if (b.job.ended) continue;
      try { b.job.onStep(b.c); } catch (e) { this.end(b.job, e); }
    }
    // A job ends once none of its choices runs.
    for (const job of jobs) if (!job.ended && job.choices.every((c) => c.gen?.done)) this.end(job);
  }
}

// Slots and the waiting queue. Active jobs are stepped cooperatively: each tick advances every
// active choice by one token, then yields to the event loop (setImmediate) so responses flush,
// new requests are parsed and disconnects are noticed between tokens. No batched decoding: each
// slot has its own KV cache and forward call (batching slots of different lengths and adapters
// in one forward is left for later).

import { Generation, type GenerateOptions } from '../models/index.js';
import type { ModelEntry, ModelPool } from './pool.js';
import { ApiError } from './params.js';

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

export class Scheduler {
  readonly active = new Set<Job>();
  readonly queue: Job[] = [];
  private pending = false;
  private idleWaiters: (() => void)[] = [];

  constructor(readonly slots: number, readonly queueMax: number, private readonly pool: ModelPool) {}

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

  private end(job: Job, err?: unknown): void {
    if (job.ended) return;
    job.ended = true;
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

  private tick(): void {
    for (const job of [...this.active]) {
      if (job.ended) continue;
      try {
        let open = false;
        for (const c of job.choices) {
          if (job.ended) break;
          if (c.gen?.done) continue;
          this.pool.activate(job.entry);
          if (!c.gen) c.gen = new Generation(this.pool.model, job.entry.tokenizer, c.prompt, c.opts);
          c.gen.step();
          job.onStep(c);
          if (!c.gen.done) open = true;
        }
        if (!open) this.end(job);
      } catch (e) {
        this.end(job, e);
      }
    }
    this.schedule();
  }
}

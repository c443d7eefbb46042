// The served models: one base plus named adapters on one PeftModel (weights shared). Generation
// of different adapters is interleaved token by token, so every forward call is preceded by
// activate(entry): the slot switches the active adapter (and, when adapters carry their own
// input embedding, the embedding rows) for its own forward call only. All forward calls run on
// the one JS thread, so nothing else can run between the switch and the call.

import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { loadModel, type LanguageModel } from '../models/index.js';
import { loadTokenizer, type Tokenizer } from '../tokenizers/index.js';
import { PeftModel, readAdapterConfig } from '../tuners/index.js';
import { chatTemplateOf } from '../finetune/chat-generate.js';

export interface ModelEntry {
  /** The request's "model" value. */
  id: string;
  /** Adapter name on the PeftModel, null for the base. */
  adapter: string | null;
  dir: string;
  tokenizer: Tokenizer;
  /** Ids at or above this are never sampled (rows another adapter added); undefined = all. */
  vocabLimit?: number;
  /** This entry's input embedding when adapters carry their own (else null: the matrix is shared as is). */
  emb: Float32Array | null;
  peftType: string | null;
  chat: { template: string; fromFamily: boolean };
}

const hasTokenizer = (d: string): boolean => ['tokenizer.json', 'vocab.txt', 'vocab.json'].some((f) => existsSync(join(d, f)));

export class ModelPool {
  readonly model: LanguageModel;
  readonly peft: PeftModel | null;
  readonly entries = new Map<string, ModelEntry>();
  readonly baseId: string;
  private current: ModelEntry | null = null;
  private currentEmb: Float32Array | null = null;

  constructor(dir: string, adapters: Record<string, string>, name?: string) {
    if (!existsSync(dir)) throw new Error(`--model directory not found: ${dir}`);
    this.baseId = name ?? basename(resolve(dir));
    const base = loadModel(dir);
    base.eval();
    const baseTok = loadTokenizer(dir);
    const names = Object.keys(adapters);
    if (names.length === 0) {
      this.model = base; this.peft = null;
      this.entries.set(this.baseId, { id: this.baseId, adapter: null, dir, tokenizer: baseTok, emb: null, peftType: null, chat: chatTemplateOf(base, baseTok) });
      return;
    }
    const peft = new PeftModel(base);
    this.model = peft; this.peft = peft;
    const C = base.dims.hidden, baseRows = base.vocabSize;
    const baseEmb = Float32Array.from(base.inputEmbeddings().f32);
    const carried = new Map<string, { emb: Float32Array; rows: number }>();
    for (const n of names) {
      const adir = adapters[n];
      if (n === this.baseId) throw new Error(`--adapter ${n}=${adir}: the name is the base model's id; pick another name`);
      if (!existsSync(adir)) throw new Error(`--adapter ${n}=${adir}: directory not found`);
      readAdapterConfig(adir);
      // Each adapter loads over the base's embedding rows, so one without its own embedding gets the base's.
      peft.inputEmbeddings().f32.set(baseEmb);
      const before = peft.inputEmbeddings(), pre = Float32Array.from(before.f32);
      peft.loadAdapter(adir, n);
      const w = peft.inputEmbeddings();
      if (w !== before || w.f32.some((v, i) => v !== pre[i])) carried.set(n, { emb: Float32Array.from(w.f32), rows: peft.vocabSize });
      const tok = hasTokenizer(adir) ? loadTokenizer(adir) : baseTok;
      this.entries.set(n, { id: n, adapter: n, dir: adir, tokenizer: tok, emb: null, peftType: peft.adapters.get(n)!.config.peft_type, chat: chatTemplateOf(base, tok) });
    }
    const rows = peft.vocabSize;
    for (const [n, c] of carried) {
      if (c.rows !== rows) throw new Error(`--adapter ${n}=${adapters[n]}: its embedding has ${c.rows} rows but another adapter's has ${rows}; adapters with different vocabularies cannot share one server`);
    }
    // The base is listed first in /v1/models, then the adapters in --adapter order.
    const adapterEntries = [...this.entries.values()];
    this.entries.clear();
    this.entries.set(this.baseId, { id: this.baseId, adapter: null, dir, tokenizer: baseTok, emb: null, peftType: null, chat: chatTemplateOf(base, baseTok) });
    for (const e of adapterEntries) this.entries.set(e.id, e);
    if (carried.size) {
      const padded = new Float32Array(rows * C);
      padded.set(baseEmb);
      for (const e of this.entries.values()) {
        const c = e.adapter ? carried.get(e.adapter) : undefined;
        e.emb = c ? c.emb : padded;
        e.vocabLimit = c ? undefined : baseRows;
      }
      this.currentEmb = null;
    }
    for (const a of peft.adapters.values()) a.setActive(false);
    this.current = this.entries.get(this.baseId)!;
    if (carried.size) this.activate(this.current);
  }

  get(id: string): ModelEntry | undefined { return this.entries.get(id); }

  /** Make `e` the model's behaviour for the next forward calls. */
  activate(e: ModelEntry): void {
    const peft = this.peft;
    if (!peft) return;
    if (this.current !== e) {
      if (e.adapter) peft.setAdapter(e.adapter);
      else for (const a of peft.adapters.values()) a.setActive(false);
      this.current = e;
    }
    if (e.emb && this.currentEmb !== e.emb) { peft.inputEmbeddings().f32.set(e.emb); this.currentEmb = e.emb; }
  }

  /** The context (in real tokens) of `e`: prefix/prompt adapters take positions. */
  maxPositions(e: ModelEntry): number { this.activate(e); return this.model.maxPositions; }
}

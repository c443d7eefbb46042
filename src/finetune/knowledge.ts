// The knowledge-update experiment (examples/knowledge-update/): a base model learns new facts from
// a conversation file; we measure answer accuracy on held-out paraphrases of those facts and
// perplexity on held-out general text, before and after, per fine-tuning method (forgetting).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LanguageModel } from '../models/index.js';
import { generate } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { normalizeChatRecord, type ChatMessage } from '../data/chat.js';
import { readJsonFile } from '../io/json.js';
import { perplexity } from '../eval/perplexity.js';
import { chatGenerationSetup } from './chat-generate.js';
import { finetune, prepareModel, type FinetuneMethod, type FinetuneOptions } from './finetune.js';
import { loadModel } from '../models/index.js';
import { loadTokenizer } from '../tokenizers/index.js';
import { attachAdapterDir } from '../tuners/index.js';

/** One question: the conversation up to the user's last turn, and the word the answer must contain. */
export interface FactQuestion { messages: ChatMessage[]; answer: string }

/** eval.json: chat records (the last assistant turn is the reference answer) with an "answer" key word each. */
export function readFactQuestions(path: string): FactQuestion[] {
  const v = readJsonFile(path, 'fact questions');
  if (!Array.isArray(v)) throw new Error(`${path}: expected a JSON array of records`);
  return v.map((rec, i) => {
    const at = `${path}: record ${i}`;
    const answer = (rec as { answer?: unknown } | null)?.answer;
    if (typeof answer !== 'string' || answer.trim() === '') throw new Error(`${at}: "answer" must be a non-empty string (the key word the generated answer must contain)`);
    const { messages } = normalizeChatRecord(rec, at);
    let end = messages.length;
    while (end > 0 && messages[end - 1].role === 'assistant') end--;
    if (end === 0) throw new Error(`${at}: has no user turn before the answer`);
    return { messages: messages.slice(0, end), answer };
  });
}

export interface AccuracyResult { accuracy: number; correct: number; total: number; samples: { question: string; answer: string; generated: string; correct: boolean }[] }

/** Does `text` contain `word` as a whole word (case-insensitive; 'Mirr' does not match 'mirror')? */
export function containsWord(text: string, word: string): boolean {
  const esc = word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}])${esc}($|[^\\p{L}\\p{N}])`, 'iu').test(text);
}

/** Greedy answers (maxNewTokens) scored as correct when they contain the key word as a whole word (case-insensitive). */
export function factAccuracy(model: LanguageModel, tok: Tokenizer, qs: FactQuestion[], maxNewTokens = 16): AccuracyResult {
  let correct = 0;
  const samples: AccuracyResult['samples'] = [];
  for (const q of qs) {
    const c = chatGenerationSetup(model, tok, q.messages);
    const r = generate(model, tok, c.ids, { maxNewTokens, temperature: 0, eosTokenId: c.eosTokenId });
    const ok = containsWord(r.text, q.answer);
    if (ok) correct++;
    samples.push({ question: q.messages[q.messages.length - 1].content, answer: q.answer, generated: r.text, correct: ok });
  }
  return { accuracy: qs.length ? correct / qs.length : NaN, correct, total: qs.length, samples };
}

export interface KnowledgeRow {
  method: FinetuneMethod | 'base';
  trainable_params: number;
  accuracy: number;
  correct: number;
  total: number;
  heldout_ppl: number;
  train_s: number;
  samples: AccuracyResult['samples'];
}

export interface KnowledgeOptions {
  base: string;
  train: string;
  eval: string;
  /** Held-out general text for the forgetting check (scored over its first `heldoutTokens` tokens). */
  heldout: string;
  heldoutTokens?: number;
  out: string;
  methods: FinetuneMethod[];
  /** Per-method overrides of the fine-tuning options (steps, lr, peft keys…). */
  perMethod?: Partial<Record<FinetuneMethod, Partial<FinetuneOptions>>>;
  common?: Partial<FinetuneOptions>;
  log?: (s: string) => void;
}

export function knowledgeUpdate(o: KnowledgeOptions): KnowledgeRow[] {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const qs = readFactQuestions(o.eval);
  const heldText = readFileSync(o.heldout, 'utf8');
  const rows: KnowledgeRow[] = [];
  const measure = (method: KnowledgeRow['method'], model: LanguageModel, tok: Tokenizer, trainable: number, trainS: number): void => {
    const acc = factAccuracy(model, tok, qs);
    const ids = tok.encode(heldText, { addSpecialTokens: false }).slice(0, o.heldoutTokens ?? 20000);
    const ppl = perplexity(model, ids).ppl;
    rows.push({ method, trainable_params: trainable, accuracy: acc.accuracy, correct: acc.correct, total: acc.total, heldout_ppl: ppl, train_s: trainS, samples: acc.samples });
    log(`${method}: fact accuracy ${(100 * acc.accuracy).toFixed(1)}% (${acc.correct}/${acc.total}), held-out ppl ${ppl.toFixed(2)}`);
  };
  // "Before": the base as fine-tuning starts from it (chat tokens added, embeddings resized).
  const before = prepareModel({ method: 'full', model: o.base, data: o.train, out: o.out }, o.base, log);
  measure('base', before.model, before.tokenizer, 0, 0);
  before.model.dispose();
  for (const method of o.methods) {
    const out = join(o.out, method);
    const t0 = performance.now();
    const r = finetune({ ...o.common, ...o.perMethod?.[method], method, model: o.base, data: o.train, out, overwrite: true, log });
    const trainS = (performance.now() - t0) / 1000;
    const tok = loadTokenizer(out);
    const model = method === 'full' ? loadModel(out) : attachAdapterDir(loadModel(o.base), out);
    model.eval();
    measure(method, model, tok, r.trainable_params, trainS);
    model.dispose();
  }
  return rows;
}

/** The README table. */
export function knowledgeTable(rows: KnowledgeRow[]): string {
  const base = rows.find((r) => r.method === 'base');
  const lines = ['| method | trainable params | fact accuracy | held-out ppl | Δ ppl vs base | train time |', '|---|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    const d = base && r !== base ? `${r.heldout_ppl - base.heldout_ppl >= 0 ? '+' : ''}${(r.heldout_ppl - base.heldout_ppl).toFixed(2)}` : '—';
    lines.push(`| ${r.method === 'base' ? 'base (before)' : r.method} | ${r.trainable_params.toLocaleString('en-US')} | ${(100 * r.accuracy).toFixed(1)}% (${r.correct}/${r.total}) | ${r.heldout_ppl.toFixed(2)} | ${d} | ${r.method === 'base' ? '—' : `${r.train_s.toFixed(0)} s`} |`);
  }
  return lines.join('\n');
}

// The knowledge-update experiment (examples/knowledge-update/): a base model learns new facts from
// a conversation file; we measure answer accuracy on held-out paraphrases of those facts and
// perplexity on held-out general text, before and after, per fine-tuning method (forgetting).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate, loadModel, type LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import { normalizeChatRecord, type ChatMessage } from '../data/chat.js';
import { readJsonFile } from '../io/json.js';
import { perplexity } from '../eval/perplexity.js';
import { chatGenerationSetup } from './chat-generate.js';
import { finetune, prepareModel, type FinetuneMethod, type FinetuneOptions } from './finetune.js';
import { loadTokenizer } from '../tokenizers/index.js';
import { attachAdapterDir, PeftModel } from '../tuners/index.js';
import { mergeToDir } from './merge.js';

/** One question: the conversation up to the user's last turn, the word the answer must contain, and its group ('identity' for ids starting so, else 'fact'). */
export interface FactQuestion { messages: ChatMessage[]; answer: string; group: string }

/**
 * eval.json: chat records (the last assistant turn is the reference answer) with an "answer" key
 * word each; `suffix` tells groups of another file apart ('-seen': the training wordings).
 */
export function readFactQuestions(path: string, suffix = ''): FactQuestion[] {
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
    const id = (rec as { id?: unknown }).id;
    return { messages: messages.slice(0, end), answer, group: (typeof id === 'string' && id.startsWith('identity') ? 'identity' : 'fact') + suffix };
  });
}

export interface AccuracyResult { accuracy: number; correct: number; total: number; samples: { question: string; answer: string; group: string; generated: string; correct: boolean }[] }

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
    samples.push({ question: q.messages[q.messages.length - 1].content, answer: q.answer, group: q.group, generated: r.text, correct: ok });
  }
  return { accuracy: qs.length ? correct / qs.length : NaN, correct, total: qs.length, samples };
}

export interface GroupScore { accuracy: number; correct: number; total: number }

export interface KnowledgeRow {
  method: string;
  trainable_params: number;
  steps: number;
  /** New wordings (eval.json). */
  facts: GroupScore;
  identity: GroupScore;
  /** Training wordings (eval_seen.json), when given. */
  facts_seen: GroupScore | null;
  identity_seen: GroupScore | null;
  heldout_ppl: number;
  train_s: number;
  samples: AccuracyResult['samples'];
}

export interface KnowledgeOptions {
  base: string;
  train: string;
  eval: string;
  /** The same facts in training wordings (recall); optional. */
  evalSeen?: string;
  /** Held-out general text for the forgetting check (scored over its first `heldoutTokens` tokens). */
  heldout: string;
  heldoutTokens?: number;
  out: string;
  methods: FinetuneMethod[];
  /** Per-method overrides of the fine-tuning options (steps, lr, peft keys…). */
  perMethod?: Partial<Record<FinetuneMethod, Partial<FinetuneOptions>>>;
  common?: Partial<FinetuneOptions>;
  /** After the LoRA run: merge it and run DPO (a new LoRA) on these preference pairs, the merged SFT model as reference. */
  dpo?: { data: string; options?: Partial<FinetuneOptions> };
  log?: (s: string) => void;
}

const score = (s: AccuracyResult['samples'], g: string): GroupScore => {
  const xs = s.filter((x) => x.group === g), c = xs.filter((x) => x.correct).length;
  return { accuracy: xs.length ? c / xs.length : NaN, correct: c, total: xs.length };
};

export function knowledgeUpdate(o: KnowledgeOptions): KnowledgeRow[] {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const qs = [...readFactQuestions(o.eval), ...(o.evalSeen ? readFactQuestions(o.evalSeen, '-seen') : [])];
  const heldText = readFileSync(o.heldout, 'utf8');
  const rows: KnowledgeRow[] = [];
  const measure = (method: string, model: LanguageModel, tok: Tokenizer, trainable: number, steps: number, trainS: number): void => {
    const acc = factAccuracy(model, tok, qs);
    const ids = tok.encode(heldText, { addSpecialTokens: false }).slice(0, o.heldoutTokens ?? 20000);
    const ppl = perplexity(model, ids).ppl;
    const row: KnowledgeRow = { method, trainable_params: trainable, steps, facts: score(acc.samples, 'fact'), identity: score(acc.samples, 'identity'),
      facts_seen: o.evalSeen ? score(acc.samples, 'fact-seen') : null, identity_seen: o.evalSeen ? score(acc.samples, 'identity-seen') : null, heldout_ppl: ppl, train_s: trainS, samples: acc.samples };
    rows.push(row);
    const seen = row.facts_seen ? ` (training wordings: facts ${row.facts_seen.correct}/${row.facts_seen.total}, identity ${row.identity_seen!.correct}/${row.identity_seen!.total})` : '';
    log(`${method}: facts ${row.facts.correct}/${row.facts.total}, identity ${row.identity.correct}/${row.identity.total}${seen}, held-out ppl ${ppl.toFixed(2)}`);
  };
  // "Before": the base as fine-tuning starts from it (chat tokens added, embeddings resized).
  const before = prepareModel({ method: 'full', model: o.base, data: o.train, out: o.out }, o.base, log);
  measure('base', before.model, before.tokenizer, 0, 0, 0);
  before.model.dispose();
  for (const method of o.methods) {
    const out = join(o.out, method);
    const t0 = performance.now();
    const r = finetune({ ...o.common, ...o.perMethod?.[method], method, model: o.base, data: o.train, out, overwrite: true, log });
    const trainS = (performance.now() - t0) / 1000;
    const tok = loadTokenizer(out);
    const model = method === 'full' ? loadModel(out) : attachAdapterDir(loadModel(o.base), out);
    model.eval();
    measure(method, model, tok, r.trainable_params, r.steps, trainS);
    if (method === 'lora' && o.dpo && model instanceof PeftModel) {
      // The usual SFT → DPO pipeline: the SFT model (LoRA merged) is both the start and the reference.
      const sft = join(o.out, 'lora-merged');
      mergeToDir(model, tok, sft, true);
      const dout = join(o.out, 'lora-dpo');
      const t1 = performance.now();
      const d = finetune({ ...o.common, ...o.perMethod?.lora, ...o.dpo.options, method: 'lora', objective: 'dpo', model: sft, data: o.dpo.data, out: dout, overwrite: true, log });
      const m2 = attachAdapterDir(loadModel(sft), dout);
      m2.eval();
      measure('lora + dpo', m2, loadTokenizer(dout), d.trainable_params, d.steps, trainS + (performance.now() - t1) / 1000);
      m2.dispose();
    }
    model.dispose();
  }
  return rows;
}

const pct = (g: GroupScore): string => `${(100 * g.accuracy).toFixed(1)}% (${g.correct}/${g.total})`;

/** The README table: every method's scores after, next to the base's before. */
export function knowledgeTable(rows: KnowledgeRow[]): string {
  const base = rows.find((r) => r.method === 'base');
  const seen = rows.some((r) => r.facts_seen);
  const lines = [`| method | trainable params | steps |${seen ? ' facts, training wording | identity, training wording |' : ''} facts, new wording | identity, new wording | WikiText-2 test ppl (Δ vs base) | train time |`,
    `|---|---:|---:|${seen ? '---:|---:|' : ''}---:|---:|---:|---:|`];
  for (const r of rows) {
    const d = base && r !== base ? ` (${r.heldout_ppl - base.heldout_ppl >= 0 ? '+' : ''}${(r.heldout_ppl - base.heldout_ppl).toFixed(2)})` : '';
    const s = seen ? ` ${r.facts_seen ? pct(r.facts_seen) : '—'} | ${r.identity_seen ? pct(r.identity_seen) : '—'} |` : '';
    lines.push(`| ${r.method === 'base' ? 'base, before' : r.method} | ${r.trainable_params.toLocaleString('en-US')} | ${r.steps} |${s} ${pct(r.facts)} | ${pct(r.identity)} | ${r.heldout_ppl.toFixed(2)}${d} | ${r.method === 'base' ? '—' : `${r.train_s.toFixed(0)} s`} |`);
  }
  return lines.join('\n');
}

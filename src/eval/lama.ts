// The LAMA probe (Petroni et al., 2019) for masked and causal LMs. A fact's template is filled with
// its subject; masked LMs predict the [MASK] put in place of the object, causal LMs the next token
// after the text before the object. Candidates are ranked by the logit at that position (the same
// order as the probability); P@k = the gold object is among the k best candidates. Only objects
// that are ONE token of the model's vocabulary (and in the candidate set) are probed; the others
// are skipped and counted, as LAMA does. Optional k in-context demonstrations (filled-in sentences
// of the same relation, seeded draws from its train facts) go before the query.

import * as O from '../engine/ops.js';
import { tidy, noGrad } from '../engine/index.js';
import { Rng } from '../engine/rng.js';
import { logitsAt, type LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { demoSeed, drawDemonstrations, fillTemplate, splitAtObject, type LamaFact, type LamaRelation } from '../data/lama.js';

export type LamaVocab = 'common' | 'full';

export interface LamaProbeOptions {
  /** Demonstrations per query (0 = LAMA's zero-shot probe). */
  kShot?: number;
  seed?: number;
  /** Probe only the first N facts of each relation. */
  maxFacts?: number;
  /** Sequences per forward pass. */
  batchSize?: number;
}

export interface LamaRelationResult { p1: number; p10: number; n: number; skipped: number; }

/** One fact's outcome: 1-based rank of the gold object among the candidates. */
export interface LamaPrediction { sub: string; obj: string; rank: number; top: string[]; }

/**
 * The candidate set for the probe: `common` = LAMA's common vocabulary words that are one token of
 * this tokenizer (LAMA's setup), `full` = every non-special id of the model's vocabulary.
 */
export class LamaCandidates {
  readonly ids: Int32Array;
  private readonly member: Uint8Array;
  constructor(ids: Iterable<number>, vocabSize: number) {
    this.member = new Uint8Array(vocabSize);
    for (const id of ids) if (id >= 0 && id < vocabSize) this.member[id] = 1;
    const list: number[] = [];
    this.member.forEach((m, i) => { if (m) list.push(i); });
    this.ids = Int32Array.from(list);
  }
  has(id: number): boolean { return id >= 0 && id < this.member.length && this.member[id] === 1; }
  get size(): number { return this.ids.length; }
}

/**
 * The id of `word` when it is a single token as the word after a space ("Paris" → 'ĠParis' for
 * byte-level BPE, 'Paris' for WordPiece), else undefined. Special tokens never count.
 */
export function singleTokenId(tokenizer: Tokenizer, word: string): number | undefined {
  const ids = tokenizer.encode(' ' + word, { addSpecialTokens: false });
  if (ids.length !== 1 || tokenizer.isSpecialId(ids[0])) return undefined;
  return ids[0];
}

export function lamaCandidates(tokenizer: Tokenizer, model: LanguageModel, vocab: LamaVocab, commonVocab?: readonly string[]): LamaCandidates {
  const V = Math.min(model.vocabSize, tokenizer.vocabSize);
  if (vocab === 'full') {
    const ids: number[] = [];
    for (let i = 0; i < V; i++) if (!tokenizer.isSpecialId(i) && tokenizer.idToToken(i) !== undefined) ids.push(i);
    return new LamaCandidates(ids, V);
  }
  if (!commonVocab) throw new Error('lamaCandidates: --vocab common needs the LAMA common vocabulary');
  const ids: number[] = [];
  for (const w of commonVocab) { const id = singleTokenId(tokenizer, w); if (id !== undefined) ids.push(id); }
  return new LamaCandidates(ids, V);
}

/** The mask id: the tokenizer's role, else a special '[MASK]' / '<mask>' token. */
export function maskTokenOf(tokenizer: Tokenizer): number | undefined {
  if (tokenizer.maskTokenId !== undefined) return tokenizer.maskTokenId;
  for (const t of ['[MASK]', '<mask>']) { const id = tokenizer.tokenToId(t); if (id !== undefined && tokenizer.isSpecialId(id)) return id; }
  return undefined;
}

/** [CLS]-style ids the tokenizer's post-processor puts around a text (none for GPT-2). */
function specialWrap(tokenizer: Tokenizer): { head: number[]; tail: number[] } {
  const bare = tokenizer.encode('a', { addSpecialTokens: false });
  const full = tokenizer.encode('a', { addSpecialTokens: true });
  for (let i = 0; i + bare.length <= full.length; i++) {
    if (bare.every((v, j) => full[i + j] === v)) return { head: full.slice(0, i), tail: full.slice(i + bare.length) };
  }
  return { head: [], tail: [] };
}

interface Query { ids: number[]; pos: number; gold: number; fact: LamaFact; }

/** What the prompt builder needs of a model. */
export type LamaModelSpec = Pick<LanguageModel, 'kind' | 'maxPositions' | 'eosTokenId'>;

/** A probe (or ICT) input: token ids and the position whose prediction is the object. */
export interface LamaPrompt { ids: number[]; pos: number; }

/**
 * The input of one fact: demonstrations (filled-in sentences, in order) + the query. masked: the
 * mask token in [Y] and the template's rest, inside the tokenizer's special tokens ([CLS] … [SEP]);
 * the object is predicted at the mask. causal: the text before [Y]; the object is the next token
 * after `pos`. Demonstrations are dropped from the front until the ids fit `model.maxPositions`;
 * null when even the bare query does not fit. The target id is `singleTokenId(tokenizer, fact.obj)`.
 */
export function lamaPrompt(model: LamaModelSpec, tokenizer: Tokenizer, relation: LamaRelation, fact: LamaFact, demos: readonly LamaFact[]): LamaPrompt | null {
  return buildQuery(model, tokenizer, model.kind === 'masked' ? specialWrap(tokenizer) : { head: [], tail: [] }, relation, fact, demos);
}

function buildQuery(model: LamaModelSpec, tokenizer: Tokenizer, wrap: { head: number[]; tail: number[] }, relation: LamaRelation,
  fact: LamaFact, demos: readonly LamaFact[]): LamaPrompt | null {
  const enc = (s: string): number[] => (s ? tokenizer.encode(s, { addSpecialTokens: false }) : []);
  const { prefix, suffix } = splitAtObject(relation.template, fact.sub);
  for (let d = 0; d <= demos.length; d++) {
    const ctx = demos.slice(d).map((f) => fillTemplate(relation.template, f.sub, f.obj));
    const before = [...ctx, prefix].filter((s) => s !== '').join(' ');
    let ids: number[], pos: number;
    if (model.kind === 'masked') {
      const mask = maskTokenOf(tokenizer);
      if (mask === undefined) throw new Error('the LAMA probe of a masked LM needs a tokenizer with a mask token ([MASK])');
      const pre = [...wrap.head, ...enc(before)];
      ids = [...pre, mask, ...enc(suffix), ...wrap.tail];
      pos = pre.length;
    } else {
      ids = enc(before);
      // A template starting with [Y] has no context: condition on the end-of-text token when there is one.
      if (ids.length === 0 && model.eosTokenId !== null) ids = [model.eosTokenId];
      if (ids.length === 0) return null;
      pos = ids.length - 1;
    }
    if (ids.length <= model.maxPositions) return { ids, pos };
  }
  return null;
}

/** Scores [n, V] at each query's position, in batches of right-padded sequences. */
function positionLogits(model: LanguageModel, queries: Query[], batchSize: number, pad: number, onRow: (q: Query, row: Float32Array) => void): void {
  // Similar lengths together: less padding.
  const order = queries.map((_, i) => i).sort((a, b) => queries[a].ids.length - queries[b].ids.length);
  for (let s = 0; s < order.length; s += batchSize) {
    const group = order.slice(s, s + batchSize).map((i) => queries[i]);
    const B = group.length, T = Math.max(...group.map((q) => q.ids.length));
    const ids = new Int32Array(B * T).fill(pad), mask = new Int32Array(B * T), at = new Int32Array(B);
    group.forEach((q, b) => { q.ids.forEach((v, t) => { ids[b * T + t] = v; mask[b * T + t] = 1; }); at[b] = b * T + q.pos; });
    tidy(() => noGrad(() => {
      // Only the probed positions go through the LM head.
      const logits = O.contiguous(logitsAt(model, O.fromData(ids, [B, T]), at, { attentionMask: O.fromData(mask, [B, T]) }));
      const V = logits.shape[1], data = logits.f32, off = logits.offset;
      group.forEach((q, b) => onRow(q, data.subarray(off + b * V, off + (b + 1) * V)));
    }));
  }
}

/**
 * Probe one relation: P@1, P@10 over its probed facts, the count of skipped facts (object not one
 * token / not a candidate, or the query too long for the model). `trainPool` supplies the
 * demonstrations (its facts never include the query's own).
 */
export function probeRelation(model: LanguageModel, tokenizer: Tokenizer, relation: LamaRelation, facts: readonly LamaFact[],
  trainPool: readonly LamaFact[], candidates: LamaCandidates, opts: LamaProbeOptions = {}): LamaRelationResult & { predictions: LamaPrediction[] } {
  const maskId = maskTokenOf(tokenizer);
  if (model.kind === 'masked' && maskId === undefined) throw new Error('the LAMA probe of a masked LM needs a tokenizer with a mask token ([MASK])');
  model.eval();
  const k = opts.kShot ?? 0, seed = opts.seed ?? 0, batch = opts.batchSize ?? 32;
  const use = opts.maxFacts !== undefined ? facts.slice(0, opts.maxFacts) : facts;
  const wrap = model.kind === 'masked' ? specialWrap(tokenizer) : { head: [], tail: [] };
  const queries: Query[] = [];
  let skipped = 0;
  use.forEach((fact, i) => {
    const gold = singleTokenId(tokenizer, fact.obj);
    if (gold === undefined || !candidates.has(gold)) { skipped++; return; }
    const demos = k > 0 ? drawDemonstrations(trainPool, k, new Rng(demoSeed(seed, relation.id, i)), fact) : [];
    const q = buildQuery(model, tokenizer, wrap, relation, fact, demos);
    if (q) queries.push({ ...q, gold, fact }); else skipped++;
  });
  const predictions: LamaPrediction[] = [];
  let hit1 = 0, hit10 = 0;
  const cand = candidates.ids;
  positionLogits(model, queries, batch, tokenizer.padTokenId ?? 0, (q, row) => {
    // Rank = 1 + candidates scoring strictly higher than the gold object (ties go to the gold).
    const g = row[q.gold];
    let above = 0;
    for (let i = 0; i < cand.length; i++) if (row[cand[i]] > g) above++;
    const rank = above + 1;
    if (rank <= 1) hit1++;
    if (rank <= 10) hit10++;
    predictions.push({ sub: q.fact.sub, obj: q.fact.obj, rank, top: topTokens(row, cand, 10).map((id) => tokenizer.idToToken(id) ?? String(id)) });
  });
  const n = queries.length;
  return { p1: n ? hit1 / n : 0, p10: n ? hit10 / n : 0, n, skipped, predictions };
}

function topTokens(row: Float32Array, cand: Int32Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < cand.length; i++) {
    const id = cand[i], v = row[id];
    if (best.length === k && v <= row[best[k - 1]]) continue;
    let j = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(id);
    while (j > 0 && row[best[j - 1]] < v) { best[j] = best[j - 1]; j--; }
    best[j] = id;
  }
  return best;
}

/** LAMA's macro average: the mean over relations with at least one probed fact. */
export function macroAverage(results: Record<string, LamaRelationResult>): { p1: number; p10: number; relations: number } {
  const rs = Object.values(results).filter((r) => r.n > 0);
  if (rs.length === 0) return { p1: 0, p10: 0, relations: 0 };
  return { p1: rs.reduce((s, r) => s + r.p1, 0) / rs.length, p10: rs.reduce((s, r) => s + r.p10, 0) / rs.length, relations: rs.length };
}

// In-context tuning instances for LAMA (the paper's settings 1 and 3): K filled-in sentences of a
// relation followed by the query with its object to predict. A masked LM sees the object as
// [MASK] and predicts it in place; a causal LM predicts it as the next token. The prompt is the
// LAMA probe's own (lamaPrompt), so what is tuned is exactly what is evaluated.

import { Rng } from '../engine/index.js';
import type { Tokenizer } from '../tokenizers/types.js';
import { drawDemonstrations, type LamaFact, type LamaRelation } from '../data/lama.js';
import { lamaPrompt, maskTokenOf, singleTokenId, type LamaModelSpec } from '../eval/lama.js';
import type { Instance } from './ict.js';

/** One relation's facts to draw queries and demonstrations from. */
export interface LamaPool { relation: LamaRelation; facts: LamaFact[] }

export interface LamaInstanceOptions {
  /** Demonstrations per instance (0, or demos false: the query alone — the Multitask-FT baseline). */
  k: number;
  demos: boolean;
  seed: number;
  n: number;
}

/**
 * n instances: a relation uniformly, a query fact of it whose object is one token of the
 * vocabulary, k demonstrations of the same relation (never the query's fact or subject). `spec`
 * gives the model kind and the context both teacher and student must fit.
 */
export function lamaInstances(tok: Tokenizer, spec: LamaModelSpec, pools: readonly LamaPool[], o: LamaInstanceOptions): Instance[] {
  const mask = spec.kind === 'masked' ? maskTokenOf(tok) : undefined;
  if (spec.kind === 'masked' && mask === undefined) throw new Error('LAMA in-context tuning of a masked LM needs a tokenizer with a mask token ([MASK])');
  // Queries must have a one-token object (LAMA's rule); demonstrations may be any fact.
  const usable = pools.map((p) => ({ p, queries: p.facts.flatMap((f) => { const id = singleTokenId(tok, f.obj); return id === undefined ? [] : [{ f, id }]; }) }))
    .filter((u) => u.queries.length > 0);
  if (usable.length === 0) throw new Error(`LAMA in-context tuning: none of the ${pools.length} relations has a fact whose object is one token of the vocabulary`);
  const rng = new Rng(o.seed);
  const out: Instance[] = [];
  for (let tries = 0; out.length < o.n; tries++) {
    if (tries > 20 * o.n + 1000) throw new Error(`LAMA in-context tuning: only ${out.length} of ${o.n} instances fit the ${spec.maxPositions}-token context`);
    const u = usable[rng.int(usable.length)];
    const q = u.queries[rng.int(u.queries.length)];
    const demos = o.demos && o.k > 0 ? drawDemonstrations(u.p.facts, o.k, rng, q.f) : [];
    const p = lamaPrompt(spec, tok, u.p.relation, q.f, demos);
    if (!p) continue;
    const base = { task: u.p.relation.id, options: [] as string[], gold: q.f.obj };
    if (mask !== undefined) {
      const suffix = p.ids.slice();
      suffix[p.pos] = q.id;
      out.push({ ...base, prefix: [], suffix, contStart: p.pos, contEnd: p.pos + 1, mask });
    } else {
      // The causal prompt ends where the object starts; it must leave room for the object token.
      if (p.ids.length + 1 > spec.maxPositions) continue;
      out.push({ ...base, prefix: p.ids, suffix: [q.id], contStart: 0 });
    }
  }
  return out;
}

// `icld lama eval`: load a model directory, probe the chosen LAMA relations, print JSON or a table,
// optionally write DIR/results.json + DIR/report.html (atomically).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../models/index.js';
import { loadTokenizer } from '../tokenizers/index.js';
import { writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { closestMatch } from '../io/json.js';
import { htmlPage, htmlTable, barChart, esc } from '../report/html.js';
import { allRelations, defaultLamaDir, loadCommonVocab, loadLamaRelation, trexRelations, type LamaRelation } from '../data/lama.js';
import { lamaCandidates, macroAverage, probeRelation, type LamaRelationResult, type LamaVocab } from './lama.js';

export interface LamaEvalOptions {
  model: string;
  /** Relation ids; undefined = the 41 T-REx relations. */
  relations?: string[];
  kShot: number;
  seed: number;
  vocab: LamaVocab;
  dataDir?: string;
  maxFacts?: number;
  batchSize?: number;
  report?: string;
  log?: (s: string) => void;
}

export interface LamaEvalResult {
  relations: Record<string, LamaRelationResult>;
  average: { p1: number; p10: number };
  model: string;
  model_type: string;
  kind: 'causal' | 'masked';
  k_shot: number;
  seed: number;
  vocab: LamaVocab;
  candidates: number;
  max_facts: number | null;
  data_dir: string;
}

/** A usage message for relation ids the data folder does not have ("did you mean"), or null. */
export function unknownRelation(ids: readonly string[], dataDir: string = defaultLamaDir()): string | null {
  const known = allRelations(dataDir).map((r) => r.id);
  for (const id of ids) {
    if (known.includes(id)) continue;
    const near = closestMatch(id, known);
    return `unknown LAMA relation '${id}'${near ? ` (did you mean '${near}'?)` : ''}; known: ${known.slice(0, 8).join(', ')}, … (${known.length} in all)`;
  }
  return null;
}

export function lamaEval(o: LamaEvalOptions): LamaEvalResult {
  const dataDir = o.dataDir ?? defaultLamaDir();
  const log = o.log ?? (() => {});
  const byId = new Map(allRelations(dataDir).map((r) => [r.id, r]));
  const rels: LamaRelation[] = o.relations ? o.relations.map((id) => { const r = byId.get(id); if (!r) throw new Error(unknownRelation([id], dataDir) ?? id); return r; }) : trexRelations(dataDir);
  const tokenizer = loadTokenizer(o.model);
  const model = loadModel(o.model);
  model.eval();
  const candidates = lamaCandidates(tokenizer, model, o.vocab, o.vocab === 'common' ? loadCommonVocab(dataDir) : undefined);
  if (candidates.size === 0) throw new Error(`--model ${o.model}: no ${o.vocab === 'common' ? 'LAMA common-vocabulary word is' : 'token is'} a single token of its vocabulary; nothing to rank`);
  const results: Record<string, LamaRelationResult> = {};
  const t0 = Date.now();
  for (const rel of rels) {
    const data = loadLamaRelation(rel, dataDir);
    // Google-RE has no train facts: its demonstrations come from its other test facts.
    const pool = data.train.length ? data.train : data.test;
    const r = probeRelation(model, tokenizer, rel, data.test, pool, candidates, { kShot: o.kShot, seed: o.seed, maxFacts: o.maxFacts, batchSize: o.batchSize });
    results[rel.id] = { p1: r.p1, p10: r.p10, n: r.n, skipped: r.skipped };
    log(`lama ${rel.id}: P@1 ${(100 * r.p1).toFixed(1)}  P@10 ${(100 * r.p10).toFixed(1)}  n ${r.n}  skipped ${r.skipped}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  const avg = macroAverage(results);
  const out: LamaEvalResult = {
    relations: results, average: { p1: avg.p1, p10: avg.p10 }, model: o.model, model_type: model.modelType, kind: model.kind,
    k_shot: o.kShot, seed: o.seed, vocab: o.vocab, candidates: candidates.size, max_facts: o.maxFacts ?? null, data_dir: dataDir,
  };
  model.dispose();
  if (o.report) writeLamaReport(o.report, out, rels);
  return out;
}

const pct = (v: number): string => (100 * v).toFixed(1);

/** The readable table: one row per relation, then the macro average. */
export function formatLamaTable(r: LamaEvalResult): string {
  const rows: string[][] = [['relation', 'P@1', 'P@10', 'n', 'skipped']];
  for (const [id, x] of Object.entries(r.relations)) rows.push([id, x.n ? pct(x.p1) : '–', x.n ? pct(x.p10) : '–', String(x.n), String(x.skipped)]);
  rows.push(['average', pct(r.average.p1), pct(r.average.p10), '', '']);
  const w = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const line = (row: string[]): string => row.map((s, c) => (c === 0 ? s.padEnd(w[c]) : s.padStart(w[c]))).join('  ').trimEnd();
  return [`LAMA ${r.model} (${r.model_type}, ${r.kind}), k-shot ${r.k_shot}, seed ${r.seed}, vocab ${r.vocab} (${r.candidates} candidates)`, ...rows.map(line)].join('\n');
}

export function lamaReportHtml(r: LamaEvalResult, rels: readonly LamaRelation[]): string {
  const label = new Map(rels.map((x) => [x.id, x]));
  const ids = Object.keys(r.relations);
  const body = [
    `<p>Model <code>${esc(r.model)}</code> (${esc(r.model_type)}, ${r.kind} LM); ${r.k_shot} demonstration(s), seed ${r.seed}; candidates: ${r.vocab === 'common' ? 'LAMA common vocabulary' : 'full vocabulary'} (${r.candidates} tokens)` +
      `${r.max_facts !== null ? `; at most ${r.max_facts} facts per relation` : ''}. Macro average over relations: P@1 ${pct(r.average.p1)}, P@10 ${pct(r.average.p10)}.</p>`,
    barChart('P@1 per relation', ids.map((id) => ({ label: `${id} ${label.get(id)?.label ?? ''}`.trim(), value: r.relations[id].p1 }))),
    htmlTable(['relation', 'template', 'P@1 (%)', 'P@10 (%)', 'n', 'skipped'],
      [...ids.map((id) => { const x = r.relations[id]; return [id, label.get(id)?.template ?? '', x.n ? pct(x.p1) : '–', x.n ? pct(x.p10) : '–', x.n, x.skipped]; }),
        ['average', '', pct(r.average.p1), pct(r.average.p10), '', '']]),
  ].join('\n');
  return htmlPage('LAMA probe', body);
}

export function writeLamaReport(dir: string, r: LamaEvalResult, rels: readonly LamaRelation[]): void {
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(join(dir, 'results.json'), r);
  writeFileAtomic(join(dir, 'report.html'), lamaReportHtml(r, rels));
}

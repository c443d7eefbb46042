// LAMA (Petroni et al., 2019) probe data: relation templates, T-REx test facts, AutoPrompt's
// T-REx train/dev facts, Google-RE and the common vocabulary, read from a folder laid out like the
// shipped data/lama/ (see data/README.md). Also the seeded k-shot demonstration draws and the
// relation/fact splits of the paper's settings 1 (meta) and 3 (multitask). Pure data: no model.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng, fmix32 } from '../engine/rng.js';
import { decodeUtf8, jsonlRecords, readUserFile } from '../io/json.js';

export interface LamaRelation {
  /** Wikidata property ('P19') for T-REx, or the Google-RE name ('place_of_birth'). */
  id: string;
  /** Cloze template with one [X] (subject) and one [Y] (object): "[X] was born in [Y] ." */
  template: string;
  label: string;
  /** '1-1', 'N-1' or 'N-M' (LAMA's relation types). */
  type: string;
  source: 'trex' | 'google_re';
}

export interface LamaFact {
  sub: string;
  obj: string;
  /** LAMA's uuid where the file has one (test facts). */
  uuid?: string;
}

export interface LamaRelationData {
  relation: LamaRelation;
  /** LAMA's test facts (TREx/<id>.jsonl or Google_RE/<id>_test.jsonl). */
  test: LamaFact[];
  /** AutoPrompt's T-REx facts (empty for Google-RE), minus any whose (sub, obj) is also a test fact. */
  train: LamaFact[];
  dev: LamaFact[];
  /** train/dev facts dropped because the same (sub, obj) pair is a test fact. */
  droppedOverlap: number;
}

/** LAMA's Google-RE relations and their templates (LAMA's run_experiments.py). */
export const GOOGLE_RE_RELATIONS: readonly LamaRelation[] = [
  { id: 'place_of_birth', template: '[X] was born in [Y] .', label: 'place of birth', type: 'N-1', source: 'google_re' },
  { id: 'date_of_birth', template: '[X] (born [Y]).', label: 'date of birth', type: 'N-1', source: 'google_re' },
  { id: 'place_of_death', template: '[X] died in [Y] .', label: 'place of death', type: 'N-1', source: 'google_re' },
];

// The shipped files are a few MB; these caps only stop a wrong --data-dir from reading a huge file.
const MAX_FILE = 64 << 20;

/** The shipped data/lama folder (resolved from this file, so it works from any working directory). */
export const defaultLamaDir = (): string => fileURLToPath(new URL('../../../data/lama', import.meta.url));

function checkDir(dir: string): void {
  if (!existsSync(dir)) throw new Error(`LAMA data folder not found: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory (expected a folder laid out like data/lama/)`);
}

function str(v: Record<string, unknown>, key: string, at: string): string {
  const s = v[key];
  if (typeof s !== 'string' || s.trim() === '') throw new Error(`${at}: "${key}" must be a non-empty string`);
  return s;
}

function record(value: unknown, at: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${at}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/** Every row of relations.jsonl (46 in LAMA's file: the 41 T-REx relations and 5 others). */
export function readRelationsFile(dir: string): LamaRelation[] {
  checkDir(dir);
  const path = join(dir, 'relations.jsonl');
  const out: LamaRelation[] = [];
  const seen = new Set<string>();
  for (const { value, at } of jsonlRecords(readUserFile(path, 'LAMA relations file', MAX_FILE), path)) {
    const r = record(value, at);
    const id = str(r, 'relation', at), template = str(r, 'template', at);
    for (const slot of ['[X]', '[Y]']) {
      if (template.split(slot).length !== 2) throw new Error(`${at}: template ${JSON.stringify(template)} must hold ${slot} exactly once`);
    }
    if (seen.has(id)) throw new Error(`${at}: relation ${id} is listed twice`);
    seen.add(id);
    out.push({ id, template, label: typeof r.label === 'string' ? r.label : id, type: typeof r.type === 'string' ? r.type : '', source: 'trex' });
  }
  return out;
}

/** The T-REx relations that have a test file TREx/<id>.jsonl (LAMA's 41), in relations.jsonl order. */
export function trexRelations(dir: string = defaultLamaDir()): LamaRelation[] {
  const rels = readRelationsFile(dir);
  const tdir = join(dir, 'TREx');
  if (!existsSync(tdir)) throw new Error(`LAMA T-REx folder not found: ${tdir}`);
  const files = new Set(readdirSync(tdir).filter((f) => f.endsWith('.jsonl')).map((f) => f.slice(0, -'.jsonl'.length)));
  const known = new Set(rels.map((r) => r.id));
  for (const f of files) if (!known.has(f)) throw new Error(`${join(tdir, f + '.jsonl')}: relation ${f} has no template in ${join(dir, 'relations.jsonl')}`);
  return rels.filter((r) => files.has(r.id));
}

/** The T-REx relations followed by the three Google-RE ones (those whose file exists). */
export function allRelations(dir: string = defaultLamaDir()): LamaRelation[] {
  return [...trexRelations(dir), ...GOOGLE_RE_RELATIONS.filter((r) => existsSync(join(dir, 'Google_RE', `${r.id}_test.jsonl`)))];
}

/** Facts of one JSONL file: records with string sub_label / obj_label (uuid kept when present). */
export function readFacts(path: string): LamaFact[] {
  const out: LamaFact[] = [];
  for (const { value, at } of jsonlRecords(readUserFile(path, 'LAMA facts file', MAX_FILE), path)) {
    const r = record(value, at);
    const f: LamaFact = { sub: str(r, 'sub_label', at), obj: str(r, 'obj_label', at) };
    if (typeof r.uuid === 'string') f.uuid = r.uuid;
    out.push(f);
  }
  return out;
}

const pairKey = (f: LamaFact): string => `${f.sub}\u0000${f.obj}`;

/** A relation's templates and facts: test, and (T-REx) train/dev with test pairs removed. */
export function loadLamaRelation(relation: LamaRelation, dir: string = defaultLamaDir()): LamaRelationData {
  checkDir(dir);
  if (relation.source === 'google_re') {
    return { relation, test: readFacts(join(dir, 'Google_RE', `${relation.id}_test.jsonl`)), train: [], dev: [], droppedOverlap: 0 };
  }
  const test = readFacts(join(dir, 'TREx', `${relation.id}.jsonl`));
  const testPairs = new Set(test.map(pairKey));
  let dropped = 0;
  const clean = (fs: LamaFact[]): LamaFact[] => fs.filter((f) => (testPairs.has(pairKey(f)) ? (dropped++, false) : true));
  const td = join(dir, 'TREx_train_dev', relation.id);
  const train = existsSync(join(td, 'train.jsonl')) ? clean(readFacts(join(td, 'train.jsonl'))) : [];
  const dev = existsSync(join(td, 'dev.jsonl')) ? clean(readFacts(join(td, 'dev.jsonl'))) : [];
  return { relation, test, train, dev, droppedOverlap: dropped };
}

/** LAMA's common vocabulary (common_vocab_cased.txt: one token a line). */
export function loadCommonVocab(dir: string = defaultLamaDir()): string[] {
  const path = join(dir, 'common_vocab_cased.txt');
  const text = decodeUtf8(readUserFile(path, 'LAMA common vocabulary', MAX_FILE), path);
  const out: string[] = [];
  for (const line of text.split('\n')) { const w = line.trim(); if (w) out.push(w); }
  if (out.length === 0) throw new Error(`${path}: the common vocabulary is empty`);
  return out;
}

/** The template with [X] = subject and [Y] = object (or a mask token). */
export function fillTemplate(template: string, sub: string, obj: string): string {
  return template.replace('[X]', () => sub).replace('[Y]', () => obj);
}

/**
 * The template with the subject filled, cut at [Y]: `prefix` is the text before the object (its
 * trailing space dropped), `suffix` the text after it. A causal LM scores the object after `prefix`
 * only (the suffix is not seen: templates such as "[X] is [Y] citizen ." are probed by their prefix).
 */
export function splitAtObject(template: string, sub: string): { prefix: string; suffix: string } {
  const filled = template.replace('[X]', () => sub);
  const i = filled.indexOf('[Y]');
  return { prefix: filled.slice(0, i).replace(/\s+$/, ''), suffix: filled.slice(i + 3) };
}

/** A 32-bit seed for query `index` of `relationId` under `seed` (draws independent of batching and --max-facts). */
export function demoSeed(seed: number, relationId: string, index: number): number {
  let h = fmix32((seed >>> 0) ^ 0x9e3779b9);
  for (let i = 0; i < relationId.length; i++) h = fmix32((h ^ relationId.charCodeAt(i)) >>> 0);
  return fmix32((h ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0);
}

/**
 * k facts drawn without replacement from `pool` with `rng`, never one with the query's (sub, obj)
 * (nor the query's subject, whose answer would leak). Fewer than k when the pool has fewer.
 */
export function drawDemonstrations(pool: readonly LamaFact[], k: number, rng: Rng, query?: LamaFact): LamaFact[] {
  const ok = query ? pool.filter((f) => f.sub !== query.sub && pairKey(f) !== pairKey(query)) : pool.slice();
  const n = Math.min(k, ok.length);
  // partial Fisher–Yates: the first n slots
  for (let i = 0; i < n; i++) { const j = i + rng.int(ok.length - i); const t = ok[i]; ok[i] = ok[j]; ok[j] = t; }
  return ok.slice(0, n);
}

export interface MetaSplit { train: string[]; dev: string[]; test: string[]; }

/**
 * Setting 1 (LAMA Meta-ICT): relation ids split into meta-train / validation / test by a seeded
 * permutation of the sorted ids (default 30 / 5 / 6 of the 41). Deterministic in (ids, seed).
 */
export function lamaMetaSplit(ids: readonly string[], seed: number, sizes: { train: number; dev: number; test: number } = { train: 30, dev: 5, test: 6 }): MetaSplit {
  if (new Set(ids).size !== ids.length) throw new Error('lamaMetaSplit: relation ids must be distinct');
  const need = sizes.train + sizes.dev + sizes.test;
  if (ids.length < need) throw new Error(`lamaMetaSplit: ${ids.length} relations, need ${need} (${sizes.train} + ${sizes.dev} + ${sizes.test})`);
  const p = new Rng(seed >>> 0).shuffle([...ids].sort());
  return { train: p.slice(0, sizes.train), dev: p.slice(sizes.train, sizes.train + sizes.dev), test: p.slice(sizes.train + sizes.dev, need) };
}

export interface FactSplit { train: LamaFact[]; dev: LamaFact[]; test: LamaFact[]; }

/**
 * Setting 3 (LAMA Multitask-ICT) for one relation: a seeded shuffle of its facts; the first
 * round(testFraction·n) are held out for test, then `train` and `dev` facts (default 32 + 32) come
 * from the rest (fewer when the rest is short; train is filled first). Deterministic in (facts, seed).
 */
export function lamaMultitaskSplit(facts: readonly LamaFact[], seed: number, opts: { testFraction?: number; train?: number; dev?: number } = {}): FactSplit {
  const frac = opts.testFraction ?? 0.6, nTrain = opts.train ?? 32, nDev = opts.dev ?? 32;
  if (!(frac >= 0 && frac <= 1)) throw new Error(`lamaMultitaskSplit: testFraction must be in [0, 1], got ${frac}`);
  const p = new Rng(seed >>> 0).shuffle(facts.slice());
  const nTest = Math.round(frac * p.length);
  const rest = p.slice(nTest);
  return { test: p.slice(0, nTest), train: rest.slice(0, nTrain), dev: rest.slice(nTrain, nTrain + nDev) };
}

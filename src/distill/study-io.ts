// File helpers shared by the study runners (CrossFit-style tasks and LAMA): cached JSON results
// that a crash may have torn, the stamped LM text, checkpoint pruning, and the same-config check.

import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { readJsonFile } from '../io/json.js';
import { cleanStaleTemps, removeDirAtomic, writeFileAtomic, writeJsonAtomic } from '../io/atomic.js';
import { studyConfigChanges, type StudyConfig } from './study-config.js';
import { fmtAvg, type CellResult } from './study-results.js';
import type { Metrics } from '../icl/evaluate.js';
import type { ArmRun } from './study-arms.js';
import { backend } from '../engine/backend/index.js';

/** Drop intermediate checkpoints of a finished run (the final model stays in the run dir). */
export function rmCheckpoints(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) if (/^checkpoint-\d+$/.test(e)) removeDirAtomic(join(dir, e));
}

/**
 * A JSON file written by an earlier run, or null when absent. One that does not parse or fails
 * `ok` (torn by a crash, edited by hand) is not fatal: it is named in the log and recomputed.
 */
export function readCachedJson<T>(path: string, ok: (v: unknown) => boolean, log: (s: string) => void): T | null {
  if (!existsSync(path)) return null;
  let v: unknown;
  try { v = readJsonFile(path); } catch (e) { log(`${(e as Error).message}; recomputing it`); return null; }
  if (!ok(v)) { log(`${path}: not what this study writes there; recomputing it`); return null; }
  return v as T;
}

export function cached<T>(path: string, ok: (v: unknown) => boolean, f: () => T, log: (s: string) => void): T {
  const old = readCachedJson<T>(path, ok, log);
  if (old !== null) return old;
  const v = f();
  writeJsonAtomic(path, v);
  return v;
}

export function isCell(v: unknown, arm: string, seed: number): boolean {
  const c = v as Partial<CellResult> | null;
  return !!c && typeof c === 'object' && c.arm === arm && c.seed === seed && !!c.average && typeof c.average === 'object' && !!c.tasks && typeof c.tasks === 'object' && Array.isArray(c.curve);
}

/** lm.txt is written atomically, then a stamp with its length and sha256 (also atomically). */
export function writeLmText(path: string, text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  writeFileAtomic(path, bytes);
  writeJsonAtomic(`${path}.stamp.json`, { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
}

/** Whether lm.txt exists and matches its stamp; an empty, cut or unstamped file is rebuilt (saying so). */
export function lmTextIntact(path: string, log: (s: string) => void): boolean {
  if (!existsSync(path)) return false;
  const stampPath = `${path}.stamp.json`;
  let stamp = null as { bytes?: unknown; sha256?: unknown } | null;
  try { stamp = readJsonFile(stampPath) as typeof stamp; } catch { /* missing or torn: rebuild */ }
  const bytes = readFileSync(path);
  const ok = !!stamp && stamp.bytes === bytes.length && bytes.length > 0 && stamp.sha256 === createHash('sha256').update(bytes).digest('hex');
  if (!ok) log(`${path} does not match ${stampPath} (cut short or changed); rebuilding it`);
  return ok;
}

export function checkSameStudy(c: StudyConfig, out: string, log: (s: string) => void): void {
  const p = join(out, 'study_config.json');
  if (!existsSync(p)) return;
  let old: StudyConfig;
  try { old = readJsonFile(p, 'study config') as StudyConfig; } catch (e) { throw new Error(`${(e as Error).message}: cannot tell what config made ${out}; use a new --out or delete ${out}`); }
  if (!old || typeof old !== 'object' || !old.lm_data || !Array.isArray(old.seeds)) { log(`${p}: not a study config; replacing it`); return; }
  const changes = studyConfigChanges(old, c);
  if (changes.length) throw new Error(`--out ${out} was made with a different study config: ${changes.join(', ')}; use a new --out or delete ${out}`);
}

const slug = (s: string): string => s.replace(/[^A-Za-z0-9]+/g, '-').replace(/-+$/, '').toLowerCase();

/**
 * An arm × seed cell's directory and result path; `done` is its result when an earlier run
 * finished it (a torn or foreign result.json is named and recomputed). Stale temp files of a
 * killed run are removed first.
 */
export function cellSlot(out: string, arm: string, seed: number, log: (s: string) => void): { cellDir: string; resPath: string; done: CellResult | null } {
  const cellDir = join(out, 'cells', slug(arm), String(seed));
  const resPath = join(cellDir, 'result.json');
  cleanStaleTemps(cellDir);
  return { cellDir, resPath, done: readCachedJson<CellResult>(resPath, (v) => isCell(v, arm, seed), log) };
}

/** Write a finished cell's result.json (atomically: it is what marks the cell done) and log its scores. */
export function saveCell(cellDir: string, resPath: string, r: { arm: string; seed: number; run: ArmRun; trainS: number; evalK: number; tasks: Record<string, Metrics>; average: Metrics; threads?: number }, log: (s: string) => void): CellResult {
  const { steps, curve, epochS, bestStep } = r.run;
  const cell: CellResult = { arm: r.arm, seed: r.seed, tasks: r.tasks, average: r.average, train_s: +r.trainS.toFixed(1), steps, epoch_s: epochS === null ? null : +epochS.toFixed(2), curve, eval_k: r.evalK, threads: r.threads ?? backend().threads(), kernels: backend().cpu().paths, ...(bestStep !== null ? { best_step: bestStep } : {}) };
  mkdirSync(cellDir, { recursive: true });
  writeJsonAtomic(resPath, cell);
  log(`${r.arm} seed ${r.seed}: ${fmtAvg([r.average])} (${r.trainS.toFixed(0)} s)`);
  return cell;
}

/**
 * A study (task or LAMA) prepared for its parts: its cells and what runs them. The text,
 * tokenizer, bases and shared teacher are made while preparing (by the stage; a worker or merge
 * only reads them).
 */
export interface PreparedStudy {
  cellList: { arm: string; seed: number }[];
  /** What each seed's cells share: its teacher (multitask), teacher cache, student copy. */
  stageSeeds(): void;
  runCell(arm: string, seed: number, cellDir: string, resPath: string): CellResult;
  /** results.json (with missing_cells) and report.html from the finished cells. */
  merge(cells: CellResult[], missing: string[]): object;
  dispose(): void;
}

/** Written by --stage teacher when everything the cells depend on is made. */
export const STAGE = 'stage.json';

export function requireStage(out: string): void {
  if (!existsSync(join(out, STAGE))) throw new Error(`${out}: the teacher stage has not been run there; run icld study --config C --out ${out} --stage teacher first`);
}

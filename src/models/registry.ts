// model_type → family. Family files register themselves; src/models/index.ts imports them all,
// so loading a directory never needs to know which family it holds.

import { join } from 'node:path';
import { CONFIG_NAME, readConfig } from '../io/hf.js';
import type { LanguageModel, LMConfig, ModelFamily } from './lm.js';

const families = new Map<string, ModelFamily>();

export function registerFamily(f: ModelFamily): void {
  if (families.has(f.modelType)) throw new Error(`model family '${f.modelType}' registered twice`);
  families.set(f.modelType, f);
}

export function supportedModelTypes(): string[] { return [...families.keys()]; }

/** The family for a model_type; an unknown one is a one-line error naming the supported ones. */
export function modelFamily(modelType: string, where = 'model_type'): ModelFamily {
  const f = families.get(modelType);
  if (!f) throw new Error(`${where}: unknown model_type ${JSON.stringify(modelType)} (supported: ${supportedModelTypes().join(', ')})`);
  return f;
}

/** The family a parsed config.json belongs to (model_type, or for old files without it, the keys). */
export function familyOfConfig(raw: Record<string, unknown>, where: string): ModelFamily {
  if (raw.model_type !== undefined) {
    if (typeof raw.model_type !== 'string') throw new Error(`${where}: model_type must be a string, got ${JSON.stringify(raw.model_type)}`);
    return modelFamily(raw.model_type, where);
  }
  const guess = [...families.values()].filter((f) => f.looksLike?.(raw));
  if (guess.length === 1) return guess[0];
  throw new Error(`${where}: model_type is missing and the keys do not identify a family (supported: ${supportedModelTypes().join(', ')})`);
}

/** Load a Hugging Face model directory (config.json + model.safetensors or shards), any registered family. */
export function loadModel(dir: string): LanguageModel {
  const raw = readConfig(dir);
  return familyOfConfig(raw, join(dir, CONFIG_NAME)).fromPretrained(dir, raw);
}

/** A fresh model of `modelType` from user config keys (defaults filled in by the family). */
export function createModel(modelType: string, partial: Record<string, unknown> & { vocab_size: number }, seed: number, where?: string): LanguageModel {
  const f = modelFamily(modelType, where);
  return f.create(f.config(partial, where), seed);
}

/** A full, validated config of `modelType` (without building the model). */
export function modelConfig(modelType: string, partial: Record<string, unknown> & { vocab_size: number }, where?: string, prefix?: string): LMConfig {
  return modelFamily(modelType, where).config(partial, where, prefix);
}

/** Replace `model`'s weights with those saved in `dir` (same family and shapes), e.g. a selected best step. */
export function reloadWeights(model: LanguageModel, dir: string): void {
  const saved = loadModel(dir);
  try {
    model.loadStateDict(new Map(saved.namedParameters().map(([n, p]) => [n, { shape: p.shape.slice(), data: p.f32 }])), dir);
  } finally { saved.dispose(); }
}

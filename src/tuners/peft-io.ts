// PEFT's adapter directory: adapter_config.json (sorted keys, indent 2) + adapter_model.safetensors
// (metadata {"format": "pt"}). Writes go through the atomic helpers.

import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { tunerForType } from './registry.js';
import type { AdapterConfig, SavedTensor } from './types.js';

export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';
export const ADAPTER_BIN_NAME = 'adapter_model.bin';

function checkDir(dir: string): void {
  let st;
  try { st = statSync(dir); } catch { throw new Error(`${dir}: no such adapter directory`); }
  if (!st.isDirectory()) throw new Error(`${dir}: an adapter must be a directory (with ${ADAPTER_CONFIG_NAME} and ${ADAPTER_WEIGHTS_NAME})`);
}

/** adapter_config.json of `dir`: a JSON object with a supported peft_type and the common keys typed; errors name the file. */
export function readAdapterConfig(dir: string): AdapterConfig {
  checkDir(dir);
  const path = join(dir, ADAPTER_CONFIG_NAME);
  if (!existsSync(path)) throw new Error(`${path}: no such file (not a PEFT adapter directory)`);
  const v = readJson(path);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  const raw = v as Record<string, unknown>;
  if (raw.peft_type === undefined) throw new Error(`${path}: peft_type is missing`);
  tunerForType(raw.peft_type, path);
  for (const k of ['task_type', 'base_model_name_or_path'] as const) {
    if (raw[k] !== undefined && raw[k] !== null && typeof raw[k] !== 'string') throw new Error(`${path}: ${k} must be a string or null, got ${JSON.stringify(raw[k])}`);
  }
  if (raw.inference_mode !== undefined && typeof raw.inference_mode !== 'boolean') throw new Error(`${path}: inference_mode must be true or false, got ${JSON.stringify(raw.inference_mode)}`);
  return { ...raw, task_type: (raw.task_type ?? null) as string | null, base_model_name_or_path: (raw.base_model_name_or_path ?? null) as string | null, inference_mode: raw.inference_mode === true } as AdapterConfig;
}

/** adapter_model.safetensors of `dir` as float tensors; a .bin-only directory is an error saying to convert. */
export function readAdapterWeights(dir: string): { path: string; tensors: Map<string, SavedTensor> } {
  const path = join(dir, ADAPTER_WEIGHTS_NAME);
  if (!existsSync(path)) {
    if (existsSync(join(dir, ADAPTER_BIN_NAME))) throw new Error(`${join(dir, ADAPTER_BIN_NAME)}: pickled PyTorch weights are not read; convert the adapter to safetensors (save_pretrained(..., safe_serialization=True)) to get ${ADAPTER_WEIGHTS_NAME}`);
    throw new Error(`${path}: no such file (the adapter's weights)`);
  }
  const { tensors } = readSafetensors(path);
  const out = new Map<string, SavedTensor>();
  for (const [k, t] of tensors) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${path}: tensor '${k}' has integer dtype ${t.dtype}; adapter weights are floating point`);
    out.set(k, { shape: t.shape, data: t.data });
  }
  return { path, tensors: out };
}

/** Write the two files of an adapter directory (weights first: a config never names absent weights). */
export function writeAdapterDir(dir: string, cfg: AdapterConfig, tensors: ReadonlyMap<string, SavedTensor>): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_NAME), new Map([...tensors].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }])), { format: 'pt' });
  writeJsonAtomic(join(dir, ADAPTER_CONFIG_NAME), cfg, { sortKeys: true });
}

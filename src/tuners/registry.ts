// peft_type / --method → tuner. Each method lives in its own folder and is listed here once.

import type { PeftType, Tuner } from './types.js';
import { loraTuner } from './lora/index.js';
import { adapterTuner } from './adapter/index.js';
import { prefixTuner } from './prefix/index.js';
import { promptTuner } from './prompt/index.js';

const tuners: Tuner[] = [];

/** Add a method (a second tuner for the same peft_type or method name is an error). */
export function registerTuner(t: Tuner): void {
  if (tuners.some((x) => x.peftType === t.peftType)) throw new Error(`tuner for peft_type ${t.peftType} registered twice`);
  for (const m of t.methods) if (tuners.some((x) => x.methods.includes(m))) throw new Error(`tuner method '${m}' registered twice`);
  tuners.push(t);
}

registerTuner(loraTuner);
registerTuner(adapterTuner);
registerTuner(prefixTuner);
registerTuner(promptTuner);

export function supportedPeftTypes(): PeftType[] { return tuners.map((t) => t.peftType); }
/** The `--method` names of every registered tuner ('full' fine-tuning is not a tuner). */
export function supportedMethods(): string[] { return tuners.flatMap((t) => [...t.methods]); }

/** The tuner for an adapter_config.json peft_type; unknown = one-line error listing the supported ones. */
export function tunerForType(peftType: unknown, where: string): Tuner {
  const t = tuners.find((x) => x.peftType === peftType);
  if (!t) throw new Error(`${where}: unsupported peft_type ${JSON.stringify(peftType)} (supported: ${supportedPeftTypes().join(', ')})`);
  return t;
}

/** The tuner for a `--method` name; unknown = one-line error listing the supported ones. */
export function tunerForMethod(method: string, where: string): Tuner {
  const t = tuners.find((x) => x.methods.includes(method));
  if (!t) throw new Error(`${where}: unknown method ${JSON.stringify(method)} (supported: ${supportedMethods().join(', ')})`);
  return t;
}

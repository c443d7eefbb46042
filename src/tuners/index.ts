// The tuners layer's public face: the Tuner/Adapter contract, the registry of methods, PeftModel
// and the adapter directory helpers. Pipelines import from this file only.

export type { PeftType, AdapterConfig, SavedTensor, Tuner, Adapter } from './types.js';
export { registerTuner, tunerForType, tunerForMethod, supportedMethods, supportedPeftTypes } from './registry.js';
export { PeftModel, attachAdapterDir, trainableLine } from './peft-model.js';
export { readAdapterConfig, readAdapterWeights, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME } from './peft-io.js';
export { loraTuner } from './lora/index.js';
export { adapterTuner } from './adapter/index.js';
export { prefixTuner } from './prefix/index.js';
export { promptTuner } from './prompt/index.js';

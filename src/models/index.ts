// The models layer's public face: the interface, the registry, and every family (imported here
// so that each registers itself). Pipelines import from this file only.

import './gpt2.js';
import './bert.js';

export { KVCache, requireCausal, logitsAt, type CausalLanguageModel, type LanguageModel, type LMConfig, type LMKind, type ForwardOptions, type ModelFamily, type VirtualTokens, type ModelDims, type FamilyTuning, type FamilyChat } from './lm.js';
export { loadModel, createModel, modelConfig, modelFamily, familyOfConfig, supportedModelTypes, registerFamily, reloadWeights } from './registry.js';
export { generate, sampleNext, Generation, tokenLogprob, type GenerateOptions, type GenerateResult, type TextCodec, type TokenLogprob } from './generate.js';
export { quantizeModel, quantizeDir, formatQuantizeSummary, quantizationOf, modelDtype, assertTrainable, assertTrainableDir, readQuantizationConfig, INFERENCE_DTYPES, type InferenceDtype, type QuantizeSummary, type QuantizeDirResult, type QuantizationConfig } from './quantize.js';

// icl-distill library entry point.
export * as engine from './engine/index.js';
export * from './engine/index.js';
export { Module, ModuleList, Linear, Embedding, LayerNorm, Dropout } from './nn/module.js';
export { loadModel, createModel, modelFamily, supportedModelTypes, KVCache, type LanguageModel, type LMConfig, type ForwardOptions, generate, sampleNext, type GenerateOptions, type GenerateResult, type TextCodec } from './models/index.js';
export { GPT2, gpt2Config, type GPT2Config } from './models/gpt2.js';
export { Bert, bertConfig, type BertConfig } from './models/bert.js';
export { BPETokenizer, WordPieceTokenizer, loadTokenizer, type Tokenizer } from './tokenizers/index.js';
export { perplexity, pseudoPerplexity, type PerplexityResult } from './eval/perplexity.js';
export { fillMask } from './eval/fill-mask.js';
export { lamaEval } from './eval/lama-report.js';
export { AdamW, clipGradNorm } from './optim/adamw.js';
export { learningRate, type Schedule } from './optim/schedule.js';
export { Trainer, defaultTrainConfig, type TrainConfig, type TrainHooks } from './train/trainer.js';
export { pretrain, readPretrainConfig, type PretrainConfig } from './train/pretrain.js';
export { readSafetensors, writeSafetensors, openSafetensors } from './io/safetensors.js';
export { loadStateDict, saveStateDict, readConfig } from './io/hf.js';

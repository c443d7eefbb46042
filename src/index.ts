// icl-distill library entry point.
export * as engine from './engine/index.js';
export * from './engine/index.js';

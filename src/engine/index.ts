// Public surface of the engine.
export * from './tensor.js';
export * from './ops.js';
export { Rng, hashUniform } from './rng.js';
export { backend, setBackend } from './backend/index.js';
export type { Backend } from './backend/types.js';

// Reference twin of the fused inference decoder (src/engine/decoder.ts): plain TypeScript over
// the reference kernels, the specification native/decoder.c is tested against.

import type { DecoderHandle, DecoderSpec, DecoderStep } from './decoder.js';

export function refDecoderCreate(_spec: DecoderSpec): DecoderHandle {
  throw new Error('decoder: reference twin not written yet');
}
export function refDecoderStep(_h: DecoderHandle, _step: DecoderStep): void {
  throw new Error('decoder: reference twin not written yet');
}
export function refDecoderFree(_h: DecoderHandle): void { /* nothing held outside the GC */ }

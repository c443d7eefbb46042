// Backend selection: native when the addon loads (unless ICLD_BACKEND=reference), else reference.

import type { Backend } from './types.js';
import { reference } from './reference.js';
import { loadNative, nativeLoadError } from './native.js';

let current: Backend | null = null;

export function backend(): Backend {
  if (current) return current;
  const want = process.env.ICLD_BACKEND;
  if (want === 'reference') current = reference;
  else {
    const nat = loadNative();
    if (!nat && want === 'native') throw new Error(`ICLD_BACKEND=native but the native addon did not load: ${nativeLoadError()}`);
    current = nat ?? reference;
  }
  return current;
}

export function setBackend(name: 'native' | 'reference'): Backend {
  if (name === 'reference') current = reference;
  else {
    const nat = loadNative();
    if (!nat) throw new Error(`native backend unavailable: ${nativeLoadError()}`);
    current = nat;
  }
  return current;
}

export { reference };

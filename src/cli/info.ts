// `icld info`: what this install runs on.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { backend } from '../engine/backend/index.js';
import { nativeLoadError } from '../engine/backend/native.js';
import { supportedModelTypes } from '../models/index.js';
import { supportedPeftTypes } from '../tuners/index.js';

export function packageVersion(): string {
  // dist/src/cli/info.js → package root is three levels up.
  const p = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
}

export interface Info {
  name: string; version: string; node: string; backend: string; gemm: string; threads: number;
  /** config.json model_type values loadModel reads. */
  model_types: string[];
  /** adapter_config.json peft_type values the tuners read and write. */
  peft_types: string[];
  note: string | null;
}

export function info(): Info {
  const be = backend();
  let note: string | null = null;
  if (be.name === 'reference') {
    const err = nativeLoadError();
    note = process.env.ICLD_BACKEND === 'reference'
      ? 'reference backend selected by ICLD_BACKEND=reference'
      : `native addon not available (${err ?? 'unknown reason'}); using the pure-TypeScript reference backend, which is much slower. Rebuild with: npm rebuild icl-distill`;
  } else if (be.gemmProvider === 'builtin') {
    note = 'OpenBLAS was not found when the addon was built; GEMM uses the builtin blocked AVX2/FMA kernel. Install libopenblas-dev and run `npm rebuild` for the OpenBLAS path.';
  }
  return { name: 'icl-distill', version: packageVersion(), node: process.version, backend: be.name, gemm: be.gemmProvider, threads: be.threads(), model_types: supportedModelTypes(), peft_types: supportedPeftTypes(), note };
}

export function formatInfo(i: Info): string {
  const lines = [
    `icl-distill ${i.version} (node ${i.node})`,
    `backend:  ${i.backend}`,
    `gemm:     ${i.gemm}`,
    `threads:  ${i.threads}`,
    `models:   ${i.model_types.join(', ')}`,
    `adapters: ${i.peft_types.join(', ')} (PEFT layout)`,
  ];
  if (i.note) lines.push(`note:     ${i.note}`);
  return lines.join('\n');
}

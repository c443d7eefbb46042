// `icld info`: what this install runs on.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { backend } from '../engine/backend/index.js';
import { kernelPathCap, nativeLoadError } from '../engine/backend/native.js';
import { supportedModelTypes } from '../models/index.js';
import { supportedPeftTypes } from '../tuners/index.js';

export function packageVersion(): string {
  // dist/src/cli/info.js → package root is three levels up.
  const p = fileURLToPath(new URL('../../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
}

export interface Info {
  name: string; version: string; node: string; backend: string; gemm: string; threads: number;
  /** SIMD features the CPU and OS support, detected at run time (empty on the reference backend). */
  cpu_features: string[];
  /** Kernel path chosen per family (gemm, gemm_bf16, f32, bf16, q8_0, q4_0). */
  kernel_paths: Record<string, string>;
  /** The kernel-path cap in force (ICLD_KERNEL_PATH), null when none (best path the CPU runs). */
  kernel_cap: string | null;
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
  const cpu = be.cpu();
  const cap = be.name === 'native' ? kernelPathCap() : null;
  return { name: 'icl-distill', version: packageVersion(), node: process.version, backend: be.name, gemm: be.gemmProvider, threads: be.threads(),
    cpu_features: cpu.features, kernel_paths: cpu.paths, kernel_cap: cap && cap !== 'auto' ? cap : null, model_types: supportedModelTypes(), peft_types: supportedPeftTypes(), note };
}

export function formatInfo(i: Info): string {
  const lines = [
    `icl-distill ${i.version} (node ${i.node})`,
    `backend:  ${i.backend}`,
    `gemm:     ${i.gemm}`,
    `threads:  ${i.threads}`,
    `cpu:      ${i.cpu_features.length ? i.cpu_features.join(' ') : (i.backend === 'native' ? 'no AVX2 (portable scalar kernels)' : '-')}`,
    `kernels:  ${Object.entries(i.kernel_paths).map(([k, v]) => `${k} ${v}`).join(', ')}${i.kernel_cap ? ` (capped at ${i.kernel_cap} by ICLD_KERNEL_PATH)` : ''}`,
    `models:   ${i.model_types.join(', ')}`,
    `adapters: ${i.peft_types.join(', ')} (PEFT layout)`,
  ];
  if (i.note) lines.push(`note:     ${i.note}`);
  return lines.join('\n');
}

// The native backend: a thin forwarder to the C addon (native/*.c, built by node-gyp into
// build/Release/icld_native.node). This is the ONLY module that loads the addon. Loading never
// throws: if the addon is missing or broken, loadNative() returns null and nativeLoadError()
// says why, so callers fall back to the reference backend.

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BinOp, CpuInfo, F32, I32, UnOp } from './types.js';
import { FORMAT_CODE, type QWeight } from '../quant.js';
import type { DecoderHandle, DecoderSpec, DecoderStep } from '../decoder.js';
import { roundBf16 } from '../quant.js';
import { checkDecoderSpec } from '../decoder-ref.js';

/** A native decoder handle: the addon's external plus the spec whose arrays it points into. */
interface NativeDecoder { ext: object; spec: DecoderSpec }

export interface NativeInfo {
  gemm: 'openblas' | 'builtin';
  simd: string;
  openmp: boolean;
}

/** The addon's exports (native/binding.c): same positional arguments as Backend. */
interface Addon {
  gemm: Backend['gemm'];
  copy: Backend['copy'];
  binary: Backend['binary'];
  unary: Backend['unary'];
  unaryBackward: Backend['unaryBackward'];
  reduceSum: Backend['reduceSum'];
  reduceMax: Backend['reduceMax'];
  softmax: Backend['softmax'];
  softmaxBackward: Backend['softmaxBackward'];
  crossEntropy: Backend['crossEntropy'];
  crossEntropyBackward: Backend['crossEntropyBackward'];
  layerNorm: Backend['layerNorm'];
  layerNormBackward: Backend['layerNormBackward'];
  embedding: Backend['embedding'];
  embeddingBackward: Backend['embeddingBackward'];
  dropout: Backend['dropout'];
  attention: Backend['attention'];
  attentionBackward: Backend['attentionBackward'];
  adamw: Backend['adamw'];
  /** gemmBf16 with Backend's arguments (optional until the bf16 GEMM kernel is built in). */
  gemmBf16?: Backend['gemmBf16'];
  qmatmul(format: number, inOut: boolean, N: number, K: number, data: QWeight['data'], scales: Uint16Array | null,
    M: number, x: F32, xOff: number, ldx: number, out: F32, outOff: number, ldo: number, bias: F32 | null, accumulate: boolean): void;
  /** The fused decoder (native/decoder.c): the spec flattened by NativeBackend.decoderCreate. */
  decoderCreate?(dims: Int32Array, eps: number, scales: Float32Array, tensors: unknown[]): object;
  decoderStep?(h: object, n: number, ids: I32, pos: I32, seq: I32, outRows: I32, nOut: number, logits: F32): void;
  decoderFree?(h: object): void;
  decoderThreads?(h: object, nt?: number): number[];
  cpu(): CpuInfo;
  /** Caps the kernel paths (null = best the CPU runs); returns the previous cap; throws when the CPU cannot run it. */
  setKernelPath?(path: string | null): string;
  /** The current kernel-path cap ('auto' when none). */
  kernelCap?(): string;
  /** icld_qact's raw output bytes (tests only). */
  qactTest?(format: number, M: number, K: number, x: F32, xOff: number, ldx: number, out: Uint8Array): void;
  setThreads(n: number): void;
  getThreads(): number;
  info(): NativeInfo;
}

const ADDON_REL = join('build', 'Release', 'icld_native.node');

/** Package root = first ancestor holding the built addon (dist/src/engine/backend -> root). */
function findAddon(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, ADDON_REL);
    if (existsSync(p)) return p;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return null;
}

let addon: Addon | null = null;
let loadError: string | null = null;
let tried = false;

function load(): Addon | null {
  if (tried) return addon;
  tried = true;
  try {
    const path = findAddon();
    if (!path) {
      loadError = `native addon not built (${ADDON_REL} not found; run \`node scripts/build-native.mjs\`)`;
      return null;
    }
    const mod = createRequire(import.meta.url)(path) as Addon;
    if (typeof mod.gemm !== 'function' || typeof mod.attentionBackward !== 'function') {
      loadError = `native addon at ${path} is incomplete (stale build?)`;
      return null;
    }
    addon = mod;
  } catch (e) {
    loadError = `native addon failed to load: ${(e as Error).message}`;
    addon = null;
  }
  return addon;
}

class NativeBackend implements Backend {
  readonly name = 'native' as const;
  readonly gemmProvider: 'openblas' | 'builtin';
  // Kernel entry points bound once: each call is one N-API hop with no JS-side allocation.
  readonly gemm: Backend['gemm'];
  readonly copy: Backend['copy'];
  readonly binary: (op: BinOp, shape: number[], a: F32, aOff: number, aStr: number[],
    b: F32, bOff: number, bStr: number[], out: F32) => void;
  readonly unary: (op: UnOp, x: F32, xOff: number, n: number, out: F32, param: number) => void;
  readonly unaryBackward: (op: UnOp, x: F32, y: F32, dy: F32, n: number, dx: F32, param: number) => void;
  readonly reduceSum: Backend['reduceSum'];
  readonly reduceMax: (x: F32, outer: number, dim: number, inner: number, out: F32, arg: I32) => void;
  readonly softmax: Backend['softmax'];
  readonly softmaxBackward: Backend['softmaxBackward'];
  readonly crossEntropy: Backend['crossEntropy'];
  readonly crossEntropyBackward: Backend['crossEntropyBackward'];
  readonly layerNorm: Backend['layerNorm'];
  readonly layerNormBackward: Backend['layerNormBackward'];
  readonly embedding: Backend['embedding'];
  readonly embeddingBackward: Backend['embeddingBackward'];
  readonly dropout: Backend['dropout'];
  readonly attention: Backend['attention'];
  readonly attentionBackward: Backend['attentionBackward'];
  readonly adamw: Backend['adamw'];
  private readonly a: Addon;

  constructor(a: Addon) {
    this.a = a;
    this.gemmProvider = a.info().gemm;
    this.gemm = a.gemm;
    this.copy = a.copy;
    this.binary = a.binary;
    this.unary = a.unary;
    this.unaryBackward = a.unaryBackward;
    this.reduceSum = a.reduceSum;
    this.reduceMax = a.reduceMax;
    this.softmax = a.softmax;
    this.softmaxBackward = a.softmaxBackward;
    this.crossEntropy = a.crossEntropy;
    this.crossEntropyBackward = a.crossEntropyBackward;
    this.layerNorm = a.layerNorm;
    this.layerNormBackward = a.layerNormBackward;
    this.embedding = a.embedding;
    this.embeddingBackward = a.embeddingBackward;
    this.dropout = a.dropout;
    this.attention = a.attention;
    this.attentionBackward = a.attentionBackward;
    this.adamw = a.adamw;
  }

  gemmBf16(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
    A: F32, aOff: number, lda: number, strideA: number, B: F32, bOff: number, ldb: number, strideB: number,
    beta: number, C: F32, cOff: number, ldc: number, strideC: number, batch: number): void {
    if (this.a.gemmBf16) { this.a.gemmBf16(transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB, beta, C, cOff, ldc, strideC, batch); return; }
    // Without the bf16 kernel: round operand copies, then the fp32 GEMM (same numbers, slower).
    this.a.gemm(transA, transB, M, N, K, alpha, A.map(roundBf16), aOff, lda, strideA, B.map(roundBf16), bOff, ldb, strideB, beta, C, cOff, ldc, strideC, batch);
  }

  qmatmul(w: QWeight, M: number, x: F32, xOff: number, ldx: number, out: F32, outOff: number, ldo: number, bias: F32 | null, accumulate: boolean): void {
    this.a.qmatmul(FORMAT_CODE[w.format], w.layout === 'in_out', w.N, w.K, w.data, w.scales, M, x, xOff, ldx, out, outOff, ldo, bias, accumulate);
  }

  /**
   * The spec flattened for the addon: sizes, scales and one list of weights (a QWeight as format,
   * inOut, N, K, data, scales). The handle keeps the spec, so the weight arrays the C side points
   * into live as long as the decoder.
   */
  decoderCreate(spec: DecoderSpec): DecoderHandle {
    if (!this.a.decoderCreate) throw new Error('native addon has no fused decoder (stale build?)');
    checkDecoderSpec(spec);
    const act = { gelu_tanh: 0, gelu_erf: 1, relu: 2 }[spec.activation];
    const dims = Int32Array.of(spec.hidden, spec.heads, spec.inner, spec.vocab, spec.positions, spec.layers.length, act, spec.maxSeqs, spec.maxT);
    const w = (q: QWeight): unknown[] => [FORMAT_CODE[q.format], q.layout === 'in_out', q.N, q.K, q.data, q.scales];
    const list: unknown[] = [...w(spec.wte), spec.wpe, spec.lnfWeight, spec.lnfBias];
    for (const l of spec.layers) {
      list.push(l.ln1Weight, l.ln1Bias, ...w(l.qkv), l.qkvBias, ...w(l.proj), l.projBias,
        l.ln2Weight, l.ln2Bias, ...w(l.fc), l.fcBias, ...w(l.fcProj), l.fcProjBias);
    }
    const ext = this.a.decoderCreate(dims, spec.eps, Float32Array.from(spec.attnScale), list);
    const h: NativeDecoder = { ext, spec };
    return h;
  }
  /** False for an addon built before the fused decoder existed (models then decode without it). */
  get hasDecoder(): boolean { return typeof this.a.decoderCreate === 'function'; }
  decoderStep(h: DecoderHandle, s: DecoderStep): void {
    this.a.decoderStep!((h as NativeDecoder).ext, s.n, s.ids, s.pos, s.seq, s.outRows, s.outRows.length, s.logits);
  }
  decoderFree(h: DecoderHandle): void { this.a.decoderFree?.((h as NativeDecoder).ext); }
  /**
   * The decoder's thread count per step shape (tokens per step 1, 2–8, 9–32, more; 0 while still
   * timing its first steps). `nt` > 0 fixes it, 0 returns to choosing by measurement.
   */
  decoderThreads(h: DecoderHandle, nt?: number): number[] {
    if (!this.a.decoderThreads) return [];
    return nt === undefined ? this.a.decoderThreads((h as NativeDecoder).ext) : this.a.decoderThreads((h as NativeDecoder).ext, nt);
  }

  cpu(): CpuInfo { return this.a.cpu(); }

  threads(): number { return this.a.getThreads(); }
  setThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`setThreads: expected a positive integer, got ${n}`);
    this.a.setThreads(n);
  }
}

let backend: NativeBackend | null = null;

/** The native backend, or null when the addon is missing or failed to load (never throws). */
export function loadNative(): Backend | null {
  if (backend) return backend;
  const a = load();
  if (!a) return null;
  try {
    backend = new NativeBackend(a);
  } catch (e) {
    loadError = `native addon unusable: ${(e as Error).message}`;
    return null;
  }
  return backend;
}

/** Why loadNative() returned null (null when it loaded or was not tried yet). */
export function nativeLoadError(): string | null {
  load();
  return addon ? null : loadError;
}

/** Kernel paths a cap may name, slowest first (native/cpu.c). 'auto' = the best this CPU runs. */
export const KERNEL_PATHS = ['scalar', 'avx2', 'avx-vnni', 'avx512', 'avx512-vnni', 'avx512-bf16'] as const;

/**
 * Cap the native kernel paths for this process (tests, benchmarks; ICLD_KERNEL_PATH does the same
 * at load time). Returns the previous cap ('auto' when none). Throws when the addon is missing,
 * the name is unknown or the CPU cannot run that path.
 */
export function setKernelPath(path: string | null): string {
  const a = load();
  if (!a || !a.setKernelPath) throw new Error(`setKernelPath: ${a ? 'native addon too old (stale build?)' : loadError ?? 'native addon not loaded'}`);
  return a.setKernelPath(path === 'auto' ? null : path);
}

/** The kernel-path cap in force ('auto' = best the CPU runs), or null without the addon. */
export function kernelPathCap(): string | null {
  const a = load();
  return a && a.kernelCap ? a.kernelCap() : null;
}

/** The kernel paths this CPU can run (each accepted by setKernelPath), slowest first. */
export function runnableKernelPaths(): string[] {
  const a = load();
  if (!a || !a.setKernelPath) return [];
  const prev = a.setKernelPath(null);
  const ok: string[] = [];
  for (const p of KERNEL_PATHS) {
    try { a.setKernelPath(p); ok.push(p); } catch { /* the CPU lacks a feature this path needs */ }
  }
  a.setKernelPath(prev === 'auto' ? null : prev);
  return ok;
}

/** icld_qact's output for M rows of K activations (test hook): bytes as the kernels see them. */
export function nativeQact(format: number, M: number, K: number, x: F32, xOff: number, ldx: number, out: Uint8Array): void {
  const a = load();
  if (!a || !a.qactTest) throw new Error('nativeQact: native addon not loaded or too old');
  a.qactTest(format, M, K, x, xOff, ldx, out);
}

/** Build facts of the addon ({gemm, simd, openmp}), or null when it is not loaded. */
export function nativeInfo(): NativeInfo | null {
  const a = load();
  if (!a) return null;
  try { return a.info(); } catch { return null; }
}

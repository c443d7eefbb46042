#!/usr/bin/env node
// Per-kernel time breakdown of 'icld bench ops' cases: wraps every backend method with a timer.
//   npm run build && node bench/kernel-profile.mjs 'mlp'   (filter as in --filter)
import { performance } from 'node:perf_hooks';
const m = await import('../dist/src/engine/index.js');
const be = m.backend();
const acc = new Map();
for (const k of Object.keys(be).concat(Object.getOwnPropertyNames(Object.getPrototypeOf(be)))) {
  const f = be[k];
  if (typeof f !== 'function' || k === 'constructor' || k === 'threads') continue;
  be[k] = function (...a) {
    const t0 = performance.now(); const r = f.apply(this, a); const dt = performance.now() - t0;
    let key = k;
    if (k === 'gemm') key = `gemm ${a[0] ? 'T' : 'N'}${a[1] ? 'T' : 'N'} M${a[2]} N${a[3]} K${a[4]} b${a[19]}`;
    if (k === 'copy' || k === 'binary') key = `${k} [${(k === 'copy' ? a[0] : a[1]).join(',')}]`;
    const e = acc.get(key) ?? { n: 0, ms: 0 }; e.n++; e.ms += dt; acc.set(key, e);
    return r;
  };
}
const { benchOps } = await import('../dist/src/cli/bench-ops.js');
const filter = process.argv[2] ?? '';
acc.clear();
const t0 = performance.now();
const res = await benchOps({ json: false, filter, progress: false });
const total = performance.now() - t0;
const tot = [...acc.values()].reduce((s, e) => s + e.ms, 0);
console.log(`wall ${total.toFixed(0)} ms, in kernels ${tot.toFixed(0)} ms (${(100 * tot / total).toFixed(0)}%)`);
for (const [k, e] of [...acc.entries()].sort((a, b) => b[1].ms - a[1].ms).slice(0, 15)) console.log(`${(100 * e.ms / tot).toFixed(1).padStart(5)}%  ${(e.ms / e.n).toFixed(3).padStart(8)} ms/call  ${String(e.n).padStart(5)}x  ${k}`);

#!/usr/bin/env node
// Fails (exit 1, one line) unless `icld info` reports the native backend, so an image or CI build
// whose addon did not build or does not load (missing libopenblas/libgomp) stops there instead of
// shipping the much slower reference backend. `--gemm openblas` also requires the OpenBLAS GEMM.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const gi = args.indexOf('--gemm');
const wantGemm = gi >= 0 ? args[gi + 1] : undefined;
if (gi >= 0 && !wantGemm) { console.error('check-native: --gemm needs a value (openblas or builtin)'); process.exit(2); }

const env = { ...process.env };
delete env.ICLD_BACKEND; // the check is about what runs by default
const r = spawnSync(process.execPath, [join(root, 'dist', 'src', 'cli', 'main.js'), 'info', '--json'], { env, encoding: 'utf8' });
if (r.status !== 0) { console.error(`check-native: icld info failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n')[0]}`); process.exit(1); }
let i;
try { i = JSON.parse(r.stdout); } catch { console.error(`check-native: icld info --json printed no JSON: ${r.stdout.slice(0, 200)}`); process.exit(1); }
if (i.backend !== 'native') { console.error(`check-native: backend is '${i.backend}', not native (${i.note ?? 'no note'})`); process.exit(1); }
if (wantGemm && i.gemm !== wantGemm) { console.error(`check-native: GEMM is '${i.gemm}', not ${wantGemm} (${i.note ?? 'no note'})`); process.exit(1); }
console.log(`check-native: backend native, gemm ${i.gemm}, kernel paths ${JSON.stringify(i.kernel_paths)}, cpu ${i.cpu_features.join(' ') || '(baseline)'}`);

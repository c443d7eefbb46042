// `icld info`: the CPU features found at run time and the kernel path chosen per family, and
// ICLD_KERNEL_PATH capping those paths at start-up (checked in a child process, where the
// variable is read when the addon loads).

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { info, formatInfo } from '../../src/cli/info.js';
import { backend } from '../../src/engine/backend/index.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const FAMILIES = ['gemm', 'gemm_bf16', 'f32', 'bf16', 'q8_0', 'q4_0'];

function infoJson(env: Record<string, string>): Record<string, unknown> {
  const r = spawnSync(process.execPath, [MAIN, 'info', '--json'], { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('info lists the CPU features and the kernel path of every family', () => {
  const i = info();
  const cpu = backend().cpu();
  assert.deepEqual(i.cpu_features, cpu.features);
  assert.deepEqual(Object.keys(i.kernel_paths).sort(), [...FAMILIES].sort());
  for (const f of FAMILIES) assert.equal(i.kernel_paths[f], cpu.paths[f]);
  const text = formatInfo(i);
  assert.match(text, new RegExp(`kernels: .*q4_0 ${cpu.paths.q4_0}`));
  if (i.backend === 'native') {
    // the native features come from cpuid: an AVX-512 CPU always has AVX2 too
    if (i.cpu_features.includes('avx512f')) assert.ok(i.cpu_features.includes('avx2'));
    if (i.cpu_features.includes('avx2')) assert.notEqual(i.kernel_paths.f32, 'scalar');
  }
});

test('ICLD_KERNEL_PATH caps the paths chosen at start-up', { skip: backend().name !== 'native' && 'native addon not loaded' }, () => {
  const scalar = infoJson({ ICLD_KERNEL_PATH: 'scalar' });
  assert.equal(scalar.kernel_cap, 'scalar');
  for (const f of ['f32', 'bf16', 'q8_0', 'q4_0']) assert.equal((scalar.kernel_paths as Record<string, string>)[f], 'scalar');
  const auto = infoJson({ ICLD_KERNEL_PATH: '' });
  assert.equal(auto.kernel_cap, null);
  if ((auto.cpu_features as string[]).includes('avx2')) {
    const avx2 = infoJson({ ICLD_KERNEL_PATH: 'avx2' });
    assert.equal((avx2.kernel_paths as Record<string, string>).q8_0, 'avx2');
  }
  // an unknown path is reported on stderr and the best path is used
  const r = spawnSync(process.execPath, [MAIN, 'info', '--json'], { encoding: 'utf8', env: { ...process.env, ICLD_KERNEL_PATH: 'sse9' } });
  assert.equal(r.status, 0);
  assert.match(r.stderr, /ICLD_KERNEL_PATH: unknown kernel path 'sse9'/);
  assert.deepEqual(JSON.parse(r.stdout).kernel_paths, auto.kernel_paths);
});

#!/usr/bin/env node
// Used by binding.gyp: prints 1 when the C compiler accepts a feature, else 0, so a missing
// -march=native (odd compilers) or OpenMP (e.g. Apple clang) degrades the build instead of failing it.
//   node scripts/detect-cc.mjs march    -> -march=native, only when ICLD_MARCH=native asks for it:
//                                          the default build is portable (run-time dispatch)
//   node scripts/detect-cc.mjs openmp   -> -fopenmp (compile + link with omp.h)
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const what = process.argv[2];
const tests = {
  march: { flags: ['-march=native'], src: 'int main(void){return 0;}\n' },
  openmp: { flags: ['-fopenmp'], src: '#include <omp.h>\nint main(void){return omp_get_max_threads()>0?0:1;}\n' },
};
const t = tests[what];
if (what === 'march' && process.env.ICLD_MARCH !== 'native') { process.stdout.write('0\n'); process.exit(0); }
if (!t) { process.stdout.write('0\n'); process.exit(0); }
const dir = mkdtempSync(join(tmpdir(), 'icld-cc-'));
let ok = false;
try {
  const src = join(dir, 't.c');
  writeFileSync(src, t.src);
  execFileSync(process.env.CC || 'cc', [src, ...t.flags, '-o', join(dir, 't')], { stdio: 'ignore' });
  ok = true;
} catch { ok = false; } finally { rmSync(dir, { recursive: true, force: true }); }
process.stdout.write(ok ? '1\n' : '0\n');

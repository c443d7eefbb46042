#!/usr/bin/env node
// Used by binding.gyp: prints 1 when OpenBLAS (cblas.h + libopenblas) is usable, else 0.
// `--include` prints the directory holding cblas.h instead. ICLD_NO_BLAS=1 forces 0 so the
// builtin GEMM can be built and tested on a machine that has OpenBLAS.
import { existsSync, readdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const incDirs = ['/usr/include/x86_64-linux-gnu', '/usr/include/aarch64-linux-gnu', '/usr/include/openblas',
  '/usr/local/include', '/usr/include', '/opt/homebrew/opt/openblas/include', '/usr/local/opt/openblas/include'];
const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib',
  '/opt/homebrew/opt/openblas/lib', '/usr/local/opt/openblas/lib'];

function findInclude() {
  return incDirs.find((d) => existsSync(join(d, 'cblas.h'))) ?? null;
}
function findLib() {
  for (const d of libDirs) {
    try {
      if (readdirSync(d).some((f) => /^libopenblas(\.so|\.dylib|\.a)/.test(f))) return d;
    } catch { /* missing dir */ }
  }
  return null;
}
// A real compile+link test: the header may be the netlib one or the lib may be unusable.
function linkTest(inc, lib) {
  const dir = mkdtempSync(join(tmpdir(), 'icld-blas-'));
  try {
    const src = join(dir, 't.c');
    writeFileSync(src, '#include <cblas.h>\nint main(void){float a=1,b=1,c=0;' +
      'cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c==1.f?0:1;}\n');
    execFileSync(process.env.CC || 'cc', [src, '-I' + inc, '-L' + lib, '-lopenblas', '-o', join(dir, 't')], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const inc = findInclude();
if (process.argv.includes('--include')) {
  process.stdout.write((inc ?? '/usr/include') + '\n');
} else {
  const off = process.env.ICLD_NO_BLAS && process.env.ICLD_NO_BLAS !== '0';
  const lib = findLib();
  process.stdout.write(!off && inc && lib && linkTest(inc, lib) ? '1\n' : '0\n');
}

#!/usr/bin/env node
// `npm install` hook: build the native addon with node-gyp. Never fails the install: if the
// build cannot run, print one line saying the TypeScript reference backend will be used.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FALLBACK = 'icl-distill: native backend not built; the reference TypeScript backend will be used (slower).';

if (process.env.ICLD_SKIP_NATIVE === '1') {
  console.log('icl-distill: ICLD_SKIP_NATIVE=1, skipping the native build; the reference TypeScript backend will be used.');
  process.exit(0);
}

// node-gyp candidates, best first: npm's bundled copy (npm_execpath points at npm-cli.js during
// lifecycle scripts), the copy next to the npm on PATH, then node-gyp on PATH, then `npm exec`.
function candidates() {
  const out = [];
  const add = (p) => { if (p && existsSync(p)) out.push([process.execPath, [p]]); };
  if (process.env.npm_execpath) add(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const npmBin = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout?.trim();
  if (npmBin) add(join(dirname(npmBin), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  add(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  out.push(['node-gyp', []]);
  out.push(['npm', ['exec', '--no', '--', 'node-gyp']]);
  return out;
}

// Use the local Node headers when they exist (offline machines: no header download).
const args = ['rebuild'];
const prefix = resolve(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);

for (const [cmd, pre] of candidates()) {
  const r = spawnSync(cmd, [...pre, ...args], { cwd: root, stdio: 'inherit' });
  if (r.error && r.error.code === 'ENOENT') continue; // this candidate is not installed
  if (r.status === 0 && existsSync(join(root, 'build', 'Release', 'icld_native.node'))) process.exit(0);
  break; // node-gyp ran and failed: a compile error will not go away with another copy
}
console.log(FALLBACK);
process.exit(0);

// The layer order of DESIGN.md §2, enforced: a module may import only from its own folder and
// from the folders its layer is allowed to see. Also: above src/models/ nobody names a model
// family file (pipelines take the LanguageModel interface; families are reached via the registry).

import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, dirname, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const src = join(root, 'src');

/** folder → folders it may import (besides itself). Lower layers first. */
export const ALLOWED: Record<string, string[]> = {
  engine: [],
  io: ['engine'],
  report: ['io'],
  tokenizers: ['io'],
  nn: ['engine'],
  optim: ['engine'],
  data: ['tokenizers', 'io', 'engine'],
  models: ['nn', 'io', 'engine'],
  tuners: ['models', 'nn', 'io', 'engine'],
  train: ['optim', 'models', 'tuners', 'data', 'tokenizers', 'report', 'nn', 'io', 'engine'],
  eval: ['models', 'data', 'tokenizers', 'report', 'nn', 'io', 'engine'],
  icl: ['train', 'eval', 'models', 'data', 'tokenizers', 'report', 'optim', 'nn', 'io', 'engine'],
  finetune: ['train', 'eval', 'tuners', 'models', 'data', 'tokenizers', 'report', 'optim', 'nn', 'io', 'engine'],
  distill: ['icl', 'train', 'eval', 'models', 'data', 'tokenizers', 'report', 'optim', 'nn', 'io', 'engine'],
  server: ['distill', 'icl', 'finetune', 'train', 'eval', 'tuners', 'models', 'data', 'tokenizers', 'report', 'optim', 'nn', 'io', 'engine'],
  cli: ['server', 'distill', 'icl', 'finetune', 'train', 'eval', 'tuners', 'models', 'data', 'tokenizers', 'report', 'optim', 'nn', 'io', 'engine'],
};

/** Files of src/models/ that a pipeline may import: the interface, the registry and the generation loop. */
const MODELS_PUBLIC = new Set(['index.ts', 'lm.ts', 'registry.ts', 'generate.ts']);

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (e.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative import specifiers of a TS file (static `from '…'` and dynamic `import('…')`). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (let m; (m = re.exec(text)); ) out.push(m[1]);
  return out;
}

/** Violations of the layer rules for one file (path relative to src). */
export function violations(fileRel: string, text: string): string[] {
  const parts = fileRel.split(sep);
  if (parts.length < 2) return []; // src/index.ts: the library entry may re-export anything
  const layer = parts[0];
  const allowed = ALLOWED[layer];
  if (!allowed) return [`${fileRel}: folder '${layer}' is not in the layer table (add it to DESIGN.md §2 and this test)`];
  const bad: string[] = [];
  for (const spec of importsOf(text)) {
    const target = relative(src, resolve(src, dirname(fileRel), spec));
    const tparts = target.split(sep);
    if (tparts[0] === '..') { bad.push(`${fileRel}: imports '${spec}' from outside src/`); continue; }
    const tl = tparts.length > 1 ? tparts[0] : '(root)';
    if (tl !== layer && !allowed.includes(tl)) bad.push(`${fileRel}: '${layer}' may not import '${tl}' ('${spec}')`);
    if (tl === 'models' && layer !== 'models' && !MODELS_PUBLIC.has(tparts.slice(1).join('/').replace(/\.js$/, '.ts'))) {
      bad.push(`${fileRel}: imports the model family file '${spec}'; use the LanguageModel interface and the registry (src/models/index.js)`);
    }
  }
  return bad;
}

test('every module imports only from its own layer or the layers below it (DESIGN.md §2)', () => {
  assert.ok(existsSync(src), src);
  const files = tsFiles(src);
  assert.ok(files.length > 50, `found only ${files.length} source files under ${src}`);
  const bad = files.flatMap((f) => violations(relative(src, f), readFileSync(f, 'utf8')));
  assert.deepEqual(bad, []);
});

test('the checker catches upward imports, family imports and unknown folders', () => {
  assert.deepEqual(violations(join('engine', 'ops.ts'), "import { x } from '../models/index.js';"), [`${join('engine', 'ops.ts')}: 'engine' may not import 'models' ('../models/index.js')`]);
  assert.equal(violations(join('icl', 'scorer.ts'), "import type { GPT2 } from '../models/gpt2.js';").length, 1);
  assert.equal(violations(join('icl', 'scorer.ts'), "const m = await import('../cli/main.js');").length, 1);
  assert.deepEqual(violations(join('icl', 'scorer.ts'), "import { loadModel } from '../models/index.js';\nimport * as O from '../engine/ops.js';"), []);
  assert.equal(violations(join('engine', 'backend', 'native.ts'), "import { a } from '../../io/atomic.js';").length, 1);
  assert.deepEqual(violations(join('engine', 'backend', 'native.ts'), "import { a } from '../tensor.js';"), []);
  assert.equal(violations(join('mystery', 'x.ts'), '').length, 1);
});

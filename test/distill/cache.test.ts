// Teacher cache files are validated before anything is allocated from them: a damaged cache is
// an error naming the file (TeacherCache.open) and is recomputed, saying so (TeacherCache.ensure).

import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { Rng } from '../../src/engine/rng.js';
import { TeacherCache } from '../../src/distill/cache.js';
import type { Instance } from '../../src/icl/ict.js';

const V = 64;
const teacher = new GPT2(gpt2Config({ n_positions: 32, n_embd: 16, n_layer: 1, n_head: 2, vocab_size: V }), 5);
const rng = new Rng(3);
const instances: Instance[] = Array.from({ length: 12 }, () => ({ prefix: [], suffix: Array.from({ length: 10 }, () => rng.int(V)), contStart: 7, task: 't', options: [], gold: '' }));
const opts = { tau: 2, topK: 4, pad: 0 };

test('teacher cache: damaged files are named and recomputed to the same bytes', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'icld-tc-')), '100');
  TeacherCache.ensure(dir, teacher, instances, opts);
  const meta = readFileSync(join(dir, 'meta.json'), 'utf8'), bin = readFileSync(join(dir, 'targets.bin'));
  const good = TeacherCache.open(dir, V);
  assert.equal(good.meta.positions, 12 * 3);
  assert.deepEqual([...good.targets(0)[0].ids].length, 4);
  const m = JSON.parse(meta);
  const cases: [string, () => void, RegExp][] = [
    ['torn meta.json', () => writeFileSync(join(dir, 'meta.json'), meta.slice(0, 30)), /meta\.json: invalid JSON/],
    ['offsets decrease', () => writeFileSync(join(dir, 'meta.json'), JSON.stringify({ ...m, offsets: m.offsets.map((o: number, i: number) => (i === 3 ? 0 : o)) })), /meta\.json: offsets must start at 0 and never decrease \(offsets\[3\] = 0\)/],
    ['last offset', () => writeFileSync(join(dir, 'meta.json'), JSON.stringify({ ...m, bytes: m.bytes + 8 })), /meta\.json: the last offset \d+ is not bytes \d+/],
    ['count is a string', () => writeFileSync(join(dir, 'meta.json'), JSON.stringify({ ...m, instances: '12' })), /meta\.json: instances must be an integer ≥ 0, got "12"/],
    ['truncated targets.bin', () => writeFileSync(join(dir, 'targets.bin'), bin.subarray(0, 100)), /targets\.bin: 100 bytes, .*meta\.json says \d+/],
    ['huge count in targets.bin', () => { const b = Buffer.from(bin); b.writeUInt32LE(0x7fffffff, 0); writeFileSync(join(dir, 'targets.bin'), b); }, /targets\.bin: record at byte 0 claims 2147483647 tokens, more than the vocabulary \(64\)/],
    ['id outside the vocabulary', () => { const b = Buffer.from(bin); b.writeInt32LE(V + 5, 4); writeFileSync(join(dir, 'targets.bin'), b); }, /targets\.bin: token id 69 at byte 4 is outside the vocabulary/],
  ];
  for (const [what, damage, err] of cases) {
    damage();
    assert.throws(() => TeacherCache.open(dir, V), (e: Error) => err.test(e.message) && e.message.includes(dir), what);
    const logs: string[] = [];
    TeacherCache.ensure(dir, teacher, instances, { ...opts, log: (s) => logs.push(s) });
    assert.ok(logs.some((l) => l.includes(dir) && /recomputing the teacher cache/.test(l)), `${what}: ${logs.join(' | ')}`);
    assert.equal(readFileSync(join(dir, 'meta.json'), 'utf8'), meta, what);
    assert.deepEqual(readFileSync(join(dir, 'targets.bin')), bin, what);
  }
  // an intact cache is a hit
  const logs: string[] = [];
  TeacherCache.ensure(dir, teacher, instances, { ...opts, log: (s) => logs.push(s) });
  assert.ok(logs.some((l) => /teacher cache hit/.test(l)));
});

// The LAMA loader on the shipped data/lama (counts, train/dev ∩ test = ∅), its errors, the seeded
// demonstration draws and the splits of the paper's settings 1 and 3.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../src/engine/rng.js';
import {
  allRelations, defaultLamaDir, demoSeed, drawDemonstrations, fillTemplate, lamaMetaSplit, lamaMultitaskSplit, loadCommonVocab,
  loadLamaRelation, readFacts, readRelationsFile, splitAtObject, trexRelations, GOOGLE_RE_RELATIONS, type LamaFact,
} from '../../src/data/lama.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const key = (f: LamaFact): string => `${f.sub}\u0000${f.obj}`;

describe('shipped LAMA data', () => {
  it('lives in the repository and holds the 41 T-REx relations with templates', () => {
    assert.equal(resolve(defaultLamaDir()), resolve(REPO, 'data/lama'));
    const rels = trexRelations();
    assert.equal(rels.length, 41);
    assert.equal(readRelationsFile(defaultLamaDir()).length, 46, 'relations.jsonl has LAMA\'s 46 rows');
    assert.deepEqual(rels.map((r) => r.id).sort(), readdirSync(join(defaultLamaDir(), 'TREx')).map((f) => f.replace('.jsonl', '')).sort());
    for (const r of rels) {
      assert.equal(r.template.split('[X]').length, 2, r.id);
      assert.equal(r.template.split('[Y]').length, 2, r.id);
      assert.ok(['1-1', 'N-1', 'N-M'].includes(r.type), `${r.id} type ${r.type}`);
    }
    assert.equal(rels.find((r) => r.id === 'P19')!.template, '[X] was born in [Y] .');
    assert.deepEqual(allRelations().map((r) => r.id).slice(41), ['place_of_birth', 'date_of_birth', 'place_of_death']);
  });

  it('test facts, train/dev facts disjoint from them by (sub, obj), Google-RE and the common vocabulary', () => {
    let test = 0, trainDev = 0, dropped = 0;
    for (const r of trexRelations()) {
      const d = loadLamaRelation(r);
      test += d.test.length;
      trainDev += d.train.length + d.dev.length;
      dropped += d.droppedOverlap;
      assert.ok(d.train.length > 0 && d.dev.length > 0, r.id);
      const t = new Set(d.test.map(key));
      for (const f of [...d.train, ...d.dev]) assert.ok(!t.has(key(f)), `${r.id}: train/dev fact ${f.sub} → ${f.obj} is a test fact`);
      assert.ok(d.test.every((f) => typeof f.uuid === 'string'), `${r.id}: test facts keep LAMA's uuid`);
    }
    assert.equal(test, 29411);
    // AutoPrompt's 38,892 train/dev lines, of which 11 share a (sub, obj) label pair with a LAMA test fact.
    assert.equal(trainDev + dropped, 38892);
    assert.equal(dropped, 11);
    const counts = GOOGLE_RE_RELATIONS.map((r) => loadLamaRelation(r).test.length);
    assert.deepEqual(counts, [2937, 1825, 766]);
    assert.equal(loadLamaRelation(GOOGLE_RE_RELATIONS[1]).test[0].obj, '1941');
    const vocab = loadCommonVocab();
    assert.equal(vocab.length, 20970);
    assert.ok(vocab.includes('Paris') && vocab.includes('French'));
  });
});

describe('LAMA loader errors', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'lama-bad-')); mkdirSync(join(dir, 'TREx')); });
  after(() => rmSync(dir, { recursive: true, force: true }));
  it('names the file and line', () => {
    writeFileSync(join(dir, 'relations.jsonl'), '{"relation":"P1","template":"[X] is [Y] ."}\n{"relation":"P2","template":"no slots"}\n');
    assert.throws(() => readRelationsFile(dir), new RegExp(`^Error: ${join(dir, 'relations.jsonl').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: template "no slots" must hold \\[X\\] exactly once$`));
    writeFileSync(join(dir, 'relations.jsonl'), '{"relation":"P1","template":"[X] is [Y] ."}\n');
    writeFileSync(join(dir, 'TREx', 'P1.jsonl'), '{"sub_label":"a","obj_label":"b"}\n\n{"sub_label":"a"}\n');
    assert.throws(() => loadLamaRelation(trexRelations(dir)[0], dir), /P1\.jsonl:3: "obj_label" must be a non-empty string$/);
    writeFileSync(join(dir, 'TREx', 'P1.jsonl'), '{"sub_label":"a","obj_label":"b"}\n{oops\n');
    assert.throws(() => readFacts(join(dir, 'TREx', 'P1.jsonl')), /P1\.jsonl:2: invalid JSON/);
    writeFileSync(join(dir, 'TREx', 'P5.jsonl'), '');
    assert.throws(() => trexRelations(dir), /P5\.jsonl: relation P5 has no template in .*relations\.jsonl/);
    assert.throws(() => loadCommonVocab(dir), /LAMA common vocabulary not found: .*common_vocab_cased\.txt/);
    assert.throws(() => trexRelations(join(dir, 'nope')), /LAMA data folder not found/);
    assert.ok(!existsSync(join(dir, 'nope')));
  });
});

describe('templates, demonstrations and splits', () => {
  it('fills and cuts templates', () => {
    assert.equal(fillTemplate('[X] was born in [Y] .', 'Ada $& Lovelace', 'London'), 'Ada $& Lovelace was born in London .');
    assert.deepEqual(splitAtObject('[X] is [Y] citizen .', 'Ada'), { prefix: 'Ada is', suffix: ' citizen .' });
    assert.deepEqual(splitAtObject('[X] (born [Y]).', 'Ada'), { prefix: 'Ada (born', suffix: ').' });
  });

  it('draws k demonstrations, seeded, never the query\'s fact or subject', () => {
    const pool: LamaFact[] = Array.from({ length: 30 }, (_, i) => ({ sub: `s${i}`, obj: `o${i % 7}` }));
    const query = pool[4];
    pool.push({ sub: 's4', obj: 'other' });
    const seen = new Set<string>();
    for (let q = 0; q < 200; q++) {
      const d = drawDemonstrations(pool, 5, new Rng(demoSeed(1, 'P19', q)), query);
      assert.equal(d.length, 5);
      assert.equal(new Set(d.map(key)).size, 5, 'without replacement');
      assert.ok(d.every((f) => f.sub !== 's4'), 'never the query fact nor its subject');
      seen.add(d.map(key).join('|'));
      assert.deepEqual(drawDemonstrations(pool, 5, new Rng(demoSeed(1, 'P19', q)), query), d, 'same seed, same draw');
    }
    assert.ok(seen.size > 150, 'different queries get different draws');
    assert.notDeepEqual(drawDemonstrations(pool, 5, new Rng(demoSeed(2, 'P19', 0)), query), drawDemonstrations(pool, 5, new Rng(demoSeed(1, 'P19', 0)), query));
    assert.equal(drawDemonstrations(pool.slice(0, 3), 5, new Rng(1), pool[0]).length, 2, 'fewer when the pool is short');
  });

  it('setting 1: 30 / 5 / 6 relations, disjoint, deterministic', () => {
    const ids = trexRelations().map((r) => r.id);
    const a = lamaMetaSplit(ids, 0);
    assert.deepEqual([a.train.length, a.dev.length, a.test.length], [30, 5, 6]);
    assert.deepEqual([...a.train, ...a.dev, ...a.test].sort(), [...ids].sort());
    assert.deepEqual(lamaMetaSplit([...ids].reverse(), 0), a, 'independent of input order');
    assert.notDeepEqual(lamaMetaSplit(ids, 1).test, a.test);
    assert.throws(() => lamaMetaSplit(ids.slice(0, 40), 0), /40 relations, need 41/);
  });

  it('setting 3: 60% test, 32 train + 32 dev from the rest, disjoint, deterministic', () => {
    const facts = loadLamaRelation(trexRelations().find((r) => r.id === 'P37')!).test;
    const s = lamaMultitaskSplit(facts, 7);
    assert.equal(s.test.length, Math.round(0.6 * facts.length));
    assert.equal(s.train.length, 32);
    assert.equal(s.dev.length, 32);
    const ids = (xs: LamaFact[]): string[] => xs.map((f) => f.uuid!);
    const all = [...ids(s.test), ...ids(s.train), ...ids(s.dev)];
    assert.equal(new Set(all).size, all.length, 'disjoint');
    assert.ok(all.every((u) => facts.some((f) => f.uuid === u)));
    assert.deepEqual(lamaMultitaskSplit(facts, 7), s);
    assert.notDeepEqual(ids(lamaMultitaskSplit(facts, 8).train), ids(s.train));
    const small = lamaMultitaskSplit(facts.slice(0, 50), 7);
    assert.deepEqual([small.test.length, small.train.length, small.dev.length], [30, 20, 0]);
  });
});

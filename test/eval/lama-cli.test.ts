// `icld lama eval` end to end on saved tiny models (GPT-2 and BERT) and a tiny LAMA folder, plus
// one run on the shipped data/lama: --json shape, --report, the table, and usage errors (exit 2).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel } from '../../src/models/index.js';
import { TEMPLATES, TEST, lamaGpt2, lamaTokenizer, writeLamaDir } from './lama-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, gpt: string, bert: string, data: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Out { relations: Record<string, { p1: number; p10: number; n: number; skipped: number }>; average: { p1: number; p10: number }; kind: string; k_shot: number; vocab: string; seed: number; }

before(() => {
  root = mkdtempSync(join(tmpdir(), 'lama-cli-'));
  gpt = join(root, 'gpt'); bert = join(root, 'bert'); data = join(root, 'lama');
  const t = lamaTokenizer(false);
  lamaGpt2(t.vocabSize).savePretrained(gpt); t.save(gpt);
  const mt = lamaTokenizer(true);
  createModel('bert', { vocab_size: mt.vocabSize, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 256 }, 2).savePretrained(bert);
  mt.save(bert);
  writeLamaDir(data);
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('icld lama eval', () => {
  it('--json: every T-REx relation of the folder, macro average, --report files', () => {
    const rep = join(root, 'rep');
    const r = icld(['lama', 'eval', '--model', gpt, '--data-dir', data, '--all', '--vocab', 'full', '--json', '--report', rep]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const j = JSON.parse(lines[0]) as Out;
    assert.deepEqual(Object.keys(j.relations).sort(), Object.keys(TEMPLATES).sort());
    for (const [id, x] of Object.entries(j.relations)) {
      assert.deepEqual(Object.keys(x).sort(), ['n', 'p1', 'p10', 'skipped']);
      assert.equal(x.n + x.skipped, TEST[id].length, id);
      assert.ok(x.p1 >= 0 && x.p1 <= x.p10 && x.p10 <= 1);
    }
    const rs = Object.values(j.relations).filter((x) => x.n > 0);
    assert.ok(Math.abs(j.average.p1 - rs.reduce((s, x) => s + x.p1, 0) / rs.length) < 1e-12);
    assert.ok(Math.abs(j.average.p10 - rs.reduce((s, x) => s + x.p10, 0) / rs.length) < 1e-12);
    assert.equal(j.kind, 'causal');
    assert.equal(j.vocab, 'full');
    assert.deepEqual(JSON.parse(readFileSync(join(rep, 'results.json'), 'utf8')), j);
    const html = readFileSync(join(rep, 'report.html'), 'utf8');
    assert.ok(html.includes('P37') && html.includes('[X] was born in [Y] .') && html.includes('<svg'));
  });

  it('a BERT model, k-shot, a Google-RE relation, the readable table', () => {
    const r = icld(['lama', 'eval', '--model', bert, '--data-dir', data, '--relations', 'P19,place_of_birth', '--k-shot', '2', '--seed', '3', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Out;
    assert.equal(j.kind, 'masked');
    assert.equal(j.k_shot, 2);
    assert.deepEqual(Object.keys(j.relations), ['P19', 'place_of_birth']);
    assert.ok(j.relations.P19.n > 0 && j.relations.place_of_birth.n > 0);
    const t = icld(['lama', 'eval', '--model', bert, '--data-dir', data, '--relations', 'P37']);
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^P37\s+\d+\.\d\s+\d+\.\d\s+\d+\s+\d+$/m);
    assert.match(t.stdout, /^average\s+\d+\.\d\s+\d+\.\d$/m);
  });

  it('the shipped data/lama by default, --max-facts', () => {
    const r = icld(['lama', 'eval', '--model', gpt, '--relations', 'P19', 'P37', '--max-facts', '5', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Out;
    for (const id of ['P19', 'P37']) assert.equal(j.relations[id].n + j.relations[id].skipped, 5);
  });

  it('usage errors exit 2 with one line; a missing data folder exits 1', () => {
    const cases: [string[], RegExp][] = [
      [['--relations', 'P91'], /unknown LAMA relation 'P91' \(did you mean 'P19'\?\)/],
      [['--relations', 'P19', '--all'], /give --relations or --all, not both/],
      [['--vocab', 'bogus'], /--vocab/],
      [['--k-shot', '-1'], /--k-shot/],
      [['--max-facts', '0'], /--max-facts/],
      [['--bogus'], /--bogus/],
    ];
    for (const [extra, re] of cases) {
      const r = icld(['lama', 'eval', '--model', gpt, '--data-dir', data, ...extra]);
      assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    const m = icld(['lama', 'eval', '--data-dir', data]);
    assert.equal(m.status, 2);
    assert.match(m.stderr, /missing required flag --model/);
    const d = icld(['lama', 'eval', '--model', gpt, '--data-dir', join(root, 'nope')]);
    assert.equal(d.status, 1);
    assert.match(d.stderr, /--data-dir directory not found/);
  });
});

// `icld icl eval` end to end: a saved tiny model + tokenizer and a tiny task folder; --json on
// stdout, report.html, per-example predictions, --split, and one-line usage errors.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SEEDS, clsTest, genTest, writeTaskDir, writeModelDir } from '../icl/task-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, modelDir: string, taskDir: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Shape {
  tasks: Record<string, { seeds: Record<string, Record<string, number>>; mean: Record<string, number>; std: Record<string, number> }>;
  average: Record<string, number>;
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'icl-cli-'));
  modelDir = join(root, 'model'); taskDir = join(root, 'tasks');
  writeModelDir(modelDir);
  writeTaskDir(taskDir);
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('icld icl eval', () => {
  it('--json, --report and --predictions', () => {
    const out = join(root, 'out');
    const r = icld(['icl', 'eval', '--model', modelDir, '--tasks', 'cls', 'gen', '--task-dir', taskDir, '--k', '2', '--seeds', '100,13',
      '--max-new-tokens', '4', '--json', '--report', out, '--predictions', join(out, 'p.jsonl')]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'stdout is one JSON object');
    const j = JSON.parse(lines[0]) as Shape;
    assert.deepEqual(Object.keys(j.tasks).sort(), ['cls', 'gen']);
    for (const s of ['100', '13']) {
      assert.deepEqual(Object.keys(j.tasks.cls.seeds[s]).sort(), ['accuracy', 'macro_f1']);
      assert.deepEqual(Object.keys(j.tasks.gen.seeds[s]).sort(), ['em', 'f1']);
    }
    // mean and sample std over the two seeds, per metric (a bare `typeof ... 'object'` also passed for null)
    for (const t of ['cls', 'gen']) {
      for (const m of Object.keys(j.tasks[t].seeds['100'])) {
        const [a, b] = [j.tasks[t].seeds['100'][m], j.tasks[t].seeds['13'][m]];
        assert.ok(Math.abs(j.tasks[t].mean[m] - (a + b) / 2) < 1e-12, `${t} mean ${m}`);
        assert.ok(Math.abs(j.tasks[t].std[m] - Math.abs(a - b) / Math.SQRT2) < 1e-12, `${t} std ${m}`);
      }
    }
    assert.deepEqual(Object.keys(j.average).sort(), ['accuracy', 'em', 'f1', 'macro_f1']);

    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.ok(html.includes('cls') && html.includes('gen'), 'report names the tasks');
    assert.ok(html.includes('<svg'), 'report has a chart');

    const preds = readFileSync(join(out, 'p.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(preds.length, (clsTest.length + genTest.length) * SEEDS.length);
    for (const p of preds) assert.deepEqual(Object.keys(p).sort(), ['gold', 'input', 'prediction', 'scores', 'seed', 'task']);
    for (const [task, test] of [['cls', clsTest], ['gen', genTest]] as const) {
      for (const s of SEEDS) {
        const ps = preds.filter((p) => p.task === task && p.seed === s);
        assert.deepEqual(ps.map((p) => p.input), test.map((e) => e.input), `${task} seed ${s}`);
        assert.deepEqual(ps.map((p) => p.gold), test.map((e) => e.output));
        for (const [i, p] of ps.entries()) assert.equal((p.scores as number[]).length, test[i].options.length);
        // The JSON's accuracy agrees with the predictions file.
        if (task === 'cls') assert.equal(j.tasks.cls.seeds[String(s)].accuracy, ps.filter((p) => p.prediction === p.gold).length / ps.length);
      }
    }
  });

  it('--split uses the split\'s test tasks that exist (missing ones noted on stderr)', () => {
    const r = icld(['icl', 'eval', '--model', modelDir, '--split', 'mysplit', '--task-dir', taskDir, '--k', '1', '--seeds', '13', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Shape;
    assert.deepEqual(Object.keys(j.tasks), ['cls']);
    assert.deepEqual(Object.keys(j.tasks.cls.seeds), ['13']);
    assert.match(r.stderr, /not_shipped/);
  });

  it('errors are one line on stderr with a non-zero exit', () => {
    const cases: [string[], RegExp][] = [
      [['--model', modelDir, '--tasks', 'cls', '--task-dir', taskDir, '--bogus-flag', '1'], /--bogus-flag/],
      [['--model', modelDir, '--tasks', 'cls', '--task-dir', taskDir, '--k', 'two'], /--k expects a number, got 'two'/],
      [['--model', modelDir, '--tasks', 'nope', '--task-dir', taskDir], /nope/],
      [['--model', modelDir, '--tasks', 'cls', '--task-dir', taskDir, '--method', 'sideways'], /--method must be direct or channel/],
      [['--model', modelDir, '--tasks', 'cls', '--task-dir', taskDir, '--k', '9', '--seeds', '100'], /--k 9 needs at least 9/],
      [['--tasks', 'cls', '--task-dir', taskDir], /--model/],
    ];
    for (const [args, re] of cases) {
      const r = icld(['icl', 'eval', ...args]);
      assert.notEqual(r.status, 0, args.join(' '));
      assert.equal(r.stdout, '', args.join(' '));
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line on stderr for ${args.join(' ')}: ${r.stderr}`);
      assert.match(lines[0], re);
    }
  });
});

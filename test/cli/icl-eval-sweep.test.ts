// `icld icl eval` over several tasks, one of them broken: the good tasks' JSON, predictions and
// report are written, the bad task is named (with its file) on stderr and in "errors", exit 1.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync, readdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SEEDS, clsTest, clsTrain, writeTaskDir, writeModelDir } from '../icl/task-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, modelDir: string, taskDir: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'icl-sweep-cli-'));
  modelDir = join(root, 'model'); taskDir = join(root, 'tasks');
  writeModelDir(modelDir);
  writeTaskDir(taskDir);
  // "broken": a readable train file, a test file with a bad line 2.
  mkdirSync(join(taskDir, 'broken'));
  for (const s of SEEDS) writeFileSync(join(taskDir, 'broken', `broken_16_${s}_train.jsonl`), clsTrain(s).map((x) => JSON.stringify(x)).join('\n') + '\n');
  writeFileSync(join(taskDir, 'broken', 'broken_test.jsonl'), '{"task":"broken","input":"a","output":"x","options":["x","y"]}\n{"input": oops\n');
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('icld icl eval: one broken task in a sweep', () => {
  it('writes the good task\'s results, names the bad task and its file, exits 1', () => {
    const out = join(root, 'out'), pred = join(out, 'p.jsonl');
    const r = icld(['icl', 'eval', '--model', modelDir, '--tasks', 'broken', 'cls', '--task-dir', taskDir, '--k', '2', '--seeds', '100,13',
      '--json', '--report', out, '--predictions', pred]);
    assert.equal(r.status, 1, r.stderr);
    const badFile = join(taskDir, 'broken', 'broken_test.jsonl');
    const lines = r.stderr.trim().split('\n');
    assert.ok(lines.some((l) => l.startsWith(`icl eval: task broken failed: ${badFile}:2:`)), r.stderr);
    assert.match(lines[lines.length - 1], /^icld icl eval: 1 of 2 task\(s\) failed \(broken\); the other tasks' results are written$/);
    const j = JSON.parse(r.stdout) as { tasks: Record<string, { seeds: Record<string, { accuracy: number }> }>; errors: { task: string; error: string }[] };
    assert.deepEqual(Object.keys(j.tasks), ['cls']);
    assert.equal(j.errors.length, 1);
    assert.equal(j.errors[0].task, 'broken');
    assert.ok(j.errors[0].error.startsWith(`${badFile}:2:`));
    // Predictions: exactly the finished task's, written whole (no temp file left behind).
    const preds = readFileSync(pred, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task: string; seed: number; prediction: string; gold: string });
    assert.equal(preds.length, clsTest.length * SEEDS.length);
    assert.ok(preds.every((p) => p.task === 'cls'));
    for (const s of SEEDS) {
      const ps = preds.filter((p) => p.seed === s);
      assert.equal(j.tasks.cls.seeds[String(s)].accuracy, ps.filter((p) => p.prediction === p.gold).length / ps.length);
    }
    assert.deepEqual(readdirSync(out).sort(), ['p.jsonl', 'report.html']);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.ok(html.includes('cls') && html.includes('broken'), 'the report lists the finished task and the failed one');
  });

  it('a single failing task: one line on stderr, nothing on stdout, no report', () => {
    const out = join(root, 'out2');
    const r = icld(['icl', 'eval', '--model', modelDir, '--tasks', 'broken', '--task-dir', taskDir, '--k', '2', '--seeds', '100', '--report', out]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].startsWith(`icld icl eval: task broken: ${join(taskDir, 'broken', 'broken_test.jsonl')}:2:`), lines[0]);
    assert.equal(existsSync(join(out, 'report.html')), false);
  });
});

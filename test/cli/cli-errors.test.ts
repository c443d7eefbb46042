// The compiled CLI as a user runs it: exit 2 for usage errors, 1 for runtime failures, 0 for
// success; one line on stderr with the exact message; help layout; bench ops' table printed once;
// eval-lm refusing a non-finite loss; ict train's readable summary.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeModelDir, writeTaskDir, tinyTokenizer, tinyModel } from '../icl/task-fixture.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { WindowProgress } from '../../src/cli/progress.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, modelDir: string, text: string;

function icld(args: string[], timeout = 60_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code `code`, nothing on stdout, exactly `msg` as the one line on stderr. */
function fails(args: string[], code: number, msg: string | RegExp): void {
  const r = icld(args);
  assert.equal(r.status, code, `exit code of icld ${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stdout, '', args.join(' '));
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `one line on stderr for icld ${args.join(' ')}: ${r.stderr}`);
  if (typeof msg === 'string') assert.equal(lines[0], msg); else assert.match(lines[0], msg);
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'cli-errors-'));
  modelDir = join(root, 'model');
  writeModelDir(modelDir);
  text = join(root, 'text.txt');
  writeFileSync(text, 'is the red cat blue?\nyes\n\nwhat is sun?\na tree\n'.repeat(4));
});
after(() => rmSync(root, { recursive: true, force: true }));

describe('usage errors exit 2 with the exact message', () => {
  it('unknown commands suggest the nearest and do not swallow the next flag', () => {
    fails(['pretrian', '--config', 'x'], 2, "icld: unknown command 'pretrian' (did you mean 'pretrain'?)");
    fails(['bench', 'opps'], 2, "icld: unknown command 'bench opps' (did you mean 'bench ops'?)");
    fails(['icl', 'evl', '--json'], 2, "icld: unknown command 'icl evl' (did you mean 'icl eval'?)");
    fails(['tokenizer'], 2, 'icld tokenizer: needs a subcommand: train (see icld tokenizer --help)');
  });

  it('flag values out of range, bad choices, unknown and missing flags (before any file is opened)', () => {
    const nowhere = join(root, 'no-such-model');
    fails(['icl', 'eval', '--model', nowhere, '--tasks', 'cls', '--batch-size', '0'], 2, 'icld icl eval: --batch-size must be an integer ≥ 1, got 0');
    fails(['icl', 'eval', '--model', nowhere, '--tasks', 'cls', '--test-limit', '0'], 2, 'icld icl eval: --test-limit must be an integer ≥ 1, got 0');
    fails(['icl', 'eval', '--model', nowhere, '--tasks', 'cls', '--orders', '0'], 2, 'icld icl eval: --orders must be an integer ≥ 1, got 0');
    fails(['icl', 'eval', '--model', nowhere, '--tasks', 'cls', '--k', '1.5'], 2, 'icld icl eval: --k must be an integer ≥ 0, got 1.5');
    fails(['icl', 'eval', '--model', nowhere, '--batch_size', '4'], 2, 'icld icl eval: unknown flag --batch_size (did you mean --batch-size?)');
    fails(['icl', 'eval', '--model', nowhere, '--method', 'chanel'], 2, "icld icl eval: --method must be direct or channel, got 'chanel' (did you mean 'channel'?)");
    fails(['generate', '--model', nowhere, '--prompt', 'a', '--top-k', '-3'], 2, 'icld generate: --top-k must be an integer ≥ 0, got -3');
    fails(['generate', '--model', nowhere, '--prompt', 'a', '--repetition-penalty', '0'], 2, 'icld generate: --repetition-penalty must be a number > 0, got 0');
    fails(['generate', '--model', nowhere, '--prompt', 'a', '--max-new-tokens', '-5'], 2, 'icld generate: --max-new-tokens must be an integer ≥ 1, got -5');
    fails(['generate', '--model', nowhere, '--prompt', 'a', '--stop', '\\q'], 2, /^icld generate: --stop: unknown escape \\q/);
    fails(['generate', '--model', modelDir, 'hello'], 2, "icld generate: unexpected argument 'hello' (flags start with --; see icld generate --help)");
    fails(['ict', 'train', '--model', nowhere, '--setting', 'metta'], 2, "icld ict train: --setting must be meta or multitask, got 'metta' (did you mean 'meta'?)");
    fails(['pretrain', '--arch', 'gpt3'], 2, "icld pretrain: --arch must be gpt2 or bert, got 'gpt3' (did you mean 'gpt2'?)");
    fails(['eval-lm', '--text-file', text], 2, 'icld eval-lm: missing required flag --model (see icld eval-lm --help)');
    fails(['bench', 'ops', '--filter', 'no-such-case'], 2, "icld bench ops: --filter 'no-such-case' matches no case");
  });
});

describe('runtime failures exit 1 naming the flag and the path', () => {
  it('missing input files', () => {
    const missing = join(root, 'missing.json');
    fails(['pretrain', '--config', missing, '--data', text, '--out', join(root, 'run')], 1, `icld pretrain: --config file not found: ${missing}`);
    fails(['eval-lm', '--model', join(root, 'nope'), '--text-file', text], 1, `icld eval-lm: --model directory not found: ${join(root, 'nope')}`);
    fails(['eval-lm', '--model', modelDir, '--text-file', join(root, 'nope.txt')], 1, `icld eval-lm: --text-file file not found: ${join(root, 'nope.txt')}`);
  });

  it('eval-lm: a model whose loss is not finite is an error naming the model, never {"nll": null}', () => {
    const bad = join(root, 'nan-model');
    const tok = tinyTokenizer(), m = tinyModel(tok.vocabSize);
    m.parameters()[0].f32.fill(NaN); // the token embeddings
    m.savePretrained(bad);
    tok.save(bad);
    const r = icld(['eval-lm', '--model', bad, '--text-file', text, '--json']);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.ok(r.stderr.includes(bad), r.stderr);
    assert.match(r.stderr, /NaN/);
    // The healthy model still works and gives a finite loss.
    const ok = icld(['eval-lm', '--model', modelDir, '--text-file', text, '--json']);
    assert.equal(ok.status, 0, ok.stderr);
    const j = JSON.parse(ok.stdout) as { tokens: number; nll: number; ppl: number };
    assert.ok(j.tokens > 0 && Number.isFinite(j.nll) && j.nll > 0, ok.stdout);
  });
});

describe('eval-lm progress', () => {
  it('perplexity reports every forward pass; the reporter prints window counts', () => {
    const tok = tinyTokenizer(), m = tinyModel(tok.vocabSize, 16);
    const ids = Array.from({ length: 16 * 5 + 7 }, (_, i) => (i * 7) % tok.vocabSize);
    const calls: [number, number, number][] = [];
    const r = perplexity(m, ids, { batch: 2, onProgress: (d, t, n) => calls.push([d, t, n]) });
    // 5 full windows in batches of 2 (2, 4, 5) then the short last window.
    assert.deepEqual(calls.map((c) => c[0]), [2, 4, 5, 6]);
    assert.ok(calls.every((c) => c[1] === 6));
    assert.equal(calls[calls.length - 1][2], r.tokens);
    const lines: string[] = [];
    const p = new WindowProgress('eval-lm', (s) => lines.push(s), 0);
    for (const [d, t, n] of calls) p.update(d, t, n);
    p.finish();
    if (!process.stderr.isTTY) {
      assert.equal(lines.length, calls.length);
      assert.match(lines[lines.length - 1], /^eval-lm: window 6\/6 {2}\d+ tok\/s {2}elapsed \d+s {2}ETA 0s$/);
    }
  });
});

describe('output', () => {
  it('help: exit codes documented, columns never touch', () => {
    const r = icld(['--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /Exit codes: 0 success; 1 runtime failure/);
    assert.match(r.stdout, /^ {2}tokenizer train {2,}Train a tokenizer/m);
    const g = icld(['generate', '--help']);
    assert.equal(g.status, 0);
    assert.match(g.stdout, /^ {2}--repetition-penalty <number> {2,}HF-style/m);
    assert.match(g.stdout, /--stop <values> +stop strings; backslash escapes are decoded/);
    // main.js runs when it is the entry point, also named without its extension (it is importable by tests).
    const v = spawnSync(process.execPath, [MAIN.replace(/\.js$/, ''), '--version'], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
    const e = icld(['eval-lm', '--help']);
    assert.match(e.stdout, /consecutive windows of\s+n_positions tokens/);
    assert.ok(!e.stdout.includes('DESIGN'), e.stdout);
  });

  it('bench ops prints each row once (table on stdout, or progress on stderr + JSON on stdout)', () => {
    const rowCount = (s: string): number => s.split('\n').filter((l) => l.startsWith('gelu fwd+bwd')).length;
    const t = icld(['bench', 'ops', '--quick', '--filter', 'gelu']);
    assert.equal(t.status, 0, t.stderr);
    assert.equal(rowCount(t.stdout) + rowCount(t.stderr), 1, `stdout:\n${t.stdout}\nstderr:\n${t.stderr}`);
    assert.equal(rowCount(t.stdout), 1);
    assert.match(t.stdout, /^backend \w+, gemm \w+, threads \d+\n/);
    const j = icld(['bench', 'ops', '--quick', '--filter', 'gelu', '--json']);
    assert.equal(j.status, 0, j.stderr);
    const lines = j.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const r = JSON.parse(lines[0]) as { cases: { name: string; ms: number }[] };
    assert.deepEqual(r.cases.map((c) => c.name), ['gelu fwd+bwd']);
    assert.ok(r.cases[0].ms > 0);
    assert.equal(rowCount(j.stderr), 1);
  });

  it('ict train ends with a readable summary, --json with one object', () => {
    const tasks = join(root, 'tasks');
    writeTaskDir(tasks);
    const base = ['ict', 'train', '--model', modelDir, '--setting', 'meta', '--train-tasks', 'cls', '--task-dir', tasks,
      '--k', '1', '--steps', '2', '--batch-size', '2', '--eval-every', '2'];
    const r = icld([...base, '--out', join(root, 'ict1')]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^trained 2 steps in \d+\.\d s on 1 task\(s\), \d+ examples; final held-out loss \d+\.\d{4}\nmodel: .*ict1\n$/);
    assert.ok(!r.stdout.includes('{'), r.stdout);
    const j = icld([...base, '--out', join(root, 'ict2'), '--json']);
    assert.equal(j.status, 0, j.stderr);
    assert.equal(j.stdout.trim().split('\n').length, 1);
    const o = JSON.parse(j.stdout) as { steps: number; out: string; final_eval_loss: number };
    assert.equal(o.steps, 2);
    assert.equal(o.out, join(root, 'ict2'));
    assert.ok(Number.isFinite(o.final_eval_loss));
  });
});

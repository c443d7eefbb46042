// `icld distill` end to end on a tiny teacher/student pair sharing a tokenizer: trains N steps
// with a teacher cache and the LM term, writes a loadable model directory, resumes exactly from a
// checkpoint, refuses teacher/student pairs whose tokenizers differ (exit 1, naming both dirs),
// and range-checks its flags (exit 2).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { allTexts, tinyModel, tinyTokenizer, writeTaskDir } from '../icl/task-fixture.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, teacher: string, student: string, other: string, taskDir: string, lmFile: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const weights = (dir: string): Float32Array[] => GPT2.fromPretrained(dir).namedParameters().map(([, p]) => Float32Array.from(p.f32));

before(() => {
  root = mkdtempSync(join(tmpdir(), 'icld-distill-'));
  teacher = join(root, 'teacher'); student = join(root, 'student'); other = join(root, 'other'); taskDir = join(root, 'tasks'); lmFile = join(root, 'lm.txt');
  const tok = tinyTokenizer();
  new GPT2(gpt2Config({ vocab_size: tok.vocabSize, n_positions: 128, n_embd: 32, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), 5).savePretrained(teacher);
  tok.save(teacher);
  tinyModel(tok.vocabSize, 128, 9).savePretrained(student);
  tok.save(student);
  // Same model shape, a tokenizer trained to a different size.
  const tok2 = BPETokenizer.train(allTexts(), { vocabSize: 280, specialTokens: ['<|endoftext|>'] });
  tinyModel(tok.vocabSize, 128, 9).savePretrained(other);
  tok2.save(other);
  writeTaskDir(taskDir);
  writeFileSync(lmFile, allTexts().join('\n').repeat(4));
});
after(() => rmSync(root, { recursive: true, force: true }));

const common = (): string[] => ['--teacher', teacher, '--student', student, '--tasks', 'cls', '--task-dir', taskDir, '--setting', 'multitask', '--k', '2', '--seeds', '100', '13',
  '--alpha-start', '0.8', '--alpha-end', '0.2', '--temperature', '2', '--top-k', '8', '--beta', '0.5', '--lm-data', lmFile, '--lm-seq-len', '16', '--lm-batch-size', '2',
  '--steps', '4', '--batch-size', '4', '--lr', '0.003', '--save-every', '2', '--teacher-cache', join(root, 'cache')];

describe('icld distill', () => {
  it('trains N steps into a loadable model directory, then resumes exactly', () => {
    const out = join(root, 'out');
    const r = icld(['distill', ...common(), '--out', out, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.steps, 4); assert.equal(s.instances, 16); assert.equal(s.tasks, 1);
    assert.ok(s.teacher_params > s.student_params);
    assert.equal(typeof s.final_loss, 'number');
    assert.match(r.stderr, /teacher cache: 16 instances/);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'trainer_state.json', 'distill_config.json', 'checkpoint-2', 'checkpoint-4']) assert.ok(existsSync(join(out, f)), f);
    const cfg = JSON.parse(readFileSync(join(out, 'distill_config.json'), 'utf8'));
    assert.deepEqual([cfg.alpha, cfg.alphaEnd, cfg.alphaSchedule, cfg.beta, cfg.instances, cfg.cached_teacher], [0.8, 0.2, 'linear', 0.5, 16, true]);
    // Loadable, and trained: its weights moved away from the student's.
    const trained = weights(out), init = weights(student);
    assert.equal(trained.length, init.length);
    assert.ok(trained.some((w, i) => w.some((x, j) => x !== init[i][j])), 'the student did not change');
    assert.equal(BPETokenizer.fromTokenizerJson(join(out, 'tokenizer.json')).vocabSize, tinyTokenizer().vocabSize);
    // Resuming from step 2 into a new directory ends with the same weights (same data order, cache hit).
    const out2 = join(root, 'out2');
    const r2 = icld(['distill', ...common(), '--out', out2, '--resume', join(out, 'checkpoint-2')]);
    assert.equal(r2.status, 0, r2.stderr);
    assert.match(r2.stderr, /resuming from .*checkpoint-2 at step 2 of 4/);
    assert.match(r2.stderr, /teacher cache hit/);
    assert.match(r2.stdout, /distilled 4 steps/);
    assert.deepEqual(weights(out2), trained);
    // A finished run is not overwritten by accident, and the student's own dir is never the output.
    const again = icld(['distill', ...common(), '--out', out]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already holds a training run; continue it with --resume/);
    assert.deepEqual(weights(out), trained);
    const into = icld(['distill', ...common(), '--out', student]);
    assert.equal(into.status, 1);
    assert.match(into.stderr, /is the student directory/);
  });

  it('channel instances with a live teacher', () => {
    const out = join(root, 'channel');
    const r = icld(['distill', '--teacher', teacher, '--student', student, '--split', 'mysplit', '--task-dir', taskDir, '--setting', 'meta', '--k', '2', '--method', 'channel',
      '--instances', '6', '--epochs', '2', '--batch-size', '3', '--out', out, '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).steps, 4);
    assert.equal(JSON.parse(readFileSync(join(out, 'distill_run.json'), 'utf8')).method, 'channel');
    assert.ok(existsSync(join(out, 'model.safetensors')));
  });

  it('refuses teacher and student with different tokenizers (exit 1, one line naming both)', () => {
    const out = join(root, 'mismatch');
    const r = icld(['distill', '--teacher', teacher, '--student', other, '--tasks', 'cls', '--task-dir', taskDir, '--setting', 'multitask', '--k', '2', '--steps', '1', '--out', out]);
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.ok(lines[0].includes(teacher) && lines[0].includes(other), lines[0]);
    assert.match(lines[0], /^icld distill: teacher .* and student .* do not share a tokenizer: vocabularies of \d+ and 280 tokens$/);
    assert.ok(!existsSync(out), 'a refused run wrote its output directory');
  });

  it('usage errors exit 2', () => {
    const base = ['distill', '--teacher', teacher, '--student', student, '--tasks', 'cls', '--task-dir', taskDir, '--setting', 'multitask', '--k', '2', '--out', join(root, 'u')];
    for (const [extra, msg] of [
      [['--alpha-start', '1.5'], /--alpha-start must be a number in \[0, 1\], got 1\.5/],
      [['--steps', '2', '--epochs', '2'], /give --steps or --instances\/--epochs, not both/],
      [['--beta', '0.5'], /--beta 0\.5 needs --lm-data/],
      [['--kl', 'options', '--method', 'channel'], /--kl options needs --method direct/],
      [['--setting', 'mixed'], /--setting must be meta or multitask/],
      [['--temperature', '0'], /--temperature must be a number > 0/],
    ] as [string[], RegExp][]) {
      const r = icld([...base, ...extra]);
      assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
    const r = icld(base.filter((x, i) => x !== '--k' && base[i - 1] !== '--k'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /missing required flag --k/);
  });
});

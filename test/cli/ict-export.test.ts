// `icld ict export` and `icld icl eval --items`: the files deploy/gpu/ hands to PyTorch. The export
// must be the instances ict train trains on, in Hugging Face's labels convention (the model shifts),
// so that a PyTorch loss over it equals icld's ICT loss; the items must be exactly the sequences
// icl eval scored, so that scoring them elsewhere reproduces its option scores.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTaskDir, writeModelDir } from '../icl/task-fixture.js';
import { loadModel, type LanguageModel } from '../../src/models/index.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import { episodePools, IctSampler, batchedLoss } from '../../src/icl/ict.js';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
let root: string, modelDir: string, taskDir: string;

function icld(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** log P(ids[t] | ids[:t]) for t in [from, ids.length), by one plain forward pass (no KV cache, no batching). */
function logProbs(model: LanguageModel, ids: number[]): number[][] {
  const T = ids.length;
  const logits = tidy(() => noGrad(() => Array.from(model.forward(O.tensor(ids, [1, T], 'int32')).f32)));
  const V = logits.length / T;
  return Array.from({ length: T }, (_, t) => {
    const row = logits.slice(t * V, (t + 1) * V);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    return row.map((x) => x - lse);
  });
}

before(() => {
  root = mkdtempSync(join(tmpdir(), 'ict-export-'));
  modelDir = join(root, 'model'); taskDir = join(root, 'tasks');
  writeModelDir(modelDir);
  writeTaskDir(taskDir);
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Row { task: string; input_ids: number[]; labels: number[] }

describe('icld ict export', () => {
  it('writes ict train\'s instances with HF labels whose loss is icld\'s ICT loss', () => {
    const out = join(root, 'x', 'ict.jsonl');
    const r = icld(['ict', 'export', '--model', modelDir, '--train-tasks', 'cls', 'gen', '--task-dir', taskDir, '--k', '2', '--seed', '5', '--instances', '12', '--out', out, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { instances: number; tokens: number; answer_tokens: number; max_length: number };
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Row);
    assert.equal(rows.length, 12);
    assert.equal(summary.max_length, 128); // the fixture model's n_positions
    assert.equal(summary.tokens, rows.reduce((s, x) => s + x.input_ids.length, 0));
    assert.equal(summary.answer_tokens, rows.reduce((s, x) => s + x.labels.filter((l) => l !== -100).length, 0));
    // The same draws as ict train's sampler with these flags (meta: every training example of the tasks).
    const tok = loadTokenizer(modelDir);
    const model = loadModel(modelDir);
    model.eval();
    const sampler = new IctSampler(tok, { pools: episodePools(taskDir, ['cls', 'gen'], 'meta', 2, [100]), k: 2, demos: true, method: 'direct', maxLength: 128, seed: 5 });
    const insts = rows.map(() => sampler.next());
    rows.forEach((row, i) => {
      const inst = insts[i];
      assert.equal(row.task, inst.task);
      assert.deepEqual(row.input_ids, inst.prefix.concat(inst.suffix));
      // Labels: the answer tokens in place (not shifted), -100 elsewhere; the answer is the gold output.
      const start = inst.prefix.length + inst.contStart;
      row.labels.forEach((l, t) => assert.equal(l, t >= start ? row.input_ids[t] : -100, `row ${i} position ${t}`));
      assert.equal(tok.decode(row.labels.filter((l) => l !== -100)).trim(), inst.gold);
    });
    // A PyTorch-style loss on the file (logits at t−1 predict labels[t], mean over the labelled
    // tokens) equals icld's answer-only ICT loss on the same instances.
    let sum = 0, n = 0;
    for (const row of rows) {
      const lp = logProbs(model, row.input_ids);
      row.labels.forEach((l, t) => { if (l !== -100) { sum -= lp[t - 1][l]; n++; } });
    }
    const icldLoss = batchedLoss(model, insts, tok.eosTokenId ?? 0, 4);
    assert.ok(Math.abs(sum / n - icldLoss) < 1e-4, `HF-convention loss ${sum / n} vs icld ${icldLoss}`);
  });

  it('one-line errors: a missing --out is a usage error (2), a directory without config.json a runtime one (1)', () => {
    const a = icld(['ict', 'export', '--model', modelDir, '--train-tasks', 'cls', '--task-dir', taskDir]);
    assert.equal(a.status, 2);
    assert.match(a.stderr.trim(), /^icld ict export: .*--out/);
    const empty = join(root, 'empty');
    mkdirSync(empty, { recursive: true });
    writeFileSync(join(empty, 'tokenizer.json'), readFileSync(join(modelDir, 'tokenizer.json')));
    const b = icld(['ict', 'export', '--model', empty, '--train-tasks', 'cls', '--task-dir', taskDir, '--out', join(root, 'e.jsonl')]);
    assert.equal(b.status, 1);
    assert.equal(b.stderr.trim().split('\n').length, 1, b.stderr);
    assert.match(b.stderr, /no config\.json/);
  });
});

describe('icld ict export --config', () => {
  const study = (over: Record<string, unknown>): string => {
    const c = {
      name: 'x', tasks: { dir: taskDir, train: ['cls', 'gen'], test: ['cls'] }, setting: 'meta', k: 1, seeds: [100], eval: { method: 'channel' },
      tokenizer: { path: join(modelDir, 'tokenizer.json') }, lm_data: { files: [], seq_len: 8, batch_size: 1 },
      teacher: { path: modelDir, ict: { steps: 3, lr: 0.01, batch_size: 2, warmup_steps: 1 } }, student: { model: { n_embd: 8, n_layer: 1, n_head: 1 } },
      train: { instances: 4, epochs: 1, batch_size: 2, lr: 0.01 }, distill: { alpha_start: 1, temperature: 2, kl: 'full', top_k: 4, beta: 0, lm_kd_steps: 0 }, ...over,
    };
    const f = join(root, `study-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(c));
    return f;
  };

  it('exports the study teacher stage\'s instances: its tasks, k, method, seed 1, steps × batch_size', () => {
    const a = join(root, 'cfg.jsonl'), b = join(root, 'flags.jsonl');
    const r = icld(['ict', 'export', '--config', study({}), '--out', a, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { instances: number; base: string; ict: { steps: number; lr: number; batch_size: number; warmup_steps: number } };
    assert.equal(j.instances, 6);
    assert.equal(j.base, modelDir);
    assert.deepEqual(j.ict, { steps: 3, lr: 0.01, batch_size: 2, warmup_steps: 1 });
    const f = icld(['ict', 'export', '--model', modelDir, '--train-tasks', 'cls', 'gen', '--task-dir', taskDir, '--k', '1', '--method', 'channel', '--seed', '1', '--instances', '6', '--out', b]);
    assert.equal(f.status, 0, f.stderr);
    assert.equal(readFileSync(a, 'utf8'), readFileSync(b, 'utf8'));
    // The study's template is used: a different ioSep gives different prompts, visible in the text.
    const t = join(root, 'tpl.jsonl');
    const rt = icld(['ict', 'export', '--config', study({ tasks: { dir: taskDir, train: ['cls'], test: ['cls'], template: { ioSep: ' => ' } } }), '--out', t]);
    assert.equal(rt.status, 0, rt.stderr);
    const tok = loadTokenizer(modelDir);
    const row = JSON.parse(readFileSync(t, 'utf8').split('\n')[0]) as Row;
    assert.ok(tok.decode(row.input_ids).includes(' => '), tok.decode(row.input_ids));
  });

  it('refuses what a GPU teacher cannot stand in for, in one line', () => {
    for (const [over, re] of [[{ setting: 'multitask' }, /one teacher per seed/], [{ tokenizer: {} }, /tokenizer\.path is not set/],
      [{ teacher: { ict: null } }, /teacher\.path is not set/]] as const) {
      const r = icld(['ict', 'export', '--config', study(over), '--out', join(root, 'no.jsonl')]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
    const u = icld(['ict', 'export', '--config', study({}), '--k', '2', '--out', join(root, 'no.jsonl')]);
    assert.equal(u.status, 2);
    assert.match(u.stderr, /drop --k/);
  });
});

describe('icld icl eval --items', () => {
  for (const method of ['direct', 'channel']) {
    it(`${method}: the items are the scored sequences (rescored here they give the predictions' scores)`, () => {
      const items = join(root, method, 'items.jsonl'), preds = join(root, method, 'p.jsonl');
      const r = icld(['icl', 'eval', '--model', modelDir, '--tasks', 'cls', 'gen', '--task-dir', taskDir, '--k', '2', '--seeds', '100,13', '--method', method,
        '--max-new-tokens', '2', '--items', items, '--predictions', preds, '--json']);
      assert.equal(r.status, 0, r.stderr);
      type Item = { task: string; seed: number; example: number; option: number; order: number; calib: boolean; gold: boolean; input_ids: number[]; cont_start: number };
      const xs = readFileSync(items, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Item);
      const ps = readFileSync(preds, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { task: string; seed: number; gold: string; scores: number[] });
      const cls = ps.filter((p) => p.task === 'cls');
      assert.ok(xs.every((x) => x.task === 'cls'), 'generation tasks have no scored sequences');
      assert.equal(xs.length, cls.reduce((s, p) => s + p.scores.length, 0));
      const model = loadModel(modelDir);
      model.eval();
      const seen = new Map<number, number>();
      for (const p of cls) {
        const e = seen.get(p.seed) ?? 0; seen.set(p.seed, e + 1);
        const mine = xs.filter((x) => x.seed === p.seed && x.example === e);
        assert.deepEqual(mine.map((x) => x.option), p.scores.map((_, j) => j));
        assert.equal(mine.filter((x) => x.gold).length, 1, 'exactly one gold option');
        mine.forEach((x, j) => {
          const lp = logProbs(model, x.input_ids);
          let s = 0;
          for (let t = x.cont_start; t < x.input_ids.length; t++) s += lp[t - 1][x.input_ids[t]];
          assert.ok(Math.abs(s - p.scores[j]) < 1e-3, `seed ${p.seed} example ${e} option ${j}: ${s} vs ${p.scores[j]}`);
        });
      }
    });
  }
});

// `pretrain --arch bert`: MLM on the shared Trainer — exact resume (mask Rng included), a run
// directory that loads and fills a mask, MLM keys checked against the family.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pretrain, readPretrainConfig, mlmLoss, type PretrainConfig } from '../../src/train/pretrain.js';
import { loadModel, createModel } from '../../src/models/index.js';
import { loadTokenizer } from '../../src/tokenizers/index.js';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, type Tensor } from '../../src/engine/index.js';

const corpus = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-mlm-'));
  const f = join(dir, 'corpus.txt');
  writeFileSync(f, readFileSync(new URL('../../../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 40000));
  return f;
};

const cfg = (steps: number, train: Partial<PretrainConfig['train']> = {}): PretrainConfig => ({
  model: { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 32, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 },
  tokenizer: { vocab_size: 300 },
  train: { steps, batch_size: 4, seq_len: 32, lr: 3e-3, warmup_steps: 4, eval_every: 4, save_every: 4, log_every: 2, eval_batches: 2, save_total_limit: 0, grad_accum: 2, ...train },
});
// warmup covers the first 4 steps, so stopping at 4 of 8 sees the same learning rates.
const quiet = (): void => {};

test('MLM: 2N steps straight equal N + resume + N bit for bit; the mask Rng is part of the checkpoint; the run loads and fills a mask', () => {
  const data = corpus();
  const a = mkdtempSync(join(tmpdir(), 'icld-ma-')), b = mkdtempSync(join(tmpdir(), 'icld-mb-'));
  const ra = pretrain({ config: cfg(8), arch: 'bert', data: [data], out: a, log: quiet });
  pretrain({ config: cfg(4), arch: 'bert', data: [data], out: b, log: quiet });
  const ck = join(b, 'checkpoint-4');
  const st = JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8'));
  assert.equal(st.user_state.mask_rng.length, 4, 'the mask Rng state is not checkpointed');
  const rb = pretrain({ config: cfg(8), arch: 'bert', data: [data], out: b, resume: ck, log: quiet });
  const straight = readFileSync(join(a, 'model.safetensors'));
  assert.deepEqual(readFileSync(join(b, 'model.safetensors')), straight);
  assert.deepEqual(ra.state.log_history.map((e) => e.loss), rb.state.log_history.map((e) => e.loss));
  assert.deepEqual(ra.state.eval_history.at(-1), rb.state.eval_history.at(-1));
  // Resuming with another mask Rng state gives other weights: the state is really used.
  const d = mkdtempSync(join(tmpdir(), 'icld-mc-'));
  cpSync(ck, join(d, 'ck'), { recursive: true });
  const sp = join(d, 'ck', 'trainer_state.json'), s2 = JSON.parse(readFileSync(sp, 'utf8'));
  s2.user_state.mask_rng = [1, 2, 3, 4];
  writeFileSync(sp, JSON.stringify(s2));
  pretrain({ config: cfg(8), arch: 'bert', data: [data], out: join(d, 'out'), resume: join(d, 'ck'), log: quiet });
  assert.notDeepEqual(readFileSync(join(d, 'out', 'model.safetensors')), straight, 'the mask Rng state was ignored on resume');

  // The run directory is a BERT that loads and answers fill-mask.
  const model = loadModel(a), tok = loadTokenizer(a);
  assert.equal(model.kind, 'masked');
  assert.equal(tok.type, 'wordpiece');
  const ids = tok.encode('the king is [MASK] .');
  const mi = ids.indexOf(tok.maskTokenId!);
  assert.ok(mi > 0 && ids[0] === tok.clsTokenId && ids.at(-1) === tok.sepTokenId, `encoded ${JSON.stringify(ids)}`);
  const fill = (m: typeof model): Float32Array => tidy(() => noGrad(() => {
    m.eval();
    const logits = m.forward(O.fromData(Int32Array.from(ids), [1, ids.length]));
    return O.softmax(logits, -1).f32.slice(mi * m.vocabSize, (mi + 1) * m.vocabSize);
  }));
  const probs = fill(model);
  assert.ok(Math.abs(probs.reduce((x, y) => x + y, 0) - 1) < 1e-4);
  // The loaded weights are the trained ones, not the seed-0 initialisation the run started from.
  const init = createModel('bert', { ...model.config, vocab_size: model.vocabSize }, 0);
  const p0 = fill(init);
  let l1 = 0;
  for (let i = 0; i < probs.length; i++) l1 += Math.abs(probs[i] - p0[i]);
  assert.ok(l1 > 0.01, `fill-mask distribution moved only ${l1} from the initial one`);
  assert.ok(ra.final_eval!.loss < Math.log(model.vocabSize), `val loss ${ra.final_eval!.loss} not below ln V`);
  init.dispose();
  model.dispose();
});

test('MLM keys are range-checked and belong to masked families; whole-word masking trains', () => {
  const dir = mkdtempSync(join(tmpdir(), 'icld-mk-'));
  const write = (c: unknown): string => { const p = join(dir, `c${Math.random()}.json`); writeFileSync(p, JSON.stringify(c)); return p; };
  const base = cfg(2);
  assert.throws(() => readPretrainConfig(write({ ...base, train: { ...base.train, mlm_probability: 1.5 } }), 'bert'), /mlm_probability/);
  assert.throws(() => readPretrainConfig(write({ ...base, train: { ...base.train, whole_word_mask: 'yes' } }), 'bert'), /whole_word_mask/);
  const gpt = { model: { n_embd: 32, n_layer: 1, n_head: 2, n_positions: 32 }, train: { steps: 2, mlm_probability: 0.2 } };
  assert.throws(() => readPretrainConfig(write(gpt), 'gpt2'), /mlm_probability applies to masked LMs only/);
  assert.throws(() => readPretrainConfig(write(base), 'gpt2'), /hidden_size/, 'BERT keys accepted for gpt2');
  const ok = readPretrainConfig(write({ ...base, train: { ...base.train, whole_word_mask: true, mlm_probability: 0.3 } }), 'bert');
  const r = pretrain({ config: { ...ok, train: { ...ok.train, steps: 2 } }, arch: 'bert', data: [corpus()], out: join(dir, 'out'), log: quiet });
  assert.equal(r.state.global_step, 2);
  assert.ok(r.state.log_history.every((e) => Number.isFinite(e.loss)));
});

test('mlmLoss (head at labelled positions only) equals the model\'s full-head MLM loss, value and gradients', () => {
  const model = createModel('bert', { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 }, 3);
  const B = 2, T = 8, ids = new Int32Array(B * T), labels = new Int32Array(B * T).fill(-100);
  for (let i = 0; i < ids.length; i++) ids[i] = 5 + ((i * 7) % 45);
  for (const i of [1, 4, 9, 15]) { labels[i] = ids[i]; ids[i] = 4; }
  const grads = (f: () => Tensor): [number, Float32Array[]] => {
    for (const p of model.parameters()) if (p.grad) { p.grad.dispose(); p.grad = null; }
    const v = tidy(() => { const l = f(); l.backward(); return l.item(); });
    return [v, model.parameters().map((p) => Float32Array.from(p.grad!.f32))];
  };
  const [v1, g1] = grads(() => model.loss(O.fromData(ids, [B, T]), O.fromData(labels, [B, T])).loss);
  const [v2, g2] = grads(() => mlmLoss(model, O.fromData(ids, [B, T]), labels));
  assert.ok(Math.abs(v1 - v2) < 1e-5, `${v1} vs ${v2}`);
  let worst = 0;
  g1.forEach((g, k) => g.forEach((x, i) => { worst = Math.max(worst, Math.abs(x - g2[k][i])); }));
  assert.ok(worst < 1e-5, `gradients differ by ${worst}`);
  assert.ok(g2.some((g) => g.some((x) => x !== 0)));
  model.dispose();
});

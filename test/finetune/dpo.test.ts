// DPO: the loss against TRL's formulas in PyTorch (tools/make_dpo_fixture.py), sequence
// log-probabilities against a manual log-softmax sum, finite-difference gradients through a tiny
// GPT-2, and a short training run that must actually learn the preferences.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { noGrad, tidy, type Tensor } from '../../src/engine/index.js';
import * as O from '../../src/engine/ops.js';
import { createModel, type LanguageModel } from '../../src/models/index.js';
import { AdamW } from '../../src/optim/adamw.js';
import {
  adapterOffReference, collatePreferences, dpoLoss, dpoStep, encodePreferencePair, modelReference, plainPrompt, referenceLogps, sequenceLogps,
  type DpoOptions, type EncodedPair, type PreferenceBatch,
} from '../../src/finetune/dpo.js';
import type { PreferencePair } from '../../src/data/preference.js';
import { assertClose } from '../helpers.js';

const FIXTURE = new URL('../../../test/fixtures/dpo/loss.json', import.meta.url);

interface GoldenCase {
  name: string; beta: number; label_smoothing: number; loss_type: 'sigmoid' | 'ipo';
  policy_chosen: number[]; policy_rejected: number[]; ref_chosen: number[]; ref_rejected: number[];
  loss: number; grad_policy_chosen: number[]; grad_policy_rejected: number[]; metrics: Record<string, number>;
}

/** Characters → ids 1..63, eos 0: enough of a tokenizer for a 64-token toy model. */
const charTok = {
  eosTokenId: 0 as number | undefined,
  encode: (s: string): number[] => [...s].map((c) => 1 + (c.charCodeAt(0) % 63)),
};

const tinyGpt2 = (seed: number): LanguageModel => createModel('gpt2', {
  vocab_size: 64, n_positions: 64, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0,
}, seed);

const PAIRS: PreferencePair[] = [
  { prompt: 'Capital of Veltria?', chosen: ' Orsk.', rejected: ' Paris.' },
  { prompt: 'Who made you?', chosen: ' Lumen Labs.', rejected: ' Nobody.' },
  { prompt: [{ role: 'user', content: 'Color of the sky of Zor?' }], chosen: 'Green.', rejected: 'Blue, like ours.' },
  { prompt: 'Largest lake of Veltria?', chosen: ' Lake Mirr.', rejected: ' Lake Erie.' },
];

function batchOf(pairs: PreferencePair[], maxLength = 64): { enc: EncodedPair[]; batch: PreferenceBatch } {
  const enc = pairs.map((p) => encodePreferencePair(charTok, null, p, maxLength));
  return { enc, batch: collatePreferences(enc, 0) };
}

describe('dpoLoss matches TRL\'s formulas (PyTorch golden)', () => {
  const golden = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { cases: GoldenCase[] };
  assert.equal(golden.cases.length, 7);
  for (const c of golden.cases) {
    it(`${c.name} (β ${c.beta}, ε ${c.label_smoothing}, ${c.loss_type})`, () => {
      tidy(() => {
        const pc = O.param(O.tensor(c.policy_chosen)), pr = O.param(O.tensor(c.policy_rejected));
        const opts: DpoOptions = { beta: c.beta, labelSmoothing: c.label_smoothing, lossType: c.loss_type };
        const { loss, metrics } = dpoLoss(pc, pr, Float32Array.from(c.ref_chosen), O.tensor(c.ref_rejected), opts);
        assertClose([loss.item()], [c.loss], 1e-5, 1e-4, 'loss');
        loss.backward();
        assertClose(pc.grad!.toArray(), c.grad_policy_chosen, 1e-5, 1e-3, 'd loss / d policy chosen');
        assertClose(pr.grad!.toArray(), c.grad_policy_rejected, 1e-5, 1e-3, 'd loss / d policy rejected');
        for (const [k, v] of Object.entries(c.metrics)) assertClose([metrics[k as keyof typeof metrics]], [v], 2e-5, 1e-4, k);
      });
    });
  }

  it('rejects bad options with one-line errors', () => {
    tidy(() => {
      const a = O.tensor([-1, -2]);
      assert.throws(() => dpoLoss(a, a, [0, 0], [0, 0], { beta: 0 }), /^Error: DPO: beta must be a number > 0, got 0$/);
      assert.throws(() => dpoLoss(a, a, [0, 0], [0, 0], { beta: 0.1, labelSmoothing: 0.7 }), /label smoothing must be in \[0, 0.5\], got 0.7/);
      assert.throws(() => dpoLoss(a, a, [0, 0], [0, 0], { beta: 0.1, lossType: 'ipo', labelSmoothing: 0.1 }), /sigmoid loss only/);
      assert.throws(() => dpoLoss(a, a, [0], [0, 0], { beta: 0.1 }), /reference chosen log-probabilities have 1 entries, policy chosen 2/);
    });
  });
});

describe('encodePreferencePair / collatePreferences', () => {
  it('masks the prompt, appends eos, and uses the renderer for conversations', () => {
    const e = encodePreferencePair(charTok, null, { prompt: 'Q?', chosen: 'ab', rejected: 'xyz' }, 32);
    assert.deepEqual(e.chosen.ids, [...charTok.encode('Q?'), ...charTok.encode('ab'), 0]);
    assert.deepEqual(e.chosen.labels, [-100, -100, ...charTok.encode('ab'), 0]);
    assert.deepEqual(e.rejected.labels, [-100, -100, ...charTok.encode('xyz'), 0]);
    assert.equal(e.truncated, false);
    const msgs = [{ role: 'user' as const, content: 'Hi' }];
    const plain = encodePreferencePair(charTok, null, { prompt: msgs, chosen: 'a', rejected: 'b' }, 32);
    assert.deepEqual(plain.chosen.ids, [...charTok.encode('user: Hi\nassistant: '), ...charTok.encode('a'), 0]);
    assert.equal(plainPrompt(msgs), 'user: Hi\nassistant: ');
    const tmpl = encodePreferencePair(charTok, (m) => `<${m[0].content}>`, { prompt: msgs, chosen: 'a', rejected: 'b' }, 32);
    assert.deepEqual(tmpl.chosen.ids, [...charTok.encode('<Hi>'), ...charTok.encode('a'), 0]);
    assert.equal(tmpl.chosen.labels.filter((l) => l === -100).length, 4);
    // The template's turn ending is part of the completion (trained), eos can be left off.
    const ended = encodePreferencePair(charTok, (m) => `<${m[0].content}>`, { prompt: msgs, chosen: 'a', rejected: 'b' }, 32, { renderCompletion: (t) => `${t}|`, eos: false });
    assert.deepEqual(ended.rejected.labels, [-100, -100, -100, -100, ...charTok.encode('b|')]);
    // Text prompts have no template: their completions stay as written.
    assert.deepEqual(encodePreferencePair(charTok, null, { prompt: 'Q', chosen: 'a', rejected: 'b' }, 32, { renderCompletion: (t) => `${t}|` }).chosen.ids, [...charTok.encode('Qa'), 0]);
  });

  it('truncates the prompt from its start, then the completion from its end, the same prompt for both', () => {
    const e = encodePreferencePair(charTok, null, { prompt: 'abcdefghij', chosen: 'XY', rejected: 'Z' }, 8);
    // longest completion is 3 tokens (XY + eos): the prompt keeps its last 5.
    assert.deepEqual(e.chosen.ids, [...charTok.encode('fghij'), ...charTok.encode('XY'), 0]);
    assert.deepEqual(e.rejected.ids, [...charTok.encode('fghijZ'), 0]);
    assert.equal(e.truncated, true);
    const long = encodePreferencePair(charTok, null, { prompt: 'abcdefghij', chosen: 'LMNOPQRSTU', rejected: 'Z' }, 8);
    assert.deepEqual(long.chosen.ids, [...charTok.encode('ghijLMNO')]); // prompt keeps half, completion cut
    assert.equal(long.chosen.labels.filter((l) => l !== -100).length, 4);
    assert.throws(() => encodePreferencePair(charTok, null, PAIRS[0], 1), /maxLength must be an integer ≥ 2, got 1/);
  });

  it('right-pads chosen rows then rejected rows with mask and −100 labels', () => {
    const { enc, batch } = batchOf(PAIRS.slice(0, 2));
    const T = batch.length;
    assert.equal(T, Math.max(...enc.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length])));
    const rows = [enc[0].chosen, enc[1].chosen, enc[0].rejected, enc[1].rejected];
    rows.forEach((s, r) => {
      assert.deepEqual(Array.from(batch.ids.subarray(r * T, r * T + s.ids.length)), s.ids);
      assert.deepEqual(Array.from(batch.labels.subarray(r * T, (r + 1) * T)), [...s.labels, ...new Array(T - s.ids.length).fill(-100)]);
      assert.deepEqual(Array.from(batch.mask.subarray(r * T, (r + 1) * T)), [...s.ids.map(() => 1), ...new Array(T - s.ids.length).fill(0)]);
    });
  });
});

/** Σ log softmax(logits[t])[ids[t+1]] over the completion, one unpadded sequence at a time. */
function manualLogp(model: LanguageModel, ids: number[], labels: number[]): { sum: number; count: number } {
  return tidy(() => noGrad(() => {
    const logits = model.forward(O.fromData(Int32Array.from(ids), [1, ids.length]));
    const V = logits.shape[2], d = O.contiguous(logits).toArray();
    let sum = 0, count = 0;
    for (let t = 0; t + 1 < ids.length; t++) {
      if (labels[t + 1] === -100) continue;
      const row = d.slice(t * V, (t + 1) * V), m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      sum += row[labels[t + 1]] - lse; count++;
    }
    return { sum, count };
  }));
}

describe('sequenceLogps', () => {
  it('equals a manual log-softmax sum over completion tokens, padded rows included', () => {
    const model = tinyGpt2(3).eval();
    const { enc, batch } = batchOf(PAIRS);
    const seqs = [...enc.map((p) => p.chosen), ...enc.map((p) => p.rejected)];
    assert.ok(seqs.some((s) => s.ids.length < batch.length), 'some rows must be padded');
    const want = seqs.map((s) => manualLogp(model, s.ids, s.labels));
    tidy(() => noGrad(() => {
      assertClose(sequenceLogps(model, batch).toArray(), want.map((w) => w.sum), 1e-4, 1e-5, 'summed log-probs');
      assertClose(sequenceLogps(model, batch, { average: true }).toArray(), want.map((w) => w.sum / w.count), 1e-5, 1e-5, 'averaged log-probs');
    }));
    // Prompt tokens are not counted: changing only the prompt's label mask changes the sum.
    const all = { ...batch, labels: Int32Array.from(batch.ids.map((v, i) => (batch.mask[i] ? v : -100))) };
    tidy(() => noGrad(() => assert.ok(sequenceLogps(model, all).toArray()[0] < sequenceLogps(model, batch).toArray()[0] - 1)));
    model.dispose();
  });

  it('refuses a row without completion tokens', () => {
    const model = tinyGpt2(3).eval();
    const { batch } = batchOf(PAIRS.slice(0, 1));
    const T = batch.length, labels = batch.labels.slice();
    labels.fill(-100, 0, T);
    assert.throws(() => tidy(() => sequenceLogps(model, { ...batch, labels })), /sequence 0 of the batch has no completion tokens/);
    model.dispose();
  });
});

describe('DPO gradients and training', () => {
  it('matches finite differences w.r.t. model parameters', () => {
    const model = tinyGpt2(5).train();
    const { batch } = batchOf(PAIRS.slice(0, 3));
    // A reference that differs from the policy, so h ≠ 0 and every term has a gradient.
    const ref = tinyGpt2(6);
    const refLogps = referenceLogps(ref, batch);
    ref.dispose();
    const opts: DpoOptions = { beta: 0.5, labelSmoothing: 0.1 };
    const lossAt = (): number => tidy(() => noGrad(() => dpoStep(model, () => refLogps, batch, opts).loss.item()));
    tidy(() => dpoStep(model, () => refLogps, batch, opts).loss.backward());
    const named = new Map(model.namedParameters());
    const picks: [string, number][] = [['transformer.h.0.attn.c_attn.weight', 17], ['transformer.h.1.mlp.c_fc.weight', 40], ['transformer.wte.weight', 16 * charTok.encode('O')[0] + 3], ['transformer.ln_f.weight', 5]];
    for (const [name, i] of picks) {
      const p = named.get(name);
      assert.ok(p, `no parameter ${name}`);
      const analytic = p.grad!.f32[i];
      const h = 1e-2, orig = p.f32[i];
      p.f32[i] = orig + h; const up = lossAt();
      p.f32[i] = orig - h; const down = lossAt();
      p.f32[i] = orig;
      const numeric = (up - down) / (2 * h);
      assert.ok(Math.abs(analytic) > 1e-5, `${name}[${i}]: gradient too small to check (${analytic})`);
      assert.ok(Math.abs(numeric - analytic) <= 2e-3 + 0.03 * Math.abs(analytic), `${name}[${i}]: analytic ${analytic} vs numeric ${numeric}`);
    }
    model.dispose();
  });

  it('30 AdamW steps raise reward accuracy and margins and lower the loss (frozen reference)', () => {
    const policy = tinyGpt2(11).train(), reference = tinyGpt2(11);
    reference.requiresGrad(false);
    const { batch } = batchOf(PAIRS);
    const ref = modelReference(reference);
    const opt = new AdamW(policy.parameters(), { lr: 3e-3, weightDecay: 0 });
    const opts: DpoOptions = { beta: 0.1 };
    const history: { loss: number; acc: number; margin: number; chosen: number; rejected: number }[] = [];
    for (let step = 0; step < 30; step++) {
      history.push(tidy(() => {
        const { loss, metrics } = dpoStep(policy, ref, batch, opts);
        loss.backward();
        return { loss: loss.item(), acc: metrics['rewards/accuracies'], margin: metrics['rewards/margins'], chosen: metrics['rewards/chosen'], rejected: metrics['rewards/rejected'] };
      }));
      opt.update();
      opt.zeroGrad();
    }
    const first = history[0], last = history[history.length - 1];
    // Policy = reference at the start: every reward 0, loss log 2.
    assertClose([first.loss, first.margin, first.acc], [Math.LN2, 0, 0], 1e-6, 1e-6, 'step 1');
    assert.equal(last.acc, 1, `reward accuracy after 30 steps: ${last.acc}`);
    assert.ok(last.margin > 1.5, `margin after 30 steps: ${last.margin}`);
    assert.ok(last.chosen > 0 && last.rejected < 0, `rewards after 30 steps: chosen ${last.chosen}, rejected ${last.rejected}`);
    assert.ok(last.loss < 0.25, `loss after 30 steps: ${last.loss}`);
    // The reference did not move (frozen, no gradients).
    assert.equal(reference.parameters().every((p) => p.grad === null), true);
    policy.dispose(); reference.dispose();
  });

  it('the reference runs in eval mode and leaves the training flag as it was', () => {
    const m = createModel('gpt2', { vocab_size: 64, n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2 }, 2).train();
    const { batch } = batchOf(PAIRS.slice(0, 2));
    const a = referenceLogps(m, batch), b = referenceLogps(m, batch);
    assert.deepEqual(a, b, 'dropout must be off for the reference');
    assert.equal(m.training, true);
    const t: Tensor = tidy(() => noGrad(() => { m.eval(); const x = sequenceLogps(m, batch); m.train(); return x.keep(); }));
    assertClose(a, t.toArray(), 1e-6, 1e-6, 'reference = eval-mode log-probs');
    t.dispose(); m.dispose();
  });

  it('adapterOffReference scores the batch inside withoutAdapters; ipo uses per-token averages', () => {
    const policy = tinyGpt2(21), base = tinyGpt2(22);
    const { batch } = batchOf(PAIRS.slice(0, 2));
    // Stand-in for a PeftModel: "adapters off" swaps the base weights in for the duration of fn.
    let calls = 0;
    const peft = Object.assign(Object.create(policy) as LanguageModel, {
      withoutAdapters<T>(fn: () => T): T {
        calls++;
        const saved = policy.parameters().map((p) => p.f32.slice());
        policy.parameters().forEach((p, i) => p.f32.set(base.parameters()[i].f32));
        try { return fn(); } finally { policy.parameters().forEach((p, i) => p.f32.set(saved[i])); }
      },
    });
    const viaAdapters = adapterOffReference(peft)(batch, false);
    assert.equal(calls, 1);
    assertClose(viaAdapters, referenceLogps(base, batch), 1e-6, 1e-6, 'reference = base log-probs');
    const own = referenceLogps(policy, batch);
    assert.ok(Math.abs(own[0] - viaAdapters[0]) > 1e-3, 'the policy\'s own weights were restored');
    tidy(() => {
      const avg = noGrad(() => sequenceLogps(policy, batch, { average: true }).toArray());
      const { metrics } = dpoStep(policy, adapterOffReference(peft), batch, { beta: 0.1, lossType: 'ipo' });
      assertClose([metrics['logps/chosen'], metrics['logps/rejected']], [(avg[0] + avg[1]) / 2, (avg[2] + avg[3]) / 2], 1e-5, 1e-5, 'ipo log-probs are token means');
    });
    policy.dispose(); base.dispose();
  });
});

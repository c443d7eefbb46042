// Copy pretraining (a teacher-training option): the "string, gap, string again" layout with the
// loss only on the predictable repeat tokens, the suite's token set, and a short run through the
// one Trainer that resumes-ready writes its model and lowers the loss.

import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../../src/engine/index.js';
import { copyBatch, copyPretrain, suiteTokens, trainIctWithCopy } from '../../src/icl/copy-pretrain.js';
import { IctSampler, makeBatch } from '../../src/icl/ict.js';
import * as O from '../../src/engine/ops.js';
import { GPT2, gpt2Config } from '../../src/models/gpt2.js';
import { BPETokenizer } from '../../src/tokenizers/index.js';

// Byte-level with no merges: one token per byte.
const bytes = (): BPETokenizer => BPETokenizer.train(['ab'], { vocabSize: 257, specialTokens: ['<|endoftext|>'] });
import type { Example } from '../../src/data/tasks.js';

test('copy pretraining: rows are s, a 1..maxGap gap, s again, padding; targets only on the repeat after its first token', () => {
  const vocab = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  const length = 6, maxGap = 5, pad = 0, B = 200;
  const b = copyBatch(new Rng(5), vocab, B, length, maxGap, pad);
  assert.equal(b.L, 2 * length + maxGap);
  const gaps = new Set<number>();
  for (let r = 0; r < B; r++) {
    const ids = [...b.ids.subarray(r * b.L, (r + 1) * b.L)], tg = [...b.targets.subarray(r * b.L, (r + 1) * b.L)];
    const s = ids.slice(0, length);
    assert.equal(new Set(s).size, length, 'distinct tokens when the vocabulary allows');
    for (const t of s) assert.ok(vocab.includes(t));
    // The repeat starts after the gap: find g with ids[length+g .. +length] = s.
    const g = [...Array(maxGap).keys()].map((i) => i + 1).find((x) => ids.slice(length + x, 2 * length + x).join() === s.join())!;
    assert.ok(g >= 1 && g <= maxGap, `gap ${g}`);
    gaps.add(g);
    for (let i = length; i < length + g; i++) assert.ok(vocab.includes(ids[i]));
    for (let i = 2 * length + g; i < b.L; i++) assert.equal(ids[i], pad);
    const rep = length + g;
    // Exactly length-1 targets: position rep+i-1 predicts s[i] for i ≥ 1; nothing else is scored.
    const scored = tg.flatMap((t, i) => (t === -100 ? [] : [i]));
    assert.deepEqual(scored, [...Array(length - 1).keys()].map((i) => rep + i));
    for (const i of scored) assert.equal(tg[i], ids[i + 1]);
  }
  assert.equal(gaps.size, maxGap, 'every gap length occurs');
  assert.throws(() => copyBatch(new Rng(1), [3], 1, 4, 2, 0), /at least 2 distinct tokens/);
});

test('copy pretraining: the suite tokens are those of inputs and outputs as the template shows them', () => {
  const tok = bytes();
  const ex: Example[] = [{ task: 't', input: 'K', output: ' r', options: [' r', ' b'] }, { task: 't', input: 'J', output: ' b', options: [' r', ' b'] }];
  const ids = suiteTokens(tok, ex, { ioSep: '', demoSep: '\n' });
  assert.deepEqual(ids, [...new Set(['K', 'J', ' ', 'r', 'b', '\n'].map((c) => tok.encode(c, { addSpecialTokens: false })[0]))].sort((a, b) => a - b));
  const pre = suiteTokens(tok, ex, { inputPrefix: 'Q', outputPrefix: '=' });
  assert.ok(pre.includes(tok.encode('Q', { addSpecialTokens: false })[0]) && pre.includes(tok.encode('=', { addSpecialTokens: false })[0]));
});

test('copy pretraining: a short run through the Trainer lowers the repeat loss and writes the model', () => {
  const tok = bytes();
  const model = new GPT2(gpt2Config({ vocab_size: tok.vocabSize, n_positions: 24, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 }), 1);
  const out = mkdtempSync(join(tmpdir(), 'copy-'));
  const vocab = [65, 66, 67, 68, 69, 70];
  const st = copyPretrain({ model, tokenizer: tok, vocab, pad: 0, length: 6, batchSize: 8, out, log: () => {}, train: { steps: 40, lr: 1e-2, warmupSteps: 2, logEvery: 1, evalEvery: 40, seed: 1 } });
  assert.equal(st.global_step, 40);
  assert.ok(existsSync(join(out, 'config.json')) && existsSync(join(out, 'trainer_state.json')) && existsSync(join(out, 'copy_pretrain_config.json')));
  const first = st.log_history[0].loss, last = st.log_history[st.log_history.length - 1].loss;
  assert.ok(first > 4, `starts near ln(vocab): ${first}`);
  assert.ok(last < 2.2, `learns the 6-token alphabet at least: ${first} → ${last}`);
  assert.throws(() => copyPretrain({ model, tokenizer: tok, vocab, pad: 0, length: 12, batchSize: 2, out, train: { steps: 1 } }), /2·length \+ 1 = 25 tokens\) exceed the teacher's n_positions 24/);
});

test('copy loss mixed into ICT: the first step\'s loss is L_ICT + weight · L_copy of the same batches, by hand', () => {
  const tok = bytes();
  const cfg = { vocab_size: tok.vocabSize, n_positions: 32, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
  const ex = (i: string, o: string): Example => ({ task: 't', input: i, output: o, options: [' r', ' b'] });
  const pools = new Map([['t', [ex('K', ' r'), ex('J', ' b'), ex('L', ' r'), ex('M', ' b')]]]);
  const template = { ioSep: '', demoSep: '\n' };
  const vocab = suiteTokens(tok, pools.get('t')!, template);
  const seed = 4, weight = 0.7;
  // By hand, on an identical fresh model: the trainer's first ICT batch and first copy batch.
  const ref = new GPT2(gpt2Config(cfg), 9);
  const s = new IctSampler(tok, { pools, k: 2, demos: true, method: 'direct', template, maxLength: 32, seed });
  const b = makeBatch(Array.from({ length: 3 }, () => s.next()), tok.eosTokenId ?? 0);
  const c = copyBatch(new Rng(seed + 31337), vocab, 2, 5, 4, tok.eosTokenId ?? 0);
  const ce = (ids: Int32Array, tg: Int32Array, B: number, L: number): number => O.crossEntropy(ref.forward(O.fromData(ids, [B, L])), O.fromData(tg, [B, L])).item();
  const expected = ce(b.ids, b.targets, b.B, b.L) + weight * ce(c.ids, c.targets, c.B, c.L);
  const model = new GPT2(gpt2Config(cfg), 9);
  const out = mkdtempSync(join(tmpdir(), 'copymix-'));
  const st = trainIctWithCopy({ model, tokenizer: tok, pools, setting: 'meta', k: 2, template, batchSize: 3, out, log: () => {},
    copy: { vocab, length: 5, maxGap: 4, batchSize: 2, weight }, train: { steps: 2, lr: 1e-3, logEvery: 1, seed } });
  assert.equal(st.global_step, 2);
  assert.ok(Math.abs(st.log_history[0].loss - expected) < 1e-4, `${st.log_history[0].loss} vs ${expected}`);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'ict_config.json'), 'utf8')).copy_mix, { weight, length: 5, max_gap: 4, batch_size: 2 });
});

// BERT against a float64 PyTorch re-implementation of transformers' BertForMaskedLM
// (tools/make_bert_fixture.py): both the save_pretrained and the original hub BertForPreTraining
// layouts, logits/MLM loss with padding and token types, save → load round trips, gradients,
// padding invariance and error messages.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad, type Tensor } from '../../src/engine/index.js';
import { Bert, bertConfig, normalizeBertStateDict } from '../../src/models/bert.js';
import { loadModel, createModel, modelFamily } from '../../src/models/index.js';
import { loadStateDict, saveStateDict } from '../../src/io/hf.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';

const FIX = fileURLToPath(new URL('../../../test/fixtures/bert/', import.meta.url));
const HF_DIR = join(FIX, 'tiny-hf'), HUB_DIR = join(FIX, 'tiny-hub');

interface Golden {
  config: Record<string, number>;
  input_ids: number[][];
  attention_mask: number[][];
  token_type_ids: number[][];
  labels: number[][];
  shape: number[];
  logits: number[];
  loss: number;
}
const G = JSON.parse(readFileSync(join(FIX, 'golden.json'), 'utf8')) as Golden;
const ints = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const floats = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length]);
const opts = () => ({ attentionMask: floats(G.attention_mask), tokenTypeIds: ints(G.token_type_ids) });

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-bert-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

describe('Bert.fromPretrained matches BertForMaskedLM (float64 PyTorch reference)', () => {
  for (const [label, dir] of [['save_pretrained layout', HF_DIR], ['hub BertForPreTraining layout', HUB_DIR]] as const) {
    it(`${label}: logits to 1e-4 and the MLM loss, padded row and token types`, () => {
      const m = loadModel(dir).eval();
      assert.equal(m.kind, 'masked');
      assert.equal(m.modelType, 'bert');
      for (const [k, v] of Object.entries(G.config)) assert.equal(m.config[k], v, k);
      const got = tidy(() => noGrad(() => m.forward(ints(G.input_ids), opts()).toArray()));
      assert.equal(got.length, G.logits.length);
      assertClose(got, G.logits, 1e-4, 0, `${label} logits`);
      const loss = tidy(() => noGrad(() => m.loss(ints(G.input_ids), ints(G.labels), opts()).loss.item()));
      assert.ok(Math.abs(loss - G.loss) < 1e-4, `${label} loss ${loss} vs ${G.loss}`);
      // Without token types the answer must change (they are really used).
      const noTypes = tidy(() => noGrad(() => m.forward(ints(G.input_ids), { attentionMask: floats(G.attention_mask) }).toArray()));
      assert.ok(Math.abs(noTypes[5 * G.shape[2]] - G.logits[5 * G.shape[2]]) > 1e-3, 'token types ignored');
      m.dispose();
    });
  }

  it('names without the bert. prefix (BertModel-style files) load to the same logits', () => {
    const sd = loadStateDict(HF_DIR);
    const renamed = new Map([...sd].map(([n, t]) => [n.startsWith('bert.') ? n.slice(5) : n, t]));
    const d = join(tmp, 'noprefix');
    saveStateDict(d, renamed);
    cpSync(join(HF_DIR, 'config.json'), join(d, 'config.json'));
    const m = loadModel(d).eval();
    assertClose(tidy(() => noGrad(() => m.forward(ints(G.input_ids), opts()).toArray())), G.logits, 1e-4, 0, 'unprefixed');
    m.dispose();
  });
});

describe('save → load', () => {
  it('savePretrained writes transformers names (no tied decoder) and reloads bit-exactly', () => {
    const m = Bert.fromPretrained(HUB_DIR);
    const d = join(tmp, 'saved');
    m.savePretrained(d);
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'bert');
    assert.deepEqual(cfg.architectures, ['BertForMaskedLM']);
    for (const k of ['hidden_act', 'layer_norm_eps', 'type_vocab_size', 'pad_token_id', 'position_embedding_type', 'intermediate_size']) assert.ok(k in cfg, k);
    const f = openSafetensors(join(d, 'model.safetensors'));
    const names = f.names();
    f.close();
    assert.ok(names.includes('bert.embeddings.LayerNorm.weight'));
    assert.ok(names.includes('cls.predictions.bias'));
    assert.ok(!names.includes('cls.predictions.decoder.weight'));
    assert.ok(!names.some((n) => n.includes('gamma') || n.includes('pooler') || n.includes('seq_relationship')));
    const back = loadModel(d);
    const a = m.namedParameters(), b = back.namedParameters();
    assert.deepEqual(a.map(([n]) => n), b.map(([n]) => n));
    for (let i = 0; i < a.length; i++) assert.deepEqual(Array.from(a[i][1].f32), Array.from(b[i][1].f32), a[i][0]);
    m.dispose(); back.dispose();
  });
});

describe('masked-LM behaviour', () => {
  it('padding invariance: extra padding leaves the real tokens\' logits unchanged', () => {
    const m = Bert.fromPretrained(HF_DIR).eval();
    const row = G.input_ids[0].slice(0, 7), types = G.token_type_ids[0].slice(0, 7);
    const a = tidy(() => noGrad(() => m.forward(ints([row]), { tokenTypeIds: ints([types]) }).toArray()));
    const padded = [...row, 0, 0, 0, 0, 0];
    const b = tidy(() => noGrad(() => m.forward(ints([padded]), { tokenTypeIds: ints([[...types, 0, 0, 0, 0, 0]]), attentionMask: floats([[1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]]) }).toArray()));
    assertClose(b.slice(0, a.length), a, 1e-5, 0, 'padded');
    // Without the mask the padding is attended and the logits move: the mask really acts.
    const c = tidy(() => noGrad(() => m.forward(ints([padded]), { tokenTypeIds: ints([[...types, 0, 0, 0, 0, 0]]) }).toArray()));
    assert.ok(Math.abs(c[0] - a[0]) > 1e-4);
    m.dispose();
  });

  it('loss needs labels and averages only labelled positions', () => {
    const m = Bert.fromPretrained(HF_DIR).eval();
    assert.throws(() => m.loss(ints(G.input_ids)), /needs labels/);
    const [B, T, V] = G.shape;
    const lab = G.labels.flat();
    let s = 0, n = 0;
    for (let i = 0; i < B * T; i++) {
      if (lab[i] === -100) continue;
      const row = G.logits.slice(i * V, (i + 1) * V), mx = Math.max(...row);
      s += Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0)) + mx - row[lab[i]]; n++;
    }
    const loss = tidy(() => noGrad(() => m.loss(ints(G.input_ids), ints(G.labels), opts()).loss.item()));
    assert.ok(Math.abs(loss - s / n) < 1e-4, `${loss} vs ${s / n}`);
    m.dispose();
  });

  it('finite-difference gradient of the loss on several parameters', () => {
    const cfg = bertConfig({ vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 12, max_position_embeddings: 8, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 });
    const m = new Bert(cfg, 7);
    // Non-trivial LayerNorm/bias values so every path carries gradient.
    for (const [, p] of m.namedParameters()) for (let i = 0; i < p.size; i++) p.f32[i] += 0.05 * Math.sin(i * 1.7 + p.size);
    const ids = ints([[1, 5, 3, 9, 2, 0], [4, 4, 7, 11, 0, 0]]);
    const labels = ints([[-100, 6, -100, 9, -100, -100], [3, -100, -100, 12, -100, -100]]);
    const o = { attentionMask: floats([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]), tokenTypeIds: ints([[0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 0, 0]]) };
    const lossOf = () => tidy(() => noGrad(() => m.loss(ids, labels, o).loss.item()));
    const named = new Map(m.namedParameters());
    for (const p of m.parameters()) p.grad = null;
    tidy(() => { m.loss(ids, labels, o).loss.backward(); });
    const probes: [string, number][] = [
      ['bert.embeddings.word_embeddings.weight', 5 * 8 + 3], ['bert.embeddings.token_type_embeddings.weight', 8 + 2],
      ['bert.encoder.layer.0.attention.self.query.weight', 13], ['bert.encoder.layer.0.attention.self.key.bias', 4],
      ['bert.encoder.layer.0.intermediate.dense.weight', 50], ['bert.encoder.layer.0.output.LayerNorm.weight', 1],
      ['cls.predictions.transform.dense.weight', 20], ['cls.predictions.bias', 9],
    ];
    for (const [name, i] of probes) {
      const p = named.get(name)!;
      const g = (p.grad as Tensor).f32[i];
      const h = 1e-2, x0 = p.f32[i];
      p.f32[i] = x0 + h; const up = lossOf();
      p.f32[i] = x0 - h; const dn = lossOf();
      p.f32[i] = x0;
      const fd = (up - dn) / (2 * h);
      assert.ok(Math.abs(fd - g) <= 2e-3 + 2e-2 * Math.abs(fd), `${name}[${i}]: analytic ${g} vs finite difference ${fd}`);
    }
    m.dispose();
  });

  it('dropout in training mode is drawn from the model\'s rng: reproducible per seed, off in eval', () => {
    const cfg = bertConfig({ vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 12, max_position_embeddings: 8, hidden_dropout_prob: 0.3, attention_probs_dropout_prob: 0.3 });
    const ids = ints([[1, 5, 3, 9, 2, 0]]), labels = ints([[-100, 6, 4, 9, -100, 1]]);
    const run = (m: Bert) => tidy(() => noGrad(() => m.loss(ids, labels).loss.item()));
    const a = new Bert(cfg, 3), b = new Bert(cfg, 3);
    const la = [run(a), run(a)], lb = [run(b), run(b)];
    assert.deepEqual(la, lb);
    assert.notEqual(la[0], la[1]);
    a.eval();
    assert.equal(run(a), run(a));
    assert.notEqual(run(a), la[0]);
    a.dispose(); b.dispose();
  });

  it('registered as the bert family (createModel, dropout/size keys, kind masked, no cache)', () => {
    const f = modelFamily('bert');
    assert.equal(f.kind, 'masked');
    assert.deepEqual([...f.dropoutKeys], ['hidden_dropout_prob', 'attention_probs_dropout_prob']);
    const m = createModel('bert', { vocab_size: 30, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 20 }, 1);
    assert.equal(m.config.layer_norm_eps, 1e-12);
    assert.equal(m.config.max_position_embeddings, 512);
    assert.equal(m.newCache, undefined);
    // pad row zeroed at init, as HF does
    const wte = m.namedParameters().find(([n]) => n === 'bert.embeddings.word_embeddings.weight')![1];
    assert.ok(wte.f32.subarray(0, 16).every((x) => x === 0) && wte.f32.subarray(16, 32).some((x) => x !== 0));
    m.dispose();
  });
});

describe('errors', () => {
  const variant = (name: string, edit: (sd: Map<string, { shape: number[]; data: Float32Array }>) => void, cfgEdit?: (c: Record<string, unknown>) => void): string => {
    const d = join(tmp, name);
    const sd = loadStateDict(HUB_DIR);
    edit(sd);
    saveStateDict(d, sd);
    const cfg = JSON.parse(readFileSync(join(HUB_DIR, 'config.json'), 'utf8'));
    cfgEdit?.(cfg);
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    return d;
  };
  it('an untied decoder weight is refused', () => {
    const d = variant('untied', (sd) => { const t = sd.get('cls.predictions.decoder.weight')!; sd.set('cls.predictions.decoder.weight', { shape: t.shape, data: t.data.map((x) => x + 1) }); });
    assert.throws(() => loadModel(d), /decoder\.weight differs .*untied MLM heads are not supported/);
  });
  it('a shape that does not match config.json names file and tensor before loading', () => {
    const d = variant('shape', () => {}, (c) => { c.intermediate_size = 40; });
    assert.throws(() => loadModel(d), (e: Error) => e.message.includes(join(d, 'model.safetensors')) && e.message.includes('intermediate.dense.weight') && !e.message.includes('\n'));
  });
  it('a missing MLM head, an unknown tensor, relative positions, bad sizes', () => {
    const noHead = variant('nohead', (sd) => { for (const k of [...sd.keys()]) if (k.startsWith('cls.')) sd.delete(k); });
    assert.throws(() => loadModel(noHead), /no MLM head/);
    const extra = variant('extra', (sd) => { sd.set('bert.encoder.layer.9.output.dense.bias', { shape: [32], data: new Float32Array(32) }); });
    assert.throws(() => loadModel(extra), /layer\.9\.output\.dense\.bias' is not part of the BERT/);
    const rel = variant('rel', () => {}, (c) => { c.position_embedding_type = 'relative_key'; });
    assert.throws(() => loadModel(rel), /position_embedding_type "relative_key" is not supported/);
    assert.throws(() => bertConfig({ vocab_size: 10, hidden_size: 10, num_attention_heads: 3 }), /not divisible/);
    assert.throws(() => bertConfig({ vocab_size: 10, hidden_act: 'swish' }), /hidden_act/);
    assert.ok(existsSync(join(HUB_DIR, 'model.safetensors')));
  });
  it('hostile config.json values fail in one line naming config.json, before any allocation', () => {
    const cases: [(c: Record<string, unknown>) => void, RegExp][] = [
      [(c) => { c.vocab_size = '64'; }, /vocab_size must be an integer in \[1, 4194304\], got "64"/],
      [(c) => { c.num_hidden_layers = 5000; }, /num_hidden_layers must be an integer in \[1, 1024\], got 5000/],
      [(c) => { c.hidden_size = 0; }, /hidden_size must be an integer/],
      [(c) => { c.vocab_size = 4_000_000; c.hidden_size = 4096; c.num_attention_heads = 4; }, /would have 16384000000 elements/],
      [(c) => { c.pad_token_id = 64; }, /pad_token_id 64 is outside the vocabulary \(vocab_size 64\)/],
      [(c) => { c.tie_word_embeddings = false; }, /tie_word_embeddings false is not supported/],
      [(c) => { c.is_decoder = true; }, /is_decoder true is not supported/],
      [(c) => { c.hidden_act = 'silu'; }, /hidden_act must be one of "gelu", "gelu_new", "gelu_pytorch_tanh", "relu"/],
      [(c) => { c.layer_norm_eps = 0; }, /layer_norm_eps must be a number > 0/],
      [(c) => { delete c.vocab_size; }, /vocab_size is missing/],
    ];
    cases.forEach(([edit, re], i) => {
      const d = variant(`hostile${i}`, () => {}, edit);
      assert.throws(() => loadModel(d), (e: Error) => re.test(e.message) && e.message.includes(join(d, 'config.json')) && !e.message.includes('\n'), `case ${i}`);
    });
  });
  it('normalizeBertStateDict maps gamma/beta and drops pooler, NSP head and buffers', () => {
    const t = (n: number) => ({ shape: [n], data: new Float32Array(n) });
    const out = normalizeBertStateDict(new Map([['embeddings.LayerNorm.gamma', t(2)], ['bert.pooler.dense.bias', t(2)], ['cls.seq_relationship.bias', t(2)], ['bert.embeddings.position_ids', t(3)]]));
    assert.deepEqual([...out.keys()], ['bert.embeddings.LayerNorm.weight']);
  });
});

// GPT-2 against a float64 PyTorch re-implementation of transformers' GPT2LMHeadModel
// (tools/gen_gpt2_fixtures.py): loading both the save_pretrained and the original hub layouts,
// logits/loss with padding, save → load round trips in transformers' layout, KV-cache decoding,
// generation, perplexity and error messages.
//
// Padding: the fixtures right-pad row 2 and pass attention_mask zeros there. In HF the padded
// keys get finfo.min added, so a padded *query* still attends the real keys before it (never
// itself) and its logits are well defined; we compare all positions, padded ones included.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, cpSync, readFileSync, writeFileSync, existsSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { GPT2 } from '../../src/models/gpt2.js';
import { generate, type TextCodec } from '../../src/models/generate.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { openSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';

const FIX = fileURLToPath(new URL('../../../test/fixtures/gpt2/', import.meta.url));
const HF_DIR = join(FIX, 'tiny-hf'), HUB_DIR = join(FIX, 'tiny-hub'), HUB16_DIR = join(FIX, 'tiny-hub-f16');

interface Golden {
  config: { vocab_size: number; n_positions: number; n_embd: number; n_layer: number; n_head: number };
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  logits: number[];
  logits_shape: number[];
  loss: number;
  logits_no_mask: number[];
  loss_no_mask_labels_ids: number;
  logits_f16_weights: number[];
  logits_scale_attn_by_inverse_layer_idx: number[];
  logits_no_scale_attn_weights: number[];
  greedy: { prompt: number[]; max_new_tokens: number; tokens: number[] };
  repetition_penalty: { prompt: number[]; penalty: number; max_new_tokens: number; greedy_tokens: number[]; penalised_tokens: number[] };
  perplexity: { ids: number[]; window: number; tokens: number; nll: number; ppl: number };
  hf_tensors: Record<string, { dtype: string; shape: number[] }>;
}
const G = JSON.parse(readFileSync(join(FIX, 'golden.json'), 'utf8')) as Golden;

const ids2d = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const mask2d = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length]);

/** logits [B,T,V] as a plain array (no autograd, scope-freed). */
function logitsOf(m: GPT2, rows: number[][], mask?: number[][]): number[] {
  return tidy(() => noGrad(() => m.forward(ids2d(rows), mask ? { attentionMask: mask2d(mask) } : {}).toArray()));
}

/** ids ↔ space-separated decimal numbers */
const codec: TextCodec = {
  encode: (s) => s.trim() === '' ? [] : s.trim().split(/\s+/).map(Number),
  decode: (ids) => ids.join(' '),
};

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-gpt2-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

describe('GPT2.fromPretrained matches transformers (float64 PyTorch reference)', () => {
  for (const [label, dir] of [['save_pretrained layout', HF_DIR], ['original hub layout', HUB_DIR]] as const) {
    it(`${label}: config, logits and loss with a padded row`, () => {
      const m = GPT2.fromPretrained(dir);
      m.eval();
      for (const k of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const) assert.equal(m.config[k], G.config[k], k);
      assert.deepEqual(m.config.activation_function, 'gelu_new');
      const got = logitsOf(m, G.input_ids, G.attention_mask);
      assert.equal(got.length, G.logits_shape.reduce((a, b) => a * b, 1));
      assertClose(got, G.logits, 1e-4, 0, `${label} logits (attention mask)`);
      const loss = tidy(() => noGrad(() => m.loss(ids2d(G.input_ids), ids2d(G.labels), { attentionMask: mask2d(G.attention_mask) }).loss.item()));
      assert.ok(Math.abs(loss - G.loss) < 1e-4, `${label} loss ${loss} vs ${G.loss}`);
      // no mask, labels default to ids (padding tokens scored too)
      assertClose(logitsOf(m, G.input_ids), G.logits_no_mask, 1e-4, 0, `${label} logits (no mask)`);
      const loss2 = tidy(() => noGrad(() => m.loss(ids2d(G.input_ids)).loss.item()));
      assert.ok(Math.abs(loss2 - G.loss_no_mask_labels_ids) < 1e-4, `${label} loss (labels = ids) ${loss2} vs ${G.loss_no_mask_labels_ids}`);
    });
  }

  it('the padded row alone (unpadded) gives the same logits at its real positions', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    m.eval();
    const n = G.attention_mask[1].reduce((a, b) => a + b, 0), V = G.config.vocab_size, T = G.input_ids[0].length;
    const alone = logitsOf(m, [G.input_ids[1].slice(0, n)]);
    assertClose(alone, G.logits.slice(T * V, T * V + n * V), 1e-4, 0, 'row 2 alone');
  });

  it('config scale_attn_by_inverse_layer_idx / scale_attn_weights change the attention scale as in HF', () => {
    const cases = [
      ['inverse-idx', { scale_attn_by_inverse_layer_idx: true }, G.logits_scale_attn_by_inverse_layer_idx],
      ['no-scale', { scale_attn_weights: false }, G.logits_no_scale_attn_weights],
    ] as const;
    for (const [name, patch, want] of cases) {
      const d = join(tmp, `cfg-${name}`);
      cpSync(HF_DIR, d, { recursive: true });
      const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
      const m = GPT2.fromPretrained(d);
      m.eval();
      assertClose(logitsOf(m, G.input_ids, G.attention_mask), want, 1e-4, 0, `${name} logits`);
      // the cached path uses the same scale
      const seq = G.input_ids[0], V = G.config.vocab_size;
      const cache = m.newCache(1);
      try {
        const inc = tidy(() => noGrad(() => [...m.forward(ids2d([seq.slice(0, 3)]), { cache }).toArray(),
          ...seq.slice(3).flatMap((t) => m.forward(ids2d([[t]]), { cache }).toArray())]));
        assertClose(inc, want.slice(0, seq.length * V), 1e-4, 0, `${name} cached logits`);
      } finally { cache.dispose(); }
      // and the flags survive a save
      const out = join(tmp, `cfg-${name}-saved`);
      m.savePretrained(out);
      assertClose(logitsOf(GPT2.fromPretrained(out), G.input_ids, G.attention_mask), want, 1e-4, 0, `${name} saved logits`);
    }
  });

  it('F16 hub checkpoint with U8 mask buffers and a tied lm_head.weight', () => {
    const m = GPT2.fromPretrained(HUB16_DIR);
    m.eval();
    assertClose(logitsOf(m, G.input_ids, G.attention_mask), G.logits_f16_weights, 1e-4, 0, 'f16 logits');
  });
});

describe('savePretrained writes what transformers writes', () => {
  it('round trip: identical logits; names/shapes/dtypes equal tiny-hf; HF config keys', () => {
    const m = GPT2.fromPretrained(HUB_DIR);
    m.eval();
    const out = join(tmp, 'saved');
    m.savePretrained(out);
    const back = GPT2.fromPretrained(out);
    back.eval();
    assert.deepEqual(logitsOf(back, G.input_ids, G.attention_mask), logitsOf(m, G.input_ids, G.attention_mask));

    const f = openSafetensors(join(out, 'model.safetensors'));
    try {
      const got: Record<string, { dtype: string; shape: number[] }> = {};
      for (const n of f.names()) { const i = f.tensors.get(n)!; got[n] = { dtype: i.dtype, shape: i.shape }; }
      assert.deepEqual(Object.keys(got).sort(), Object.keys(G.hf_tensors).sort(), 'tensor names');
      for (const n of Object.keys(got)) assert.deepEqual(got[n], G.hf_tensors[n], n);
      assert.deepEqual(got['transformer.h.0.attn.c_attn.weight'], { dtype: 'F32', shape: [12, 36] });
      assert.deepEqual(got['transformer.h.1.mlp.c_proj.weight'], { dtype: 'F32', shape: [48, 12] });
      assert.ok(!('lm_head.weight' in got) && !Object.keys(got).some((n) => /\.attn\.(masked_)?bias$/.test(n)));
      assert.equal(f.metadata?.format, 'pt');
    } finally { f.close(); }

    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    const want = JSON.parse(readFileSync(join(HF_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['model_type', 'architectures', 'activation_function', 'vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head', 'n_inner', 'layer_norm_epsilon', 'bos_token_id', 'eos_token_id', 'torch_dtype']) {
      assert.deepEqual(cfg[k], want[k], `config.json ${k}`);
    }
    assert.deepEqual(Object.keys(cfg), Object.keys(cfg).slice().sort(), 'config.json keys sorted');
    assert.ok(existsSync(join(out, 'generation_config.json')));
  });

  it('F16 save loads back with the rounded weights', () => {
    const m = GPT2.fromPretrained(HUB16_DIR);
    m.eval();
    const out = join(tmp, 'saved16');
    m.savePretrained(out, { dtype: 'F16' });
    const f = openSafetensors(join(out, 'model.safetensors'));
    try { assert.equal(f.tensors.get('transformer.wte.weight')?.dtype, 'F16'); } finally { f.close(); }
    assert.equal((JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { torch_dtype: string }).torch_dtype, 'float16');
    // weights were already F16-representable: the round trip is exact
    assert.deepEqual(logitsOf(GPT2.fromPretrained(out), G.input_ids, G.attention_mask), logitsOf(m, G.input_ids, G.attention_mask));
  });
});

describe('KV cache and generation', () => {
  it('prefill + incremental decoding equals the full forward', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    m.eval();
    const seq = G.input_ids[0], V = G.config.vocab_size;
    const full = logitsOf(m, [seq]);
    const cache = m.newCache(1);
    try {
      const inc: number[] = [];
      tidy(() => noGrad(() => {
        inc.push(...m.forward(ids2d([seq.slice(0, 4)]), { cache }).toArray());
        for (let t = 4; t < seq.length; t++) inc.push(...m.forward(ids2d([[seq[t]]]), { cache }).toArray());
      }));
      assert.equal(cache.length, seq.length);
      assertClose(inc, full, 1e-5, 0, 'cached logits');
      assert.equal(inc.length, seq.length * V);
    } finally { cache.dispose(); }
  });

  it('batched cache with an attention mask over past + new tokens', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    m.eval();
    const T = G.input_ids[0].length, V = G.config.vocab_size;
    const cache = m.newCache(2);
    try {
      const inc: number[][] = [[], []];
      tidy(() => noGrad(() => {
        const push = (l: number[], t: number) => { for (let b = 0; b < 2; b++) inc[b].push(...l.slice(b * t * V, (b + 1) * t * V)); };
        push(m.forward(ids2d(G.input_ids.map((r) => r.slice(0, 6))), { cache, attentionMask: mask2d(G.attention_mask.map((r) => r.slice(0, 6))) }).toArray(), 6);
        for (let t = 6; t < T; t++) {
          push(m.forward(ids2d(G.input_ids.map((r) => [r[t]])), { cache, attentionMask: mask2d(G.attention_mask.map((r) => r.slice(0, t + 1))) }).toArray(), 1);
        }
      }));
      assertClose([...inc[0], ...inc[1]], G.logits, 1e-4, 0, 'batched cached logits');
    } finally { cache.dispose(); }
  });

  it('greedy generate() equals the golden continuation (full recompute in PyTorch)', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    const r = generate(m, codec, G.greedy.prompt.join(' '), { maxNewTokens: G.greedy.max_new_tokens, temperature: 0 });
    assert.deepEqual(r.tokens, G.greedy.tokens);
    assert.equal(r.text, G.greedy.tokens.join(' '));
    assert.equal(r.finish_reason, 'length');
    assert.equal(r.prompt_tokens, G.greedy.prompt.length);
    // ids given directly
    assert.deepEqual(generate(m, codec, G.greedy.prompt, { maxNewTokens: 8, temperature: 0 }).tokens, G.greedy.tokens);
  });

  it('sampling is reproducible per seed; top-k = 1 is greedy', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    const p = G.greedy.prompt;
    const a = generate(m, codec, p, { maxNewTokens: 10, temperature: 1, seed: 123 }).tokens;
    const b = generate(m, codec, p, { maxNewTokens: 10, temperature: 1, seed: 123 }).tokens;
    assert.deepEqual(a, b);
    assert.equal(a.length, 10);
    const seeds = [1, 2, 3, 4, 5].map((s) => generate(m, codec, p, { maxNewTokens: 10, temperature: 1, seed: s }).tokens.join(','));
    assert.ok(new Set(seeds).size > 1, 'different seeds should give different samples on a near-flat model');
    const k1 = generate(m, codec, p, { maxNewTokens: 8, temperature: 1, topK: 1, seed: 9 }).tokens;
    assert.deepEqual(k1, G.greedy.tokens);
  });

  it('repetition penalty (HF semantics) changes the greedy path as in PyTorch', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    const rp = G.repetition_penalty;
    const plain = generate(m, codec, rp.prompt, { maxNewTokens: rp.max_new_tokens, temperature: 0 }).tokens;
    const pen = generate(m, codec, rp.prompt, { maxNewTokens: rp.max_new_tokens, temperature: 0, repetitionPenalty: rp.penalty }).tokens;
    assert.deepEqual(plain, rp.greedy_tokens);
    assert.deepEqual(pen, rp.penalised_tokens);
    assert.notDeepEqual(plain, pen);
  });

  it('eos and stop strings end generation', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    const g = G.greedy.tokens;
    const r = generate(m, codec, G.greedy.prompt, { maxNewTokens: 8, temperature: 0, eosTokenId: g[1] });
    assert.deepEqual(r.tokens, g.slice(0, 2));
    assert.equal(r.finish_reason, 'eos');
    assert.equal(r.text, String(g[0]));
    const s = generate(m, codec, G.greedy.prompt, { maxNewTokens: 8, temperature: 0, stop: [` ${g[2]}`] });
    assert.equal(s.finish_reason, 'stop');
    assert.equal(s.text, g.slice(0, 2).join(' '));
  });
});

describe('perplexity', () => {
  it('equals a hand computation from full-forward logits and the PyTorch value', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    m.eval();
    const ids = G.perplexity.ids, W = G.config.n_positions, V = G.config.vocab_size;
    let nll = 0, count = 0;
    for (let s = 0; s < ids.length; s += W) {
      const win = ids.slice(s, s + W);
      if (win.length < 2) continue;
      const lg = logitsOf(m, [win]);
      for (let t = 0; t + 1 < win.length; t++) {
        const row = lg.slice(t * V, (t + 1) * V);
        const mx = Math.max(...row);
        const lse = mx + Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0));
        nll += lse - row[win[t + 1]];
        count++;
      }
    }
    assert.equal(count, ids.length - Math.ceil(ids.length / W)); // first token of each window unscored
    const r = perplexity(m, ids);
    // other lengths (a trailing 1-token window is unscored; exactly one window; 2 tokens)
    for (const n of [33, 16, 17, 2]) {
      const sub = ids.slice(0, n);
      let s2 = 0, c2 = 0;
      for (let s = 0; s < n; s += W) {
        const win = sub.slice(s, s + W);
        if (win.length < 2) continue;
        const lg = logitsOf(m, [win]);
        for (let t = 0; t + 1 < win.length; t++) {
          const row = lg.slice(t * V, (t + 1) * V), mx = Math.max(...row);
          s2 += mx + Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0)) - row[win[t + 1]];
          c2++;
        }
      }
      const q = perplexity(m, sub);
      assert.equal(q.tokens, c2, `n=${n} tokens`);
      assert.ok(Math.abs(q.nll - s2 / c2) < 1e-5, `n=${n}: nll ${q.nll} vs hand ${s2 / c2}`);
    }
    assert.throws(() => perplexity(m, [5]), /fewer than 2 tokens/);
    assert.equal(r.tokens, count);
    assert.equal(r.tokens, G.perplexity.tokens);
    assert.ok(Math.abs(r.nll - nll / count) < 1e-5, `nll ${r.nll} vs hand ${nll / count}`);
    assert.ok(Math.abs(r.nll - G.perplexity.nll) < 1e-4, `nll ${r.nll} vs PyTorch ${G.perplexity.nll}`);
    assert.ok(Math.abs(r.ppl - Math.exp(nll / count)) / r.ppl < 1e-5);
  });
});

describe('errors', () => {
  const copyDir = (name: string) => { const d = join(tmp, name); cpSync(HF_DIR, d, { recursive: true }); return d; };

  it("model_type 'bert' names config.json", () => {
    const d = copyDir('bert');
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...cfg, model_type: 'bert' }));
    assert.throws(() => GPT2.fromPretrained(d), (e: Error) => e.message.includes('config.json') && e.message.includes('bert'));
  });

  it('a missing weight is named', () => {
    const d = copyDir('missing');
    // re-save without one tensor
    const m = GPT2.fromPretrained(HF_DIR);
    m.savePretrained(d);
    const f = openSafetensors(join(d, 'model.safetensors'));
    const kept = f.names().filter((n) => n !== 'transformer.h.1.ln_2.bias');
    const entries = kept.map((n) => { const t = f.getTensor(n); return [n, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }] as const; });
    f.close();
    unlinkSync(join(d, 'model.safetensors'));
    writeSafetensors(join(d, 'model.safetensors'), new Map(entries), { format: 'pt' });
    assert.throws(() => GPT2.fromPretrained(d), /transformer\.h\.1\.ln_2\.bias/);
  });

  it('a missing model.safetensors is named', () => {
    const d = copyDir('noweights');
    for (const f of readdirSync(d)) if (f.endsWith('.safetensors')) unlinkSync(join(d, f));
    assert.throws(() => GPT2.fromPretrained(d), /model\.safetensors/);
  });

  it('ids outside the vocabulary and too-long inputs are rejected', () => {
    const m = GPT2.fromPretrained(HF_DIR);
    m.eval();
    assert.throws(() => logitsOf(m, [[1, 2, G.config.vocab_size]]), /vocabulary|vocab/);
    assert.throws(() => logitsOf(m, [[1, -1]]), /vocabulary|vocab/);
    assert.throws(() => logitsOf(m, [Array.from({ length: G.config.n_positions + 1 }, () => 1)]), /n_positions/);
    assert.throws(() => generate(m, codec, [1, 2, 99], { maxNewTokens: 2, temperature: 0 }), /vocabulary|vocab/);
  });
});

// Model directories written by icl-distill load in an independent PyTorch implementation of
// transformers' GPT2LMHeadModel.from_pretrained (tools/check_model_dir.py, which reads nothing of
// ours) and give the same logits. The models are trained for a few steps first so no weight is
// at its initial value, and cover the default config, a non-default one (n_inner, activation,
// attention scaling, epsilon), F16 weights and a sharded save.
//
// Needs /usr/bin/python3 with torch (Debian: python3-torch; ICLD_PYTHON overrides the path).
// Without it the test fails; ICLD_ALLOW_NO_TORCH=1 turns that into a visible skip.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, readdirSync, writeFileSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as O from '../../src/engine/ops.js';
import { tidy, Rng } from '../../src/engine/index.js';
import { GPT2, gpt2Config, type GPT2Config } from '../../src/models/gpt2.js';
import { AdamW } from '../../src/optim/adamw.js';
import { skip, requireTorch, checkAll, ok, ourLogits, type Checked } from './check-model-dir.js';


/** Random init, then a few AdamW steps on random sequences so every weight moved. */
function trained(cfg: GPT2Config, seed: number): GPT2 {
  const model = new GPT2(cfg, seed);
  const rng = new Rng(seed + 1);
  const opt = new AdamW(model.parameters(), { lr: 3e-2, weightDecay: 0.01 });
  const B = 3, T = cfg.n_positions;
  for (let step = 0; step < 4; step++) {
    const ids = Array.from({ length: B * T }, () => rng.int(cfg.vocab_size));
    tidy(() => { model.loss(O.tensor(ids, [B, T], 'int32')).loss.backward(); });
    opt.update();
    opt.zeroGrad();
  }
  opt.dispose();
  return model;
}

function writeJson(path: string, v: unknown): void { writeFileSync(path, JSON.stringify(v, null, 2)); }

function assertClose(got: number[], want: number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} logits vs ${want.length}`);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) { worst = d; at = i; }
  }
  assert.ok(worst <= tol, `${what}: max |diff| ${worst} at ${at} (ours ${want[at]}, PyTorch ${got[at]}) exceeds ${tol}`);
}

const BASE = { vocab_size: 67, n_positions: 20, n_embd: 24, n_layer: 2, n_head: 3 };
const VARIANT = { n_inner: 40, activation_function: 'gelu', layer_norm_epsilon: 1e-3, scale_attn_by_inverse_layer_idx: true };

describe('model dirs written by icl-distill load in the independent PyTorch GPT-2', { skip }, () => {
  let tmp: string;
  const ids = Array.from({ length: BASE.n_positions }, (_, i) => (i * 29 + 5) % BASE.vocab_size);
  const d = (name: string): string => join(tmp, name);
  let model: GPT2, init: GPT2, variant: GPT2, back16: GPT2;
  let res: Map<string, Checked>;
  // config.json edits the checker must reject (or, for the typo, report), each on a copy of f32/
  const BAD: [string, (c: Record<string, unknown>) => void][] = [
    ['bad-shape', (c) => { c.n_embd = 30; }],
    ['bad-layers', (c) => { c.n_layer = 3; }],
    ['bad-untied', (c) => { c.tie_word_embeddings = false; }],
    ['bad-type', (c) => { c.model_type = 'llama'; }],
    ['typo', (c) => { c.n_layers = c.n_layer; }],
  ];

  before(() => {
    requireTorch();
    tmp = mkdtempSync(join(tmpdir(), 'icld-hfrt-'));
    model = trained(gpt2Config(BASE), 11);
    init = new GPT2(gpt2Config(BASE), 11);
    model.savePretrained(d('f32'));
    model.savePretrained(d('f16'), { dtype: 'F16' });
    back16 = GPT2.fromPretrained(d('f16'));
    model.savePretrained(d('sharded'), { maxShardBytes: 8000 });
    variant = trained(gpt2Config({ ...BASE, ...VARIANT }), 12);
    variant.savePretrained(d('variant'));
    const cfg = JSON.parse(readFileSync(join(d('f32'), 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const [name, mutate] of BAD) {
      cpSync(d('f32'), d(name), { recursive: true });
      const c = structuredClone(cfg);
      mutate(c);
      writeJson(join(d(name), 'config.json'), c);
    }
    res = checkAll(['f32', 'f16', 'sharded', 'variant', ...BAD.map(([n]) => n)].map(d), ids);
  });
  after(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

  it('default config, F32: config.json keys, tied head, logits to 1e-4', () => {
    // training moved the weights away from their initial values
    assert.notDeepEqual(Array.from(model.transformer.wte.weight.f32), Array.from(init.transformer.wte.weight.f32));
    const cfg = JSON.parse(readFileSync(join(d('f32'), 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfg.model_type, 'gpt2');
    assert.deepEqual(cfg.architectures, ['GPT2LMHeadModel']);
    assert.equal(cfg.torch_dtype, 'float32');
    for (const [k, v] of Object.entries(BASE)) assert.equal(cfg[k], v, `config.json ${k}`);

    const r = ok(res.get(d('f32')));
    assert.deepEqual(r.unknown_keys, [], 'config.json keys transformers would not read');
    assert.deepEqual(r.config, {
      ...BASE, n_inner: null, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, scale_attn_weights: true,
      scale_attn_by_inverse_layer_idx: false, reorder_and_upcast_attn: false, tie_word_embeddings: true,
    });
    assert.equal(r.tied, true);
    assert.deepEqual(r.dtypes, ['F32']);
    assert.deepEqual(r.ignored, []);
    assert.deepEqual(r.shape, [1, ids.length, BASE.vocab_size]);
    // no lm_head.weight on disk (GPT2LMHeadModel.save_pretrained omits the tied head)
    const buf = readFileSync(join(d('f32'), 'model.safetensors'));
    const names = Object.keys(JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8')) as object);
    assert.ok(names.includes('transformer.wte.weight') && !names.includes('lm_head.weight'), names.join(', '));
    assertClose(r.logits, ourLogits(model, ids), 1e-4, 'f32');
  });

  it('non-default config keys are written so transformers reads them (n_inner, activation, scaling, epsilon)', () => {
    const r = ok(res.get(d('variant')));
    assert.deepEqual(r.unknown_keys, []);
    for (const [k, v] of Object.entries(VARIANT)) assert.equal(r.config[k], v, k);
    assertClose(r.logits, ourLogits(variant, ids), 1e-4, 'variant');
  });

  it('F16 weights and sharded saves load, and match what we load back', () => {
    const r16 = ok(res.get(d('f16')));
    assert.deepEqual(r16.dtypes, ['F16']);
    assert.equal(r16.tied, true);
    assertClose(r16.logits, ourLogits(back16, ids), 1e-4, 'f16 vs our load of it');
    // F16 rounding is visible: the F32 logits differ from these by more than the tolerance
    const full = ourLogits(model, ids);
    assert.ok(full.some((x, i) => Math.abs(x - r16.logits[i]) > 1e-4), 'F16 save kept F32 precision?');

    const files = readdirSync(d('sharded')).filter((f) => f.endsWith('.safetensors'));
    assert.ok(files.length >= 2, `expected shards, got ${files.join(', ')}`);
    assertClose(ok(res.get(d('sharded'))).logits, full, 1e-4, 'sharded');
  });

  it('the checker is not lenient: wrong shapes, missing tensors, an untied head without lm_head and a typo are caught', () => {
    const err = (name: string): string => res.get(d(name))?.error ?? '(no error)';
    assert.match(err('bad-shape'), /transformer\.wte\.weight has shape \[67, 24\], GPT2LMHeadModel expects \[67, 30\]/);
    assert.match(err('bad-layers'), /missing tensor 'transformer\.h\.2\.ln_1\.weight'/);
    assert.match(err('bad-untied'), /missing tensor 'lm_head\.weight'/);
    assert.match(err('bad-type'), /model_type is 'llama'/);
    assert.deepEqual(ok(res.get(d('typo'))).unknown_keys, ['n_layers']);
  });
});

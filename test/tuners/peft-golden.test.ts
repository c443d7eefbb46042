// Adapters in PEFT's layout made by a PyTorch reference of peft 0.21.0 (tools/make_peft_fixture.py):
// LoRA (GPT-2 Conv1D with fan_in_fan_out, BERT Linear incl. the MLM head's dense), prefix tuning
// (GPT-2 plain; BERT saved from a prefix_projection MLP) and prompt tuning on both families.
// Each is attached to its base with attachAdapterDir and must give the reference logits (float32
// vs float64, 1e-4), a padded row included; LoRA merges into the reference weights; saveAdapter
// writes back the same tensors and config; greedy decoding with prefix / prompt virtual tokens
// through the KV cache gives the reference tokens (HF generate with past key/values).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as O from '../../src/engine/ops.js';
import { tidy, noGrad } from '../../src/engine/index.js';
import { loadModel, generate, requireCausal, type LanguageModel, type ForwardOptions, type TextCodec } from '../../src/models/index.js';
import { attachAdapterDir, readAdapterConfig } from '../../src/tuners/index.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { assertClose, maxAbsDiff } from '../helpers.js';

const FIX = fileURLToPath(new URL('../../../test/fixtures/peft/', import.meta.url));

type Family = 'gpt2' | 'bert';
interface Inputs { base: string; input_ids: number[][]; attention_mask: number[][]; token_type_ids?: number[][]; shape: number[]; base_logits: number[] }
interface Case { name: string; family: Family; adapter: string; logits: number[]; merged_weight?: { name: string; shape: number[]; data: number[] } }
interface Decode { name: string; adapter: string; prompt: number[]; max_new_tokens: number; tokens: number[]; base_tokens: number[]; step_logits: number[] }
interface Golden { gpt2: Inputs; bert: Inputs; cases: Case[]; decode: Decode[] }
const G = JSON.parse(readFileSync(join(FIX, 'golden.json'), 'utf8')) as Golden;

const ints = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length], 'int32');
const floats = (rows: number[][]) => O.tensor(rows.flat(), [rows.length, rows[0].length]);

function opts(fam: Family): ForwardOptions {
  const I = G[fam];
  return { attentionMask: floats(I.attention_mask), ...(I.token_type_ids ? { tokenTypeIds: ints(I.token_type_ids) } : {}) };
}

/** logits [B,T,V] of the family's golden batch, flat. */
function logitsOf(m: LanguageModel, fam: Family): number[] {
  return tidy(() => noGrad(() => m.forward(ints(G[fam].input_ids), opts(fam)).toArray()));
}

const base = (fam: Family) => { const m = loadModel(join(FIX, G[fam].base)); m.eval(); return m; };

const codec: TextCodec = { encode: (s) => s.trim().split(/\s+/).map(Number), decode: (ids) => ids.join(' ') };

let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-peft-golden-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

describe('PEFT golden adapters (PyTorch reference)', () => {
  it('the base models alone match the reference (so a failure below is the adapter\'s)', () => {
    for (const fam of ['gpt2', 'bert'] as const) {
      const m = base(fam);
      const got = logitsOf(m, fam);
      assert.equal(got.length, G[fam].shape.reduce((a, b) => a * b, 1));
      assertClose(got, G[fam].base_logits, 1e-4, 0, `${fam} base logits`);
      m.dispose();
    }
  });

  for (const c of G.cases) {
    it(`${c.name}: base + adapter logits; with every adapter off the base logits`, () => {
      const dir = join(FIX, c.adapter);
      const cfg = readAdapterConfig(dir);
      const want = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      assert.equal(cfg.peft_type, want.peft_type);
      const pm = attachAdapterDir(base(c.family), dir);
      pm.eval();
      assert.equal(pm.activeAdapter, 'default');
      const got = logitsOf(pm, c.family);
      // the adapter must matter (the reference moves logits by several units)
      assert.ok(maxAbsDiff(got, G[c.family].base_logits).abs > 0.05, `${c.name}: logits equal the base's`);
      assertClose(got, c.logits, 1e-4, 0, `${c.name} logits`);
      assertClose(pm.withoutAdapters(() => logitsOf(pm, c.family)), G[c.family].base_logits, 1e-4, 0, `${c.name} withoutAdapters logits`);
      // and the adapter is back on afterwards
      assertClose(logitsOf(pm, c.family), c.logits, 1e-4, 0, `${c.name} logits after withoutAdapters`);
      pm.dispose();
    });

    it(`${c.name}: saveAdapter writes back PEFT's keys, shapes, values and adapter_config.json`, () => {
      const dir = join(FIX, c.adapter);
      const pm = attachAdapterDir(base(c.family), dir);
      const out = join(tmp, c.name);
      pm.saveAdapter(out);
      const src = readSafetensors(join(dir, 'adapter_model.safetensors'));
      const saved = readSafetensors(join(out, 'adapter_model.safetensors'));
      assert.deepEqual([...saved.tensors.keys()].sort(), [...src.tensors.keys()].sort(), `${c.name}: tensor names`);
      assert.equal(saved.metadata?.format, 'pt', `${c.name}: safetensors metadata format`);
      for (const [k, t] of src.tensors) {
        const s = saved.tensors.get(k)!;
        assert.equal(s.dtype, 'F32', `${c.name}: ${k} dtype`);
        assert.deepEqual(s.shape, t.shape, `${c.name}: ${k} shape`);
        assert.deepEqual(Array.from(s.data), Array.from(t.data), `${c.name}: ${k} values`);
      }
      const want = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      const got = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      // PEFT keeps target_modules as a set: its saved order is arbitrary
      const norm = (o: Record<string, unknown>) => Array.isArray(o.target_modules) ? { ...o, target_modules: [...(o.target_modules as string[])].sort() } : o;
      assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `${c.name}: adapter_config.json keys`);
      assert.deepEqual(norm(got), norm(want), `${c.name}: adapter_config.json values`);
      // what was saved loads again and gives the same logits
      const again = attachAdapterDir(base(c.family), out);
      again.eval();
      assertClose(logitsOf(again, c.family), c.logits, 1e-4, 0, `${c.name} logits after save → load`);
      pm.dispose(); again.dispose();
    });

    if (c.merged_weight) {
      const mw = c.merged_weight;
      it(`${c.name}: mergeAndUnload folds LoRA into the weights (W + (B@A)·α/r, transposed for Conv1D)`, () => {
        const pm = attachAdapterDir(base(c.family), join(FIX, c.adapter));
        pm.eval();
        const merged = pm.mergeAndUnload();
        merged.eval();
        const params = new Map(merged.namedParameters());
        assert.ok(![...params.keys()].some((n) => n.includes('lora')), `${c.name}: merged model still has LoRA parameters`);
        const plain = base(c.family);
        assert.deepEqual([...params.keys()].sort(), plain.namedParameters().map(([n]) => n).sort(), `${c.name}: merged parameter names`);
        const w = params.get(mw.name);
        assert.ok(w, `${c.name}: merged model has no ${mw.name}`);
        assert.deepEqual(w.shape, mw.shape, `${mw.name} shape`);
        assertClose(w.toArray(), mw.data, 1e-5, 0, `${c.name} merged ${mw.name}`);
        assertClose(logitsOf(merged, c.family), c.logits, 1e-4, 0, `${c.name} merged-model logits`);
        // and it saves as a plain model dir that loads without the adapter
        const out = join(tmp, `${c.name}-merged`);
        merged.savePretrained(out);
        const back = loadModel(out);
        back.eval();
        assertClose(logitsOf(back, c.family), c.logits, 1e-4, 0, `${c.name} merged, saved and reloaded logits`);
        merged.dispose(); plain.dispose(); back.dispose();
      });
    }
  }

  for (const d of G.decode) {
    it(`${d.name}: greedy decoding through the KV cache with virtual tokens`, () => {
      const pm = attachAdapterDir(base('gpt2'), join(FIX, d.adapter));
      const o = { maxNewTokens: d.max_new_tokens, temperature: 0 };
      assert.deepEqual(generate(pm, codec, d.prompt, o).tokens, d.tokens, `${d.name}: tokens with the adapter`);
      assert.deepEqual(pm.withoutAdapters(() => generate(pm, codec, d.prompt, o).tokens), d.base_tokens, `${d.name}: tokens with adapters off`);
      // a second run: the virtual tokens are written into each new cache again
      assert.deepEqual(generate(pm, codec, d.prompt, o).tokens, d.tokens, `${d.name}: tokens, second run`);
      // by hand: prefill the prompt, then one token at a time; the logits each token was picked from
      const cm = requireCausal(pm, d.name), V = G.gpt2.shape[2];
      const cache = cm.newCache(1, d.prompt.length + d.max_new_tokens);
      try {
        const rows = tidy(() => noGrad(() => {
          const out = [cm.forward(ints([d.prompt]), { cache }).toArray().slice((d.prompt.length - 1) * V)];
          for (const t of d.tokens.slice(0, -1)) out.push(cm.forward(ints([[t]]), { cache }).toArray());
          return out.flat();
        }));
        assertClose(rows, d.step_logits, 1e-4, 0, `${d.name}: logits at each cached step`);
      } finally { cache.dispose(); }
      pm.dispose();
    });
  }

  it('an adapter whose modules the base lacks is a one-line error naming the adapter', () => {
    const m = base('gpt2');
    assert.throws(() => attachAdapterDir(m, join(FIX, 'bert-lora')), (e: Error) => {
      assert.ok(!e.message.includes('\n'), `multi-line message: ${e.message}`);
      assert.match(e.message, /bert-lora/);
      return true;
    });
    m.dispose();
  });
});

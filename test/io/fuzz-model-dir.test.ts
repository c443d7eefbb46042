// Fuzzing the model-directory loader (issue 9): 1,000 seeded mutations of a GPT-2 dir's
// config.json and model.safetensors (types, ranges, sizes far beyond the weights such as
// vocab_size 2e7 or n_layer 20000, renamed/dropped/reshaped tensors, corrupt bytes). Each case
// loads a model that matches its files or fails fast with a one-line Error naming a file of the
// dir — and never allocates a model the config describes before checking it against the header.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, cpSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GPT2, gpt2ParameterShapes } from '../../src/models/gpt2.js';
import { readSafetensors, serializeSafetensors, type WriteTensor } from '../../src/io/safetensors.js';
import { saveStateDict, loadStateDict } from '../../src/io/hf.js';
import { Fuzz, runCase, type Tally } from './fuzz.js';

const HF_DIR = fileURLToPath(new URL('../../../test/fixtures/gpt2/tiny-hf/', import.meta.url));
let tmp = '';
before(() => { tmp = mkdtempSync(join(tmpdir(), 'icld-fuzz-model-')); });
after(() => { rmSync(tmp, { recursive: true, force: true }); });

const CASES = 1000;

describe('loader fuzz: GPT-2 model directory', () => {
  it(`${CASES} mutated config.json / model.safetensors pairs`, () => {
    const fz = new Fuzz(31337);
    const baseCfg = JSON.parse(readFileSync(join(HF_DIR, 'config.json'), 'utf8'));
    const baseWeights = new Uint8Array(readFileSync(join(HF_DIR, 'model.safetensors')));
    const { tensors, metadata } = readSafetensors(join(HF_DIR, 'model.safetensors'));
    const keys = [...Object.keys(baseCfg), 'n_layers', 'tie_word_embeddings', 'add_cross_attention'];
    const sizeKeys = ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head', 'n_inner'];
    const tally: Tally = { ok: 0, err: 0, maxMs: 0 };
    for (let i = 0; i < CASES; i++) {
      const dir = join(tmp, `m${i}`);
      mkdirSync(dir);
      let cfgText = JSON.stringify(baseCfg), weights: Uint8Array = baseWeights;
      const r = fz.int(10);
      if (r < 3) { // a size key set to something the weights do not have (2e7, 20000, …)
        const c = { ...baseCfg };
        c[fz.pick(sizeKeys)] = fz.pick([2e7, 20000, 1e9, 2 ** 31, 0, -1, 1.5, 3, 1, 24, 4096, null, '12']);
        cfgText = JSON.stringify(c);
      } else if (r < 6) {
        cfgText = fz.chance(0.7) ? JSON.stringify(fz.mutateJson(JSON.parse(cfgText), keys)) ?? 'null' : fz.mutateJsonText(cfgText);
      } else if (r < 8) { // rename, drop or reshape one tensor (a well-formed file that may not fit the config)
        const m = new Map<string, WriteTensor>([...tensors].map(([k, v]) => [k, { dtype: 'F32', shape: v.shape, data: v.data as Float32Array }]));
        const victim = fz.pick([...m.keys()]);
        const t = m.get(victim)!;
        const op = fz.int(4);
        if (op === 0) m.delete(victim);
        else if (op === 1) { m.delete(victim); m.set(fz.pick([victim.replace('transformer.', ''), victim + 'x', 'lm_head.weight', victim.replace('.0.', '.7.')]), t); }
        else if (op === 2 && t.shape.length === 2) m.set(victim, { ...t, shape: [t.shape[1], t.shape[0]] });
        else m.set(victim, { dtype: 'F32', shape: [...t.shape.slice(0, -1), t.shape[t.shape.length - 1] + 1], data: new Float32Array(t.data.length / t.shape[t.shape.length - 1] * (t.shape[t.shape.length - 1] + 1)) });
        weights = new Uint8Array(serializeSafetensors(m, metadata));
      } else {
        weights = fz.mutateBytes(baseWeights);
      }
      writeFileSync(join(dir, 'config.json'), cfgText);
      let sharded = false;
      if (fz.chance(0.15)) {
        // The sharded layout, with its index mutated: missing/renamed shards, paths, wrong names.
        sharded = true;
        saveStateDict(dir, new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, data: v.data as Float32Array }])), { maxShardBytes: 4000 });
        const ip = join(dir, 'model.safetensors.index.json');
        const idx = JSON.parse(readFileSync(ip, 'utf8'));
        const shardKeys = [...Object.keys(idx.weight_map), 'weight_map', 'metadata', 'total_size'];
        writeFileSync(ip, fz.chance(0.8) ? JSON.stringify(fz.mutateJson(idx, [...shardKeys, '../model-00001-of-00009.safetensors'])) ?? 'null' : fz.mutateJsonText(JSON.stringify(idx)));
      } else writeFileSync(join(dir, 'model.safetensors'), weights);
      // Errors may name config.json or model.safetensors: both live in `dir`.
      runCase(tally, dir, () => GPT2.fromPretrained(dir), (m) => {
        const cfg = JSON.parse(cfgText);
        assert.equal(m.config.n_layer, cfg.n_layer ?? 12, `case ${i}`);
        const shapes = gpt2ParameterShapes(m.config);
        assert.deepEqual(m.namedParameters().map(([k, p]) => [k, p.shape]), shapes, `case ${i}: parameters`);
        // Every weight equals what the file holds (so nothing was left at zero or read off by a byte).
        const onDisk = sharded ? loadStateDict(dir) : readSafetensors(join(dir, 'model.safetensors')).tensors;
        for (const [k, p] of m.namedParameters()) {
          const t = onDisk.get(k) ?? onDisk.get(k.replace(/^transformer\./, ''))!;
          assert.deepEqual(p.f32, t.data, `case ${i}: ${k}`);
        }
        m.dispose();
      }, `model case ${i}`, 3000, 32 << 20);
      rmSync(dir, { recursive: true });
    }
    assert.equal(tally.ok + tally.err, CASES, 'every case ran');
    assert.ok(tally.err > CASES / 2 && tally.ok > 30, `ok ${tally.ok}, errors ${tally.err}`);
  });

  it('the unmutated copy loads', () => {
    const d = join(tmp, 'base');
    cpSync(HF_DIR, d, { recursive: true });
    assert.equal(GPT2.fromPretrained(d).config.n_embd, 12);
  });
});

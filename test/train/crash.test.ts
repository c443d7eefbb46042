// Kills injected at chosen moments of checkpointing (ICLD_CRASH_AT, the process SIGKILLs
// itself there): the run dir must always hold complete checkpoints identical to an
// uninterrupted run's, and `--resume` must finish byte-identical to it. Also: the three states
// that used to block every resume, a fresh run into an old run's dir, and resume validation.

import test from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { icld, tinyRun, assertCheckpointsLikeReference, assertNoLeftovers, sameBytes } from './kill-helpers.js';
import { listCheckpoints } from '../../src/train/trainer.js';
import { pretrain, readPretrainConfig } from '../../src/train/pretrain.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';

const T = tinyRun();
const quiet = (): void => {};
const args = (cfg: string, out: string, ...more: string[]): string[] => ['pretrain', '--config', cfg, '--data', T.data, '--out', out, ...more];
const fresh = (): string => mkdtempSync(join(T.dir, 'run-'));

// Uninterrupted references: every checkpoint kept (limit 0) to compare against.
const cfgRef = T.config({ save_total_limit: 0 });
const REF = join(T.dir, 'ref');
const refRun = icld(args(cfgRef, REF));
assert.equal(refRun.status, 0, refRun.stderr);

test('a kill at each crash point leaves only complete checkpoints, and --resume finishes byte-identical', () => {
  const cfg = T.config({ save_total_limit: 1 });
  const points = [
    'checkpoint:optimizer-written#2', // temp checkpoint half filled
    'publish:before-rename#3', // (#1 is the token cache) temp checkpoint-4 complete, not yet published
    'checkpoint:published#2', // new one published, old one not yet pruned
    'remove:after-rename#1', // prune: old checkpoint renamed to trash, not yet deleted
    'remove:partial#1', // prune: killed midway through deleting the old checkpoint
    'atomic:before-rename#9', // a file inside the final model dir written, not renamed
    'train:before-final-state', // final model written, trainer_state.json not yet
  ];
  for (const p of points) {
    const out = fresh();
    const k = icld(args(cfg, out), p);
    assert.equal(k.signal, 'SIGKILL', `${p}: the crash point was not reached (${k.stderr})`);
    const cks = assertCheckpointsLikeReference(out, REF);
    assert.ok(cks.length >= 1, `${p}: no checkpoint survived`);
    const r = icld(args(cfg, out, '--resume', out));
    assert.equal(r.status, 0, `${p}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`resuming from ${out}/checkpoint-${cks[cks.length - 1]} at step ${cks[cks.length - 1]} of 6`), p);
    assert.ok(sameBytes(join(out, 'model.safetensors'), join(REF, 'model.safetensors')), `${p}: resumed weights differ from the uninterrupted run's`);
    assert.deepEqual(listCheckpoints(out), [6], p);
    assertNoLeftovers(out);
  }
});

test('killed while re-saving the checkpoint it resumed from, with save_total_limit 1 (used to leave no checkpoint)', () => {
  const cfg = T.config({ save_total_limit: 1 });
  for (const p of ['checkpoint:old-moved-aside', 'publish:before-rename', 'checkpoint:published', 'remove:partial']) {
    const out = fresh();
    // Final checkpoint written, final files not: the next --resume re-saves checkpoint-6.
    assert.equal(icld(args(cfg, out), 'train:before-final').signal, 'SIGKILL');
    assert.deepEqual(listCheckpoints(out), [6]);
    const k = icld(args(cfg, out, '--resume', out), p);
    assert.equal(k.signal, 'SIGKILL', `${p}: ${k.stderr}`);
    if (p === 'checkpoint:old-moved-aside' || p === 'publish:before-rename') {
      // The only checkpoint is moved aside and its replacement not yet published.
      assert.deepEqual(listCheckpoints(out), [], p);
      assert.ok(readdirSync(out).some((n) => n.startsWith('.old-checkpoint-6-')), p);
    } else assertCheckpointsLikeReference(out, REF);
    const r = icld(args(cfg, out, '--resume', out));
    assert.equal(r.status, 0, `${p}: ${r.stderr}`);
    if (p === 'checkpoint:old-moved-aside' || p === 'publish:before-rename') assert.match(r.stderr, /recovered checkpoint-6/);
    assert.match(r.stderr, /resuming from .*checkpoint-6 at step 6/);
    assert.ok(sameBytes(join(out, 'model.safetensors'), join(REF, 'model.safetensors')), p);
    assertCheckpointsLikeReference(out, REF);
    assertNoLeftovers(out);
  }
});

test('an incomplete checkpoint (old rotation killed inside its removal) is skipped for the newest complete one', () => {
  const out = fresh();
  cpSync(join(REF, 'checkpoint-2'), join(out, 'checkpoint-2'), { recursive: true });
  cpSync(join(REF, 'checkpoint-4'), join(out, 'checkpoint-4'), { recursive: true });
  // What the old code left: only optimizer.safetensors, tokenizer.json and trainer_state.json.
  cpSync(join(REF, 'checkpoint-4'), join(out, 'checkpoint-6'), { recursive: true });
  for (const f of ['model.safetensors', 'config.json', 'generation_config.json']) rmSync(join(out, 'checkpoint-6', f));
  // …and a complete temp checkpoint of a dead process.
  cpSync(join(REF, 'checkpoint-6'), join(out, '.tmp-checkpoint-6-999999-0badcafe'), { recursive: true });
  const r = icld(args(T.config({ save_total_limit: 0 }), out, '--resume', out));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /skipping incomplete .*checkpoint-6: model\.safetensors|skipping incomplete .*checkpoint-6: .*config\.json/);
  assert.match(r.stderr, /resuming from .*checkpoint-4 at step 4/);
  assert.ok(sameBytes(join(out, 'model.safetensors'), join(REF, 'model.safetensors')));
  assertCheckpointsLikeReference(out, REF);
  assertNoLeftovers(out);
});

test('a fresh run into an old run\'s dir is refused without --overwrite; --resume refuses another config; --overwrite + crash + --resume gives the new run', () => {
  const out = fresh();
  const cfg0 = T.config({ seed: 0 }), cfg1 = T.config({ seed: 1 });
  assert.equal(icld(args(cfg0, out)).status, 0);
  const again = icld(args(cfg1, out));
  assert.equal(again.status, 1);
  assert.match(again.stderr, /--out .* is not empty .*--resume .*--overwrite/);
  const wrongSeed = icld(args(cfg1, out, '--resume', out));
  assert.equal(wrongSeed.status, 1);
  assert.match(wrongSeed.stderr, /checkpoint-6 was made with a different configuration: train\.seed 0 → 1/);
  const wrongModel = icld(args(T.config({}, { n_layer: 2 }), out, '--resume', out));
  assert.equal(wrongModel.status, 1);
  assert.match(wrongModel.stderr, /model\.n_layer 1 → 2/);
  // Reference for seed 1, uninterrupted.
  const ref1 = fresh();
  assert.equal(icld(args(T.config({ seed: 1, save_total_limit: 0 }), ref1)).status, 0);
  const k = icld(args(cfg1, out, '--overwrite'), 'checkpoint:published#2');
  assert.equal(k.signal, 'SIGKILL');
  assert.deepEqual(listCheckpoints(out), [2, 4], 'the old run\'s checkpoint-6 was removed by --overwrite');
  assertCheckpointsLikeReference(out, ref1);
  const r = icld(args(cfg1, out, '--resume', out));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resuming from .*checkpoint-4 at step 4/);
  assert.ok(sameBytes(join(out, 'model.safetensors'), join(ref1, 'model.safetensors')));
  assert.ok(!sameBytes(join(out, 'model.safetensors'), join(REF, 'model.safetensors')), 'seed 1 must not give the seed-0 model');
  const both = icld(args(cfg0, out, '--resume', out, '--overwrite'));
  assert.equal(both.status, 2, 'a usage error');
  assert.match(both.stderr, /--resume and --overwrite exclude each other/);
});

test('resume validation: damaged checkpoint files are errors naming the file (never a partial copy)', () => {
  const config = readPretrainConfig(T.config({ save_total_limit: 0 }));
  const damaged = (f: (ck: string) => void): string => {
    const ck = join(fresh(), 'checkpoint-4');
    cpSync(join(REF, 'checkpoint-4'), ck, { recursive: true });
    f(ck);
    return ck;
  };
  const resume = (ck: string): (() => unknown) => () => pretrain({ config, data: [T.data], out: fresh(), resume: ck, log: quiet });
  const state = (ck: string, edit: (s: Record<string, any>) => void): void => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const p = join(ck, 'trainer_state.json');
    const s = JSON.parse(readFileSync(p, 'utf8'));
    edit(s);
    writeFileSync(p, JSON.stringify(s));
  };
  // optimizer moment of the wrong shape
  const badOpt = damaged((ck) => {
    const p = join(ck, 'optimizer.safetensors');
    const t = readSafetensors(p).tensors;
    const out: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [n, v] of t) out[n] = { dtype: 'F32', shape: v.shape, data: v.data as Float32Array };
    const name = [...t.keys()].find((n) => n.startsWith('exp_avg_sq.') && n.endsWith('ln_f.weight'))!;
    out[name] = { dtype: 'F32', shape: [16], data: new Float32Array(16) };
    writeSafetensors(p, out);
  });
  assert.throws(resume(badOpt), (e: Error) => e.message.includes(join(badOpt, 'optimizer.safetensors')) && /tensor 'exp_avg_sq\.(transformer\.)?ln_f\.weight' is F32 \[16\], the parameter is F32 \[32\]/.test(e.message));
  // global_step beyond the run
  assert.throws(resume(damaged((ck) => state(ck, (s) => { s.global_step = 1e9; }))), /trainer_state\.json: global_step 1000000000 exceeds train\.steps 6/);
  assert.throws(resume(damaged((ck) => state(ck, (s) => { s.global_step = 2.5; }))), /trainer_state\.json: global_step must be a non-negative integer, got 2\.5/);
  // data position that used to reach a read as NaN
  assert.throws(resume(damaged((ck) => state(ck, (s) => { s.user_state.loader.index = 'x'; }))), /trainer_state\.json: user_state: loader\.index must be a non-negative integer, got "x"/);
  assert.throws(resume(damaged((ck) => state(ck, (s) => { s.user_state.loader.index = 1e6; }))), /trainer_state\.json: user_state: data position .* is invalid/);
  assert.throws(resume(damaged((ck) => state(ck, (s) => { s.user_state.dropout_rng = [1, 2]; }))), /trainer_state\.json: user_state: dropout_rng must be 4 integers/);
  // torn files
  const torn = damaged((ck) => { const p = join(ck, 'trainer_state.json'); writeFileSync(p, readFileSync(p).subarray(0, 100)); });
  assert.throws(resume(torn), (e: Error) => e.message.includes(join(torn, 'trainer_state.json')) && /invalid JSON/.test(e.message));
  const tornOpt = damaged((ck) => { const p = join(ck, 'optimizer.safetensors'); writeFileSync(p, readFileSync(p).subarray(0, 5000)); });
  assert.throws(resume(tornOpt), (e: Error) => e.message.includes(join(tornOpt, 'optimizer.safetensors')));
  // an intact copy resumes and matches
  const ok = damaged(() => {});
  const out = fresh();
  pretrain({ config, data: [T.data], out, resume: ok, log: quiet });
  assert.ok(sameBytes(join(out, 'model.safetensors'), join(REF, 'model.safetensors')));
  assert.ok(existsSync(join(out, 'checkpoint-6')));
});

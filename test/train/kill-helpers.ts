// Shared by the crash tests: a tiny pretraining setup, and running the real CLI in a child
// process that is killed at a chosen crash point (ICLD_CRASH_AT) or after a chosen delay.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BPETokenizer } from '../../src/tokenizers/bpe.js';
import { checkpointProblem, listCheckpoints } from '../../src/train/trainer.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/** Absolute file URL of a compiled module under dist/src (for child scripts). */
export const distModule = (rel: string): string => new URL(`../../src/${rel}`, import.meta.url).href;

export interface RunResult { status: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string; }

/** Run `icld ARGS` to the end (or to the crash point named by `crashAt`). */
export function icld(args: string[], crashAt?: string): RunResult {
  const env = { ...process.env };
  delete env.ICLD_CRASH_AT;
  if (crashAt) env.ICLD_CRASH_AT = crashAt;
  const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

/** Start `node ARGS`, SIGKILL it after `ms` (unless it ended first). */
export function killAfter(args: string[], ms: number): Promise<RunResult & { killed: boolean }> {
  const env = { ...process.env };
  delete env.ICLD_CRASH_AT;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', stdout = '', killed = false;
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => { stdout += d; });
    const timer = setTimeout(() => { killed = child.kill('SIGKILL'); }, ms);
    child.on('error', reject);
    child.on('close', (status, signal) => { clearTimeout(timer); resolve({ status, signal, stderr, stdout, killed: killed && signal === 'SIGKILL' }); });
  });
}

export interface TinyRun { dir: string; data: string; tokenizer: string; config(train: Record<string, unknown>, model?: Record<string, unknown>): string; }

/** A few KB of text, a 300-token tokenizer, and configs for a 1-layer GPT-2 that trains in well under a second. */
export function tinyRun(): TinyRun {
  const dir = mkdtempSync(join(tmpdir(), 'icld-crash-'));
  const data = join(dir, 'data.txt');
  const text = readFileSync(new URL('../../../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 20000);
  writeFileSync(data, text);
  const tokenizer = BPETokenizer.train([text], { vocabSize: 300, specialTokens: ['<|endoftext|>'] }).save(join(dir, 'tok'));
  let n = 0;
  return {
    dir, data, tokenizer,
    config: (train, model = {}) => {
      const p = join(dir, `config-${n++}.json`);
      writeFileSync(p, JSON.stringify({
        model: { n_positions: 32, n_embd: 32, n_layer: 1, n_head: 2, resid_pdrop: 0.1, embd_pdrop: 0.1, attn_pdrop: 0.1, ...model },
        tokenizer: { path: tokenizer },
        train: { steps: 6, batch_size: 2, seq_len: 16, lr: 3e-3, warmup_steps: 2, eval_every: 3, eval_batches: 1, save_every: 2, save_total_limit: 1, log_every: 1, seed: 0, ...train },
      }));
      return p;
    },
  };
}

/** Every checkpoint-N in `out` is complete and byte-identical to the reference run's checkpoint-N (the new version, never a torn one). */
export function assertCheckpointsLikeReference(out: string, ref: string): number[] {
  const cks = listCheckpoints(out);
  for (const c of cks) {
    const ck = join(out, `checkpoint-${c}`);
    assert.equal(checkpointProblem(ck), null, `${ck} is incomplete`);
    for (const f of ['model.safetensors', 'optimizer.safetensors', 'config.json', 'tokenizer.json']) {
      assert.ok(readFileSync(join(ck, f)).equals(readFileSync(join(ref, `checkpoint-${c}`, f))), `${ck}/${f} differs from the uninterrupted run's`);
    }
    assert.equal(JSON.parse(readFileSync(join(ck, 'trainer_state.json'), 'utf8')).global_step, c);
  }
  return cks;
}

/** No temp, aside or trash directories left in a run dir. */
export function assertNoLeftovers(out: string): void {
  const left = readdirSync(out).filter((n) => n.startsWith('.'));
  assert.deepEqual(left, [], `left behind in ${out}: ${left.join(', ')}`);
}

export const sameBytes = (a: string, b: string): boolean => existsSync(a) && existsSync(b) && readFileSync(a).equals(readFileSync(b));

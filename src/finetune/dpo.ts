// Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your
// Language Model is Secretly a Reward Model"), computed as TRL's DPOTrainer does:
//   - each pair is two sequences, prompt+chosen+eos and prompt+rejected+eos; labels are −100 on
//     the prompt, so a sequence's log-probability sums over its completion tokens only;
//   - the policy's and a frozen reference's log-probabilities give the implicit rewards
//     r = β·(log π(y|x) − log π_ref(y|x)) and h = (π_c − ref_c) − (π_r − ref_r);
//   - sigmoid loss (DPO eq. 7) with TRL's label smoothing ε (conservative DPO / cDPO):
//       L = −(1−ε)·log σ(β·h) − ε·log σ(−β·h)
//   - IPO (Azar et al. 2023, eq. 17, TRL's loss_type "ipo"): L = (h − 1/(2β))², with the
//     sequence log-probabilities averaged over completion tokens instead of summed (as TRL does);
//   - logged metrics as TRL names them: rewards/chosen, rewards/rejected, rewards/accuracies,
//     rewards/margins, logps/chosen, logps/rejected (batch means).
// The reference runs without gradients, either as a separate frozen model or, with adapters, as
// the same PeftModel with its adapters switched off (PEFT's trick: the base is the reference).

import { noGrad, tidy, type Tensor } from '../engine/index.js';
import * as O from '../engine/ops.js';
import { logitsAt, type LanguageModel } from '../models/index.js';
import type { ChatMessage } from '../data/chat.js';
import type { PreferencePair } from '../data/preference.js';
import type { Tokenizer } from '../tokenizers/index.js';

export type DpoLossType = 'sigmoid' | 'ipo';

export interface DpoOptions {
  /** β: strength of the pull towards the reference (TRL default 0.1). */
  beta: number;
  /** ε in [0, 0.5]: assumed probability that a preference label is flipped (sigmoid loss only). */
  labelSmoothing?: number;
  lossType?: DpoLossType;
}

export interface DpoMetrics {
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/accuracies': number;
  'rewards/margins': number;
  'logps/chosen': number;
  'logps/rejected': number;
}

/** One tokenised sequence: ids and labels (−100 where no loss: the prompt). */
export interface EncodedSequence { ids: number[]; labels: number[] }
export interface EncodedPair { chosen: EncodedSequence; rejected: EncodedSequence; /** Some prompt or completion tokens were cut to fit maxLength. */ truncated: boolean }

/**
 * Chosen and rejected sequences of every pair, right-padded to one length T: rows 0..N−1 are the
 * chosen ones, rows N..2N−1 the rejected ones (TRL's concatenated forward).
 */
export interface PreferenceBatch {
  pairs: number;
  length: number;
  /** [2N·T] token ids (padding: padId). */
  ids: Int32Array;
  /** [2N·T] label ids, −100 on prompt and padding. */
  labels: Int32Array;
  /** [2N·T] 1 on real tokens, 0 on padding. */
  mask: Float32Array;
}

/** Renders a conversation into the text before the answer (a chat template with the generation prompt). */
export type RenderPrompt = (messages: ChatMessage[]) => string;

/** Plain rendering of a conversation prompt when no template is given: `role: content` lines, then `assistant: `. */
export function plainPrompt(messages: ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant: ';
}

export interface EncodePairOptions {
  /**
   * For conversational prompts: the text of an assistant answer as the chat template writes it
   * after the generation prompt (e.g. ChatML's `${text}<|im_end|>\n`), so DPO trains the same
   * turn ending that generation stops at. Default: the text as is.
   */
  renderCompletion?: (text: string) => string;
  /** Append the tokenizer's eos to each completion (TRL does). Default true. */
  eos?: boolean;
}

/**
 * Tokenise one pair: prompt and each completion are encoded separately and concatenated
 * (prompt + completion + eos, as TRL does, so the boundary never merges across the two). A
 * conversational prompt is rendered by `renderPrompt` (the chat template with its generation
 * prompt), or by plainPrompt when null. When a sequence is longer than maxLength the prompt loses
 * tokens from its start (keeping at least half of maxLength when the completion is long) and then
 * the completion from its end.
 */
export function encodePreferencePair(tok: Pick<Tokenizer, 'encode' | 'eosTokenId'>, renderPrompt: RenderPrompt | null,
  pair: PreferencePair, maxLength: number, opts: EncodePairOptions = {}): EncodedPair {
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new Error(`DPO: maxLength must be an integer ≥ 2, got ${maxLength}`);
  const chat = typeof pair.prompt !== 'string';
  const text = typeof pair.prompt === 'string' ? pair.prompt : (renderPrompt ?? plainPrompt)(pair.prompt);
  const answer = (t: string): string => (chat && opts.renderCompletion ? opts.renderCompletion(t) : t);
  const prompt = tok.encode(text, { addSpecialTokens: false });
  const eos = tok.eosTokenId === undefined || opts.eos === false ? [] : [tok.eosTokenId];
  const chosen = [...tok.encode(answer(pair.chosen), { addSpecialTokens: false }), ...eos];
  const rejected = [...tok.encode(answer(pair.rejected), { addSpecialTokens: false }), ...eos];
  if (chosen.length === 0 || rejected.length === 0) throw new Error('DPO: a completion encodes to no tokens');
  const longest = Math.max(chosen.length, rejected.length);
  // One prompt cut for both sequences, so they compare answers to the same context.
  const keepPrompt = prompt.length + longest <= maxLength ? prompt.length
    : Math.min(prompt.length, Math.max(maxLength - longest, Math.floor(maxLength / 2)));
  const p = prompt.slice(prompt.length - keepPrompt);
  const seq = (c: number[]): EncodedSequence => {
    const cut = c.slice(0, maxLength - p.length);
    return { ids: [...p, ...cut], labels: [...p.map(() => -100), ...cut] };
  };
  return { chosen: seq(chosen), rejected: seq(rejected), truncated: keepPrompt < prompt.length || p.length + longest > maxLength };
}

/** Right-pad the pairs' sequences into one batch (chosen rows first, then rejected). */
export function collatePreferences(pairs: readonly EncodedPair[], padId: number): PreferenceBatch {
  if (pairs.length === 0) throw new Error('DPO: empty batch');
  const seqs = [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];
  const T = Math.max(...seqs.map((s) => s.ids.length));
  const ids = new Int32Array(seqs.length * T).fill(padId), labels = new Int32Array(seqs.length * T).fill(-100), mask = new Float32Array(seqs.length * T);
  seqs.forEach((s, r) => {
    ids.set(s.ids, r * T);
    labels.set(s.labels, r * T);
    mask.fill(1, r * T, r * T + s.ids.length);
  });
  return { pairs: pairs.length, length: T, ids, labels, mask };
}

/**
 * Log-probability of each row's label tokens, [2N]: Σ_t log p(labels[t+1] | ids ≤ t) over label
 * tokens (the causal shift of the model's own loss), or the mean over them with `average`.
 * Differentiable. Only label positions go through the LM head (logitsAt); padding is masked out
 * of attention.
 */
export function sequenceLogps(model: LanguageModel, batch: PreferenceBatch, opts: { average?: boolean } = {}): Tensor {
  if (model.kind !== 'causal') throw new Error(`DPO needs a causal language model; this one is a ${model.kind} LM (model_type ${model.modelType})`);
  const R = batch.pairs * 2, T = batch.length;
  const rows: number[] = [], targets: number[] = [], owner: number[] = [], count = new Array<number>(R).fill(0);
  for (let r = 0; r < R; r++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = batch.labels[r * T + t + 1];
      if (y === -100) continue;
      rows.push(r * T + t); targets.push(y); owner.push(r); count[r]++;
    }
  }
  const empty = count.findIndex((c) => c === 0);
  if (empty >= 0) throw new Error(`DPO: sequence ${empty} of the batch has no completion tokens (only a prompt)`);
  const n = rows.length;
  const logits = logitsAt(model, O.fromData(batch.ids, [R, T]), rows, { attentionMask: O.fromData(batch.mask, [R, T]) });
  const nll = O.crossEntropy(logits, O.fromData(Int32Array.from(targets), [n]), { reduction: 'none' });
  // Per-row sums as one product with a [R, n] selection matrix (1, or 1/count to average).
  const sel = new Float32Array(R * n);
  owner.forEach((r, j) => { sel[r * n + j] = opts.average ? 1 / count[r] : 1; });
  return O.neg(O.reshape(O.matmul(O.fromData(sel, [R, n]), O.reshape(nll, [n, 1])), [R]));
}

/**
 * log σ(x) = −log(1 + e^{−x}) = −(m + log(e^{−m} + e^{−x−m})) with m = max(−x, 0) taken as a
 * constant (the log-sum-exp shift): no overflow, and the exact gradient 1 − σ(x) everywhere (a
 * relu/abs form has a zero subgradient at x = 0, exactly where DPO starts: policy = reference).
 */
function logSigmoid(x: Tensor): Tensor {
  const y = O.neg(x);
  const m = y.toArray().map((v) => Math.max(v, 0));
  const shift = O.tensor(m, y.shape), expNegShift = O.tensor(m.map((v) => Math.exp(-v)), y.shape);
  return O.neg(O.add(shift, O.log(O.add(expNegShift, O.exp(O.sub(y, shift))))));
}

function checkOptions(o: DpoOptions): Required<DpoOptions> {
  const lossType = o.lossType ?? 'sigmoid', eps = o.labelSmoothing ?? 0;
  if (!(Number.isFinite(o.beta) && o.beta > 0)) throw new Error(`DPO: beta must be a number > 0, got ${o.beta}`);
  if (!(eps >= 0 && eps <= 0.5)) throw new Error(`DPO: label smoothing must be in [0, 0.5], got ${eps}`);
  if (lossType !== 'sigmoid' && lossType !== 'ipo') throw new Error(`DPO: loss type must be sigmoid or ipo, got ${String(lossType)}`);
  if (lossType === 'ipo' && eps !== 0) throw new Error('DPO: label smoothing applies to the sigmoid loss only, not ipo');
  return { beta: o.beta, labelSmoothing: eps, lossType };
}

const asTensor = (x: Tensor | ArrayLike<number>): Tensor => ('shape' in x && 'dtype' in x ? x as Tensor : O.tensor(Array.from(x as ArrayLike<number>)));
const values = (x: Tensor | ArrayLike<number>): number[] => ('shape' in x && 'dtype' in x ? (x as Tensor).toArray() : Array.from(x as ArrayLike<number>));
const meanOf = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;

/**
 * The DPO loss (batch mean) from per-pair sequence log-probabilities [N] of the policy
 * (differentiable) and the reference (constants), with TRL's metrics.
 */
export function dpoLoss(policyChosen: Tensor, policyRejected: Tensor, refChosen: Tensor | ArrayLike<number>, refRejected: Tensor | ArrayLike<number>,
  opts: DpoOptions): { loss: Tensor; metrics: DpoMetrics } {
  const { beta, labelSmoothing: eps, lossType } = checkOptions(opts);
  const N = policyChosen.size;
  for (const [k, t] of [['policy rejected', policyRejected.size], ['reference chosen', values(refChosen).length], ['reference rejected', values(refRejected).length]] as const) {
    if (t !== N) throw new Error(`DPO: ${k} log-probabilities have ${t} entries, policy chosen ${N}`);
  }
  const rc = noGrad(() => asTensor(refChosen)), rr = noGrad(() => asTensor(refRejected));
  const pc = O.reshape(policyChosen, [N]), pr = O.reshape(policyRejected, [N]);
  // h = (π_c − ref_c) − (π_r − ref_r)
  const h = O.sub(O.sub(pc, O.reshape(rc, [N])), O.sub(pr, O.reshape(rr, [N])));
  let losses: Tensor;
  if (lossType === 'ipo') {
    // IPO: (h − 1/(2β))²
    losses = O.pow(O.addScalar(h, -1 / (2 * beta)), 2);
  } else {
    // cDPO: −(1−ε)·log σ(βh) − ε·log σ(−βh); ε = 0 is the DPO loss.
    const bh = O.scale(h, beta);
    losses = O.scale(logSigmoid(bh), -(1 - eps));
    if (eps > 0) losses = O.sub(losses, O.scale(logSigmoid(O.neg(bh)), eps));
  }
  const loss = O.mean(losses);
  const vpc = values(pc), vpr = values(pr), vrc = values(refChosen), vrr = values(refRejected);
  const chosenR = vpc.map((v, i) => beta * (v - vrc[i])), rejectedR = vpr.map((v, i) => beta * (v - vrr[i]));
  const metrics: DpoMetrics = {
    'rewards/chosen': meanOf(chosenR),
    'rewards/rejected': meanOf(rejectedR),
    'rewards/accuracies': meanOf(chosenR.map((c, i) => (c > rejectedR[i] ? 1 : 0))),
    'rewards/margins': meanOf(chosenR.map((c, i) => c - rejectedR[i])),
    'logps/chosen': meanOf(vpc),
    'logps/rejected': meanOf(vpr),
  };
  return { loss, metrics };
}

/** Reference log-probabilities of a batch: [2N], chosen rows then rejected rows. */
export type ReferenceLogps = (batch: PreferenceBatch, average: boolean) => Float32Array;

/** Log-probabilities under `model` as constants: no gradients, dropout off (restored after). */
export function referenceLogps(model: LanguageModel, batch: PreferenceBatch, average = false): Float32Array {
  const was = model.training;
  model.eval();
  try {
    return tidy(() => noGrad(() => Float32Array.from(sequenceLogps(model, batch, { average }).toArray())));
  } finally { model.train(was); }
}

/** A frozen model as the reference. */
export function modelReference(model: LanguageModel): ReferenceLogps {
  return (batch, average) => referenceLogps(model, batch, average);
}

/** The policy itself with its adapters off as the reference (a PeftModel: no second copy of the base). */
export function adapterOffReference(peft: LanguageModel & { withoutAdapters<T>(fn: () => T): T }): ReferenceLogps {
  return (batch, average) => peft.withoutAdapters(() => referenceLogps(peft, batch, average));
}

/**
 * One DPO micro-step: the policy's log-probabilities (with gradients) against the reference's,
 * loss and metrics. The returned loss is ready for backward(); call it inside the training loop's
 * microStep (which runs in a tidy scope).
 */
export function dpoStep(policy: LanguageModel, reference: LanguageModel | ReferenceLogps, batch: PreferenceBatch, opts: DpoOptions): { loss: Tensor; metrics: DpoMetrics } {
  const average = checkOptions(opts).lossType === 'ipo';
  const ref = typeof reference === 'function' ? reference(batch, average) : referenceLogps(reference, batch, average);
  const N = batch.pairs;
  if (ref.length !== 2 * N) throw new Error(`DPO: the reference gave ${ref.length} log-probabilities for ${2 * N} sequences`);
  const logps = sequenceLogps(policy, batch, { average });
  return dpoLoss(O.narrow(logps, 0, 0, N), O.narrow(logps, 0, N, N), ref.subarray(0, N), ref.subarray(N), opts);
}

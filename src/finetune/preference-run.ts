// `icld finetune --objective dpo`: DPO on preference pairs through the one training loop. The
// reference is the frozen base: with an adapter, the policy itself with its adapters switched off
// (PEFT's trick: no second copy of the weights); with full fine-tuning, a second frozen load.

import { loadModel } from '../models/index.js';
import type { ChatMessage } from '../data/chat.js';
import { readPreferenceFile } from '../data/preference.js';
import { templateTokenVars } from '../data/chat-encode.js';
import { renderChatTemplate } from '../tokenizers/index.js';
import { Trainer, checkPosition, checkRngState, type TrainerState } from '../train/trainer.js';
import { adapterOffReference, collatePreferences, dpoStep, encodePreferencePair, modelReference, type DpoOptions, type EncodedPair, type ReferenceLogps } from './dpo.js';
import { EpochOrder, FINETUNE_DEFAULTS, countParams, trainConfigFor, weightHooks, trainableSummary, type FinetuneOptions, type FinetuneResult, type PreparedModel } from './finetune.js';
import { endOfTurnId } from './chat-generate.js';
import { noGrad, tidy } from '../engine/index.js';

export function trainablePreference(o: FinetuneOptions, prep: PreparedModel, resumeDir: string | null, log: (s: string) => void): FinetuneResult {
  const { model, peft, tokenizer: tok, template } = prep;
  if (model.kind !== 'causal') throw new Error(`--objective dpo needs a causal language model; ${o.model} is a ${model.kind} LM (model_type ${model.modelType})`);
  const maxLength = Math.min(o.maxLength ?? FINETUNE_DEFAULTS.maxLength, model.maxPositions);
  // Conversational prompts go through the chat template (with the generation prompt); each
  // completion then ends with the template's end-of-turn token instead of the end-of-text.
  const vars = templateTokenVars(tok);
  const render = (messages: ChatMessage[]): string => renderChatTemplate(template, { ...vars, messages, add_generation_prompt: true });
  const eot = endOfTurnId(tok, template, model.eosTokenId);
  // The template's text after an answer (ChatML: '<|im_end|>\n'), found by rendering a probe turn.
  const probe: ChatMessage[] = [{ role: 'user', content: 'x' }];
  const open = render(probe), marker = '\u0000ANSWER\u0000';
  const closed = renderChatTemplate(template, { ...vars, messages: [...probe, { role: 'assistant', content: marker }], add_generation_prompt: false });
  const at = closed.indexOf(marker);
  if (!closed.startsWith(open) || at < 0) throw new Error('--objective dpo: the chat template does not render an answer after its generation prompt; give --chat-template');
  const ending = closed.slice(at + marker.length);
  const renderCompletion = (t: string): string => closed.slice(open.length, at) + t + ending;
  const encodeFile = (path: string, what: string): EncodedPair[] => {
    const pairs = readPreferenceFile(path);
    const out = pairs.map((p, i) => {
      const chat = typeof p.prompt !== 'string';
      try { return encodePreferencePair(tok, render, p, maxLength, chat ? { renderCompletion, eos: false } : {}); } catch (e) { throw new Error(`${path}: record ${i}: ${(e as Error).message}`); }
    });
    log(`${what} ${path}: ${out.length} preference pairs, ${out.filter((p) => p.truncated).length} truncated to ${maxLength} tokens`);
    return out;
  };
  const train = encodeFile(o.data, 'data');
  const evalPairs = o.evalData ? encodeFile(o.evalData, 'eval data') : null;
  const B = o.batchSize ?? FINETUNE_DEFAULTS.batchSize;
  const accum = o.gradAccum ?? FINETUNE_DEFAULTS.gradAccum;
  const stepsPerEpoch = Math.max(1, Math.ceil(train.length / (B * accum)));
  const steps = o.steps ?? (o.epochs ?? FINETUNE_DEFAULTS.epochs) * stepsPerEpoch;
  const cfg = trainConfigFor(o, steps, stepsPerEpoch, !!evalPairs);
  const dpo: DpoOptions = { beta: o.beta ?? FINETUNE_DEFAULTS.beta, labelSmoothing: o.labelSmoothing ?? 0, lossType: o.lossType ?? 'sigmoid' };
  let reference: ReferenceLogps;
  if (peft) reference = adapterOffReference(peft);
  else {
    const ref = loadModel(o.model);
    if (ref.vocabSize < model.vocabSize) ref.resizeTokenEmbeddings(model.vocabSize);
    // The same mean-resized rows as the policy started with: copy them over.
    ref.inputEmbeddings().f32.set(prep.base.inputEmbeddings().f32);
    ref.requiresGrad(false);
    reference = modelReference(ref);
  }
  const { trainable, all } = countParams(model, prep.frozenRows);
  log(trainableSummary(model, prep.frozenRows));
  log(`DPO: β ${dpo.beta}, loss ${dpo.lossType}${dpo.labelSmoothing ? `, label smoothing ${dpo.labelSmoothing}` : ''}; reference = the frozen base${peft ? ' (the policy with its adapter off)' : ''}`);
  const padId = tok.padTokenId ?? eot ?? 0;
  const order = new EpochOrder(train.length, cfg.seed);
  // Metrics averaged over the micro-steps since the last log line.
  const acc: Record<string, number> = {};
  let accN = 0;
  const meanLen = train.reduce((s, p) => s + p.chosen.ids.length + p.rejected.ids.length, 0) / train.length;
  const trainer = new Trainer(model, cfg, {
    tokensPerStep: Math.round(B * accum * meanLen),
    microStep: () => {
      const batch = collatePreferences(order.next(B).map((i) => train[i]), padId);
      const { loss, metrics } = dpoStep(model, reference, batch, dpo);
      for (const [k, v] of Object.entries(metrics)) acc[k] = (acc[k] ?? 0) + v;
      accN++;
      return loss;
    },
    logMetrics: () => {
      const m: Record<string, number> = {};
      for (const [k, v] of Object.entries(acc)) { m[k] = v / Math.max(1, accN); delete acc[k]; }
      accN = 0;
      return m;
    },
    evaluate: evalPairs ? () => evalDpo(evalPairs, B, padId, model, reference, dpo) : undefined,
    ...weightHooks(prep),
    getState: () => ({ data: { ...order.state }, dropout_rng: model.rng.getState() }),
    setState: (s) => {
      order.state = checkPosition(s.data, 'data');
      model.rng.setState(checkRngState(s.dropout_rng, 'dropout_rng'));
    },
  }, o.out, log);
  if (resumeDir) trainer.resume(resumeDir);
  const state: TrainerState = trainer.run();
  const lastLog = state.log_history[state.log_history.length - 1];
  return {
    out: o.out, method: o.method, objective: 'dpo', trainable_params: trainable, all_params: all,
    examples: train.length, eval_examples: evalPairs?.length ?? 0, truncated: train.filter((p) => p.truncated).length, dropped: 0,
    added_tokens: prep.addedTokens, steps: state.global_step, final_loss: lastLog?.loss ?? NaN,
    final_eval: state.eval_history.length ? state.eval_history[state.eval_history.length - 1] : null, state,
  };
}

/** Mean DPO loss and metrics over every eval pair. */
function evalDpo(pairs: EncodedPair[], B: number, padId: number, model: FinetuneModel, reference: ReferenceLogps, dpo: DpoOptions): Record<string, number> {
  const sums: Record<string, number> = {};
  let n = 0;
  noGrad(() => {
    for (let i = 0; i < pairs.length; i += B) {
      const chunk = pairs.slice(i, i + B);
      const batch = collatePreferences(chunk, padId);
      tidy(() => {
        const { loss, metrics } = dpoStep(model, reference, batch, dpo);
        const all: Record<string, number> = { loss: loss.item(), ...(metrics as unknown as Record<string, number>) };
        for (const [k, v] of Object.entries(all)) sums[k] = (sums[k] ?? 0) + v * chunk.length;
      });
      n += chunk.length;
    }
  });
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(sums)) out[k] = v / Math.max(1, n);
  return out;
}

type FinetuneModel = PreparedModel['model'];

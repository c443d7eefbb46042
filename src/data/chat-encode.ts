// Conversations → training examples through a chat template (DESIGN §3).
//
// The text an assistant turn must produce is found by rendering prefixes, as TRL/LLaMA-Factory
// reason about it: for turn i, render(messages[:i], add_generation_prompt=true) is the prompt the
// model sees and render(messages[:i+1]) ends where the turn ends; the difference (content plus the
// end-of-turn marker, e.g. "…<|im_end|>\n") is learned. The full render is cut at those boundaries
// and each piece tokenised on its own, so ids are exact concatenations and labels (−100 outside
// assistant pieces) line up exactly. A template whose prefixes do not nest this way is rejected
// with a one-line error naming the turn.

import type { Tokenizer } from '../tokenizers/types.js';
import { compileChatTemplate, type ChatTemplate } from '../tokenizers/chat-template.js';
import type { ChatMessage, ChatRecord } from './chat.js';

/** Label of tokens the loss ignores (PyTorch's CrossEntropyLoss ignore_index). */
export const IGNORE_INDEX = -100;

export interface EncodeChatOptions {
  /** Longest example in tokens; longer ones are cut. */
  maxLength: number;
  /** Which end is cut: 'right' (default) keeps the start, 'left' keeps the end. */
  truncation?: 'right' | 'left';
}
export interface ChatExample { ids: number[]; labels: number[]; truncated: boolean }
export interface ChatDatasetStats {
  records: number;
  /** Examples cut to maxLength (kept or not). */
  truncated: number;
  /** Examples dropped because truncation removed every assistant token. */
  droppedNoLabel: number;
  /** Tokens and learned (assistant) tokens over the kept examples. */
  tokens: number;
  labelTokens: number;
}

/** bos_token / eos_token strings the template may use, from the tokenizer's role ids. */
export function templateTokenVars(tok: Tokenizer): { bos_token?: string; eos_token?: string } {
  const name = (id: number | undefined) => (id === undefined ? undefined : tok.idToToken(id));
  const out: { bos_token?: string; eos_token?: string } = {};
  const bos = name(tok.bosTokenId), eos = name(tok.eosTokenId);
  if (bos !== undefined) out.bos_token = bos;
  if (eos !== undefined) out.eos_token = eos;
  return out;
}

/**
 * The messages and extra variables a template is rendered with. Tools go to the template as the
 * `tools` variable when it reads one; otherwise their JSON text joins the system turn (appended to
 * a leading system message after a blank line, or as a new first system message), so the model
 * still sees the schemas.
 */
export function templateInputs(template: ChatTemplate, messages: readonly ChatMessage[], tools?: string): { messages: ChatMessage[]; extra: Record<string, unknown> } {
  const msgs = messages.map((m) => ({ role: m.role, content: m.content }));
  if (tools === undefined) return { messages: msgs, extra: {} };
  if (template.names.has('tools')) return { messages: msgs, extra: { tools: JSON.parse(tools) as unknown } };
  if (msgs.length > 0 && msgs[0].role === 'system') msgs[0] = { role: 'system', content: `${msgs[0].content}\n\n${tools}` };
  else msgs.unshift({ role: 'system', content: tools });
  return { messages: msgs, extra: {} };
}

const encodePiece = (tok: Tokenizer, text: string): number[] => (text === '' ? [] : tok.encode(text, { addSpecialTokens: false }));

function checkOpts(opts: EncodeChatOptions): void {
  if (!Number.isInteger(opts.maxLength) || opts.maxLength < 1) throw new Error(`encodeChat: maxLength must be a positive integer, got ${opts.maxLength}`);
  if (opts.truncation !== undefined && opts.truncation !== 'right' && opts.truncation !== 'left') throw new Error(`encodeChat: truncation must be 'right' or 'left', got ${String(opts.truncation)}`);
}

/**
 * One conversation → ids and labels (−100 except on assistant turns), cut to opts.maxLength.
 * Template errors (and raise_exception) come out as one-line errors.
 */
export function encodeChat(tok: Tokenizer, template: string, record: ChatRecord, opts: EncodeChatOptions): ChatExample {
  checkOpts(opts);
  const tpl = compileChatTemplate(template);
  const { messages, extra } = templateInputs(tpl, record.messages, record.tools);
  const base = { ...templateTokenVars(tok), ...extra };
  const render = (msgs: ChatMessage[], gen: boolean) => tpl.render({ ...base, messages: msgs, add_generation_prompt: gen });
  const full = render(messages, false);
  // Character spans [start, end) of what each assistant turn produces.
  const spans: [number, number][] = [];
  let prevEnd = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const prompt = render(messages.slice(0, i), true);
    const upto = render(messages.slice(0, i + 1), false);
    if (!upto.startsWith(prompt)) {
      throw new Error(`chat template: rendering messages[0..${i}] does not start with the generation prompt for messages[${i}] (the template must render a conversation prefix + add_generation_prompt as the start of the next assistant turn)`);
    }
    if (!full.startsWith(upto)) {
      throw new Error(`chat template: the render of messages[0..${i}] is not a prefix of the whole conversation's (does the template look ahead, e.g. at loop.last or later messages?)`);
    }
    if (prompt.length < prevEnd) throw new Error(`chat template: the generation prompt for messages[${i}] overlaps the previous assistant turn`);
    if (upto.length > prompt.length) spans.push([prompt.length, upto.length]);
    prevEnd = upto.length;
  }
  const ids: number[] = [], labels: number[] = [];
  let pos = 0;
  const push = (text: string, learn: boolean) => {
    const piece = encodePiece(tok, text);
    for (const id of piece) { ids.push(id); labels.push(learn ? id : IGNORE_INDEX); }
  };
  let rebuilt = '';
  for (const [a, b] of spans) {
    push(full.slice(pos, a), false);
    push(full.slice(a, b), true);
    rebuilt += full.slice(pos, a) + full.slice(a, b);
    pos = b;
  }
  push(full.slice(pos), false);
  rebuilt += full.slice(pos);
  if (rebuilt !== full) throw new Error('chat template: the pieces cut at assistant turns do not rebuild the full render');
  const truncated = ids.length > opts.maxLength;
  if (truncated) {
    const keep = (xs: number[]) => ((opts.truncation ?? 'right') === 'right' ? xs.slice(0, opts.maxLength) : xs.slice(xs.length - opts.maxLength));
    return { ids: keep(ids), labels: keep(labels), truncated };
  }
  return { ids, labels, truncated };
}

/**
 * Every record encoded; an example whose assistant tokens were all cut away is dropped and
 * counted. Errors name the record (`where` prefixes them: a file name).
 */
export function encodeChatDataset(tok: Tokenizer, template: string, records: readonly ChatRecord[], opts: EncodeChatOptions, where = 'chat data'): { examples: ChatExample[]; stats: ChatDatasetStats } {
  checkOpts(opts);
  compileChatTemplate(template); // syntax errors once, before any record
  const examples: ChatExample[] = [];
  const stats: ChatDatasetStats = { records: records.length, truncated: 0, droppedNoLabel: 0, tokens: 0, labelTokens: 0 };
  records.forEach((rec, i) => {
    let ex: ChatExample;
    try { ex = encodeChat(tok, template, rec, opts); } catch (e) { throw new Error(`${where}: record ${i}: ${(e as Error).message}`); }
    if (ex.truncated) stats.truncated++;
    const learned = ex.labels.reduce((n, l) => n + (l === IGNORE_INDEX ? 0 : 1), 0);
    if (learned === 0) { stats.droppedNoLabel++; return; }
    stats.tokens += ex.ids.length;
    stats.labelTokens += learned;
    examples.push(ex);
  });
  return { examples, stats };
}

/** Ids of the prompt for generating the next assistant turn (add_generation_prompt on). */
export function chatPrompt(tok: Tokenizer, template: string, messages: readonly ChatMessage[], tools?: string): number[] {
  const tpl = compileChatTemplate(template);
  const inp = templateInputs(tpl, messages, tools);
  return encodePiece(tok, tpl.render({ ...templateTokenVars(tok), ...inp.extra, messages: inp.messages, add_generation_prompt: true }));
}

/**
 * Adds a family's chat tokens (e.g. <|im_start|>, <|im_end|>) as special tokens; returns how many
 * new ids appeared (the caller then resizes the model's embeddings to tok.vocabSize).
 */
export function ensureChatTokens(tok: Tokenizer, specialTokens: readonly string[]): { added: number } {
  if (specialTokens.length === 0) return { added: 0 };
  const before = tok.vocabSize;
  tok.addSpecialTokens([...specialTokens]);
  return { added: tok.vocabSize - before };
}

// The one prompt builder, used by ICL evaluation, in-context tuning and distillation.
//
// Default (direct) template, as in MetaICL's newline format:
//   demo    = input + "\n" + output
//   prompt  = demo_1 + "\n\n" + … + demo_k + "\n\n" + query_input + "\n"
//   scored  = option (the continuation of the prompt)
// Channel flips each pair: demo = output + "\n" + input, and the scored continuation is the
// query input given "… + option + \n".
//
// Tokenisation is per piece (head, each demo with its separator, query, continuation) and the
// ids are concatenated, so a demonstration block always tokenises the same way whatever follows
// it: that makes shared-prefix caching exact and truncation a matter of dropping whole pieces.

import type { Example } from './tasks.js';

export interface Template {
  /** Text before the first demonstration (e.g. an instruction); followed by demoSep. */
  instruction: string;
  inputPrefix: string;
  outputPrefix: string;
  /** Between an input and its output. */
  ioSep: string;
  /** Between demonstrations, and between the last demonstration and the query. */
  demoSep: string;
  /** Maps a gold output/option to the text that is shown and scored. */
  verbalizers: Record<string, string>;
}

export const defaultTemplate: Template = { instruction: '', inputPrefix: '', outputPrefix: '', ioSep: '\n', demoSep: '\n\n', verbalizers: {} };

export function makeTemplate(p: Partial<Template> = {}): Template {
  return { ...defaultTemplate, ...p, verbalizers: { ...(p.verbalizers ?? {}) } };
}

export type Method = 'direct' | 'channel';

/** A prompt as pieces of text; prompt string = head + demos.join('') + query, scored = continuation. */
export interface PromptPieces {
  head: string;
  demos: string[];
  query: string;
  continuation: string;
}

export function verbalize(t: Template, output: string): string { return t.verbalizers[output] ?? output; }

/**
 * Pieces for scoring `option` as the answer to `query` after `demos`.
 * direct: continuation = option; channel: continuation = the query input.
 */
export function buildPrompt(t: Template, demos: readonly Example[], query: Example, option: string, method: Method = 'direct'): PromptPieces {
  const head = t.instruction ? t.instruction + t.demoSep : '';
  if (method === 'direct') {
    return {
      head,
      demos: demos.map((d) => t.inputPrefix + d.input + t.ioSep + t.outputPrefix + verbalize(t, d.output) + t.demoSep),
      query: t.inputPrefix + query.input + t.ioSep + t.outputPrefix,
      continuation: verbalize(t, option),
    };
  }
  return {
    head,
    demos: demos.map((d) => t.outputPrefix + verbalize(t, d.output) + t.ioSep + t.inputPrefix + d.input + t.demoSep),
    query: t.outputPrefix + verbalize(t, option) + t.ioSep + t.inputPrefix,
    continuation: query.input,
  };
}

export function promptString(p: PromptPieces): string { return p.head + p.demos.join('') + p.query; }

export interface Tokenizer { encode(text: string, opts?: { addSpecialTokens?: boolean }): number[]; }

export interface TokenizedPrompt {
  /** head + kept demonstrations (shared by every option/query of the same demo set). */
  prefix: number[];
  /** query ids followed by continuation ids. */
  suffix: number[];
  /** index in `suffix` where the continuation starts. */
  contStart: number;
  /** demonstrations kept (from the end of the list: the ones nearest the query). */
  demosKept: number;
  /** true when any demonstration was shortened or dropped, or the query was cut. */
  truncated: boolean;
}

export interface TruncateOptions {
  /** Total token budget (the model's context). */
  maxLength: number;
  /** Each demonstration is cut to at most this many tokens first (from its start, keeping the answer). */
  maxDemoTokens?: number;
}

/** Memoising encoder: demonstrations repeat across every test example of a seed. */
export class PieceEncoder {
  private cache = new Map<string, number[]>();
  constructor(private readonly tok: Tokenizer, private readonly limit = 20000) {}
  encode(s: string): number[] {
    if (s === '') return [];
    let ids = this.cache.get(s);
    if (!ids) {
      ids = this.tok.encode(s, { addSpecialTokens: false });
      if (this.cache.size >= this.limit) this.cache.clear();
      this.cache.set(s, ids);
    }
    return ids;
  }
}

/**
 * Tokenise pieces and fit them in the budget: the query and continuation stay whole; long
 * demonstrations are shortened (their input's left part is dropped, the separator and answer
 * kept), then demonstrations are dropped from the front until everything fits. If the query and
 * continuation alone exceed the budget, the query is cut from the left.
 */
/** The continuation alone (an answer, or in channel order the query's input) exceeds the context. */
export class ContinuationTooLongError extends Error {}

export function tokenizePrompt(enc: PieceEncoder, p: PromptPieces, o: TruncateOptions): TokenizedPrompt {
  let truncated = false;
  const head = enc.encode(p.head);
  let query = enc.encode(p.query);
  const cont = enc.encode(p.continuation);
  if (cont.length === 0) throw new Error('prompt: empty continuation (an option or answer tokenised to nothing)');
  if (cont.length >= o.maxLength) throw new ContinuationTooLongError(`prompt: a continuation of ${cont.length} tokens does not fit the context of ${o.maxLength}`);
  if (query.length + cont.length > o.maxLength) { query = query.slice(query.length + cont.length - o.maxLength); truncated = true; }
  let demos = p.demos.map((d) => enc.encode(d));
  if (o.maxDemoTokens !== undefined) {
    demos = demos.map((d) => {
      if (d.length <= o.maxDemoTokens!) return d;
      truncated = true;
      return d.slice(d.length - o.maxDemoTokens!);
    });
  }
  let budget = o.maxLength - query.length - cont.length;
  let headUse = head.length <= budget ? head : [];
  if (headUse !== head) truncated = true;
  budget -= headUse.length;
  // Keep demonstrations nearest the query.
  let used = 0, first = demos.length;
  while (first > 0 && used + demos[first - 1].length <= budget) { first--; used += demos[first].length; }
  if (first > 0) truncated = true;
  const prefix = headUse.concat(...demos.slice(first));
  if (prefix.length === 0 && query.length === 0) {
    // Nothing precedes the continuation: score it after nothing is impossible, so the caller must
    // give a non-empty query (the default template always ends the query with ioSep).
    throw new Error('prompt: nothing precedes the continuation; use a template with a non-empty query');
  }
  return { prefix, suffix: query.concat(cont), contStart: query.length, demosKept: demos.length - first, truncated };
}

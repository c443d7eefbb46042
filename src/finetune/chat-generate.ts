// Chat generation setup shared by `icld generate --chat`, the knowledge-update evaluation and the
// server: the prompt ids from the model's chat template, and the token that ends an assistant turn.

import { modelFamily, type LanguageModel } from '../models/index.js';
import type { Tokenizer } from '../tokenizers/index.js';
import type { ChatMessage } from '../data/chat.js';
import { chatPrompt, encodeChat } from '../data/chat-encode.js';
import { IGNORE_INDEX } from '../data/mlm.js';

/** The chat template a model uses: its tokenizer's (tokenizer_config.json), else its family's default. */
export function chatTemplateOf(model: LanguageModel, tok: Tokenizer): { template: string; fromFamily: boolean } {
  if (tok.chatTemplate) return { template: tok.chatTemplate, fromFamily: false };
  return { template: modelFamily(model.modelType).chat.template, fromFamily: true };
}

/**
 * The id that closes an assistant turn under `template`: the first special token the template
 * puts after an assistant's text (ChatML's <|im_end|>), else the tokenizer's end-of-text.
 */
export function endOfTurnId(tok: Tokenizer, template: string, fallback: number | null): number | null {
  const probe = 'ok';
  const ex = encodeChat(tok, template, { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: probe }] }, { maxLength: 1 << 20 });
  for (let i = 0; i < ex.ids.length; i++) if (ex.labels[i] !== IGNORE_INDEX && tok.isSpecialId(ex.ids[i])) return ex.ids[i];
  return tok.eosTokenId ?? fallback;
}

export function chatGenerationSetup(model: LanguageModel, tok: Tokenizer, messages: ChatMessage[]): { ids: number[]; eosTokenId: number | null; template: string } {
  const { template } = chatTemplateOf(model, tok);
  return { ids: chatPrompt(tok, template, messages), eosTokenId: endOfTurnId(tok, template, model.eosTokenId), template };
}

// The tokenizer interface every pipeline takes (byte-level BPE and WordPiece implement it).

export interface EncodeOpts {
  /** Add the post-processor's special tokens ([CLS] … [SEP] for BERT; none for GPT-2). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOpts {
  /** Drop special tokens ([CLS], [SEP], [PAD], <|endoftext|>…) from the text. */
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  readonly type: 'bpe' | 'wordpiece';
  /** Number of ids (base vocabulary + added tokens). */
  readonly vocabSize: number;
  /** Role ids, when the tokenizer has such a token (tokenizer_config.json / special_tokens_map.json or well-known spellings). */
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
  unkTokenId?: number;
  clsTokenId?: number;
  sepTokenId?: number;
  maskTokenId?: number;
  /** tokenizer_config.json's model_max_length when given (and sane). */
  modelMaxLength?: number;
  /** Jinja chat template (tokenizer_config.json's chat_template; written back by save()). */
  chatTemplate?: string;
  /**
   * Adds special tokens (HF add_special_tokens): tokens already present are only marked special,
   * new ones get the next free ids (vocabSize grows). Returns the ids, in order.
   */
  addSpecialTokens(tokens: string[]): number[];
  encode(text: string, opts?: EncodeOpts): number[];
  decode(ids: number[], opts?: DecodeOpts): string;
  /** Token strings of the ids (as in the vocabulary: 'Ġthe', '##ing'). */
  tokenize(text: string): string[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  isSpecialId(id: number): boolean;
  /**
   * Write tokenizer.json (and what else the family keeps: vocab.txt, tokenizer_config.json) into `dir`;
   * tokenizer_config.json carries chat_template when one is set. Returns tokenizer.json's path.
   */
  save(dir: string): string;
}

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
  encode(text: string, opts?: EncodeOpts): number[];
  decode(ids: number[], opts?: DecodeOpts): string;
  /** Token strings of the ids (as in the vocabulary: 'Ġthe', '##ing'). */
  tokenize(text: string): string[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  isSpecialId(id: number): boolean;
  /** Write tokenizer.json (and what else the family keeps: vocab.txt) into `dir`; returns tokenizer.json's path. */
  save(dir: string): string;
}

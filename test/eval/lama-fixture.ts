// A tiny LAMA-layout data folder and a tiny random GPT-2 + BPE tokenizer trained on its sentences
// (so most objects are one token) for the LAMA probe tests. Not a test file itself.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BPETokenizer } from '../../src/tokenizers/index.js';
import { createModel, type LanguageModel } from '../../src/models/index.js';
import { fillTemplate, type LamaFact } from '../../src/data/lama.js';

const CITIES = ['Paris', 'London', 'Berlin', 'Rome', 'Madrid', 'Vienna', 'Oslo', 'Dublin', 'Prague', 'Lisbon', 'Warsaw', 'Athens'];
const LANGS = ['French', 'English', 'German', 'Italian', 'Spanish', 'Dutch', 'Polish', 'Greek'];
const PEOPLE = ['Anna', 'Bruno', 'Clara', 'David', 'Elena', 'Felix', 'Greta', 'Hugo', 'Irene', 'Jonas', 'Karla', 'Lukas', 'Mona', 'Nils', 'Olga', 'Paul'];
// Objects that stay several tokens (seen once) or that are left out of the common vocabulary.
export const RARE = ['Xochimilcoqz', 'Ouagadougouvv'];
export const NOT_COMMON = 'Oslo';

export const TEMPLATES: Record<string, string> = {
  P19: '[X] was born in [Y] .',
  P37: 'The official language of [X] is [Y] .',
  P27: '[X] is [Y] citizen .',
};

function facts(rel: string, n: number, off: number): LamaFact[] {
  const objs = rel === 'P37' ? LANGS : CITIES;
  return Array.from({ length: n }, (_, i) => ({ sub: `${PEOPLE[(i + off) % PEOPLE.length]}${rel === 'P37' ? 'land' : ''} ${String.fromCharCode(65 + ((i * 7 + off) % 26))}.`, obj: objs[(i * 5 + off) % objs.length] }));
}

export const TEST: Record<string, LamaFact[]> = {
  P19: [...facts('P19', 10, 0), { sub: 'Quentin Z.', obj: RARE[0] }],
  P37: [...facts('P37', 8, 1), { sub: 'Rareland Q.', obj: RARE[1] }],
  P27: facts('P27', 6, 2),
};
export const TRAIN: Record<string, LamaFact[]> = { P19: facts('P19', 9, 11), P37: facts('P37', 9, 12), P27: facts('P27', 9, 13) };
export const DEV: Record<string, LamaFact[]> = { P19: facts('P19', 3, 21), P37: facts('P37', 3, 22), P27: facts('P27', 3, 23) };
export const GRE: LamaFact[] = facts('P19', 5, 31);
export const COMMON = [...CITIES.filter((c) => c !== NOT_COMMON), ...LANGS, 'the', 'of', RARE[0]];

const jsonl = (xs: object[]): string => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';

/** DIR laid out like data/lama/ with the fixture's relations and facts. */
export function writeLamaDir(dir: string): void {
  mkdirSync(join(dir, 'TREx'), { recursive: true });
  mkdirSync(join(dir, 'Google_RE'), { recursive: true });
  // P999 has a template but no test file: not one of the probed T-REx relations.
  writeFileSync(join(dir, 'relations.jsonl'), jsonl([...Object.entries(TEMPLATES).map(([relation, template]) => ({ relation, template, label: `label ${relation}`, type: 'N-1' })),
    { relation: 'P999', template: '[X] likes [Y] .', label: 'unused', type: 'N-M' }]));
  for (const rel of Object.keys(TEMPLATES)) {
    writeFileSync(join(dir, 'TREx', `${rel}.jsonl`), jsonl(TEST[rel].map((f, i) => ({ sub_label: f.sub, obj_label: f.obj, uuid: `${rel}-${i}` }))));
    mkdirSync(join(dir, 'TREx_train_dev', rel), { recursive: true });
    writeFileSync(join(dir, 'TREx_train_dev', rel, 'train.jsonl'), jsonl(TRAIN[rel].map((f) => ({ sub_label: f.sub, obj_label: f.obj }))));
    writeFileSync(join(dir, 'TREx_train_dev', rel, 'dev.jsonl'), jsonl(DEV[rel].map((f) => ({ sub_label: f.sub, obj_label: f.obj }))));
  }
  writeFileSync(join(dir, 'Google_RE', 'place_of_birth_test.jsonl'), jsonl(GRE.map((f, i) => ({ sub_label: f.sub, obj_label: f.obj, uuid: `g${i}` }))));
  writeFileSync(join(dir, 'common_vocab_cased.txt'), COMMON.join('\n') + '\n');
}

function sentences(): string[] {
  const out: string[] = [];
  for (const rel of Object.keys(TEMPLATES)) for (const f of [...TEST[rel], ...TRAIN[rel], ...DEV[rel]]) if (!RARE.includes(f.obj)) out.push(fillTemplate(TEMPLATES[rel], f.sub, f.obj));
  for (const w of [...CITIES, ...LANGS]) out.push(`in ${w} , ${w} and ${w} .`);
  return out;
}

/** A BPE trained on the fixture sentences; `masked` adds [CLS]/[SEP]/[MASK]/[PAD] and a BERT post-processor. */
export function lamaTokenizer(masked = false): BPETokenizer {
  const specials = masked ? ['[PAD]', '[CLS]', '[SEP]', '[MASK]'] : ['<|endoftext|>'];
  const t = BPETokenizer.train([sentences().join('\n').repeat(4) + '\n' + RARE.join(' ')], { vocabSize: 700, minFrequency: 2, specialTokens: specials });
  if (!masked) return t;
  const j = t.toTokenizerJson() as unknown as Record<string, unknown>;
  j.post_processor = { type: 'BertProcessing', cls: ['[CLS]', t.tokenToId('[CLS]')], sep: ['[SEP]', t.tokenToId('[SEP]')] };
  const m = BPETokenizer.fromTokenizerJson(j);
  m.maskTokenId = m.tokenToId('[MASK]');
  m.clsTokenId = m.tokenToId('[CLS]');
  m.sepTokenId = m.tokenToId('[SEP]');
  return m;
}

export function lamaGpt2(vocabSize: number, seed = 3): LanguageModel {
  const m = createModel('gpt2', { vocab_size: vocabSize, n_positions: 256, n_embd: 16, n_layer: 2, n_head: 2, initializer_range: 0.3 }, seed);
  m.eval();
  return m;
}

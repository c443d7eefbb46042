#!/usr/bin/env python3
"""Golden WordPiece fixtures from Hugging Face's `tokenizers` (an independent implementation).

Writes test/fixtures/wordpiece/:
  vocab.txt        copy of bert-base-cased's vocab.txt (Apache-2.0)
  tokenizer.json   HF's BertWordPieceTokenizer(vocab.txt, lowercase=False) serialised
  golden.json      for each setting (cased; uncased = lowercase + strip accents; lowercase without
                   strip_accents) and each text: ids with and without [CLS]/[SEP], tokens,
                   decode(skip_special_tokens=True); a few pair encodings with type ids.

`tokenizers` is not a project dependency; install it into a private venv:
  python3 -m venv /tmp/tokvenv
  /tmp/tokvenv/bin/pip install --no-index --no-deps /opt/pypi/files/tokenizers-0.22.2-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
  /tmp/tokvenv/bin/python tools/make_wordpiece_fixtures.py [--shared /work/shared/data] [--corpus /work/main/data/corpus]

Also: `--check-saved DIR` loads DIR/tokenizer.json (one we wrote) with HF and compares its
encodings of the golden texts with DIR/encodings.json ({"texts": [...], "ids": [[...]...]}).
"""
import argparse
import json
import os
import shutil
import sys

from tokenizers import BertWordPieceTokenizer, Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'wordpiece')

HAND = [
    'Paris is the capital of [MASK].',
    'The [MASK] of France is Paris, and [MASK] is Berlin.',
    'Héllo, wörld! Ça va? Naïve café — résumé, façade, Ångström, Øresund, Zürich.',
    'ÀÉÎÕÜ àéîõü ñÑ çÇ ß ẞ ǅ ﬁ Ⅻ ²³ ½',
    'Numbers: 3.14159, 1,000,000; 42nd, 1990s, 10:30pm, $5.99, 50%, #1, e=mc^2, a+b<c>d, x|y~z, `code`.',
    '東京は日本の首都です。北京是中国的首都。한국어 텍스트도 있습니다. 日本語とEnglishのmix。',
    'Emoji 😀🎉👍🏽 and flags 🇫🇷 — do they survive? ❤️ ✓',
    'Control\x00chars\x07here\x1b[0m and tabs\tnew\nlines\r\nand\x0bvt\x0cff and U+FFFD \ufffd and zero\u200bwidth and soft\u00adhyphen.',
    'Supercalifragilisticexpialidocious' * 3 + ' short',
    'a' * 100 + ' ' + 'b' * 101 + ' end',
    "Don't stop; it's John's (and Mary's) \"quote\" — isn't it? O'Neill's.",
    '[CLS] already here [SEP] and [PAD] [UNK] tokens, [MASK]ed word, x[MASK]y.',
    'Ellipsis… en–dash – em—dash « guillemets » „Anführungszeichen“ ‘single’ ¿Qué? ¡Sí!',
    'Greek ΣΊΣΥΦΟΣ σίσυφος, Cyrillic Москва, Arabic القاهرة, Hebrew ירושלים, Hindi नमस्ते, Thai ภาษาไทย.',
    'İstanbul ve Iğdır; ǈubljana; ΑΘΗΝΑ.',
    '   leading and trailing spaces   \u3000ideographic space\u00a0nbsp\u2003em space  ',
    '',
    '...!!!???',
    'e-mail: john.doe@example.com, URL https://en.wikipedia.org/wiki/BERT_(language_model)?x=1&y=2#top',
]

# Fixed picks from the data (by position, so the fixture is reproducible).
GOOGLE_RE_LINES = [0, 7, 23, 91]
WIKI_LINES = [3, 57, 120, 333, 512, 777, 1200, 1999, 2500, 3021, 3333]


def real_sentences(shared, corpus):
    out = []
    # LAMA templates filled with a T-REx fact (Apache/CC BY-NC data: only short sentences).
    rels = [json.loads(l) for l in open(os.path.join(shared, 'lama', 'relations.jsonl'), encoding='utf-8')]
    for rel in rels[:8]:
        path = os.path.join(shared, 'lama', 'TREx', rel['relation'] + '.jsonl')
        if not os.path.exists(path):
            continue
        with open(path, encoding='utf-8') as f:
            fact = json.loads(f.readline())
        out.append(rel['template'].replace('[X]', fact['sub_label']).replace('[Y]', fact['obj_label']))
        out.append(rel['template'].replace('[X]', fact['sub_label']).replace('[Y]', '[MASK]'))
    # Google-RE evidence snippets.
    with open(os.path.join(shared, 'lama', 'Google_RE', 'place_of_birth_test.jsonl'), encoding='utf-8') as f:
        lines = f.readlines()
    for i in GOOGLE_RE_LINES:
        if i < len(lines):
            snippet = json.loads(lines[i])['evidences'][0]['snippet']
            out.append(snippet[:600])
    # WikiText-2 validation lines.
    with open(os.path.join(corpus, 'wikitext-2', 'wiki.valid.raw'), encoding='utf-8') as f:
        wl = [l for l in f.read().split('\n') if l.strip() and not l.strip().startswith('=')]
    for i in WIKI_LINES:
        if i < len(wl):
            out.append(wl[i][:800])
    return out


def encode_all(tok, texts):
    cases = []
    for t in texts:
        e = tok.encode(t)
        n = tok.encode(t, add_special_tokens=False)
        cases.append({
            'text': t, 'ids': e.ids, 'tokens': e.tokens, 'ids_no_special': n.ids,
            'decoded': tok.decode(e.ids, skip_special_tokens=True),
            'decoded_with_special': tok.decode(e.ids, skip_special_tokens=False),
        })
    return cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--shared', default='/work/shared/data')
    ap.add_argument('--corpus', default='/work/main/data/corpus')
    ap.add_argument('--check-saved', default=None)
    a = ap.parse_args()

    if a.check_saved:
        tok = Tokenizer.from_file(os.path.join(a.check_saved, 'tokenizer.json'))
        enc = json.load(open(os.path.join(a.check_saved, 'encodings.json'), encoding='utf-8'))
        bad = 0
        for t, ids in zip(enc['texts'], enc['ids']):
            got = tok.encode(t).ids
            if got != ids:
                bad += 1
                print('MISMATCH', repr(t[:80]), got[:20], ids[:20])
        print(f'{len(enc["texts"]) - bad}/{len(enc["texts"])} identical')
        sys.exit(1 if bad else 0)

    os.makedirs(OUT, exist_ok=True)
    vocab = os.path.join(OUT, 'vocab.txt')
    shutil.copyfile(os.path.join(a.shared, 'models', 'bert-base-cased', 'vocab.txt'), vocab)
    texts = HAND + real_sentences(a.shared, a.corpus)

    settings = {
        'cased': dict(lowercase=False),
        'uncased': dict(lowercase=True),  # strip_accents follows lowercase
        'lower_keep_accents': dict(lowercase=True, strip_accents=False),
    }
    golden = {'tokenizers_version': __import__('tokenizers').__version__, 'settings': {}}
    for name, kw in settings.items():
        tok = BertWordPieceTokenizer(vocab, **kw)
        golden['settings'][name] = {'options': kw, 'cases': encode_all(tok, texts)}
        if name == 'cased':
            tok.save(os.path.join(OUT, 'tokenizer.json'))
            pairs = [('Paris is the capital of [MASK].', 'It is in Europe.'), (texts[2], texts[5])]
            golden['pairs'] = [{'a': p, 'b': q, 'ids': e.ids, 'type_ids': e.type_ids}
                               for p, q in pairs for e in [tok.encode(p, q)]]
    with open(os.path.join(OUT, 'golden.json'), 'w', encoding='utf-8') as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write('\n')
    print(f'wrote {len(texts)} texts x {len(settings)} settings to {OUT}')


if __name__ == '__main__':
    main()

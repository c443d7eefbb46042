#!/usr/bin/python3
"""Generate golden GPT-2 BPE token ids for test/tokenizers/bpe.test.ts.

Run:  /usr/bin/python3 tools/gen_bpe_fixtures.py      (needs the `regex` module: apt-get install python3-regex)

This is an independent reference implementation of OpenAI's published GPT-2 encoder algorithm
(encoder.py of openai/gpt-2): the bytes_to_unicode table, the pre-tokenisation regex with
\\p{L}/\\p{N}, and the rank-based merge loop. It adds one thing GPT-2's encoder.py lacks and
Hugging Face's tokenizer does: `<|endoftext|>` written in the text is cut out first and encoded
as its id (50256).

Inputs : /work/shared/data/models/gpt2-bpe/{encoder.json,vocab.bpe}  (or $GPT2_BPE_DIR)
         data/tinyshakespeare.txt, /work/shared/data/corpus/wikitext-2/wiki.test.raw
Output : test/fixtures/tokenizers/gpt2_golden.json  {"source", "cases": [{"name","text","ids"}]}
         and copies of encoder.json / vocab.bpe into test/fixtures/tokenizers/gpt2/.
"""
import json
import os
import shutil

import regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE_DIR = os.environ.get('GPT2_BPE_DIR', '/work/shared/data/models/gpt2-bpe')
WIKI = os.environ.get('WIKITEXT', '/work/shared/data/corpus/wikitext-2/wiki.test.raw')
OUT_DIR = os.path.join(ROOT, 'test', 'fixtures', 'tokenizers')
EOT = '<|endoftext|>'


def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Gpt2Reference:
    PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float('inf')))
            if best not in self.ranks:
                break
            first, second = best
            out = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode_ordinary(self, text):
        ids = []
        for piece in regex.findall(self.PAT, text):
            sym = ''.join(self.byte_encoder[b] for b in piece.encode('utf-8'))
            ids.extend(self.encoder[t] for t in self.bpe(sym))
        return ids

    def encode(self, text):
        ids = []
        parts = text.split(EOT)
        for i, part in enumerate(parts):
            if i > 0:
                ids.append(self.encoder[EOT])
            if part:
                ids.extend(self.encode_ordinary(part))
        return ids


def load():
    with open(os.path.join(BPE_DIR, 'encoder.json'), encoding='utf-8') as f:
        encoder = json.load(f)
    with open(os.path.join(BPE_DIR, 'vocab.bpe'), encoding='utf-8') as f:
        lines = f.read().split('\n')
    merges = [tuple(l.split(' ')) for l in lines[1:] if l]
    return Gpt2Reference(encoder, merges)


def texts():
    with open(os.path.join(ROOT, 'data', 'tinyshakespeare.txt'), encoding='utf-8') as f:
        shakes = f.read()
    with open(WIKI, encoding='utf-8') as f:
        wiki = f.read()
    cases = []
    # Shakespeare: slices at fixed offsets (several hundred characters each).
    for k, off in enumerate([0, 12345, 100000, 333333, 777777, 1050000]):
        cases.append(('shakespeare_%d' % k, shakes[off:off + 400]))
    # Wikipedia (wikitext-2 raw): headings, numbers with " @,@ " separators, accents, dashes.
    for k, off in enumerate([0, 5000, 60000, 250000, 600000, 1000000, 1200000]):
        cases.append(('wikitext_%d' % k, wiki[off:off + 500]))
    cases += [
        ('digits', 'In 1999 there were 3,141,592 people; by 2024-11-23 the count was 12345678901234567890 (0.5% up, +7e10).'),
        ('punctuation', 'Wait... what?!? "Quoted" (parens) [brackets] {braces} <angle> #hash @at $5 ^caret &amp; *star* ~tilde~ `tick` | pipe \\ back / slash;;; :: --- ___ ==> !== ...'),
        ('contractions', "I'm sure you'll see it's what they've done; he'd say we're fine. DON'T SHOUT, it'S odd. ''quotes'' 'tis rock'n'roll"),
        ('whitespace', 'a  b   c    d\n\ne\n\n\nf\t\tg \t h\r\nline\r\n   \n  trailing spaces   \n\t\n' + ' ' * 20 + 'x' + '\n' * 5),
        ('leading_trailing_ws', '   leading and trailing   '),
        ('only_spaces', ' ' * 37),
        ('accents', 'Café naïve résumé façade coöperate Ångström Dvořák Łódź São Paulo Müller straße Ελληνικά кириллица עברית العربية'),
        ('cjk', '日本語のテキストです。中文文本，包括标点符号！한국어 텍스트도 있습니다. 混合 text 和 English 123。'),
        ('emoji', 'Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨ — rocket 🚀 and math ∑∫√∞ ≠ ≤ ≥ ± × ÷ and arrows → ← ↔'),
        ('endoftext_inside', 'First document ends here.<|endoftext|>Second document starts.\n<|endoftext|><|endoftext|> third <|endoftext|>'),
        ('endoftext_partial', '<|endoftext| not quite <|endoftext and |endoftext|> but <|endoftext|>!'),
        ('code', 'def f(x):\n    return {"a": [1, 2, 3], \'b\': x ** 2}  # comment\n\nfor i in range(10):\n\tprint(f"{i:03d}")\n'),
        ('unicode_spaces', 'nbsp\u00a0here, thin\u2009space, ideographic\u3000space, nel\u0085char, bom\ufeffmark, zwsp\u200bx, line\u2028sep'),
        ('long_runs', 'a' * 150 + ' ' + '-' * 120 + ' ' + '9' * 80 + ' ' + 'ab' * 60 + '\n' * 40 + '!' * 70),
        ('mixed_scripts', 'Résumé: 東京 (Tōkyō) — population ≈ 37.4 million; “smart quotes” and ‘single’ ones… ©2024 ™ ® § ¶ • ° µ ½ ¼'),
        ('control_chars', 'tab\there\x00nul\x01soh\x07bell\x1bescape\x7fdel end'),
        ('empty', ''),
    ]
    return cases


def main():
    ref = load()
    cases = []
    for name, text in texts():
        ids = ref.encode(text)
        cases.append({'name': name, 'text': text, 'ids': ids})
    os.makedirs(os.path.join(OUT_DIR, 'gpt2'), exist_ok=True)
    for f in ('encoder.json', 'vocab.bpe'):
        shutil.copyfile(os.path.join(BPE_DIR, f), os.path.join(OUT_DIR, 'gpt2', f))
    obj = {
        'source': 'GPT-2 byte-level BPE (openai/gpt-2 encoder.json + vocab.bpe), ids from the independent '
                  'Python reference in tools/gen_bpe_fixtures.py (regex %s)' % regex.__version__,
        'generator': 'tools/gen_bpe_fixtures.py',
        'cases': cases,
    }
    path = os.path.join(OUT_DIR, 'gpt2_golden.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(',', ':'))
        f.write('\n')
    print('wrote %s (%d cases, %d ids)' % (path, len(cases), sum(len(c['ids']) for c in cases)))


if __name__ == '__main__':
    main()

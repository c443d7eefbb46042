#!/usr/bin/env python3
"""Copy the LAMA data from shared/data/lama into data/lama (issue 11).

relations.jsonl, TREx/*.jsonl and common_vocab_cased.txt are copied byte for byte; the
TREx_train_dev and Google_RE records are compacted to the fields the probe reads
(train/dev: sub_label, obj_label; Google-RE: sub_label, obj_label, uuid), one record per line,
same order. Usage: tools/lama-data.py SRC DST
"""
import json, os, shutil, sys

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
shutil.copyfile(os.path.join(src, 'relations.jsonl'), os.path.join(dst, 'relations.jsonl'))
shutil.copyfile(os.path.join(src, 'common_vocab_cased.txt'), os.path.join(dst, 'common_vocab_cased.txt'))
os.makedirs(os.path.join(dst, 'TREx'), exist_ok=True)
for f in sorted(os.listdir(os.path.join(src, 'TREx'))):
    shutil.copyfile(os.path.join(src, 'TREx', f), os.path.join(dst, 'TREx', f))


def compact(inp, out, keys):
    with open(inp, encoding='utf-8') as fi, open(out, 'w', encoding='utf-8') as fo:
        for line in fi:
            if not line.strip():
                continue
            r = json.loads(line)
            fo.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + '\n')


for rel in sorted(os.listdir(os.path.join(src, 'TREx_train_dev'))):
    os.makedirs(os.path.join(dst, 'TREx_train_dev', rel), exist_ok=True)
    for split in ('train', 'dev'):
        compact(os.path.join(src, 'TREx_train_dev', rel, f'{split}.jsonl'), os.path.join(dst, 'TREx_train_dev', rel, f'{split}.jsonl'), ['sub_label', 'obj_label'])
os.makedirs(os.path.join(dst, 'Google_RE'), exist_ok=True)
for f in sorted(os.listdir(os.path.join(src, 'Google_RE'))):
    compact(os.path.join(src, 'Google_RE', f), os.path.join(dst, 'Google_RE', f), ['sub_label', 'obj_label', 'uuid'])

#!/usr/bin/python3
"""Generate a tiny BERT checkpoint in two Hugging Face layouts + golden outputs for
test/models/bert.test.ts.

Run with Debian's python3-torch:  /usr/bin/python3 tools/make_bert_fixture.py

`transformers` cannot serve as the reference here (its PyTorch classes need torch >= 2, the
system has 1.13), so BertForMaskedLM is written below in plain PyTorch from the published
architecture (transformers/models/bert/modeling_bert.py, eager attention), float64:
  x = LN(word[ids] + pos[0..T-1] + type[token_type_ids])            LayerNorm eps 1e-12
  per layer (post-LN):
    q, k, v = x Wqᵀ + bq, …                                          nn.Linear: W is [out, in]
    s = q kᵀ / sqrt(head_dim) + (1 - attention_mask)[:, None, None, :] * finfo.min
    a = LN(softmax(s) v Woᵀ + bo + x)                                attention.output
    x = LN(gelu(a Wiᵀ + bi) Wo2ᵀ + bo2 + a)                          intermediate / output; gelu = erf
  logits = LN(gelu(x Wtᵀ + bt)) word_embᵀ + cls.predictions.bias    MLM head, decoder tied
  loss = CE(logits, labels, ignore_index=-100), mean over labelled positions

Writes test/fixtures/bert/:
  tiny-hf/    what BertForMaskedLM.save_pretrained(safe_serialization=True) writes: config.json,
              model.safetensors with `bert.*` / `cls.predictions.*` names, no decoder weight
              (tied); it also holds `cls.predictions.decoder.bias` (equal to the bias), as older
              transformers versions wrote it
  tiny-hub/   the original hub BertForPreTraining layout (bert-base-cased): LayerNorm
              `gamma`/`beta`, `bert.pooler.dense.*`, `cls.seq_relationship.*`, an explicit
              `cls.predictions.decoder.weight` equal to the word embeddings, a
              `bert.embeddings.position_ids` I64 buffer; old-style config (no model_type keys
              beyond what the hub file had)
  golden.json config, input_ids, attention_mask, token_type_ids, labels, logits [B,T,V]
              (flat), loss
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'bert')

V, C, L, H, I, P, TV = 64, 32, 2, 4, 37, 24, 2
EPS = 1e-12


def make_weights():
    g = torch.Generator().manual_seed(20261130)

    def rn(*shape, std=0.2, mean=0.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean).to(torch.float32)

    w = {}
    w['bert.embeddings.word_embeddings.weight'] = rn(V, C, std=0.5)
    w['bert.embeddings.position_embeddings.weight'] = rn(P, C, std=0.3)
    w['bert.embeddings.token_type_embeddings.weight'] = rn(TV, C, std=0.3)
    w['bert.embeddings.LayerNorm.weight'] = rn(C, mean=1.0)
    w['bert.embeddings.LayerNorm.bias'] = rn(C, std=0.1)
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'
        for n in ('query', 'key', 'value'):
            w[p + f'attention.self.{n}.weight'] = rn(C, C, std=0.25)
            w[p + f'attention.self.{n}.bias'] = rn(C, std=0.1)
        w[p + 'attention.output.dense.weight'] = rn(C, C)
        w[p + 'attention.output.dense.bias'] = rn(C, std=0.1)
        w[p + 'attention.output.LayerNorm.weight'] = rn(C, mean=1.0)
        w[p + 'attention.output.LayerNorm.bias'] = rn(C, std=0.1)
        w[p + 'intermediate.dense.weight'] = rn(I, C)
        w[p + 'intermediate.dense.bias'] = rn(I, std=0.1)
        w[p + 'output.dense.weight'] = rn(C, I)
        w[p + 'output.dense.bias'] = rn(C, std=0.1)
        w[p + 'output.LayerNorm.weight'] = rn(C, mean=1.0)
        w[p + 'output.LayerNorm.bias'] = rn(C, std=0.1)
    w['cls.predictions.transform.dense.weight'] = rn(C, C)
    w['cls.predictions.transform.dense.bias'] = rn(C, std=0.1)
    w['cls.predictions.transform.LayerNorm.weight'] = rn(C, mean=1.0)
    w['cls.predictions.transform.LayerNorm.bias'] = rn(C, std=0.1)
    w['cls.predictions.bias'] = rn(V, std=0.3)
    # pretraining-only parts of the hub file (ignored by BertForMaskedLM)
    extra = {
        'bert.pooler.dense.weight': rn(C, C), 'bert.pooler.dense.bias': rn(C),
        'cls.seq_relationship.weight': rn(2, C), 'cls.seq_relationship.bias': rn(2),
    }
    return w, extra


def forward(w, ids, mask, types):
    w = {k: v.to(torch.float64) for k, v in w.items()}
    B, T = ids.shape
    D = C // H

    def ln(x, n):
        return torch.nn.functional.layer_norm(x, (C,), w[n + '.weight'], w[n + '.bias'], EPS)

    def lin(x, n):
        return x @ w[n + '.weight'].T + w[n + '.bias']

    gelu = torch.nn.functional.gelu  # erf form
    x = w['bert.embeddings.word_embeddings.weight'][ids] + w['bert.embeddings.position_embeddings.weight'][torch.arange(T)][None] \
        + w['bert.embeddings.token_type_embeddings.weight'][types]
    x = ln(x, 'bert.embeddings.LayerNorm')
    ext = (1.0 - mask.to(torch.float64))[:, None, None, :] * torch.finfo(torch.float64).min
    for i in range(L):
        p = f'bert.encoder.layer.{i}.'

        def heads(t):
            return t.view(B, T, H, D).permute(0, 2, 1, 3)
        q, k, v = (heads(lin(x, p + f'attention.self.{n}')) for n in ('query', 'key', 'value'))
        s = q @ k.transpose(-1, -2) / math.sqrt(D) + ext
        o = (torch.softmax(s, dim=-1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
        a = ln(lin(o, p + 'attention.output.dense') + x, p + 'attention.output.LayerNorm')
        x = ln(lin(gelu(lin(a, p + 'intermediate.dense')), p + 'output.dense') + a, p + 'output.LayerNorm')
    h = ln(gelu(lin(x, 'cls.predictions.transform.dense')), 'cls.predictions.transform.LayerNorm')
    return h @ w['bert.embeddings.word_embeddings.weight'].T + w['cls.predictions.bias']


def write_safetensors(path, tensors):
    """tensors: list of (name, torch tensor); safetensors written by hand (no `safetensors` package)."""
    header = {'__metadata__': {'format': 'pt'}}
    blobs, off = [], 0
    for name, t in tensors:
        t = t.contiguous()
        fmt, dt = {torch.float32: ('f', 'F32'), torch.int64: ('q', 'I64')}[t.dtype]
        raw = struct.pack('<%d%s' % (t.numel(), fmt), *t.flatten().tolist())
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def write_json(path, obj, sort_keys=True):
    with open(path, 'w') as f:
        f.write(json.dumps(obj, indent=2, sort_keys=sort_keys) + '\n')


def hf_config():
    # BertConfig(...).save_pretrained: every BertConfig key + architectures/torch_dtype/version.
    return {
        'architectures': ['BertForMaskedLM'], 'attention_probs_dropout_prob': 0.1, 'classifier_dropout': None,
        'hidden_act': 'gelu', 'hidden_dropout_prob': 0.1, 'hidden_size': C, 'initializer_range': 0.02,
        'intermediate_size': I, 'layer_norm_eps': EPS, 'max_position_embeddings': P, 'model_type': 'bert',
        'num_attention_heads': H, 'num_hidden_layers': L, 'pad_token_id': 0, 'position_embedding_type': 'absolute',
        'torch_dtype': 'float32', 'transformers_version': '4.57.6', 'type_vocab_size': TV, 'use_cache': True,
        'vocab_size': V,
    }


def hub_config():
    # bert-base-cased's config.json shape (old hub file): no torch_dtype / transformers_version.
    return {
        'architectures': ['BertForMaskedLM'], 'attention_probs_dropout_prob': 0.1, 'gradient_checkpointing': False,
        'hidden_act': 'gelu', 'hidden_dropout_prob': 0.1, 'hidden_size': C, 'initializer_range': 0.02,
        'intermediate_size': I, 'layer_norm_eps': EPS, 'max_position_embeddings': P, 'model_type': 'bert',
        'num_attention_heads': H, 'num_hidden_layers': L, 'pad_token_id': 0, 'position_embedding_type': 'absolute',
        'transformers_version': '4.6.0.dev0', 'type_vocab_size': TV, 'use_cache': True, 'vocab_size': V,
    }


def main():
    w, extra = make_weights()
    names = list(w)
    d = os.path.join(OUT, 'tiny-hf')
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, 'model.safetensors'),
                      [(n, w[n]) for n in names] + [('cls.predictions.decoder.bias', w['cls.predictions.bias'])])
    write_json(os.path.join(d, 'config.json'), hf_config())

    d = os.path.join(OUT, 'tiny-hub')
    os.makedirs(d, exist_ok=True)
    hub = []
    for n in names:
        m = n.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias', 'LayerNorm.beta')
        hub.append((m, w[n]))
    hub += [('bert.embeddings.position_ids', torch.arange(P, dtype=torch.int64)[None]),
            ('cls.predictions.decoder.weight', w['bert.embeddings.word_embeddings.weight'])]
    hub += sorted(extra.items())
    write_safetensors(os.path.join(d, 'model.safetensors'), hub)
    write_json(os.path.join(d, 'config.json'), hub_config())

    ids = torch.tensor([[2, 17, 45, 3, 63, 61, 5, 30, 12, 4], [2, 50, 3, 33, 8, 4, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 10, [1] * 6 + [0] * 4])
    types = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]])
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[0, 6], labels[1, 2], labels[1, 4] = 11, 57, 40, 8
    with torch.no_grad():
        logits = forward(w, ids, mask, types)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100)
    golden = {
        'note': 'generated by tools/make_bert_fixture.py (float64 reference of BertForMaskedLM)',
        'config': {'vocab_size': V, 'hidden_size': C, 'num_hidden_layers': L, 'num_attention_heads': H,
                   'intermediate_size': I, 'max_position_embeddings': P, 'type_vocab_size': TV},
        'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'token_type_ids': types.tolist(),
        'labels': labels.tolist(), 'shape': list(logits.shape),
        'logits': [float('%.7g' % x) for x in logits.flatten().tolist()], 'loss': loss.item(),
    }
    with open(os.path.join(OUT, 'golden.json'), 'w') as f:
        f.write(json.dumps(golden, separators=(',', ':')) + '\n')


if __name__ == '__main__':
    main()

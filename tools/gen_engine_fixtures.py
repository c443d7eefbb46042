#!/usr/bin/python3
"""Generate golden numerics for the autograd engine from PyTorch (float32, fixed seeds).

Run with Debian's python3-torch:  /usr/bin/python3 tools/gen_engine_fixtures.py
Writes compact JSON fixtures to test/fixtures/engine/*.json that test/engine/golden.test.ts
replays with our own ops, so the test suite itself needs no Python.

Fixture format: {"name", "meta": {...}, "tensors": {name: {"shape": [...], "dtype": "float32"|"int32",
"data": [flat row-major values]}}}. Gradients are stored under "grad.<name>".
Linear weights are stored in PyTorch layout [out, in]; y = x @ W^T + b.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float32)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, 'test', 'fixtures', 'engine')


def enc(t):
    t = t.detach()
    if t.dtype in (torch.int64, torch.int32):
        return {'shape': list(t.shape), 'dtype': 'int32', 'data': [int(v) for v in t.reshape(-1).tolist()]}
    vals = t.to(torch.float32).reshape(-1).tolist()
    # 9 significant digits round-trip float32 exactly.
    return {'shape': list(t.shape), 'dtype': 'float32', 'data': [float('%.9g' % v) for v in vals]}


def write(name, meta, tensors):
    os.makedirs(OUT_DIR, exist_ok=True)
    obj = {'name': name, 'generator': 'tools/gen_engine_fixtures.py', 'torch': torch.__version__,
           'meta': meta, 'tensors': {k: enc(v) for k, v in tensors.items()}}
    path = os.path.join(OUT_DIR, name + '.json')
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))
        f.write('\n')
    print('%-40s %7d bytes' % (os.path.relpath(path, ROOT), os.path.getsize(path)))


def leaf(*shape, std=1.0, gen=None):
    return (torch.randn(*shape, generator=gen) * std).requires_grad_(True)


def grads(named):
    return {'grad.' + k: v.grad for k, v in named.items()}


# ---------------------------------------------------------------------------------------------
# (a) MLP: LayerNorm -> Linear(5,7) -> GELU(tanh) -> Linear(7,3) -> CE(ignore -100, smoothing 0.1)

def gen_mlp():
    g = torch.Generator().manual_seed(1234)
    p = {
        'x': leaf(4, 5, gen=g),
        'ln.weight': (1 + 0.2 * torch.randn(5, generator=g)).requires_grad_(True),
        'ln.bias': leaf(5, std=0.1, gen=g),
        'fc1.weight': leaf(7, 5, std=0.5, gen=g),
        'fc1.bias': leaf(7, std=0.1, gen=g),
        'fc2.weight': leaf(3, 7, std=0.5, gen=g),
        'fc2.bias': leaf(3, std=0.1, gen=g),
    }
    targets = torch.tensor([0, 2, -100, 1], dtype=torch.int64)
    h = F.layer_norm(p['x'], (5,), p['ln.weight'], p['ln.bias'], eps=1e-5)
    h = F.linear(h, p['fc1.weight'], p['fc1.bias'])
    h = F.gelu(h, approximate='tanh')
    logits = F.linear(h, p['fc2.weight'], p['fc2.bias'])
    logits.retain_grad()
    loss = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.1)
    loss.backward()
    t = dict(p)
    t.update({'targets': targets, 'logits': logits, 'loss': loss, 'grad.logits': logits.grad})
    t.update(grads(p))
    write('mlp', {'eps': 1e-5, 'ignoreIndex': -100, 'labelSmoothing': 0.1, 'gelu': 'tanh'}, t)


# ---------------------------------------------------------------------------------------------
# (b) GPT-style block: x + proj(attn(ln1(x))), then + fc2(gelu(fc1(ln2(.)))); loss = sum(out * w)

def gen_block():
    g = torch.Generator().manual_seed(4321)
    B, T, C, H = 2, 5, 8, 2
    D = C // H
    p = {
        'x': leaf(B, T, C, gen=g),
        'ln1.weight': (1 + 0.2 * torch.randn(C, generator=g)).requires_grad_(True),
        'ln1.bias': leaf(C, std=0.1, gen=g),
        'attn.qkv.weight': leaf(3 * C, C, std=0.4, gen=g),
        'attn.qkv.bias': leaf(3 * C, std=0.1, gen=g),
        'attn.proj.weight': leaf(C, C, std=0.4, gen=g),
        'attn.proj.bias': leaf(C, std=0.1, gen=g),
        'ln2.weight': (1 + 0.2 * torch.randn(C, generator=g)).requires_grad_(True),
        'ln2.bias': leaf(C, std=0.1, gen=g),
        'mlp.fc1.weight': leaf(4 * C, C, std=0.4, gen=g),
        'mlp.fc1.bias': leaf(4 * C, std=0.1, gen=g),
        'mlp.fc2.weight': leaf(C, 4 * C, std=0.3, gen=g),
        'mlp.fc2.bias': leaf(C, std=0.1, gen=g),
    }
    loss_weight = torch.randn(B, T, C, generator=g)
    # 1 = real token, 0 = padding: batch row 1 has its last 2 positions padded.
    key_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.float32)

    x = p['x']
    h = F.layer_norm(x, (C,), p['ln1.weight'], p['ln1.bias'], eps=1e-5)
    qkv = F.linear(h, p['attn.qkv.weight'], p['attn.qkv.bias'])           # [B,T,3C]
    q, k, v = qkv.split(C, dim=-1)
    q = q.reshape(B, T, H, D).transpose(1, 2)                              # [B,H,T,D]
    k = k.reshape(B, T, H, D).transpose(1, 2)
    v = v.reshape(B, T, H, D).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))              # [B,H,T,T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal[None, None, :, :] & (key_mask[:, None, None, :] != 0)
    scores = scores.masked_fill(~allowed, float('-inf'))
    probs = torch.softmax(scores, dim=-1)
    y = probs @ v                                                          # [B,H,T,D]
    y.retain_grad()
    att = y.transpose(1, 2).reshape(B, T, C)
    x1 = x + F.linear(att, p['attn.proj.weight'], p['attn.proj.bias'])
    h2 = F.layer_norm(x1, (C,), p['ln2.weight'], p['ln2.bias'], eps=1e-5)
    m = F.linear(F.gelu(F.linear(h2, p['mlp.fc1.weight'], p['mlp.fc1.bias']), approximate='tanh'),
                 p['mlp.fc2.weight'], p['mlp.fc2.bias'])
    out = x1 + m
    out.retain_grad()
    loss = (out * loss_weight).sum()
    loss.backward()
    t = dict(p)
    t.update({'lossWeight': loss_weight, 'keyMask': key_mask, 'attnOut': y, 'x1': x1, 'out': out,
              'loss': loss, 'grad.attnOut': y.grad})
    t.update(grads(p))
    write('block', {'B': B, 'T': T, 'C': C, 'H': H, 'D': D, 'eps': 1e-5, 'gelu': 'tanh', 'causal': True}, t)


# ---------------------------------------------------------------------------------------------
# (c) single ops

def gen_ops():
    g = torch.Generator().manual_seed(777)
    t = {}

    # KL distillation loss at temperature 2: F.kl_div(log_softmax(s/T), softmax(t/T), 'batchmean').
    s = leaf(3, 6, std=2.0, gen=g)
    te = leaf(3, 6, std=2.0, gen=g)
    Tm = 2.0
    kl = F.kl_div(F.log_softmax(s / Tm, dim=-1), F.softmax(te / Tm, dim=-1), reduction='batchmean')
    kl.backward()
    t.update({'kl.student': s, 'kl.teacher': te, 'kl.loss': kl, 'kl.grad.student': s.grad, 'kl.grad.teacher': te.grad})

    # Exact-erf GELU: loss = sum(gelu(x) * w).
    x = torch.cat([torch.linspace(-6, 6, 13), torch.randn(11, generator=g) * 2]).requires_grad_(True)
    w = torch.randn(24, generator=g)
    y = F.gelu(x)
    (y * w).sum().backward()
    t.update({'geluErf.x': x, 'geluErf.w': w, 'geluErf.y': y, 'geluErf.grad.x': x.grad})

    # Tanh-approximate GELU, same inputs.
    x2 = x.detach().clone().requires_grad_(True)
    y2 = F.gelu(x2, approximate='tanh')
    (y2 * w).sum().backward()
    t.update({'geluTanh.y': y2, 'geluTanh.grad.x': x2.grad})

    # log_softmax over the last axis: loss = sum(log_softmax(x) * w).
    x = leaf(3, 7, std=3.0, gen=g)
    w = torch.randn(3, 7, generator=g)
    y = F.log_softmax(x, dim=-1)
    (y * w).sum().backward()
    t.update({'logSoftmax.x': x, 'logSoftmax.w': w, 'logSoftmax.y': y, 'logSoftmax.grad.x': x.grad})

    # softmax over the last axis: loss = sum(softmax(x) * w).
    x = leaf(3, 7, std=3.0, gen=g)
    w = torch.randn(3, 7, generator=g)
    y = F.softmax(x, dim=-1)
    (y * w).sum().backward()
    t.update({'softmax.x': x, 'softmax.w': w, 'softmax.y': y, 'softmax.grad.x': x.grad})

    # Cross-entropy with label smoothing 0.2 and an ignored row: mean, sum and per-row.
    logits = leaf(5, 6, std=2.0, gen=g)
    targets = torch.tensor([3, -100, 0, 5, 2], dtype=torch.int64)
    ce = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.2)
    ce.backward()
    t.update({'ce.logits': logits, 'ce.targets': targets, 'ce.loss': ce, 'ce.grad.logits': logits.grad})
    logits2 = logits.detach().clone().requires_grad_(True)
    ces = F.cross_entropy(logits2, targets, ignore_index=-100, label_smoothing=0.2, reduction='sum')
    ces.backward()
    t.update({'ce.lossSum': ces, 'ce.gradSum.logits': logits2.grad})
    cen = F.cross_entropy(logits.detach(), targets, ignore_index=-100, label_smoothing=0.2, reduction='none')
    t.update({'ce.lossNone': cen})

    write('ops', {'kl.temperature': Tm, 'ce.labelSmoothing': 0.2, 'ce.ignoreIndex': -100}, t)


if __name__ == '__main__':
    gen_mlp()
    gen_block()
    gen_ops()

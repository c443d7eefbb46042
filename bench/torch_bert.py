#!/usr/bin/python3
"""PyTorch twin of `icld bench train --config bert-small` and `icld bench fill-mask` (src/cli/bench-lm.ts).

A BERT as transformers' BertForMaskedLM computes it, written out eagerly (PyTorch 1.13, no
scaled_dot_product_attention): word + position + token-type embeddings, LayerNorm(1e-12),
dropout 0.1; post-LN encoder layers with separate query/key/value Linear layers (as HF), erf GELU;
the MLM head (dense + GELU + LayerNorm, decoder tied to the word embeddings + bias). Init N(0, 0.02).
Training step: MLM on random non-special tokens masked as DataCollatorForLanguageModeling does
(15% chosen; 80% [MASK], 10% random, 10% kept; labels -100 elsewhere), cross-entropy, backward,
clip_grad_norm_(1.0), AdamW (decay 0.1 on matrices/embeddings, 0 on biases and LayerNorm;
betas 0.9/0.95, eps 1e-8: the icld bench's optimizer), zero_grad. fill-mask: eval,
no_grad, one sentence of 12 tokens with one [MASK] → softmax at the mask → top-5; median ms.

One process measures one thread count; the parent re-runs itself with OMP/OPENBLAS/MKL_NUM_THREADS set.

Usage:
  /usr/bin/python3 bench/torch_bert.py train --config bert-small [--steps N] [--warmup N] [--threads 1,2]
  /usr/bin/python3 bench/torch_bert.py fill-mask --config bert-small [--reps N] [--threads 1,2]
"""
import argparse
import json
import sys
import time

from torch_common import current_rss_mb, median, peak_rss_mb, per_thread_runs

# Same shapes as src/cli/bench-lm.ts BERT_CONFIGS.
SHAPES = {
    'bert-small': dict(d=512, L=4, H=8, ff=2048, T=128, batch=16, vocab=28996, n_positions=512),
}
SPECIAL = 5  # ids 0..4 play [PAD] [UNK] [CLS] [SEP] [MASK], as in the icld bench
MASK_ID = 4
FILL_LEN = 12


def build(torch, nn, F):
    class Layer(nn.Module):
        def __init__(s, d, H, ff, p):
            super().__init__()
            s.H = H
            s.query, s.key, s.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            s.attn_out = nn.Linear(d, d)
            s.ln1 = nn.LayerNorm(d, eps=1e-12)
            s.inter = nn.Linear(d, ff)
            s.out = nn.Linear(ff, d)
            s.ln2 = nn.LayerNorm(d, eps=1e-12)
            s.drop = nn.Dropout(p)

        def forward(s, x):
            B, T, C = x.shape
            H, D = s.H, C // s.H
            q = s.query(x).view(B, T, H, D).transpose(1, 2)
            k = s.key(x).view(B, T, H, D).transpose(1, 2)
            v = s.value(x).view(B, T, H, D).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) / (D ** 0.5)
            att = s.drop(F.softmax(att, dim=-1))
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            x = s.ln1(x + s.drop(s.attn_out(y)))
            return s.ln2(x + s.drop(s.out(F.gelu(s.inter(x)))))

    class Bert(nn.Module):
        def __init__(s, vocab, n_pos, d, L, H, ff, p=0.1):
            super().__init__()
            s.word = nn.Embedding(vocab, d)
            s.pos = nn.Embedding(n_pos, d)
            s.typ = nn.Embedding(2, d)
            s.ln = nn.LayerNorm(d, eps=1e-12)
            s.drop = nn.Dropout(p)
            s.layers = nn.ModuleList([Layer(d, H, ff, p) for _ in range(L)])
            s.transform = nn.Linear(d, d)
            s.head_ln = nn.LayerNorm(d, eps=1e-12)
            s.dec_bias = nn.Parameter(torch.zeros(vocab))
            for n, prm in s.named_parameters():
                if n.endswith('bias'):
                    nn.init.zeros_(prm)
                elif 'ln' in n:
                    nn.init.ones_(prm)
                else:
                    nn.init.normal_(prm, 0.0, 0.02)

        def forward(s, ids):
            B, T = ids.shape
            pos = torch.arange(T, dtype=torch.long).unsqueeze(0)
            x = s.drop(s.ln(s.word(ids) + s.pos(pos) + s.typ(torch.zeros_like(ids))))
            for l in s.layers:
                x = l(x)
            h = s.head_ln(F.gelu(s.transform(x)))
            return h @ s.word.weight.t() + s.dec_bias

    return Bert


def mask_batch(torch, ids, V, g, p=0.15):
    labels = ids.clone()
    chosen = torch.bernoulli(torch.full(ids.shape, p), generator=g).bool()
    labels[~chosen] = -100
    replaced = torch.bernoulli(torch.full(ids.shape, 0.8), generator=g).bool() & chosen
    ids = ids.clone()
    ids[replaced] = MASK_ID
    rnd = torch.bernoulli(torch.full(ids.shape, 0.5), generator=g).bool() & chosen & ~replaced
    ids[rnd] = torch.randint(SPECIAL, V, ids.shape, generator=g)[rnd]
    return ids, labels


def child(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(args.nthreads)
    torch.manual_seed(0)
    Bert = build(torch, nn, F)
    c = SHAPES[args.config]
    model = Bert(c['vocab'], c['n_positions'], c['d'], c['L'], c['H'], c['ff'])
    V = c['vocab']
    nparams = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1234)
    if args.kind == 'train':
        model.train()
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if n.endswith('bias') or 'ln' in n else decay).append(p)
        opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                                lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
        B, T = c['batch'], c['T']
        steps = args.steps if args.steps is not None else 6
        warmup = args.warmup if args.warmup is not None else 2
        times, loss_v, peak_cur = [], float('nan'), current_rss_mb()
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            raw = torch.randint(SPECIAL, V, (B, T), generator=g)
            ids, labels = mask_batch(torch, raw, V, g)
            logits = model(ids)
            loss = F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)
            loss.backward()
            peak_cur = max(peak_cur, current_rss_mb())
            loss_v = loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            peak_cur = max(peak_cur, current_rss_mb())
            if i >= warmup:
                times.append(dt)
            print(f'[torch bert train {args.nthreads}t] {"warm-up" if i < warmup else "step"} {i + 1}: {dt:.3f} s loss {loss_v:.4f}', file=sys.stderr)
        step_s = median(times)
        out = dict(params=nparams, steps=steps, warmup=warmup, step_s=round(step_s, 4), step_s_all=[round(t, 4) for t in times],
                   tokens_per_s=round(B * T / step_s, 1), peak_rss_mb=round(peak_cur, 1), max_rss_mb=round(peak_rss_mb(), 1),
                   final_loss=round(loss_v, 4))
    else:
        model.eval()
        ids = torch.randint(SPECIAL, V, (1, FILL_LEN), generator=g)
        ids[0, 0], ids[0, -1], ids[0, FILL_LEN // 2] = 2, 3, MASK_ID
        pos = FILL_LEN // 2

        def once():
            with torch.no_grad():
                t0 = time.perf_counter()
                logits = model(ids)
                probs = F.softmax(logits[0, pos], dim=-1)
                top = torch.topk(probs, 5)
                _ = [(int(i), float(p)) for p, i in zip(top.values, top.indices)]
                return (time.perf_counter() - t0) * 1000
        for _ in range(3):
            once()
        ms = [once() for _ in range(args.reps)]
        out = dict(params=nparams, tokens=FILL_LEN, reps=args.reps, ms=round(median(ms), 3), ms_all=[round(x, 3) for x in ms],
                   max_rss_mb=round(peak_rss_mb(), 1))
    out['threads'] = torch.get_num_threads()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('kind', choices=['train', 'fill-mask'])
    ap.add_argument('--config', default='bert-small', choices=list(SHAPES))
    ap.add_argument('--steps', type=int)
    ap.add_argument('--warmup', type=int)
    ap.add_argument('--reps', type=int, default=20)
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--nthreads', type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.nthreads is not None:
        return child(args)
    import torch
    extra = (['--steps', str(args.steps)] if args.steps is not None else []) + (['--warmup', str(args.warmup)] if args.warmup is not None else [])
    res = per_thread_runs(args.threads, lambda t: [sys.executable, __file__, args.kind, '--config', args.config, '--nthreads', t, '--reps', str(args.reps), *extra])
    key = 'tokens_per_s' if args.kind == 'train' else 'ms'
    best = (max if args.kind == 'train' else min)(res, key=lambda t: res[t][key])
    print(json.dumps(dict(torch=torch.__version__, kind=args.kind, config=args.config, shape=SHAPES[args.config], threads=res, best_threads=best)))


if __name__ == '__main__':
    main()

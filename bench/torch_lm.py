#!/usr/bin/python3
"""PyTorch twin of `icld bench train` / `icld bench generate` (src/cli/bench-lm.ts).

A faithful GPT-2 (learned position embeddings, pre-LN blocks, fused qkv projection, GELU tanh,
LM head tied to wte, dropout 0.1 on embeddings / attention probabilities / residual branches in
train mode; HF init: N(0, 0.02), c_proj weights N(0, 0.02/sqrt(2L))), trained with
torch.optim.AdamW (weight decay 0.1 on matrices and embeddings, 0 on biases and LayerNorm
params; betas 0.9/0.95) and clip_grad_norm_(1.0), on random tokens at the same shapes. Attention
is eager PyTorch as users write it on 1.13 (no scaled_dot_product_attention): matmul, scale,
masked_fill(-inf), softmax, dropout, matmul. Greedy decoding uses its own KV cache (concatenate
past k/v), eager, batch 1.

One process measures one thread count: torch.set_num_threads does not reach a pthreads OpenBLAS,
so the parent re-runs itself with OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS set.

Usage:
  /usr/bin/python3 bench/torch_lm.py train --config small|gpt2s [--steps N] [--warmup N] [--threads 1,2]
  /usr/bin/python3 bench/torch_lm.py generate --config small|gpt2-124m [--reps N] [--threads 1,2]
Prints one JSON object: {"torch": ..., "kind": ..., "config": ..., "threads": {"1": {...}, "2": {...}},
"best_threads": "1"} (each per-thread entry is what one fresh process measured).
"""
import argparse
import json
import math
import os
import sys
import time

from torch_common import current_rss_mb, median, peak_rss_mb, per_thread_runs

TRAIN = {
    'small': dict(d=256, L=4, H=4, T=128, batch=16, vocab=2048, n_positions=128),
    'gpt2s': dict(d=768, L=12, H=12, T=256, batch=4, vocab=8192, n_positions=256),
}
GENERATE = {
    'small': dict(d=256, L=4, H=4, vocab=2048, n_positions=1024),
    'gpt2-124m': dict(d=768, L=12, H=12, vocab=50257, n_positions=1024),
}


def build(torch, nn, F):
    class Attention(nn.Module):
        def __init__(s, d, H, L, n_pos, p):
            super().__init__()
            s.H = H
            s.c_attn = nn.Linear(d, 3 * d)
            s.c_proj = nn.Linear(d, d)
            s.attn_dropout = nn.Dropout(p)
            s.resid_dropout = nn.Dropout(p)
            s.register_buffer('bias', torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool)).view(1, 1, n_pos, n_pos), persistent=False)

        def forward(s, x, past=None):
            B, T, C = x.shape
            H, D = s.H, C // s.H
            q, k, v = s.c_attn(x).split(C, dim=2)
            q = q.view(B, T, H, D).transpose(1, 2)
            k = k.view(B, T, H, D).transpose(1, 2)
            v = v.view(B, T, H, D).transpose(1, 2)
            if past is not None:
                pk, pv = past
                if pk is not None:
                    k = torch.cat([pk, k], dim=2)
                    v = torch.cat([pv, v], dim=2)
            Tk = k.shape[2]
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            mask = s.bias[:, :, Tk - T:Tk, :Tk]
            att = att.masked_fill(~mask, float('-inf'))
            att = F.softmax(att, dim=-1)
            att = s.attn_dropout(att)
            y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
            return s.resid_dropout(s.c_proj(y)), (k, v)

    class MLP(nn.Module):
        def __init__(s, d, p):
            super().__init__()
            s.c_fc = nn.Linear(d, 4 * d)
            s.c_proj = nn.Linear(4 * d, d)
            s.dropout = nn.Dropout(p)

        def forward(s, x):
            return s.dropout(s.c_proj(F.gelu(s.c_fc(x), approximate='tanh')))

    class Block(nn.Module):
        def __init__(s, d, H, L, n_pos, p):
            super().__init__()
            s.ln_1 = nn.LayerNorm(d, eps=1e-5)
            s.attn = Attention(d, H, L, n_pos, p)
            s.ln_2 = nn.LayerNorm(d, eps=1e-5)
            s.mlp = MLP(d, p)

        def forward(s, x, past=None):
            a, kv = s.attn(s.ln_1(x), past)
            x = x + a
            x = x + s.mlp(s.ln_2(x))
            return x, kv

    class GPT2(nn.Module):
        def __init__(s, vocab, n_positions, d, L, H, p=0.1):
            super().__init__()
            s.wte = nn.Embedding(vocab, d)
            s.wpe = nn.Embedding(n_positions, d)
            s.drop = nn.Dropout(p)
            s.h = nn.ModuleList([Block(d, H, L, n_positions, p) for _ in range(L)])
            s.ln_f = nn.LayerNorm(d, eps=1e-5)
            # HF GPT2 init
            for n, prm in s.named_parameters():
                if n.endswith('.bias'):
                    nn.init.zeros_(prm)
                elif 'ln_' in n:
                    nn.init.ones_(prm)
                elif n.endswith('c_proj.weight'):
                    nn.init.normal_(prm, 0.0, 0.02 / math.sqrt(2 * L))
                else:
                    nn.init.normal_(prm, 0.0, 0.02)

        def forward(s, ids, cache=None):
            B, T = ids.shape
            past = 0 if cache is None or cache[0][0] is None else cache[0][0].shape[2]
            pos = torch.arange(past, past + T, dtype=torch.long).unsqueeze(0)
            x = s.drop(s.wte(ids) + s.wpe(pos))
            new_cache = []
            for i, blk in enumerate(s.h):
                x, kv = blk(x, None if cache is None else cache[i])
                new_cache.append(kv)
            x = s.ln_f(x)
            return x @ s.wte.weight.t(), new_cache  # tied LM head

    return GPT2


def child(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(args.nthreads)
    torch.manual_seed(0)
    GPT2 = build(torch, nn, F)
    if args.kind == 'train':
        c = TRAIN[args.config]
        model = GPT2(c['vocab'], c['n_positions'], c['d'], c['L'], c['H'])
        model.train()
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            (no_decay if n.endswith('.bias') or 'ln_' in n else decay).append(p)
        opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                                lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
        B, T, V = c['batch'], c['T'], c['vocab']
        g = torch.Generator().manual_seed(1234)
        steps = args.steps if args.steps is not None else (10 if args.config == 'small' else 4)
        warmup = args.warmup if args.warmup is not None else (2 if args.config == 'small' else 1)
        times, loss_v, peak_cur = [], float('nan'), current_rss_mb()
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            ids = torch.randint(0, V, (B, T), generator=g)
            labels = torch.cat([ids[:, 1:], torch.full((B, 1), -100, dtype=torch.long)], dim=1)
            logits, _ = model(ids)
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
            print(f'[torch train {args.config} {args.nthreads}t] {"warm-up" if i < warmup else "step"} {i + 1}: {dt:.3f} s loss {loss_v:.4f}', file=sys.stderr)
        step_s = median(times)
        out = dict(params=sum(p.numel() for p in model.parameters()), steps=steps, warmup=warmup, step_s=round(step_s, 4),
                   step_s_all=[round(t, 4) for t in times], tokens_per_s=round(B * T / step_s, 1),
                   peak_rss_mb=round(peak_cur, 1), max_rss_mb=round(peak_rss_mb(), 1), final_loss=round(loss_v, 4))
    else:
        c = GENERATE[args.config]
        model = GPT2(c['vocab'], c['n_positions'], c['d'], c['L'], c['H'])
        model.eval()
        g = torch.Generator().manual_seed(4321)
        P, N = args.prompt, args.new
        prompt = torch.randint(0, c['vocab'], (1, P), generator=g)

        def run(n):
            with torch.no_grad():
                t0 = time.perf_counter()
                cache = [(None, None)] * len(model.h)
                cur, first, out = prompt, 0.0, []
                for _ in range(n):
                    logits, cache = model(cur, cache)
                    nxt = int(torch.argmax(logits[0, -1]))
                    if not out:
                        first = time.perf_counter()
                    out.append(nxt)
                    cur = torch.tensor([[nxt]], dtype=torch.long)
                total = time.perf_counter() - t0
            return total, first - t0

        run(min(8, N))
        totals, prefills, per_tok = [], [], []
        for r in range(args.reps):
            total, prefill = run(N)
            totals.append(total)
            prefills.append(prefill)
            per_tok.append((total - prefill) / (N - 1) if N > 1 else 0.0)
            print(f'[torch generate {args.config} {args.nthreads}t] rep {r + 1}: {N / total:.1f} tok/s, prefill {prefill * 1e3:.1f} ms, {per_tok[-1] * 1e3:.2f} ms/token', file=sys.stderr)
        total, ptk = median(totals), median(per_tok)
        out = dict(params=sum(p.numel() for p in model.parameters()), prompt_tokens=P, new_tokens=N, reps=args.reps,
                   tokens_per_s=round(N / total, 2), decode_tokens_per_s=round(1 / ptk, 2) if ptk > 0 else 0,
                   prefill_ms=round(median(prefills) * 1e3, 2), per_token_ms=round(ptk * 1e3, 3),
                   max_rss_mb=round(peak_rss_mb(), 1))
    out['torch_threads'] = torch.get_num_threads()
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('kind', choices=['train', 'generate'])
    ap.add_argument('--config', required=True)
    ap.add_argument('--steps', type=int)
    ap.add_argument('--warmup', type=int)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--prompt', type=int, default=64)
    ap.add_argument('--new', type=int, default=128)
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--child', action='store_true')
    ap.add_argument('--nthreads', type=int, default=1)
    args = ap.parse_args()
    table = TRAIN if args.kind == 'train' else GENERATE
    if args.config not in table:
        sys.exit(f'unknown {args.kind} config {args.config!r} ({", ".join(table)})')
    if args.child:
        child(args)
        return
    import torch
    res = per_thread_runs(args.threads, lambda nt: [sys.executable, os.path.abspath(__file__), *sys.argv[1:], '--child', '--nthreads', nt])
    key = 'step_s' if args.kind == 'train' else 'tokens_per_s'
    best = (min if args.kind == 'train' else max)(res, key=lambda k: res[k][key])
    print(json.dumps(dict(torch=torch.__version__, kind=args.kind, config=args.config, threads=res, best_threads=best)))


if __name__ == '__main__':
    main()

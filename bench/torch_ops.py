#!/usr/bin/python3
"""PyTorch twin of `icld bench ops` (src/cli/bench-ops.ts): the same cases, the same timing
rule (warm-up, then repeats until >=5 reps and >=0.3 s, median), for torch.set_num_threads(1)
and (2). Prints one JSON object:

  {"torch": "1.13...", "threads": {"1": {case: ms, ...}, "2": {...}},
   "sgemm_1024": {"1": {"torch_mm_gflops": .., "numpy_gflops": ..}, "2": {...}}}

Usage: /usr/bin/python3 bench/torch_ops.py [--quick] [--threads 1,2] [--filter a,b]
Attention is written as eager PyTorch users run it on 1.13 (no scaled_dot_product_attention):
matmul, scale, masked_fill(-inf), softmax, matmul.
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def time_it(run, quick):
    min_reps, min_sec, max_sec, max_reps = (3, 0.1, 1.0, 1000) if quick else (5, 0.3, 3.0, 1000)
    t0 = time.perf_counter()
    run()
    if time.perf_counter() - t0 < 0.2:
        run()
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        t1 = time.perf_counter()
        times.append((t1 - t0) * 1000)
        total = t1 - start
        if len(times) >= max_reps:
            break
        if len(times) >= min_reps and total >= min_sec:
            break
        if total >= max_sec and len(times) >= 3:
            break
    times.sort()
    n = len(times)
    ms = times[(n - 1) // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    return ms, n


def zero_grad(*ts):
    for t in ts:
        t.grad = None


def causal_attention(q, k, v, mask):
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    att = att.masked_fill(mask[:T, :T] == 0, float('-inf'))
    att = F.softmax(att, dim=-1)
    return att @ v


def cases():
    g = torch.Generator().manual_seed(1234)

    def randn(*shape, std=1.0, grad=False):
        t = torch.randn(*shape, generator=g) * std
        return t.requires_grad_(grad)

    out = []

    def mm(M, K, N):
        def setup():
            a, b = randn(M, K), randn(K, N, std=0.05)

            def run():
                with torch.no_grad():
                    a @ b
            return run
        return (f'matmul {M}x{K}x{N}', 2 * M * K * N, setup)

    out += [mm(512, 512, 512), mm(1024, 1024, 1024), mm(2048, 768, 768), mm(2048, 768, 3072)]

    def bmm_setup():
        a, b = randn(48, 128, 64), randn(48, 64, 128, std=0.1)

        def run():
            with torch.no_grad():
                a @ b
        return run
    out.append(('bmm 48x128x64x128', 2 * 48 * 128 * 64 * 128, bmm_setup))

    def att(B, H, T, D, bwd):
        def setup():
            q, k, v = (randn(B, H, T, D, grad=True) for _ in range(3))
            gr = randn(B, H, T, D)
            mask = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
            if bwd:
                def run():
                    causal_attention(q, k, v, mask).backward(gr)
                    zero_grad(q, k, v)
            else:
                def run():
                    with torch.no_grad():
                        causal_attention(q, k, v, mask)
            return run
        return (f"attention {'fwd+bwd' if bwd else 'fwd'} B{B} H{H} T{T} D{D}", None, setup)

    out += [att(16, 4, 128, 64, False), att(16, 4, 128, 64, True), att(4, 12, 256, 64, False), att(4, 12, 256, 64, True)]

    def ln(bwd):
        def setup():
            x, gr = randn(2048, 768, grad=True), randn(2048, 768)
            w, b = randn(768, std=0.1, grad=True), randn(768, std=0.1, grad=True)
            if bwd:
                def run():
                    F.layer_norm(x, (768,), w, b, 1e-5).backward(gr)
                    zero_grad(x, w, b)
            else:
                def run():
                    with torch.no_grad():
                        F.layer_norm(x, (768,), w, b, 1e-5)
            return run
        return (f"layerNorm {'fwd+bwd' if bwd else 'fwd'}", None, setup)

    out += [ln(False), ln(True)]

    def ce(R, V):
        def setup():
            z = randn(R, V, grad=True)
            t = torch.randint(0, V, (R,), generator=g)

            def run():
                F.cross_entropy(z, t).backward()
                zero_grad(z)
            return run
        return (f'crossEntropy fwd+bwd {R}x{V}', None, setup)

    out += [ce(2048, 2048), ce(1024, 8192)]

    def gelu_setup():
        x, gr = randn(2048, 3072, grad=True), randn(2048, 3072)

        def run():
            F.gelu(x, approximate='tanh').backward(gr)
            zero_grad(x)
        return run
    out.append(('gelu fwd+bwd', None, gelu_setup))

    B, T, C, Hd = 16, 128, 256, 1024

    def mlp_setup():
        # nn.Linear layout (weight [out, in]) through F.linear, as eager PyTorch models run.
        x = randn(B, T, C, grad=True)
        w1, b1 = randn(Hd, C, std=0.02, grad=True), randn(Hd, std=0.02, grad=True)
        w2, b2 = randn(C, Hd, std=0.02, grad=True), randn(C, std=0.02, grad=True)

        def run():
            F.linear(F.gelu(F.linear(x, w1, b1), approximate='tanh'), w2, b2).sum().backward()
            zero_grad(x, w1, b1, w2, b2)
        return run
    out.append(('mlp fwd+bwd', 3 * 2 * (2 * B * T * C * Hd), mlp_setup))
    return out


def sgemm_rates(quick):
    n = 1024
    flops = 2 * n ** 3
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    ms_t, _ = time_it(lambda: torch.mm(a, b), quick)
    an, bn = a.numpy(), b.numpy()
    ms_n, _ = time_it(lambda: an @ bn, quick)
    return {'torch_mm_gflops': round(flops / (ms_t * 1e6), 2), 'numpy_gflops': round(flops / (ms_n * 1e6), 2)}


def run_child(nt, quick, filters):
    torch.set_num_threads(nt)
    per, gf = {}, {}
    for name, flops, setup in cases():
        if filters and not any(f in name.lower() for f in filters):
            continue
        run = setup()
        ms, reps = time_it(run, quick)
        per[name] = round(ms, 4)
        if flops:
            gf[name] = round(flops / (ms * 1e6), 2)
        print(f'[torch {nt}t] {name:40s} {ms:10.3f} ms ({reps} reps)', file=sys.stderr)
    sg = sgemm_rates(quick)
    print(f'[torch {nt}t] sgemm 1024^3: {sg}', file=sys.stderr)
    return {'ms': per, 'gflops': gf, 'sgemm_1024': sg, 'torch_threads': torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--filter', default='')
    ap.add_argument('--child', type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    filters = [f.strip().lower() for f in args.filter.split(',') if f.strip()]
    if args.child:
        print(json.dumps(run_child(args.child, args.quick, filters)))
        return
    # One fresh process per thread count, with the BLAS/OpenMP pools sized by environment
    # (torch.set_num_threads alone does not reach a pthreads OpenBLAS, which numpy also uses).
    import os
    import subprocess
    res = {'torch': torch.__version__, 'numpy': np.__version__, 'threads': {}, 'gflops': {}, 'sgemm_1024': {}}
    for nt in [int(x) for x in args.threads.split(',')]:
        env = dict(os.environ, OMP_NUM_THREADS=str(nt), OPENBLAS_NUM_THREADS=str(nt), MKL_NUM_THREADS=str(nt))
        cmd = [sys.executable, os.path.abspath(__file__), '--child', str(nt), '--filter', args.filter]
        if args.quick:
            cmd.append('--quick')
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True).stdout
        r = json.loads(out.decode().strip().splitlines()[-1])
        res['threads'][str(nt)] = r['ms']
        res['gflops'][str(nt)] = r['gflops']
        res['sgemm_1024'][str(nt)] = r['sgemm_1024']
    print(json.dumps(res))


if __name__ == '__main__':
    main()

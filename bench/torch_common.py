"""Helpers shared by the PyTorch twins (bench/torch_lm.py, bench/torch_bert.py): memory and
median measures, and running one fresh child process per thread count."""
import json
import os
import resource
import subprocess
import sys


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / (1024 * 1024)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[(n - 1) // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def per_thread_runs(threads, child_cmd):
    """For each thread count in the comma-separated `threads`, run child_cmd(nt) in a fresh process
    with the OpenMP/BLAS thread variables set; {nt: the JSON of its last stdout line}."""
    res = {}
    for nt in [x.strip() for x in threads.split(',') if x.strip()]:
        env = dict(os.environ, OMP_NUM_THREADS=nt, OPENBLAS_NUM_THREADS=nt, MKL_NUM_THREADS=nt)
        p = subprocess.run(child_cmd(nt), env=env, stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f'child ({nt} threads) failed with exit {p.returncode}')
        res[nt] = json.loads(p.stdout.strip().splitlines()[-1])
    return res

#!/usr/bin/env python3
"""Golden fixture for the inference weight formats (src/engine/quant.ts, test/engine/quant-golden.test.ts).

Q8_0 / Q4_0 blocks come from gguf.quants (ggml's numpy reference quantizers, `pip install gguf`,
0.19), bf16 rounding from torch's `.to(torch.bfloat16)`. Output: test/fixtures/quant/golden.json.

gguf stores each 32-weight block as [d: f16 little-endian][qs] (Q8_0: 32 int8; Q4_0: 16 bytes,
byte j = element j low nibble | element j+16 high nibble), rows of blocks one after another. Our
QWeight keeps the same d and qs but in two arrays (scales [N, K/32], data); the test splits gguf's
blocks accordingly. Deterministic (fixed seed).

Run: /usr/bin/python3 tools/make_quant_fixture.py
"""
import json
import os

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import quants

QK = 32
rng = np.random.RandomState(1234)


def matrices():
    out = []
    # Plain random rows.
    out.append(('random', rng.randn(3, 64).astype(np.float32)))
    # Wider spread, several blocks per row.
    out.append(('scaled', (rng.randn(2, 128) * 0.05).astype(np.float32)))
    m = rng.randn(4, 64).astype(np.float32)
    m[0, 0:32] = 0.0                        # an all-zero block (d = 0)
    m[1, 32:64] = rng.randn(32) * 0.01
    m[1, 40] = -1000.0                      # a block whose largest magnitude is negative
    m[2, 0:32] = rng.randn(32) * 0.1
    m[2, 5] = 3.0                           # ... and one whose is positive (q4_0: d < 0)
    # Ties: with amax 127 the q8_0 scale is 1, so x.5 values sit exactly halfway.
    m[3, 0:32] = np.array([127.0] + [k + 0.5 for k in range(-15, 16)], dtype=np.float32)
    m[3, 32:64] = rng.uniform(-1, 1, 32).astype(np.float32) * 1e-6  # tiny values: subnormal-range scales
    out.append(('edge', m))
    return out


def hexs(a):
    return bytes(np.ascontiguousarray(a).view(np.uint8)).hex()


def main():
    cases = []
    for name, w in matrices():
        N, K = w.shape
        case = {'name': name, 'N': N, 'K': K, 'values': [float(v) for v in w.reshape(-1)]}
        for fmt, qt in (('q8_0', T.Q8_0), ('q4_0', T.Q4_0)):
            blocks = quants.quantize(w, qt)         # [N, K/32 * block bytes], uint8
            deq = quants.dequantize(blocks, qt)     # [N, K] float32
            case[fmt] = {'blocks': hexs(blocks), 'dequantized': [float(v) for v in deq.reshape(-1)]}
        cases.append(case)

    # bf16: round-to-nearest-even incl. exact ties, infinities, signed zero, subnormals, overflow.
    special = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -8 + 2 ** -20, -2.5, 0.0, -0.0,
                        np.inf, -np.inf, 1e-40, -3e-39, 3.4028235e38, 3.3961776e38, 65504.0, 1e-8],
                       dtype=np.float32)
    vals = np.concatenate([special, rng.randn(64).astype(np.float32), (rng.randn(32) * 1e30).astype(np.float32)])
    bits = torch.from_numpy(vals).to(torch.bfloat16).view(torch.int16).numpy().astype(np.uint16)
    # f32 inputs as bit patterns (JSON has no Infinity).
    bf16 = {'f32_bits': [int(b) for b in vals.view(np.uint32)], 'bits': [int(b) for b in bits]}

    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, '..', 'test', 'fixtures', 'quant', 'golden.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump({'generator': 'tools/make_quant_fixture.py', 'gguf': '0.19 gguf.quants', 'torch': torch.__version__,
                   'block_layout': 'per block: d (f16 LE) then qs', 'cases': cases, 'bf16': bf16}, f)
        f.write('\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""Generate golden safetensors files with PyTorch's own dtype conversions.

Run with Debian's python3-torch:  /usr/bin/python3 tools/gen_safetensors_fixtures.py

The `safetensors` package is not installed here, so the file format is written by hand with
struct/json exactly per the spec:
    [u64 little-endian N][N bytes JSON header][data section]
    header = {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}
and every file is read back by an independent little parser here and compared with torch.

Writes to test/fixtures/io/:
  golden.safetensors          header padded to 8 bytes (as the reference writer does)
  golden_unaligned.safetensors  no padding, 2-byte tensors first, so 4/8-byte tensors are misaligned
  golden.json                 expected values as float32 bit patterns (torch's .to(float32))
                              and torch's float32 → f16 / bf16 rounding of `src` (bit patterns)
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, 'test', 'fixtures', 'io')

DTYPE = {torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16', torch.int64: 'I64',
         torch.int32: 'I32', torch.float64: 'F64'}
SIZE = {'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'F64': 8}


def raw_bytes(t):
    """Little-endian bytes of a tensor (via an integer view for the 16-bit float types)."""
    t = t.contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        return struct.pack('<%dh' % t.numel(), *t.view(torch.int16).reshape(-1).tolist())
    if t.dtype == torch.float32:
        return struct.pack('<%di' % t.numel(), *t.view(torch.int32).reshape(-1).tolist())
    if t.dtype == torch.float64:
        return struct.pack('<%dq' % t.numel(), *t.view(torch.int64).reshape(-1).tolist())
    if t.dtype == torch.int64:
        return struct.pack('<%dq' % t.numel(), *t.reshape(-1).tolist())
    if t.dtype == torch.int32:
        return struct.pack('<%di' % t.numel(), *t.reshape(-1).tolist())
    raise ValueError(t.dtype)


def write_safetensors(path, tensors, metadata, pad=True):
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    data = b''
    for name, t in tensors:
        b = raw_bytes(t)
        header[name] = {'dtype': DTYPE[t.dtype], 'shape': list(t.shape),
                        'data_offsets': [len(data), len(data) + len(b)]}
        data += b
    hb = json.dumps(header, separators=(',', ':')).encode('utf-8')
    if pad:
        hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb)))
        f.write(hb)
        f.write(data)


def read_back(path):
    """Independent reader: returns {name: tensor}, metadata."""
    with open(path, 'rb') as f:
        buf = f.read()
    (n,) = struct.unpack('<Q', buf[:8])
    header = json.loads(buf[8:8 + n].decode('utf-8'))
    meta = header.pop('__metadata__', None)
    out = {}
    inv = {v: k for k, v in DTYPE.items()}
    for name, e in header.items():
        b, end = e['data_offsets']
        chunk = bytearray(buf[8 + n + b:8 + n + end])
        dt = inv[e['dtype']]
        if len(chunk) == 0:
            t = torch.empty(e['shape'], dtype=dt)
        elif dt in (torch.float16, torch.bfloat16):
            t = torch.frombuffer(chunk, dtype=torch.int16).view(dt)
        else:
            t = torch.frombuffer(chunk, dtype=dt)
        out[name] = t.reshape(e['shape']).clone()
    return out, meta


def bits32(t):
    """float32 bit patterns (unsigned) of torch's own widening to float32."""
    return [v & 0xffffffff for v in t.to(torch.float32).reshape(-1).view(torch.int32).tolist()]


def from_bits16(vals, dtype):
    return torch.tensor([v - 65536 if v >= 32768 else v for v in vals], dtype=torch.int16).view(dtype)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    edge = [0.0, -0.0, 1.0, -1.0, 0.1, 1.0 / 3.0, -2.5, 65504.0, -65504.0, 6.103515625e-05,
            5.960464477539063e-08, 1e-5, -3e-6, math.inf, -math.inf, math.nan, 1e-40, 3.4e38, 1e30, 7.0]
    f32 = torch.tensor(edge[:12], dtype=torch.float32).reshape(3, 4)
    f16 = torch.cat([torch.tensor(edge[:16], dtype=torch.float16),
                     from_bits16([0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x7d01, 0xfe00, 0x7c00, 0x8001,
                                  0x3c01, 0x7e00, 0xffff], torch.float16),
                     (torch.randn(20, generator=g) * 100).to(torch.float16)])
    bf16 = torch.cat([torch.tensor(edge, dtype=torch.bfloat16),
                      from_bits16([0x0001, 0x007f, 0x0080, 0x7f7f, 0xff7f, 0x7fc1, 0xffc0, 0x7f80, 0x8001],
                                  torch.bfloat16),
                      (torch.randn(20, generator=g) * 1e3).to(torch.bfloat16)])
    i64 = torch.tensor([[0, 1, -1, 12345], [2147483647, -2147483648, 42, -7]], dtype=torch.int64)
    i32 = torch.tensor([5, -5, 2147483647, -2147483648], dtype=torch.int32)
    f64 = torch.tensor([0.1, -1e-300, 1e300, 3.141592653589793, 1e-45], dtype=torch.float64)
    scalar = torch.tensor(2.75, dtype=torch.float32)
    empty = torch.zeros(0, dtype=torch.float32)
    # Values to round: ties (both directions), overflow-by-rounding, underflow, subnormal ties, random.
    src_vals = [1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 1.0 + 2 ** -11 + 2 ** -20, 65519.0, 65520.0, 65536.0,
                2 ** -25, 2 ** -25 * 1.5, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 2 ** -14 - 2 ** -25, -(2 ** -26),
                1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -8 + 2 ** -20, 3.3895314e38, 3.4028235e38,
                1e-39, -1e-39, math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-45]
    src = torch.cat([torch.tensor(src_vals, dtype=torch.float32),
                     torch.randn(200, generator=g) * torch.exp(torch.randn(200, generator=g) * 6)])

    tensors = [('f32', f32), ('f16', f16), ('bf16', bf16), ('i64', i64), ('i32', i32), ('f64', f64),
               ('scalar', scalar), ('empty', empty), ('src', src)]
    metadata = {'format': 'pt', 'note': 'golden'}
    p1 = os.path.join(OUT_DIR, 'golden.safetensors')
    write_safetensors(p1, tensors, metadata, pad=True)
    # Unaligned variant: 16-bit tensors first and no header padding.
    order = sorted(tensors, key=lambda kv: SIZE[DTYPE[kv[1].dtype]])
    p2 = os.path.join(OUT_DIR, 'golden_unaligned.safetensors')
    write_safetensors(p2, order, None, pad=False)

    for p, want_meta in ((p1, metadata), (p2, None)):
        back, meta = read_back(p)
        assert meta == want_meta, (p, meta)
        for name, t in tensors:
            b = back[name]
            assert b.dtype == t.dtype and list(b.shape) == list(t.shape), (p, name)
            if t.dtype in (torch.float16, torch.bfloat16):
                assert torch.equal(b.view(torch.int16), t.view(torch.int16)), (p, name)
            elif t.is_floating_point():
                assert torch.equal(torch.nan_to_num(b), torch.nan_to_num(t)) and \
                    torch.equal(torch.isnan(b), torch.isnan(t)), (p, name)
            else:
                assert torch.equal(b, t), (p, name)

    expected = {
        'metadata': metadata,
        'tensors': {name: {'dtype': DTYPE[t.dtype], 'shape': list(t.shape),
                           **({'bits': bits32(t)} if t.is_floating_point() else {'values': t.reshape(-1).tolist()})}
                    for name, t in tensors},
        # torch's float32 → half / bfloat16 rounding of `src`, as unsigned 16-bit patterns
        'src_f16_bits': [v & 0xffff for v in src.to(torch.float16).view(torch.int16).tolist()],
        'src_bf16_bits': [v & 0xffff for v in src.to(torch.bfloat16).view(torch.int16).tolist()],
    }
    with open(os.path.join(OUT_DIR, 'golden.json'), 'w') as f:
        json.dump(expected, f, separators=(',', ':'))
        f.write('\n')
    print('wrote', p1, p2, 'and golden.json')


if __name__ == '__main__':
    main()

"""Scratch experiment: CPU scaled_dot_product_attention backends, forward+backward, at MiniLM training shapes.

    .venv/bin/python benchmarks/experiments_sdpa.py
Shapes (B, heads, T, d) = (8, 12, T, 32) with a boolean key-padding mask (20% padding); dropout 0 or 0.1;
fp32 or bf16; default backend choice vs forcing MATH or FLASH_ATTENTION. Prints ms per fwd+bwd (best of 5 x 20).
"""
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.set_num_threads(2)


def bench(T, dtype, p, backend):
    B, h, d = 8, 12, 32
    q, k, v = (torch.randn(B, h, T, d, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[:, int(T * 0.8):] = False
    m = mask[:, None, None, :]
    g = torch.randn(B, h, T, d, dtype=dtype)
    def once():
        with (sdpa_kernel(backend) if backend else torch.autocast("cpu", enabled=False)):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=p)
        y.backward(g)
    try:
        for _ in range(3):
            once()
    except RuntimeError as e:
        return f"n/a ({str(e).splitlines()[0][:40]})"
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            once()
        best = min(best, (time.perf_counter() - t) / 20)
    return f"{best * 1e3:6.2f} ms"


for T in (32, 64):
    for dtype in (torch.float32, torch.bfloat16):
        for p in (0.0, 0.1):
            row = [bench(T, dtype, p, b) for b in (None, SDPBackend.MATH, SDPBackend.FLASH_ATTENTION)]
            print(f"T={T:3d} {str(dtype):15s} dropout={p}: default {row[0]}   MATH {row[1]}   FLASH {row[2]}", flush=True)


@torch.no_grad()
def bench_fwd(B, T, dtype, backend):
    h, d = 12, 32
    q, k, v = (torch.randn(B, h, T, d, dtype=dtype) for _ in range(3))
    m = torch.ones(B, T, dtype=torch.bool)
    m[:, int(T * 0.9):] = False
    m = m[:, None, None, :]

    def once():
        with (sdpa_kernel(backend) if backend else torch.autocast("cpu", enabled=False)):
            F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    for _ in range(3):
        once()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(20):
            once()
        best = min(best, (time.perf_counter() - t) / 20)
    return f"{best * 1e3:6.2f} ms"


print("forward only, no_grad (evaluation), batch 64:")
for T in (16, 32, 64):
    for dtype in (torch.float32, torch.bfloat16):
        row = [bench_fwd(64, T, dtype, b) for b in (None, SDPBackend.MATH, SDPBackend.FLASH_ATTENTION)]
        print(f"T={T:3d} {str(dtype):15s}: default {row[0]}   MATH {row[1]}   FLASH {row[2]}", flush=True)

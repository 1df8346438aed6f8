import time, torch
torch.set_num_threads(2)
def bench(f, n=300):
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6
for BH, T in [(96, 30), (192, 40), (96, 64)]:
    a = torch.randn(BH, T, 32); b = torch.randn(BH, 32, T); w = torch.randn(BH, T, T); v = torch.randn(BH, T, 32)
    ab, bb, wb, vb = a.bfloat16(), b.bfloat16(), w.bfloat16(), v.bfloat16()
    print(BH, T, f"qk bf16 {bench(lambda: ab @ bb):.0f}us fp32 {bench(lambda: a @ b):.0f}us | wv bf16 {bench(lambda: wb @ vb):.0f}us fp32 {bench(lambda: w @ v):.0f}us | cast {bench(lambda: a.bfloat16()):.0f}us")

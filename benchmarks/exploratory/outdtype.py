import time, torch
torch.set_num_threads(2)
def bench(f, n=200):
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6
g = torch.randn(240, 1536).bfloat16(); x = torch.randn(240, 384).bfloat16()
try:
    r = torch.mm(g.t(), x, out_dtype=torch.float32); print("mm out_dtype ok", r.dtype, r.shape, r.is_contiguous())
    print("mm out_dtype fp32", bench(lambda: torch.mm(g.t(), x, out_dtype=torch.float32)))
except Exception as e: print("mm out_dtype:", type(e).__name__, str(e)[:200])
print("mm bf16 + to fp32", bench(lambda: torch.mm(g.t(), x).float()))
print("mm bf16", bench(lambda: torch.mm(g.t(), x)))
buf = torch.zeros(1536, 384)
try:
    print("addmm_ into fp32 buf?", bench(lambda: buf.addmm_(g.t().float(), x.float())))
except Exception as e: print("addmm:", e)

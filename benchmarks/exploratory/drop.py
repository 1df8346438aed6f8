import time, torch, torch.nn.functional as F
torch.set_num_threads(2)
def bench(f, n=200):
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6
for shape in [(8, 30, 384), (16, 35, 384), (8, 12, 30, 30), (16, 30, 1536)]:
    x = torch.randn(shape); xb = x.bfloat16()
    n = x.numel()
    idx = torch.arange(n, dtype=torch.int64)
    r = {}
    r["bernoulli_"] = bench(lambda: torch.empty_like(x).bernoulli_(0.9))
    r["F.dropout"] = bench(lambda: F.dropout(x, 0.1, True))
    r["F.dropout bf16"] = bench(lambda: F.dropout(xb, 0.1, True))
    r["rand_like<p"] = bench(lambda: torch.rand_like(x) < 0.9)
    r["randint u8"] = bench(lambda: torch.randint(0, 256, shape, dtype=torch.uint8))
    r["randint i32"] = bench(lambda: torch.randint(0, 2**31 - 1, shape, dtype=torch.int32))
    def hashmask(seed=12345):
        h = idx * 0x9E3779B97F4A7C15 + seed
        h = (h ^ (h >> 31)) * 0x5851F42D4C957F2D  # (overflow wraps)
        h = h ^ (h >> 29)
        return (h & 0xFFFFFF) >= int(0.1 * 2**24)
    r["hash int64"] = bench(hashmask)
    r["x*mask (mul)"] = bench(lambda: x * (1 / 0.9))
    print(shape, n, "  ".join(f"{k} {v:.0f}us" for k, v in r.items()))

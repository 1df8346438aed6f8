import math, time, torch, torch.nn.functional as F
torch.set_num_threads(2)
_F_dropout = F.dropout
def keep_mask(shape, p, device="cpu"):
    n = math.prod(shape)
    w = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)
    thr = round(p * 65536) - 32768
    return w.view(torch.int16)[:n].view(shape) >= thr, 1.0 - round(p * 65536) / 65536
def fast_dropout(x, p=0.5, training=True, inplace=False):
    if not training or p == 0 or x.device.type != "cpu":
        return _F_dropout(x, p, training, inplace)
    m, keep = keep_mask(x.shape, p, x.device)
    return x * m * (1.0 / keep) if False else x * (m.to(x.dtype) * (1.0 / keep))
if __name__ == "__main__":
    def bench(f, n=200):
        for _ in range(5): f()
        t0 = time.perf_counter()
        for _ in range(n): f()
        return (time.perf_counter() - t0) / n * 1e6
    for shape in [(8, 30, 384), (8, 12, 30, 30), (16, 30, 1536)]:
        x = torch.randn(shape)
        print(shape, f"F.dropout {bench(lambda: _F_dropout(x, 0.1, True)):.0f}us mask {bench(lambda: keep_mask(x.shape, 0.1)):.0f}us fast {bench(lambda: fast_dropout(x, 0.1, True)):.0f}us")
    m, k = keep_mask((1000, 1000), 0.1); print("keep", m.float().mean().item(), k)
    x = torch.ones(2000, 1000); print("mean", fast_dropout(x, 0.1).mean().item())
    w = torch.empty(1000000, dtype=torch.int64).random_(-2**63, None); v = w.view(torch.int16).float(); print("int16 mean/min/max", v.mean().item(), v.min().item(), v.max().item(), (w < 0).float().mean().item())

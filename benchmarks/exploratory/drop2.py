import time, torch, torch.nn.functional as F
torch.set_num_threads(2)
def bench(f, n=200):
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6
t0 = time.perf_counter()
cd = torch.compile(lambda x: F.dropout(x, 0.1, True), dynamic=True)
cm = torch.compile(lambda x: torch.rand_like(x) >= 0.1, dynamic=True)
cd(torch.randn(8, 30, 384)); cm(torch.randn(8, 30, 384))
print("compile", time.perf_counter() - t0)
for shape in [(8, 30, 384), (16, 35, 384), (8, 12, 30, 30), (16, 30, 1536)]:
    x = torch.randn(shape)
    print(shape, f"eager {bench(lambda: F.dropout(x, 0.1, True)):.0f}us  compiled dropout {bench(lambda: cd(x)):.0f}us  compiled mask {bench(lambda: cm(x)):.0f}us")
m = cm(torch.randn(1000, 1000)); print("keep rate", m.float().mean().item())

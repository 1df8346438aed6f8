import time, torch, torch.nn.functional as F
torch.set_num_threads(2)
def bench(f, n=50):
    for _ in range(3): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e3
W = torch.randn(30522, 384, requires_grad=True)
for B, T in [(8, 30), (16, 64), (16, 128)]:
    ids = torch.randint(1000, 30000, (B, T))
    g = torch.randn(B, T, 384)
    def dense():
        W.grad = None
        F.embedding(ids, W).backward(g)
    buf = torch.zeros_like(W)
    def sparse():
        W.grad = buf.zero_()
        F.embedding(ids, W, sparse=True).backward(g)
    def idxadd():
        buf.zero_(); buf.index_add_(0, ids.reshape(-1), g.reshape(-1, 384))
    print(B, T, f"dense {bench(dense):.2f} ms  sparse->buffer {bench(sparse):.2f} ms  zero+index_add {bench(idxadd):.2f} ms")

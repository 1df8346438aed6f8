import math, time, torch, torch.nn.functional as F
import mtbert_lib.attention as att
torch.set_num_threads(2)
def bench(f, n=50):
    for _ in range(3): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e3
for B, T in [(8, 20), (8, 40), (16, 64), (8, 128), (16, 128)]:
    q, k, v = (torch.randn(B, 12, T, 32, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    mask = torch.ones(B, T, dtype=torch.bool); mask[: B // 2, T * 3 // 4:] = False
    def sdpa():
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], dropout_p=0.1); y.float().sum().backward()
    def manual():
        y, _ = att.scaled_dot_product_attention(q, k, v, mask, 0.1, True); y.float().sum().backward()
    print(B, T, f"sdpa+bernoulli {bench(sdpa):.2f} ms   manual+fast {bench(manual):.2f} ms")

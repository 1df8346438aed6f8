import math, time, torch, torch.nn.functional as F
torch.set_num_threads(2)
def bench(f, n=300):
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6
for B, T in [(8, 30), (16, 40), (64, 30)]:
    q, k, v = (torch.randn(B, 12, T, 32).bfloat16() for _ in range(3))
    mask = torch.ones(B, T, dtype=torch.bool); mask[: B // 2, T * 2 // 3:] = False
    m4 = mask[:, None, None, :]
    def manual(sm32=True):
        s = q @ k.transpose(-2, -1) / math.sqrt(32)
        s = s.masked_fill(~m4, torch.finfo(s.dtype).min)
        w = s.softmax(-1, dtype=torch.float32).to(s.dtype) if sm32 else s.softmax(-1)
        return w @ v
    def manual_add():
        s = torch.baddbmm(torch.where(m4, 0.0, -1e4).to(q.dtype).expand(B, 12, T, T).reshape(B*12, T, T), q.reshape(B*12, T, 32), k.reshape(B*12, T, 32).transpose(1, 2), alpha=1/math.sqrt(32))
        return (s.softmax(-1, dtype=torch.float32).to(q.dtype) @ v.reshape(B*12, T, 32))
    with torch.no_grad():
        print(B, T, f"sdpa {bench(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m4)):.0f}us  manual fp32-softmax {bench(manual):.0f}us  manual bf16 softmax {bench(lambda: manual(False)):.0f}us baddbmm {bench(manual_add):.0f}us")
        r = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=m4)
        print("   err vs fp32 ref: sdpa", (F.scaled_dot_product_attention(q, k, v, attn_mask=m4).float() - r).abs().max().item(), "manual32", (manual().float() - r).abs().max().item())

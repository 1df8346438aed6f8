import sys, time, torch, torch.nn.functional as F
sys.path[:0] = ["."]
from mtbert_lib.model import BertModel
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(2)
m = BertModel.from_pretrained("minilm")
B, T = 8, 30
ids = torch.randint(1000, 20000, (B, T)); mask = torch.ones(B, T, dtype=torch.long)
def run(train, n=30, prec=torch.bfloat16, bwd=False):
    m.train(train)
    for i in range(n + 3):
        if i == 3: t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=prec, enabled=prec is not None):
            if bwd:
                h = m(ids, mask).last_hidden_state
            else:
                with torch.no_grad(): h = m(ids, mask).last_hidden_state
        if bwd:
            h.float().sum().backward(); m.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / n * 1e3
for name, kw in [("eval nograd bf16", dict(train=False)), ("train nograd bf16", dict(train=True)),
                 ("eval nograd fp32", dict(train=False, prec=None)), ("train fwd+bwd bf16", dict(train=True, bwd=True)),
                 ("eval fwd+bwd bf16", dict(train=False, bwd=True))]:
    print(f"{name:22s} {run(**kw):7.2f} ms")
H, I = 384, 1536
fl = 6 * (2 * (4 * H * H + 2 * H * I) * B * T + 4 * B * T * T * H)
print("fwd GFLOP", fl / 1e9, "at 848:", fl / 848e9 * 1e3, "ms")
m.train(True)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(10):
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            m(ids, mask)
rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
tot = sum(e.self_cpu_time_total for e in rows)
for e in rows[:20]:
    print(f"{e.self_cpu_time_total/1e4:8.2f} ms/fwd {100*e.self_cpu_time_total/tot:5.1f}% {e.count//10:5d}  {e.key}")

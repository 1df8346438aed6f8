import sys, time, torch
sys.path[:0] = ["."]
from mtbert_lib.model import BertModel
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(2)
m = BertModel.from_pretrained("minilm")
m.embeddings.word_embeddings.sparse = True
m.embeddings.word_embeddings.weight.grad = torch.zeros_like(m.embeddings.word_embeddings.weight)
B, T = 8, 30
ids = torch.randint(1000, 20000, (B, T)); mask = torch.ones(B, T, dtype=torch.long)
m.train(True)
def step():
    for n, p in m.named_parameters():
        if "word_emb" in n: p.grad.zero_()
        else: p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = m(ids, mask).last_hidden_state
    h.float().sum().backward()
for _ in range(5): step()
t0 = time.perf_counter()
for _ in range(20): step()
print("ms/step", (time.perf_counter() - t0) / 20 * 1e3)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(10): step()
rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
tot = sum(e.self_cpu_time_total for e in rows)
print("profiled total self ms/step", tot / 1e4)
for e in rows[:30]:
    print(f"{e.self_cpu_time_total/1e4:8.2f} ms/step {100*e.self_cpu_time_total/tot:5.1f}% {e.count//10:5d}  {e.key}")

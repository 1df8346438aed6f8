import sys, time, torch
sys.path[:0] = ["."]
from mtbert_lib.model import BertModel
from mtbert_lib.training import tune_cpu_allocator
from torch.profiler import profile, ProfilerActivity
print("tuned", tune_cpu_allocator())
torch.set_num_threads(2)
m = BertModel.from_pretrained("minilm")
W = m.embeddings.word_embeddings; W.sparse = True; buf = torch.zeros_like(W.weight)
B, T = 8, 30
ids = torch.randint(1000, 20000, (B, T)); mask = torch.ones(B, T, dtype=torch.long); mask[:4, 20:] = 0
m.train(True)
def step(bwd=True):
    m.zero_grad(set_to_none=True); W.weight.grad = buf.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = m(ids, mask).last_hidden_state
    if bwd: h.float().sum().backward()
for f, name in [(lambda: step(False), "fwd"), (step, "fwd+bwd")]:
    for _ in range(5): f()
    t0 = time.perf_counter()
    for _ in range(30): f()
    print(name, (time.perf_counter() - t0) / 30 * 1e3, "ms", "minflt", open("/proc/self/stat").read().split()[9])
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(10): step()
rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total, reverse=True)
tot = sum(e.self_cpu_time_total for e in rows)
print("profiled total self ms/step", tot / 1e4)
for e in rows[:40]:
    print(f"{e.self_cpu_time_total/1e4:8.2f} ms/step {100*e.self_cpu_time_total/tot:5.1f}% {e.count//10:5d}  {e.key:35s} {str(e.input_shapes)[:80]}")
print("---- forward only")
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(10): step(False)
rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total, reverse=True)
for e in rows[:12]:
    print(f"{e.self_cpu_time_total/1e4:8.2f} ms/step {e.count//10:5d}  {e.key:35s} {str(e.input_shapes)[:80]}")
print("---- backward nodes (total incl. children)")
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for _ in range(10): step()
rows = sorted([e for e in prof.key_averages() if "evaluate_function" in e.key], key=lambda e: e.cpu_time_total, reverse=True)
for e in rows[:14]:
    print(f"{e.cpu_time_total/1e4:8.2f} ms/step {e.count//10:5d}  {e.key}")

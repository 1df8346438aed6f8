import sys, runpy, torch
from torch.profiler import profile, ProfilerActivity
sys.argv = ["proto.py", "20", sys.argv[1]]
src = open("/work/scratch/proto.py").read().split("finals = {}")[0]
g = {}
exec(src, g)
v = sys.argv[2]
g["set_variant"](v); g["side"].run(g["rounds"][:2], timed=False, evaluate=False)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    g["side"].run(g["rounds"], timed=False, evaluate=False)
rows = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: e.self_cpu_time_total, reverse=True)
tot = sum(e.self_cpu_time_total for e in rows)
print(f"total self {tot/1e3:.0f} ms")
for e in rows[:25]:
    print(f"{e.self_cpu_time_total/1e3:9.1f} ms {e.count:6d}  {e.key:40s} {str(e.input_shapes)[:90]}")

import sys, tempfile, torch
sys.path[:0] = [".", "./benchmarks"]
import bench_epoch as be
from torch.profiler import profile, ProfilerActivity
torch.set_num_threads(2)
args = be.parse_args(["--rounds", "40", "--eval-limit", "8", "--skip-hf"])
cfg = be.make_config(args, torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[:int(sys.argv[1]) if len(sys.argv) > 1 else 20]
side = be.MtbertSide(R)
side.run(rounds[:2], timed=False, evaluate=False)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_stack=False) as prof:
    side.run(rounds, timed=False, evaluate=False)
ka = prof.key_averages(group_by_input_shape=True)
rows = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)
for e in rows[:40]:
    print(f"{e.self_cpu_time_total/1e3:9.1f} ms {e.count:6d}  {e.key:40s} {str(e.input_shapes)[:110]}")

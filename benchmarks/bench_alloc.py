"""Time a slice of the best recipe's training (balanced round-robin, three tasks, per-task steps, Mean Teacher)
under the current process's allocator, and count its page faults. Run it under different allocators:

    python benchmarks/bench_alloc.py                                   # glibc malloc
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 python benchmarks/bench_alloc.py
"""
import argparse, json, os, resource, sys, time
from dataclasses import replace

import torch

from mtbert_lib.experiments import get_experiment
from mtbert_lib.training import train

ap = argparse.ArgumentParser()
ap.add_argument("--examples", type=int, default=240, help="training examples per task")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--label", default=os.environ.get("LD_PRELOAD", "glibc").split("/")[-1] or "glibc")
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = replace(get_experiment("rr-balanced-specialized-mt"), epochs=1, train_limit=a.examples, dev_limit=8,
              train_eval_limit=8, eval_tasks=("sts",))
ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.time()
train(replace(cfg, train_limit=24), run_dir="/tmp/bench_alloc_warm", results_dir=None, progress=False, log=lambda *_: None)
ru1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.time()
r = train(cfg, run_dir="/tmp/bench_alloc", results_dir=None, progress=False, log=lambda *_: None)
ru2, t2 = resource.getrusage(resource.RUSAGE_SELF), time.time()
steps = r["epochs"][0]["step"]
print(json.dumps({"allocator": a.label, "threads": a.threads, "steps": steps, "wall_s": round(t2 - t1, 2),
                  "ms_per_step": round(1000 * (t2 - t1) / steps, 1), "user_s": round(ru2.ru_utime - ru1.ru_utime, 1),
                  "sys_s": round(ru2.ru_stime - ru1.ru_stime, 1), "minor_faults": ru2.ru_minflt - ru1.ru_minflt}))

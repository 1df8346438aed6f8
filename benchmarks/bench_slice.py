#!/usr/bin/env python
"""One end-to-end pass of the library's training step over every K-th round of the best recipe's epoch 1 (mtbert
only, no evaluation): a short, representative slice for paired A/B runs of two checkouts.

    ROOT=/path/to/checkout K=8 python benchmarks/bench_slice.py

It imports mtbert_lib and benchmarks/bench_epoch.py from ROOT (default: this checkout), so running it alternately
for two checkouts (A B A B ..., the same data via MTBERT_DATA) compares their code on the same rounds; it prints the
pass's seconds. README (Speed) quotes the medians of three alternating runs per checkout."""
import os, sys, tempfile, time
from pathlib import Path

ROOT = os.environ.get("ROOT") or str(Path(__file__).resolve().parents[1])
sys.path[:0] = [ROOT, ROOT + "/benchmarks"]
import torch  # noqa: E402
import bench_epoch as be  # noqa: E402

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
K = int(os.environ.get("K", "4"))
cfg = be.make_config(be.parse_args(["--eval-limit", "8", "--skip-hf"]), torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[::K]
side = be.MtbertSide(R)
side.run(rounds[:2], timed=False, evaluate=False)  # warm-up
t0 = time.perf_counter()
side.run(rounds, timed=False, evaluate=False)
print(f"{ROOT}: {len(rounds)} rounds {time.perf_counter() - t0:.2f} s", flush=True)

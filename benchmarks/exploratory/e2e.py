"""One e2e pass of the library's step over every K-th round of epoch 1 (mtbert only); ROOT = the checkout to import."""
import os, sys, tempfile, time
ROOT = os.environ["ROOT"]
sys.path[:0] = [ROOT, ROOT + "/benchmarks"]
import torch
import bench_epoch as be
torch.set_num_threads(2)
K = int(os.environ.get("K", "4"))
cfg = be.make_config(be.parse_args(["--eval-limit", "8", "--skip-hf"]), torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[::K]
side = be.MtbertSide(R)
side.run(rounds[:2], timed=False, evaluate=False)
t0 = time.perf_counter()
side.run(rounds, timed=False, evaluate=False)
print(f"{ROOT}: {len(rounds)} rounds {time.perf_counter() - t0:.2f} s", flush=True)

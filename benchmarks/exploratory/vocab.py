import sys, tempfile, torch
sys.path[:0] = [".", "./benchmarks"]
import bench_epoch as be
args = be.parse_args(["--eval-limit", "8", "--skip-hf"])
cfg = be.make_config(args, torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
def ids_of(split, idx):
    out = set()
    for attr in ("single", "joint", "first", "second"):
        seqs = getattr(split, attr, None)
        if seqs is None: continue
        for i in idx: out.update(seqs[i][0])
    return out
for ep in (0, 1):
    rounds = cfg.sample_epoch(R.lengths, ep)
    seen = set(); growth = []
    for r, rnd in enumerate(rounds):
        for task, idx in rnd: seen |= ids_of(R.train_sets[task], idx)
        if r in (10, 50, 100, 200, 400, 754): growth.append((r, len(seen)))
    print("epoch", ep, growth)
allseen = set()
for t, s in R.train_sets.items(): allseen |= ids_of(s, range(len(s))); print(t, len(s), len(allseen))

import sys, tempfile, time, torch
sys.path[:0] = [".", "./benchmarks"]
import bench_epoch as be
import mtbert_lib.attention as att
torch.set_num_threads(2)
K = int(sys.argv[1]); variants = sys.argv[2].split(","); reps = int(sys.argv[3])
cfg = be.make_config(be.parse_args(["--eval-limit", "8", "--skip-hf"]), torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[::K]
side = be.MtbertSide(R)
W = R.model.encoder.embeddings.word_embeddings; bufs = R.grad_buffers
_fwd = att.MultiHeadSelfAttention.forward
def sdpa_fwd(self, *a, **k):
    old = att.CPU_DROPOUT; att.CPU_DROPOUT = "torch"
    try: return _fwd(self, *a, **k)
    finally: att.CPU_DROPOUT = old
def setv(v):
    att.CPU_DROPOUT = "fast" if "drop" in v else "torch"
    att.MultiHeadSelfAttention.forward = sdpa_fwd if "keepsdpa" in v else _fwd
    W.sparse = "emb" in v; R.grad_buffers = bufs if "emb" in v else ()
for v in variants:
    setv(v); side.run(rounds[:3], timed=False, evaluate=False)
res = {v: [] for v in variants}
for rep in range(reps):
    for v in variants:
        setv(v); T, _ = side.run(rounds, timed=True, evaluate=False); res[v].append((T.total, T.breakdown()))
for v in variants:
    tot, b = min(res[v], key=lambda x: x[0])
    print(f"{v:10s} total {tot:6.2f} (all {' '.join(f'{t:.2f}' for t, _ in res[v])}) " + " ".join(f"{k[:4]} {x:5.2f}" for k, x in b.items() if k in ("forward", "backward", "optimizer", "ema", "consistency")))

import resource, sys, tempfile, time, torch
sys.path[:0] = [".", "./benchmarks"]
import bench_epoch as be
import mtbert_lib.attention as att
torch.set_num_threads(2)
N = int(sys.argv[1]); variants = sys.argv[2].split(","); reps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
args = be.parse_args(["--eval-limit", "8", "--skip-hf"])
cfg = be.make_config(args, torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[:N]
side = be.MtbertSide(R)
W = R.model.encoder.embeddings.word_embeddings
bufs = R.grad_buffers
def setv(v):
    att.CPU_DROPOUT = "fast" if "drop" in v else "torch"
    W.sparse = "emb" in v
    R.grad_buffers = bufs if "emb" in v else ()
    for mod in R.teacher.model.modules():
        if hasattr(mod, "impl"): mod.impl = "manual" if "tman" in v else "sdpa"
for v in variants:
    setv(v); side.run(rounds[:3], timed=False, evaluate=False)
times = {v: [] for v in variants}
for rep in range(reps):
    for v in variants:
        setv(v)
        f0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter(); side.run(rounds, timed=False, evaluate=False); times[v].append(time.perf_counter() - t0)
        f1 = resource.getrusage(resource.RUSAGE_SELF)
        print(f"  {v}: {times[v][-1]:.2f} s, minflt/step {(f1.ru_minflt - f0.ru_minflt) / (3 * N):.0f}, sys {f1.ru_stime - f0.ru_stime:.2f} s", flush=True)
for v in variants:
    print(f"{v:12s} best {min(times[v]):.2f} s = {1e3 * min(times[v]) / (3 * N):.1f} ms/step   all {' '.join(f'{t:.2f}' for t in times[v])}")

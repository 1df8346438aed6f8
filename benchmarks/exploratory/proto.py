import resource, sys, tempfile, time, types, torch
sys.path[:0] = [".", "./benchmarks"]
import bench_epoch as be
torch.set_num_threads(2)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 40
variants = sys.argv[2].split(",") if len(sys.argv) > 2 else ["base", "sparse"]
args = be.parse_args(["--eval-limit", "8", "--skip-hf"])
cfg = be.make_config(args, torch.device("cpu"))
with tempfile.TemporaryDirectory() as d:
    R = be.start_run(cfg, d, resume=False, log=lambda *a, **k: None)
rounds = cfg.sample_epoch(R.lengths, 0)[:N]
side = be.MtbertSide(R)
W = R.model.encoder.embeddings.word_embeddings
orig_zero = R.opt.zero_grad
buf = torch.zeros_like(W.weight)
def set_variant(v):
    if v == "sparse":
        W.sparse = True
        def zg(set_to_none=True):
            orig_zero(set_to_none=True)
            W.weight.grad = buf.zero_()
        R.opt.zero_grad = zg
    elif v == "compile":
        from mtbert_lib.training import compile_encoder
        if not hasattr(R.model.encoder.forward, "_torchdynamo_orig_callable"):
            compile_encoder(R.model, "default")
    else:
        W.sparse = False
        R.opt.zero_grad = orig_zero
finals = {}
for v in variants:
    set_variant(v); tw = time.perf_counter(); side.run(rounds[:int(sys.argv[3]) if len(sys.argv) > 3 else 2], timed=False, evaluate=False); print(v, "warm-up", time.perf_counter() - tw, flush=True)
times = {v: [] for v in variants}
for rep in range(2):
    for v in variants:
        set_variant(v)
        f0=resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter(); side.run(rounds, timed=False, evaluate=False); times[v].append(time.perf_counter() - t0); f1=resource.getrusage(resource.RUSAGE_SELF); print(v, 'minflt/step', (f1.ru_minflt-f0.ru_minflt)/(3*N), 'sys s', f1.ru_stime-f0.ru_stime, 'user s', f1.ru_utime-f0.ru_utime)
        finals[v] = side.final
for v in variants:
    d = max(float((finals[v][k].float() - finals[variants[0]][k].float()).abs().max()) for k in finals[v])
    print(f"{v:10s} {min(times[v]):.2f} s ({', '.join(f'{t:.2f}' for t in times[v])}), {1e3*min(times[v])/(3*N):.1f} ms/step, max|Δw| vs {variants[0]} {d:.2e}")

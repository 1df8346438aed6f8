"""Scratch experiment: torch.compile (inductor, CPU C++ codegen) of mtbert for training and eval.

    .venv/bin/python benchmarks/experiments_compile.py [--mode train|eval] [--dynamic 1|0] [--pad-to 0|16]
        [--steps 30] [--unpad]

Reports the compile time (first step and later recompiles), the number of graphs, and steady-state speed
against the eager model on the same batches. --pad-to M pads every batch to a multiple of M tokens
(fewer distinct shapes for dynamic=False).
"""
import argparse, time

import torch
import torch.nn.functional as F

import exp_common as C
from exp_unpad import unpadded_forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="train")
    ap.add_argument("--dynamic", type=int, default=1)
    ap.add_argument("--pad-to", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--unpad", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--compile-mode", default=None, help="e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--wait", type=float, default=900)
    a = ap.parse_args()
    C.setup(a.threads)
    mt, hf, cfg = C.load_mt()
    P = C.train_pool("sst", a.steps)
    tok = C.tok()
    if a.pad_to:
        orig_pad = tok.pad

        def pad(encoded):
            b = orig_pad(encoded)
            T = b["input_ids"].shape[1]
            extra = (-T) % a.pad_to
            return {k: F.pad(v, (0, extra)) for k, v in b.items()}
        tok.pad = pad
    import torch._dynamo
    torch._dynamo.config.cache_size_limit = 64
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.bf16 else None
    peak = None
    for label in ("eager", "compiled"):
        m, head = C.fresh(mt)
        fwd_fn = (lambda b: unpadded_forward(m, **b)) if a.unpad else (lambda b: m(**b).pooler_output)
        if label == "compiled":
            fwd_fn = torch.compile(fwd_fn, dynamic=bool(a.dynamic), mode=a.compile_mode)
        opt = torch.optim.AdamW(list(m.parameters()) + list(head.parameters()), lr=2e-5, fused=True)
        if a.mode == "eval":
            m.eval()
        C.quiet(a.wait)
        if peak is None:
            peak = C.peak_fp32()
        # compile time: time each warm-up/first-pass step separately
        t0 = time.perf_counter()
        if a.mode == "train":
            first = C.time_train(m, opt, head, P, P["warm_buck"][:1], [], amp=amp, forward=fwd_fn)["ms_step"] / 1e3
            # one pass to hit every shape once (recompiles), then the timed pass
            t1 = time.perf_counter()
            C.time_train(m, opt, head, P, P["buck"], [], amp=amp, forward=fwd_fn)
            t_all_shapes = time.perf_counter() - t1
            r = C.time_train(m, opt, head, P, P["buck"], [], amp=amp, forward=fwd_fn, repeats=2)
            print(f"{label:9s} first step {first:6.1f}s; first pass over the {len(P['buck'])} batches {t_all_shapes:6.1f}s; "
                  f"steady: {C.fmt(r, peak)}", flush=True)
        else:
            enc, lengths = P["data"]["enc"], P["lengths"]
            order = sorted(range(len(enc)), key=lambda i: lengths[i])[:2048]
            batches = C.bs.chunks(order, 64)

            @torch.no_grad()
            def go():
                for idx in batches:
                    b = C.bs.collate(tok, enc, idx, C.CPU)
                    with (amp() if amp else torch.autocast("cpu", enabled=False)):
                        fwd_fn(b)
            go_t = time.perf_counter()
            go()
            first = time.perf_counter() - go_t
            go_t = time.perf_counter()
            go()
            dt = time.perf_counter() - go_t
            real = sum(lengths[i] for i in order)
            print(f"{label:9s} first pass {first:6.1f}s; steady {len(order) / dt:7.1f} ex/s {real / dt:7.0f} tok/s "
                  f"{C.bs.fwd_flops([lengths[i] for i in order], cfg) / dt / 1e9 / peak:5.1%} of peak", flush=True)
    if hasattr(torch._dynamo.utils, "counters"):
        print("dynamo counters:", {k: dict(v) for k, v in torch._dynamo.utils.counters.items() if k in ("stats", "frames")})


if __name__ == "__main__":
    main()

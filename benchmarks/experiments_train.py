"""Scratch experiments: what raises mtbert's CPU training speed? (MiniLM, SST-5 train pool of bench_speed.)

    .venv/bin/python benchmarks/experiments_train.py [--variants base,fused,...] [--steps 30] [--task sst]
        [--threads 2] [--repeats 2] [--profile]

Every variant trains on the SAME pool of steps*8 examples (bucketed batches unless stated), same head and loss,
and reports ms/step split into data/forward/backward/optimizer, examples/s and useful FLOP/s vs fp32 peak.
"""
import argparse, copy, json, time

import torch
import torch.nn as nn

import exp_common as C
from exp_unpad import unpadded_forward
from mtbert_lib.optim import AdamW


def make(variant, mt_base, cfg):
    """-> (model, opt, head, forward or None, amp or None, batches-key, note)"""
    m, head = C.fresh(mt_base)
    fwd, amp, key, note = None, None, "buck", ""
    params = lambda: list(m.parameters()) + list(head.parameters())  # noqa: E731
    opt = None
    if "+" in variant or variant.startswith("c:"):  # composition, e.g. "c:fused+bf16+bs32"
        feats = variant.removeprefix("c:").split("+")
        for f in feats:
            if f == "freeze":
                m.embeddings.word_embeddings.weight.requires_grad_(False)
            elif f == "nodrop":
                for layer in m.encoder.layers:
                    layer.attention.dropout = 0.0
                for mod in m.modules():
                    if isinstance(mod, nn.Dropout):
                        mod.p = 0.0
            elif f == "noattndrop":
                for layer in m.encoder.layers:
                    layer.attention.dropout = 0.0
            elif f == "unpad":
                fwd = lambda b: unpadded_forward(m, **b)  # noqa: E731
            elif f == "bf16":
                amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
            elif f == "rand":
                key = "rand"
            elif f.startswith("bs"):
                key = f
            elif f not in ("fused", "foreach"):
                raise SystemExit(f"unknown feature {f}")
        trainable = [p for p in params() if p.requires_grad]
        opt = AdamW(trainable, lr=2e-5, weight_decay=0.01, **({"fused": True} if "fused" in feats else {"foreach": True}))
        zero = None
        return m, opt, head, fwd, amp, key, "composition: " + " + ".join(feats), zero
    if variant == "base":
        note = "mtbert sdpa+fusedQKV, AdamW(foreach=True), bucketed"
    elif variant == "random":
        key, note = "rand", "as base, but HF-style random batches"
    elif variant == "loop":
        opt, note = AdamW(params(), lr=2e-5, foreach=False), "mtbert AdamW(foreach=False)"
    elif variant == "torch_adamw":
        opt, note = torch.optim.AdamW(params(), lr=2e-5, weight_decay=0.01), "torch.optim.AdamW default (for-loop on CPU)"
    elif variant == "fused":
        opt, note = torch.optim.AdamW(params(), lr=2e-5, weight_decay=0.01, fused=True), "torch.optim.AdamW(fused=True)"
    elif variant == "mt_fused":
        opt, note = AdamW(params(), lr=2e-5, weight_decay=0.01, fused=True), "mtbert AdamW(fused=True) (library default)"
    elif variant == "keep_grads":
        note = "AdamW foreach, zero_grad(set_to_none=False): grad buffers reused, not re-allocated"
    elif variant == "no_opt":
        class Nop:
            def step(self): pass
            def zero_grad(self, set_to_none=True):
                for p in params():
                    p.grad = None
        opt, note = Nop(), "NO optimizer step (lower bound: fwd+bwd only)"
    elif variant == "freeze_emb":
        m.embeddings.word_embeddings.weight.requires_grad_(False)
        note = "word embeddings frozen (no grad, not in optimizer)"
    elif variant == "sparse_emb":
        we = m.embeddings.word_embeddings
        we.sparse = True
        dense = [p for n, p in m.named_parameters() if n != "embeddings.word_embeddings.weight"] + list(head.parameters())
        o1 = AdamW(dense, lr=2e-5, weight_decay=0.01, foreach=True)
        o2 = torch.optim.SparseAdam([we.weight], lr=2e-5)

        class Two:
            def step(self):
                o1.step(), o2.step()

            def zero_grad(self, set_to_none=True):
                o1.zero_grad(set_to_none=True), o2.zero_grad(set_to_none=True)
        opt, note = Two(), "sparse word-emb grad + torch SparseAdam (lazy rows) for it; AdamW foreach for the rest"
    elif variant == "no_attn_dropout":
        for layer in m.encoder.layers:
            layer.attention.dropout = 0.0
        note = "attention-probs dropout 0 (lets CPU SDPA use its flash kernel)"
    elif variant == "no_dropout":
        for layer in m.encoder.layers:
            layer.attention.dropout = 0.0
        for mod in m.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0
        note = "all dropout 0"
    elif variant == "unpad":
        fwd, note = (lambda b: unpadded_forward(m, **b)), "unpadded linears/FFN/LN (packed (N,H)), padded attention core"
    elif variant == "unpad_random":
        fwd, key, note = (lambda b: unpadded_forward(m, **b)), "rand", "unpadded, on HF-style random batches"
    elif variant == "bf16":
        amp, note = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), "bf16 autocast (CPU avx512_bf16)"
    elif variant == "bf16_unpad":
        amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        fwd, note = (lambda b: unpadded_forward(m, **b)), "bf16 autocast + unpadded"
    elif variant.startswith("bs"):  # bs16, bs32: same pool of examples, larger batches
        key, note = variant, f"batch size {variant[2:]} (same examples)"
    elif variant in ("best", "best_bf16"):
        m.embeddings.word_embeddings.weight.requires_grad_(False)
        for layer in m.encoder.layers:
            layer.attention.dropout = 0.0
        opt = AdamW([p for p in params() if p.requires_grad], lr=2e-5, weight_decay=0.01, fused=True)
        fwd = lambda b: unpadded_forward(m, **b)  # noqa: E731
        if variant == "best_bf16":
            amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
        note = "unpad + frozen word emb + no attn dropout + mtbert fused AdamW" + (" + bf16" if amp else "")
    else:
        raise SystemExit(f"unknown variant {variant}")
    if opt is None:
        opt = AdamW([p for p in params() if p.requires_grad], lr=2e-5, weight_decay=0.01, foreach=True)
    zero = (lambda: opt.zero_grad(set_to_none=False)) if variant == "keep_grads" else None
    return m, opt, head, fwd, amp, key, note, zero


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="base,random,no_opt,loop,torch_adamw,fused,mt_fused,keep_grads,freeze_emb,sparse_emb,no_dropout,"
                                          "no_attn_dropout,unpad,unpad_random,bf16,bf16_unpad,bs16,bs32,bs64,best,best_bf16")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--task", default="sst")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--wait", type=float, default=900)
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of 10 training steps")
    ap.add_argument("--profile-variant", default="base")
    ap.add_argument("--mallopt-top-pad", type=int, default=0, metavar="BYTES",
                    help="call glibc mallopt(M_TOP_PAD, BYTES) in-process first (what MALLOC_TOP_PAD_ does)")
    a = ap.parse_args()
    if a.mallopt_top_pad:
        import ctypes
        ok = ctypes.CDLL("libc.so.6").mallopt(-2, a.mallopt_top_pad)  # M_TOP_PAD = -2
        print(f"mallopt(M_TOP_PAD, {a.mallopt_top_pad}) -> {ok}")
    C.setup(a.threads)
    mt, hf, cfg = C.load_mt()
    P = C.train_pool(a.task, a.steps)
    rng_seed = 1
    import random
    for bsz in (16, 32, 64):
        P[f"bs{bsz}"] = C.bs.bucketed_batches(P["pool"], P["lengths"], bsz, len(P["pool"]), random.Random(rng_seed))
        P[f"warm_bs{bsz}"] = P[f"bs{bsz}"][:2]
    C.quiet(a.wait)
    peak = C.peak_fp32()
    print(f"fp32 peak {peak:.0f} GFLOP/s; threads {a.threads}; task {a.task}; pool {len(P['pool'])} examples; "
          f"{a.steps} steps x {a.repeats} passes (median)", flush=True)
    if a.profile:
        m, opt, head, *_ = make(a.profile_variant, mt, cfg)
        C.time_train(m, opt, head, P, P["buck"][:3], P["warm_buck"], task=a.task)
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            C.time_train(m, opt, head, P, P["buck"][:10], [], task=a.task)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        return
    # rounds: every variant is rebuilt, warmed up and timed once per round; each batch keeps its fastest round,
    # so slow drifts of the machine (or a busy neighbour) hit all variants alike
    variants = a.variants.split(",")
    rounds = {v: [] for v in variants}
    notes, others = {}, {v: [] for v in variants}
    for rnd in range(a.repeats):
        for v in variants:
            m, opt, head, fwd, amp, key, note, zero = make(v, mt, cfg)
            notes[v] = (note, key)
            warm = P["warm_" + key] if "warm_" + key in P else P["warm_buck"]
            C.bs.wait_for_quiet(a.wait)
            with C.bs.PeakMemory(C.CPU) as mon:
                rounds[v].append(C.time_train(m, opt, head, P, P[key], warm, task=a.task, amp=amp, forward=fwd,
                                              zero_grad=zero, per_batch=True))
            others[v].append(mon.result["foreign_cores"])
            del m, opt, head
        print(f"round {rnd + 1}/{a.repeats} done", flush=True)
    out = {}
    for v in variants:
        note, key = notes[v]
        r = C.combine_rounds(rounds[v], P[key], P["lengths"], cfg)
        r["other_cores_during"] = others[v]
        out[v] = r
        print(f"{v:16s} {C.fmt(r, peak)}  [{note}; other {max(others[v]):.2f}; rounds {r['round_seconds']}]", flush=True)
    if a.json:
        json.dump({"peak": peak, "results": out}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()

"""Scratch experiments: mtbert CPU evaluation throughput (STS dev, sentences encoded separately; SST dev).

    .venv/bin/python benchmarks/experiments_eval.py [--task sts|sst] [--threads 2] [--limit 0]
"""
import argparse, time

import torch

import exp_common as C
from exp_unpad import unpadded_forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="sts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--wait", type=float, default=900)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="hf8_order,mt8_order,mt8_sorted,mt16_sorted,mt32_sorted,mt64_sorted,"
                                          "mt128_sorted,mt64_unpad,mt256_unpad,mt64_bf16,mt64_unpad_bf16,mt256_unpad_bf16")
    a = ap.parse_args()
    C.setup(a.threads)
    mt, hf, cfg = C.load_mt()
    mt.eval(), hf.eval()
    data = C.bs.encode_records(C.tok(), a.task, "dev", 128, a.limit or None)
    enc = data["enc"] if a.task == "sst" else data["enc1"] + data["enc2"]
    lengths = [len(i) for i, _ in enc]
    n = len(enc)
    flops = C.bs.fwd_flops(lengths, cfg)
    C.quiet(a.wait)
    peak = C.peak_fp32()
    print(f"{a.task} dev: {n} sentences, mean {sum(lengths) / n:.1f} tokens; fp32 peak {peak:.0f} GFLOP/s")
    variants = a.variants.split(",")
    best, others = {v: float("inf") for v in variants}, {v: [] for v in variants}
    info = {}
    for rnd in range(a.repeats):  # rounds over all variants; each keeps its fastest pass
        for v in variants:
            name = v.split("_")[0]
            model = hf if name.startswith("hf") else mt
            B = int(name[2:])
            order = sorted(range(n), key=lambda i: lengths[i]) if "sorted" in v or "unpad" in v else list(range(n))
            batches = C.bs.chunks(order, B)
            unpad, bf16 = "unpad" in v, "bf16" in v
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))

            @torch.no_grad()
            def run(bb):
                for idx in bb:
                    b = C.bs.collate(C.tok(), enc, idx, C.CPU)
                    with ctx():
                        if unpad:
                            h = unpadded_forward(model, **b, return_hidden=True)
                        else:
                            h = model(**b).last_hidden_state
                        C.bs.mean_pool(h.float(), b["attention_mask"])
            C.bs.wait_for_quiet(a.wait)
            run(batches[:2])
            with C.bs.PeakMemory(C.CPU) as mon:
                t0 = time.perf_counter()
                run(batches)
                dt = time.perf_counter() - t0
            best[v] = min(best[v], dt)
            others[v].append(mon.result["foreign_cores"])
            info[v] = C.bs.padding_stats(batches, lengths)
    unit = n // 2 if a.task == "sts" else n
    for v in variants:
        dt, (real, padded) = best[v], info[v]
        print(f"{v:18s} {unit / dt:7.1f} ex/s  {real / dt:7.0f} tok/s  pad-eff {real / padded:4.0%}  "
              f"{flops / dt / 1e9 / peak:5.1%} of peak  [other {max(others[v]):.2f}]", flush=True)

if __name__ == "__main__":
    main()

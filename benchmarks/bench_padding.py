#!/usr/bin/env python
"""What padding batch lengths up to a multiple costs and buys (issue 21, part 2): the CPU default of pad_multiple.

    .venv/bin/python benchmarks/bench_padding.py [--experiment rr-balanced-specialized-mt] [--model minilm]
        [--multiples 1,8,16,32] [--timed-batches 24] [--repeats 2] [--threads 1] [--json OUT]

1. Shapes and tokens, exact, over one epoch of the experiment's sampler on the full training sets: for each
   multiple, the number of distinct batch shapes the step sees (each one a new CUDA graph, a new cuDNN plan, a new
   compile) and the tokens computed relative to no padding (what padding costs where compute is the bottleneck).
2. Time on this machine: forward + backward of the encoder (fp32, the library's MultitaskBERT) on the same
   `--timed-batches` real batches at multiple 1 and at each other multiple, interleaved, the fastest of `--repeats`
   passes per batch; printed as the time ratio against multiple 1.

Then it prints the CPU default the numbers support: the smallest multiple whose time ratio is within 2% of no
padding (padding buys nothing on the CPU: no graphs to replay, no plans to cache), i.e. 1 unless padding is free.
"""
import argparse, json, sys, time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mtbert_lib.experiments import get_experiment  # noqa: E402
from mtbert_lib.tasks import collate, encode_split  # noqa: E402
from mtbert_lib.tokenizer import load_tokenizer  # noqa: E402
from mtbert_lib.training import build_model, encodings_read  # noqa: E402


def shapes_and_tokens(cfg, sets, model, multiples):
    """{multiple: (distinct shapes, tokens computed)} over epoch 0 of the sampler."""
    rounds = cfg.sample_epoch({t: s.lengths() for t, s in sets.items()}, 0)
    out = {}
    for m in multiples:
        shapes, tokens = set(), 0
        for rnd in rounds:
            for task, idx in rnd:
                for name in encodings_read(model, task):
                    enc = getattr(sets[task], name)
                    T = max(len(enc[i][0]) for i in idx)
                    T = -(-T // m) * m
                    shapes.add((task, name, len(idx), T))
                    tokens += len(idx) * T
        out[m] = (len(shapes), tokens)
    return out, rounds


def time_batches(model, sets, tok, batches, multiples, repeats):
    """{multiple: total seconds}: forward + backward of each batch, fastest pass per batch, passes interleaved."""
    best = {m: [float("inf")] * len(batches) for m in multiples}
    model.train()
    for _ in range(repeats):
        for m in multiples:
            for i, (task, idx) in enumerate(batches):
                batch = collate(sets[task], idx, tok, names=encodings_read(model, task), multiple=m)
                t = time.perf_counter()
                out = model(task, batch)
                model.loss(task, out.float(), batch["labels"]).backward()
                best[m][i] = min(best[m][i], time.perf_counter() - t)
                model.zero_grad(set_to_none=True)
    return {m: sum(v) for m, v in best.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="rr-balanced-specialized-mt")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--multiples", default="1,8,16,32")
    ap.add_argument("--timed-batches", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-limit", type=int, help="first N training examples per task (default: all)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    multiples = [int(m) for m in a.multiples.split(",")]
    assert multiples[0] == 1, "the first multiple is the reference: 1"
    cfg = get_experiment(a.experiment, a.model)
    tok = load_tokenizer(cfg.model)
    sets = {t: encode_split(t, "train", tok, cfg.max_length, a.train_limit, report=None) for t in cfg.tasks}
    torch.manual_seed(0)
    model = build_model(cfg)
    counts, rounds = shapes_and_tokens(cfg, sets, model, multiples)
    base_tokens = counts[1][1]
    print(f"{a.experiment} ({cfg.model}, batch {cfg.batch_size}), one epoch: {sum(map(len, rounds))} batches")
    print(f"{'multiple':>8} {'shapes':>7} {'tokens vs 1':>12}")
    for m, (n, tokens) in counts.items():
        print(f"{m:>8} {n:>7} {tokens / base_tokens:>11.3f}x")
    rng = np.random.default_rng(0)
    flat = [b for rnd in rounds for b in rnd]
    batches = [flat[i] for i in sorted(rng.choice(len(flat), min(a.timed_batches, len(flat)), replace=False))]
    t0 = time.time()
    secs = time_batches(model, sets, tok, batches, multiples, a.repeats)
    print(f"forward + backward, fp32, {a.threads} thread(s), {len(batches)} real batches, fastest of {a.repeats} "
          f"interleaved passes ({time.time() - t0:.0f}s):")
    for m in multiples:
        print(f"{m:>8} {secs[m]:8.2f}s {secs[m] / secs[1]:6.3f}x")
    default = next(m for m in multiples if secs[m] / secs[1] <= 1.02)
    print(f"CPU default of pad_multiple: {default} (the smallest multiple within 2% of no padding); "
          f"CUDA: 16 ({counts.get(16, ('?',))[0]} shapes per epoch instead of {counts[1][0]})")
    if a.json:
        Path(a.json).write_text(json.dumps({"experiment": a.experiment, "model": cfg.model, "threads": a.threads,
                                            "shapes_tokens": {str(m): v for m, v in counts.items()},
                                            "seconds": {str(m): v for m, v in secs.items()}, "cpu_default": default},
                                           indent=1))


if __name__ == "__main__":
    main()

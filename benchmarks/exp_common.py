"""Shared helpers for the benchmarks/experiments_*.py scratch scripts (not part of the library)."""
import copy, gc, os, random, sys, time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_speed as bs  # noqa: E402
from mtbert_lib.model import BertConfig, BertModel, resolve_checkpoint  # noqa: E402
from mtbert_lib.optim import AdamW  # noqa: E402
from mtbert_lib.tokenizer import load_tokenizer  # noqa: E402

CPU = torch.device("cpu")


def setup(threads=2):
    torch.set_num_threads(threads)
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_mt(name="minilm", **overrides):
    folder = resolve_checkpoint(name)
    import transformers
    hf = transformers.BertModel.from_pretrained(str(folder)).float()
    cfg = BertConfig.from_json(folder / "config.json", **overrides)
    return BertModel(cfg).load_hf_state_dict(hf.state_dict()), hf, cfg


_TOK = None


def tok():
    global _TOK
    if _TOK is None:
        _TOK = load_tokenizer("minilm")
    return _TOK


def train_pool(task="sst", steps=30, B=8, warmup=5, seed=0, bucket_batches=50, max_length=128):
    """Same pool construction as bench_speed: (data, lengths, random batches, bucketed batches, warm batches)."""
    data = bs.encode_records(tok(), task, "train", max_length)
    lengths = [len(ids) for ids, _ in data["enc"]]
    perm = list(range(len(lengths)))
    random.Random(seed).shuffle(perm)
    pool, warm_pool = perm[:steps * B], perm[steps * B:(steps + warmup) * B]
    bucket = min(bucket_batches * B, len(pool))
    return dict(data=data, lengths=lengths, pool=pool,
                rand=bs.random_batches(pool, B), buck=bs.bucketed_batches(pool, lengths, B, bucket, random.Random(seed + 1)),
                warm_rand=bs.random_batches(warm_pool, B),
                warm_buck=bs.bucketed_batches(warm_pool, lengths, B, bucket, random.Random(seed + 2)))


def time_train(model, opt, head, P, batches, warm, task="sst", amp=None, forward=None, repeats=1, zero_grad=None,
               per_batch=False):
    """Median-pass ms/step by phase and ex/s, tok/s. `forward(batch) -> pooled` overrides model(**batch).pooler_output."""
    data, lengths = P["data"], P["lengths"]
    enc, labels = data["enc"], data["labels"]
    fwd = forward or (lambda b: model(**b).pooler_output)
    ctx = amp or (lambda: torch.autocast("cpu", enabled=False))

    def step(idx):
        t0 = time.perf_counter()
        b = bs.collate(tok(), enc, idx, CPU)
        y = labels[idx]
        t1 = time.perf_counter()
        with ctx():
            pooled = fwd(b)
        logits = head(pooled.float())
        loss = F.cross_entropy(logits, y) if task == "sst" else F.binary_cross_entropy_with_logits(logits[:, 0], y)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        (zero_grad or (lambda: opt.zero_grad(set_to_none=True)))()
        t4 = time.perf_counter()
        return [t1 - t0, t2 - t1, t3 - t2, t4 - t3]

    model.train(), head.train()
    for idx in warm:
        step(idx)
    if per_batch:  # raw per-batch phase times of one pass, for best-of across rounds (see combine_rounds)
        return [step(idx) for idx in batches]
    passes = []
    for _ in range(repeats):
        ph = [0.0] * 4
        for idx in batches:
            ph = [a + b for a, b in zip(ph, step(idx))]
        passes.append(ph)
    passes.sort(key=sum)
    ph = passes[len(passes) // 2]
    tot = sum(ph)
    n = sum(len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return {"ms_step": 1e3 * tot / len(batches), "ex_s": n / tot, "tok_s": real / tot,
            "ms": {k: 1e3 * v / len(batches) for k, v in zip(("data", "fwd", "bwd", "opt"), ph)},
            "useful_flops_per_s": 3 * bs.fwd_flops([lengths[i] for b in batches for i in b], model_cfg(model)) / tot}


def model_cfg(model):
    m = getattr(model, "_orig_mod", model)
    return getattr(m, "config", None) or m.mt.config


def fresh(mt, out=5, seed=0):
    torch.manual_seed(seed)
    m = copy.deepcopy(mt)
    head = nn.Linear(m.config.hidden_size, out)
    gc.collect()
    return m, head


def fmt(r, peak):
    ms = r["ms"]
    return (f"{r['ex_s']:6.1f} ex/s {r['tok_s']:6.0f} tok/s  {r['ms_step']:6.1f} ms/step (fwd {ms['fwd']:5.1f} bwd {ms['bwd']:5.1f} "
            f"opt {ms['opt']:5.1f} data {ms['data']:4.1f})  {r['useful_flops_per_s'] / 1e9 / peak:5.1%} of peak")


def quiet(max_wait=900):
    """Wait for other processes to stop using the CPUs; print the reading."""
    load = bs.wait_for_quiet(max_wait)
    print(f"[other processes: {load:.2f} cores]", flush=True)
    return load


def peak_fp32(H=384, B=8):
    M = B * 64
    return bs.matmul_peak(CPU, torch.float32, 0.1, [(M, H, 4 * H), (M, 4 * H, H), (1024, 1024, 1024)], 8)[0]


def combine_rounds(rounds, batches, lengths, cfg):
    """rounds: list of per-batch phase-time lists (one per round) -> summary with each batch's fastest round."""
    best = [min((r[j] for r in rounds), key=sum) for j in range(len(batches))]
    ph = [sum(t[k] for t in best) for k in range(4)]
    tot = sum(ph)
    n = sum(len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return {"ms_step": 1e3 * tot / len(batches), "ex_s": n / tot, "tok_s": real / tot,
            "ms": {k: 1e3 * v / len(batches) for k, v in zip(("data", "fwd", "bwd", "opt"), ph)},
            "useful_flops_per_s": 3 * bs.fwd_flops([lengths[i] for b in batches for i in b], cfg) / tot,
            "round_seconds": [round(sum(map(sum, r)), 2) for r in rounds]}

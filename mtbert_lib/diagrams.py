"""Box-and-arrow pictures of what each notebook builds: one function per notebook, drawn with matplotlib.

Hand-written (not generated from a notebook), like grading.py: the pictures are teaching aids, not library code, but
both editions of every notebook (solutions and the student edition in notebooks/exercises/) and Colab import them
from here. A notebook shows its picture with one call in a small cell, e.g. `diagrams.post_ln_layer()`, and the
executed notebook stores it. To add a picture: a function here that draws on a `Canvas`, and a cell that calls it.

Colours carry one meaning in every picture: blue = data (tensors, sentences, batches), orange = an operation,
purple = a normalisation, green = learned parameters or state, red = a task head or a loss, grey = a note.
"""
import numpy as np
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

__all__ = ["Canvas", "data_pipeline", "head_split", "post_ln_layer", "bert_embeddings", "adamw_state",
           "batching_pipeline", "multitask_model", "rounds_grid", "mean_teacher", "results_pipeline",
           "playground_flow", "pcgrad_projection", "shards", "colab_protocol"]

KIND = {"data": "#dbe9f6", "op": "#fde3bf", "norm": "#e4d7f2", "param": "#d6efd0", "head": "#f6d0d0",
        "note": "#f0f0f0", "plain": "white"}
TASK_COLORS = {"sst": "tab:blue", "quora": "tab:orange", "sts": "tab:green"}  # as notebook 07's pictures


class Box:
    """A drawn box: its centre (x, y), width and height; .top/.bottom/.left/.right are the mid-points of its edges."""
    def __init__(self, x, y, w, h):
        self.x, self.y, self.w, self.h = x, y, w, h

    top = property(lambda s: (s.x, s.y + s.h / 2))
    bottom = property(lambda s: (s.x, s.y - s.h / 2))
    left = property(lambda s: (s.x - s.w / 2, s.y))
    right = property(lambda s: (s.x + s.w / 2, s.y))


class Canvas:
    """A figure in data units (1 unit ≈ 0.55 inch), axes hidden, with boxes, arrows and text."""
    def __init__(self, width: float, height: float, title: str | None = None, unit: float = 0.55, ax=None):
        self.fig, self.ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(width * unit, height * unit))
        self.ax.set_xlim(0, width); self.ax.set_ylim(0, height); self.ax.set_aspect("equal"); self.ax.axis("off")
        if title:
            self.ax.set_title(title, fontsize=11 if ax is None else 10)

    def box(self, x, y, text="", w=3.0, h=0.8, kind="op", fontsize=9, **kw) -> Box:
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                         fc=KIND.get(kind, kind), ec=kw.pop("ec", "0.3"), lw=kw.pop("lw", 1.0), **kw))
        if text:
            self.ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
        return Box(x, y, w, h)

    def circle(self, x, y, text="+", r=0.28, fontsize=11) -> Box:
        self.ax.add_patch(plt.Circle((x, y), r, fc="white", ec="0.3"))
        self.ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
        return Box(x, y, 2 * r, 2 * r)

    def arrow(self, a, b, text=None, color="0.25", style="-|>", ls="-", rad=0.0, fontsize=8, text_offset=(0.1, 0)):
        self.ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=11, color=color, lw=1.1, ls=ls,
                                          connectionstyle=f"arc3,rad={rad}", shrinkA=1, shrinkB=1))
        if text:
            mx, my = (a[0] + b[0]) / 2 + text_offset[0], (a[1] + b[1]) / 2 + text_offset[1]
            self.ax.text(mx, my, text, fontsize=fontsize, color=color, va="center")

    def path(self, points, color="0.25", ls="-"):
        """A line through `points` with an arrow head at the end (for residual connections that go around)."""
        xs, ys = zip(*points)
        self.ax.plot(xs[:-1], ys[:-1], color=color, lw=1.1, ls=ls)
        self.arrow(points[-2], points[-1], color=color, ls=ls)

    def text(self, x, y, s, fontsize=8, **kw):
        kw.setdefault("ha", "center"); kw.setdefault("va", "center")
        self.ax.text(x, y, s, fontsize=fontsize, **kw)

    def cells(self, x, y, colors, w=0.35, h=0.35, labels=None, fontsize=6):
        """A row of small squares from (x, y) (lower left), one per colour: a vector, a batch or a sequence."""
        for i, c in enumerate(colors):
            self.ax.add_patch(Rectangle((x + i * w, y), w, h, fc=c, ec="white", lw=0.8))
            if labels is not None:
                self.text(x + (i + 0.5) * w, y + h / 2, labels[i], fontsize=fontsize)

    def show(self):
        self.fig.tight_layout()
        plt.show()
        return self.fig


# ------------------------------------------------------------------------------------------------ 00 data

def data_pipeline():
    """Notebook 00: from the starter files to typed records, with every skipped row counted."""
    c = Canvas(22, 7.2, "00 · from the files to typed records")
    files = ["ids-sst-{train,dev,test-student}.csv", "ids-cfimdb-{…}.csv", "quora-{…}.csv", "sts-{…}.csv"]
    boxes = [c.box(3.6, 6.0 - 1.25 * i, f, w=6.4, kind="data", fontsize=8) for i, f in enumerate(files)]
    fetch = c.box(3.6, 0.9, "mtbert data fetch: copy or download,\ncheck sha256, name the data edition", w=6.6, h=1.0,
                  kind="note", fontsize=8)
    read = c.box(10.6, 4.1, "_read_rows\n(tab-separated, odd index column)", w=5.0, h=1.1)
    parse = c.box(10.6, 1.9, "_parse_label, one line per bad row:\nfile, row, reason; skipped rows counted", w=5.6, h=1.1, kind="note", fontsize=8)
    for b in boxes:
        c.arrow(b.right, read.left)
    c.arrow(read.bottom, parse.top)
    sent = c.box(18.0, 5.2, "SentenceExample(id, text, label)\nsst: 0…4 · cfimdb: 0/1", w=6.6, h=1.1, kind="data", fontsize=8)
    pair = c.box(18.0, 3.0, "PairExample(id, text1, text2, label)\nquora: 0/1 · sts: 0.0…5.0", w=6.6, h=1.1, kind="data", fontsize=8)
    c.text(18.0, 1.3, "test-student rows: label None\n(no test score is ever claimed)", fontsize=8, color="0.35")
    c.arrow(read.right, sent.left, "load_task", text_offset=(-0.9, 0.35))
    c.arrow(read.right, pair.left)
    return c.show()


# ------------------------------------------------------------------------------------------------ 01 attention

def head_split(T: int = 4, h: int = 3, d: int = 2):
    """Notebook 01: (B, T, H) -> (B, h, T, d) -> attention per head -> (B, T, H); one example of the batch, small sizes."""
    cmap = plt.get_cmap("Set2")
    head_color = [cmap(i) for i in range(h)]
    H = h * d
    c = Canvas(25, 8.6, f"01 · splitting H = h·d = {h}·{d} into {h} heads, one sequence of T = {T} tokens")
    s = 0.45
    # (T, H): token rows, hidden columns coloured by the head they go to
    x0, y0 = 0.8, 2.2
    for t in range(T):
        c.cells(x0, y0 + (T - 1 - t) * s, [head_color[j // d] for j in range(H)], w=s, h=s)
        c.text(x0 - 0.35, y0 + (T - 1 - t + 0.5) * s, f"t{t}", fontsize=7)
    c.text(x0 + H * s / 2, y0 + T * s + 0.45, "q (or k, or v): (T, H)\none row per token", fontsize=8)
    c.text(x0 + H * s / 2, y0 - 0.5, "columns coloured by head", fontsize=7, color="0.35")
    # split: h blocks of (T, d)
    x1 = 7.4
    blocks = []
    for j in range(h):
        y = 5.6 - j * (T * s + 0.55)
        for t in range(T):
            c.cells(x1, y + (T - 1 - t) * s, [head_color[j]] * d, w=s, h=s)
        c.text(x1 - 0.55, y + T * s / 2, f"head {j}", fontsize=7, ha="right")
        blocks.append((x1 + d * s, y + T * s / 2))
    c.text(x1 + d * s / 2, 7.9, "(h, T, d)", fontsize=8)
    c.arrow((x0 + H * s + 0.2, y0 + T * s / 2), (x1 - 1.6, 4.0))
    c.text(x1 - 2.6, 1.2, "view as (T, h, d),\nthen transpose(1, 2)", fontsize=8)
    # attention per head
    att = c.box(14.6, 4.0, "softmax(q kᵀ / √d) v\nfor every head at once\n(the (h, T, T) weights)", w=4.6, h=1.7)
    for b in blocks:
        c.arrow(b, att.left)
    # merge
    x3 = 19.6
    for t in range(T):
        c.cells(x3, y0 + (T - 1 - t) * s, [head_color[j // d] for j in range(H)], w=s, h=s)
    c.text(x3 + H * s / 2, y0 + T * s + 0.45, "merged: (T, H)\nthen the output projection", fontsize=8)
    c.arrow(att.right, (x3 - 0.2, y0 + T * s / 2))
    c.text(18.0, 1.2, "transpose back,\nreshape to (T, H)", fontsize=8)
    c.text(12.5, 0.6, "Each head attends in its own d-dimensional slice of the hidden vector; "
                      "no number moves from one token's row to another's.", fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 02 layer

def post_ln_layer():
    """Notebook 02: BERT's post-LN layer, with GPT-2's pre-LN beside it for section 4."""
    c = Canvas(20, 13.5, "02 · one transformer layer: post-LN (BERT) and, for comparison, pre-LN (GPT-2)")
    # post-LN, bottom to top
    x = c.box(5, 0.8, "x  (B, T, H)", w=3.2, kind="data")
    att = c.box(5, 2.6, "multi-head attention\n(key_mask)", w=3.6, h=1.0)
    d1 = c.box(5, 4.2, "dropout", w=2.4, h=0.6)
    p1 = c.circle(5, 5.3)
    n1 = c.box(5, 6.3, "LayerNorm", w=2.6, h=0.7, kind="norm")
    ffn = c.box(5, 8.0, "feed-forward\nLinear H→4H, GELU, Linear 4H→H", w=5.0, h=1.0)
    d2 = c.box(5, 9.5, "dropout", w=2.4, h=0.6)
    p2 = c.circle(5, 10.6)
    n2 = c.box(5, 11.6, "LayerNorm", w=2.6, h=0.7, kind="norm")
    for a, b in [(x.top, att.bottom), (att.top, d1.bottom), (d1.top, p1.bottom), (p1.top, n1.bottom),
                 (n1.top, ffn.bottom), (ffn.top, d2.bottom), (d2.top, p2.bottom), (p2.top, n2.bottom)]:
        c.arrow(a, b)
    c.arrow(n2.top, (5, 12.9))
    c.path([(5, 1.5), (1.6, 1.5), (1.6, 5.3), p1.left])  # residual around attention
    c.path([(5, 7.0), (1.6, 7.0), (1.6, 10.6), p2.left])  # residual around the feed-forward
    c.text(1.3, 3.4, "residual", rotation=90, fontsize=7, color="0.35")
    c.text(1.3, 8.8, "residual", rotation=90, fontsize=7, color="0.35")
    c.box(9.4, 5.3, "each ⊕ + LayerNorm pair is one AddNorm\n(dropout on the sub-layer's output)", w=5.0, h=1.0, kind="note", fontsize=7)
    c.text(5.4, 6.95, "h", fontsize=9)
    c.text(5, 13.2, "out  (B, T, H)", fontsize=9)
    # pre-LN
    X = 15.5
    x = c.box(X, 0.8, "x", w=2.0, kind="data")
    n1 = c.box(X, 2.4, "LayerNorm", w=2.6, h=0.7, kind="norm")
    att = c.box(X, 3.9, "attention", w=3.0, h=0.8)
    p1 = c.circle(X, 5.4)
    n2 = c.box(X, 7.0, "LayerNorm", w=2.6, h=0.7, kind="norm")
    ffn = c.box(X, 8.5, "feed-forward", w=3.0, h=0.8)
    p2 = c.circle(X, 10.0)
    for a, b in [(x.top, n1.bottom), (n1.top, att.bottom), (att.top, p1.bottom), (p1.top, n2.bottom),
                 (n2.top, ffn.bottom), (ffn.top, p2.bottom)]:
        c.arrow(a, b)
    c.arrow(p2.top, (X, 11.3))
    c.path([(X, 1.5), (X + 2.6, 1.5), (X + 2.6, 5.4), p1.right])
    c.path([(X, 6.0), (X + 2.6, 6.0), (X + 2.6, 10.0), p2.right])
    c.text(X, 11.7, "the residual stream is never normalised:\nit grows with depth (section 4)", fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 03 BERT

def bert_embeddings():
    """Notebook 03: the embedding sum of a sentence pair, then the encoder and the pooler."""
    tokens = ["[CLS]", "a", "man", "sings", "[SEP]", "he", "sings", "[SEP]"]
    types = [0, 0, 0, 0, 0, 1, 1, 1]
    c = Canvas(24, 12.5, "03 · BERT's input: three embeddings added per token, then the encoder and the pooler")
    w = 1.55
    x0 = 1.2
    xs = [x0 + (i + 0.5) * w for i in range(len(tokens))]
    for i, tok in enumerate(tokens):
        c.box(xs[i], 0.8, tok, w=w - 0.15, h=0.7, kind="data", fontsize=8)
    rows = [("word embeddings[id]", [f"E_{t}" if not t.startswith("[") else f"E{t}" for t in tokens], 2.4),
            ("position embeddings[0…T−1]", [f"P{i}" for i in range(len(tokens))], 3.5),
            ("token-type embeddings[type]", [f"S{t}" for t in types], 4.6)]
    for name, labels, y in rows:
        for i, lab in enumerate(labels):
            c.box(xs[i], y, lab, w=w - 0.15, h=0.7, kind="param", fontsize=7)
        c.text(x0 + len(tokens) * w + 0.3, y, name, fontsize=8, ha="left")
    for i in range(len(tokens)):
        c.circle(xs[i], 5.8, "+", r=0.25, fontsize=9)
        c.arrow((xs[i], 1.15), (xs[i], 2.05), color="0.6")
    c.text(x0 + len(tokens) * w + 0.3, 5.8, "sum, then LayerNorm and dropout → (B, T, H)", fontsize=8, ha="left")
    c.text(x0 + len(tokens) * w + 0.3, 1.2, "token type 0 up to the first [SEP], 1 after it\n"
                                            "(one sentence: all 0)", fontsize=7, ha="left", color="0.35")
    enc = c.box(x0 + len(tokens) * w / 2, 7.6, "encoder: N transformer layers (notebook 02), key_mask hides padding",
                w=len(tokens) * w, h=1.0)
    c.arrow((x0 + len(tokens) * w / 2, 6.1), enc.bottom)
    out = c.box(x0 + len(tokens) * w / 2, 9.3, "last_hidden_state (B, T, H): one vector per token", w=len(tokens) * w,
                h=0.8, kind="data")
    c.arrow(enc.top, out.bottom)
    pool = c.box(xs[0] + 2.2, 11.2, "pooler: tanh(W h[CLS] + b) → (B, H)", w=6.2, h=0.8, kind="head", fontsize=8)
    c.arrow((xs[0], 9.7), (xs[0] + 0.5, 10.8))
    c.text(xs[5] + 1.4, 11.2, "mean_pool: the mean of the real tokens' vectors\n(what MiniLM was trained with)",
           fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 04 AdamW

def adamw_state():
    """Notebook 04: what AdamW keeps per parameter and which part of a step reads what (no arithmetic: that is the exercise)."""
    c = Canvas(21, 8.4, "04 · one AdamW step: the state it keeps for every parameter, and where each part comes in")
    g = c.box(2.4, 6.4, "gradient g\n(from backward)", w=3.6, h=1.0, kind="data")
    p = c.box(2.4, 2.0, "parameter θ", w=3.2, h=0.9, kind="param")
    st = c.box(10.0, 6.4, "state[θ]: step t, m (exp_avg), v (exp_avg_sq)\nkept between steps, zero at the start",
               w=8.6, h=1.1, kind="param", fontsize=8)
    mom = c.box(10.0, 4.2, "1. update the running averages\nm of g and v of g²  (β1, β2)", w=6.0, h=1.1)
    bc = c.box(17.0, 4.2, "2. bias correction:\nundo the pull of the zero start,\nstrong at small t", w=5.4, h=1.4)
    dec = c.box(7.6, 2.0, "decoupled weight decay:\nshrink θ itself (lr, λ)", w=5.2, h=1.1, kind="norm", fontsize=8)
    step = c.box(15.2, 2.0, "3. θ moves against m̂ / (√v̂ + ε):\nabout lr per coordinate", w=6.2, h=1.1)
    c.arrow(g.right, mom.left, rad=-0.2)
    c.arrow(st.bottom, mom.top)
    c.arrow(mom.right, bc.left)
    c.arrow(bc.bottom, (15.9, 2.6))
    c.arrow(p.right, dec.left)
    c.arrow(dec.right, step.left)
    c.arrow(step.bottom, (15.2, 0.5))
    c.text(15.2, 0.25, "new θ", fontsize=8)
    c.text(2.4, 0.7, "Adam + L2 would add λθ to g instead:\nthen the decay is divided by √v̂ too (section 3)",
           fontsize=7, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 05 tasks and batches

def batching_pipeline():
    """Notebook 05: from records to a padded batch and back to a metric."""
    c = Canvas(25, 6.8, "05 · tokenize once, batch by length, pad per batch, score with the task's metric")
    spec = c.box(3.0, 5.5, "TaskSpec: pair?, outputs,\nmetric, prediction file", w=5.2, h=1.0, kind="note", fontsize=8)
    rec = c.box(3.0, 3.2, "records (notebook 00)", w=4.2, kind="data")
    enc = c.box(8.6, 3.2, "encode_split:\nid lists, once per split\n(pairs: joint, first, second)", w=4.6, h=1.5)
    mb = c.box(14.4, 4.6, "make_batches: which examples\ngo together (random, or\nbucketed by length)", w=4.8, h=1.5)
    col = c.box(14.4, 1.6, "collate: pad each batch\nto its own longest", w=4.6, h=1.1)
    model = c.box(19.8, 3.2, "model → outputs\n→ predictions", w=3.6, h=1.1, kind="head")
    met = c.box(23.4, 3.2, "task_metric:\naccuracy or\nPearson r", w=2.8, h=1.5, kind="data", fontsize=8)
    c.arrow(rec.right, enc.left)
    c.arrow(enc.right, mb.left, "lengths", text_offset=(-1.2, 0.5))
    c.arrow(mb.bottom, col.top, "indices", text_offset=(0.15, 0))
    c.arrow(enc.right, col.left, "ids", text_offset=(-0.5, -0.45))
    c.arrow(col.right, model.left)
    c.arrow(model.right, met.left)
    c.arrow(spec.bottom, rec.top, color="0.6")
    return c.show()


# ------------------------------------------------------------------------------------------------ 06 multitask

def multitask_model():
    """Notebook 06: one shared encoder, three heads; a pair read `separate` through [u, v, |u−v|, u·v]."""
    c = Canvas(25, 12.2, "06 · MultitaskBERT: one encoder, three heads (pair_encoding='separate')")
    ins = [("SST: one sentence", 3.0, "sst"), ("Quora: question a, question b", 12.0, "quora"),
           ("STS: sentence a, sentence b", 21.0, "sts")]
    for text, x, t in ins:
        c.box(x, 0.8, text, w=6.4, kind="data", ec=TASK_COLORS[t], lw=2)
    enc = c.box(12.0, 3.0, "the shared BERT encoder + pooling (pooler | cls | mean) → a vector per sentence (H)",
                w=22.5, h=1.0, kind="param")
    for _, x, t in ins:
        c.arrow((x, 1.2), (x, 2.5), color=TASK_COLORS[t])
    c.text(12.0, 1.85, "a pair's two sentences go through in ONE call of 2B rows (embed_pair)", fontsize=7, color="0.35")
    # SST
    u = c.box(3.0, 5.0, "u (H)", w=2.2, h=0.7, kind="data")
    c.arrow((3.0, 3.5), u.bottom)
    sst = c.box(3.0, 9.0, "Linear H → 5\ncross-entropy", w=3.6, h=1.0, kind="head", ec=TASK_COLORS["sst"], lw=2)
    c.arrow(u.top, sst.bottom, "dropout", text_offset=(0.1, 0))
    # pair features, for Quora and STS
    for x, t, head in ((12.0, "quora", "Linear 4H → 1\nbinary cross-entropy"),
                       (21.0, "sts", "Linear 4H → 1, MSE\n(or 4H → 6 classes)")):
        uu = c.box(x - 1.4, 5.0, "u", w=1.2, h=0.7, kind="data")
        vv = c.box(x + 1.4, 5.0, "v", w=1.2, h=0.7, kind="data")
        c.arrow((x - 1.4, 3.5), uu.bottom); c.arrow((x + 1.4, 3.5), vv.bottom)
        names = ["u", "v", "|u−v|", "u·v"]
        for i, n in enumerate(names):
            c.box(x - 2.7 + i * 1.8, 6.8, n, w=1.7, h=0.7, kind="data", fontsize=8)
        c.arrow(uu.top, (x - 1.6, 6.4)); c.arrow(vv.top, (x + 1.6, 6.4))
        c.text(x + 3.9, 6.8, "(4H)", fontsize=8)
        hb = c.box(x, 9.0, head, w=4.4, h=1.0, kind="head", ec=TASK_COLORS[t], lw=2)
        c.arrow((x, 7.2), hb.bottom, "dropout", text_offset=(0.1, 0))
    c.text(21.0, 10.6, "sts_head='cosine': 5·cos(u, v) instead, no head", fontsize=8, color="0.35")
    c.text(12.0, 10.6, "pair_encoding='joint': [CLS] a [SEP] b [SEP] → one vector (H)\n→ Linear H → 1",
           fontsize=8, color="0.35")
    c.text(12.0, 11.6, "u·v and |u−v| are element-wise: they say, coordinate by coordinate, where the two sentences "
                       "agree", fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 07 schedules

def rounds_grid(batches=None):
    """Notebook 07: an epoch as rounds × tasks, for the two round-robin schedules (batch counts scaled down)."""
    batches = batches or {"sst": 5, "quora": 9, "sts": 3}
    tasks = list(batches)
    c = Canvas(24, 9.2, "07 · an epoch is a list of rounds; a round holds one batch per task (schematic: "
                        + ", ".join(f"{t} {n} batches" for t, n in batches.items()) + ")")
    s = 0.7

    def grid(x0, title, rounds):
        c.text(x0 + len(tasks) * s / 2 + 0.6, 8.3, title, fontsize=9)
        for j, t in enumerate(tasks):
            c.text(x0 + 1.0 + (j + 0.5) * s, 7.6, t, fontsize=7, rotation=30)
        for i, r in enumerate(rounds):
            y = 6.9 - (i + 1) * s
            c.text(x0 + 0.5, y + s / 2, f"round {i + 1}", fontsize=6, ha="right")
            for j, t in enumerate(tasks):
                if t in r:
                    c.ax.add_patch(Rectangle((x0 + 1.0 + j * s, y), s, s, fc=TASK_COLORS[t], ec="white", alpha=0.85))
                else:
                    c.ax.add_patch(Rectangle((x0 + 1.0 + j * s, y), s, s, fc="white", ec="0.85"))

    most, least = max(batches.values()), min(batches.values())
    grid(1.0, "uneven: all of every task", [[t for t in tasks if i < batches[t]] for i in range(most)])
    grid(9.0, "balanced: N = the smallest task", [tasks for _ in range(least)])
    c.text(19.2, 5.5, "uneven: the tasks take turns while\nthey last; the largest ends the epoch\nalone "
                      "(its batches can be larger:\nrr-uneven uses 8 / 32 / 8)", fontsize=8, ha="center")
    c.text(19.2, 2.4, "balanced: every task draws N examples\nat random each epoch (a fresh subset\nof the larger "
                      "tasks), so every round\nis complete and the rhythm is steady", fontsize=8, ha="center")
    c.text(12.0, 0.2, "read top to bottom, left to right: with update='per_task' every cell is one optimizer step", fontsize=8,
           color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 08 Mean Teacher

def mean_teacher():
    """Notebook 08: the student learns from the labels and from the teacher; the teacher is an average of students."""
    c = Canvas(25, 10.0, "08 · Mean Teacher: two copies of the model, one trained, one averaged")
    batch = c.box(2.6, 4.5, "a training batch\n(task, inputs, labels)", w=4.4, h=1.2, kind="data")
    s = c.box(9.0, 6.6, "student\n(dropout on)", w=3.6, h=1.2, kind="param")
    t = c.box(9.0, 2.2, "teacher\n(eval mode, no grad)", w=3.8, h=1.2, kind="param")
    c.arrow(batch.right, s.left); c.arrow(batch.right, t.left)
    sup = c.box(16.0, 7.8, "supervised loss\nvs the labels", w=4.0, h=1.0, kind="head")
    con = c.box(16.0, 4.6, "consistency loss: symmetric KL\n(or MSE) of the two outputs", w=5.4, h=1.0, kind="head")
    c.arrow(s.right, sup.left); c.arrow(s.right, con.left); c.arrow(t.right, con.left, "detached", text_offset=(-0.4, -0.5))
    tot = c.box(22.0, 6.2, "loss = supervised\n+ λ(t)·consistency", w=4.2, h=1.0, kind="note", fontsize=8)
    c.arrow(sup.right, tot.top, color="0.5"); c.arrow(con.right, tot.bottom, color="0.5")
    c.arrow((tot.x, tot.y + 0.5), (s.x, s.y + 0.6), color="tab:red", rad=0.35)
    c.text(15.5, 8.95, "backward and optimizer step: only the student learns", fontsize=8, color="tab:red")
    c.arrow(s.bottom, t.top, "after every step: EMA\n(decay α_t, buffers copied)", color="tab:green", text_offset=(0.2, 0))
    c.text(16.0, 1.6, "the teacher is what the run scores and keeps;\n`eval_student_too` scores the student as well",
           fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 09 results

def results_pipeline():
    """Notebook 09: from one JSON per run to tables, figures and claims; runs are grouped, never pooled."""
    c = Canvas(24, 7.2, "09 · from results/*.json to tables, figures and claims")
    js = c.box(2.6, 3.6, "results/*.json\none run each: config,\nseed, epochs, model,\nrecipe, data edition", w=4.6,
               h=2.2, kind="data", fontsize=8)
    lr = c.box(8.4, 3.6, "load_results, protocol:\none row per (run, epoch),\none model and recipe", w=4.2, h=1.8)
    br = c.box(13.2, 3.6, "best_rows:\nthe best-dev epoch\nof each run", w=3.6, h=1.8)
    sm = c.box(18.3, 5.4, "summarize: mean ± std\nover seeds (n runs)", w=4.8, h=1.7)
    cp = c.box(18.3, 1.8, "paired: same-seed differences\nof two rows, 95% interval", w=4.8, h=1.3)
    c.arrow(js.right, lr.left); c.arrow(lr.right, br.left); c.arrow(br.right, sm.left); c.arrow(br.right, cp.left)
    c.text(22.6, 5.4, "Table 1,\nFigures 3–6", fontsize=8, ha="center")
    c.text(22.6, 1.8, "the paper's\nclaims", fontsize=8, ha="center")
    c.text(12.0, 0.3, "same-seed runs of two rows are pairs: their difference per seed is the fair comparison (section 6)",
           fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 10 playground

def playground_flow():
    """Notebook 10: what happens between typing a sentence and seeing the answer."""
    c = Canvas(24, 7.0, "10 · the playground: one or two sentences in, three answers and the attention out")
    txt = c.box(2.6, 3.6, "sentence a\n(and sentence b)", w=4.0, h=1.2, kind="data")
    tok = c.box(7.6, 3.6, "tokenizer\n(WordPiece)", w=3.2, h=1.2)
    mdl = c.box(12.6, 3.6, "MultitaskBERT\nzero-shot MiniLM, or a\ntrained checkpoint", w=4.6, h=1.6, kind="param")
    outs = [("SST: 5 class probabilities", 5.9), ("paraphrase? σ(Quora logit)", 4.3), ("similarity 0…5 (STS)", 2.7),
            ("attention: layer × head maps", 1.1)]
    for text, y in outs:
        b = c.box(19.8, y, text, w=6.2, h=0.9, kind="head" if "attention" not in text else "data", fontsize=8)
        c.arrow(mdl.right, b.left)
    c.arrow(txt.right, tok.left); c.arrow(tok.right, mdl.left)
    return c.show()


# ------------------------------------------------------------------------------------------------ 11 beyond

def pcgrad_projection():
    """Notebook 11: PCGrad on two conflicting task gradients, and where the three techniques enter training."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1, 1.45]})
    g1, g2 = np.array([2.0, 0.6]), np.array([-1.0, 1.6])
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    for v, col, lab in ((g1, "tab:blue", "g₁ (SST)"), (g2, "tab:orange", "g₂ (Quora)"), (p1, "tab:blue", "g₁ projected")):
        ax.annotate("", v, (0, 0), arrowprops=dict(arrowstyle="-|>", color=col, lw=2, ls="--" if "proj" in lab else "-"))
        ax.text(*(v * 1.06), lab, color=col, fontsize=9)
    ax.plot([g1[0], p1[0]], [g1[1], p1[1]], ":", color="0.5")
    ax.text(*((g1 + p1) / 2 + [0.1, 0.0]), "remove g₁'s part\nalong g₂", fontsize=8, color="0.4")
    ax.set_xlim(-1.5, 2.8); ax.set_ylim(-0.3, 2.6); ax.set_aspect("equal"); ax.axis("off")
    ax.set_title("PCGrad: g₁·g₂ < 0, so g₁ loses its component against g₂\n(and g₂ against g₁, symmetrically)",
                 fontsize=10)
    c = Canvas(24, 8.4, "where each technique enters (each on rr-balanced-specialized)", ax=bx)
    mlm = c.box(4.0, 7.0, "MLM: mask 15% of training\nsentences (80/10/10), predict\nthem with the tied head",
                w=7.2, h=1.6, kind="note", fontsize=8)
    enc = c.box(4.0, 4.2, "encoder weights\n(further pretrained)", w=5.4, h=1.1, kind="param")
    c.arrow(mlm.bottom, enc.top, "before fine-tuning", text_offset=(0.15, 0))
    loss = c.box(12.4, 4.2, "task losses of a round", w=5.0, h=0.9, kind="head")
    smart = c.box(12.4, 7.0, "SMART: + λ_s · the change of the\noutputs under a small adversarial\nnudge of the embeddings",
                  w=7.6, h=1.6, kind="note", fontsize=8)
    c.arrow(enc.right, loss.left)
    c.arrow(smart.bottom, loss.top)
    grad = c.box(12.4, 1.4, "one gradient per task", w=5.0, h=0.9, kind="data")
    c.arrow(loss.bottom, grad.top, "backward", text_offset=(0.15, 0))
    pc = c.box(20.2, 1.4, "PCGrad: project the\nconflicting ones, sum,\none step per round", w=6.2, h=1.6, kind="note",
               fontsize=8)
    c.arrow(grad.right, pc.left)
    return c.show()


# ------------------------------------------------------------------------------------------------ 12 DDP

def shards(batch: int = 7, world: int = 2):
    """Notebook 12: a global batch cut into contiguous shards, one per process, and the gradients averaged."""
    pieces = np.array_split(np.arange(batch), world)  # as distributed.shard cuts it
    cmap = plt.get_cmap("Set2")
    c = Canvas(24, 8.4, f"12 · a global batch of {batch} on {world} processes: every process takes its own "
                        "piece, DDP averages the gradients")
    s = 0.8
    x0 = 12.0 - batch * s / 2
    rank_of = {int(i): r for r, p in enumerate(pieces) for i in p}
    c.cells(x0, 7.0, [cmap(rank_of[i]) for i in range(batch)], w=s, h=s, labels=[f"e{i}" for i in range(batch)], fontsize=7)
    c.text(x0 - 0.3, 7.4, "the same batch on every\nprocess (same sampler, seed)", fontsize=7, ha="right")
    xs = np.linspace(5, 19, world)
    for r, (x, p) in enumerate(zip(xs, pieces)):
        n = len(p)
        c.arrow((x0 + (p[0] + n / 2) * s, 6.95) if n else (12, 6.95), (x, 5.6), color=cmap(r))
        f = world * n / batch if n else 0.0
        c.box(x, 5.1, f"rank {r}: {n} example{'s' if n != 1 else ''}", w=4.6, h=0.8, kind="data", ec=cmap(r), lw=2)
        c.box(x, 3.6, f"forward, mean loss × {world}·{n}/{batch} = {f:.2f}\nbackward", w=5.6, h=1.1)
        c.arrow((x, 4.7), (x, 4.15))
        c.arrow((x, 3.05), (12, 1.9), color="0.4")
    ar = c.box(12, 1.5, "all-reduce: the average of the processes' gradients = the whole batch's gradient", w=14.5,
               h=0.8, kind="param", fontsize=8)
    c.text(12, 0.4, "then every process takes the same optimizer step: the model copies never drift apart",
           fontsize=8, color="0.35")
    return c.show()


# ------------------------------------------------------------------------------------------------ 13 reproduce on Colab

def colab_protocol():
    """Notebook 13: the protocol's runs on a Colab GPU, kept on Google Drive, resumed after a disconnect."""
    c = Canvas(24, 7.0, "13 · the paper's protocol on Colab: runs on Drive, resumed after a disconnect, figures redrawn")
    plan = c.box(2.8, 3.6, "preset 'paper'\nrows × seeds 0–2\n(estimate first)", w=4.6, h=1.8, kind="note")
    gpu = c.box(8.8, 3.6, "Colab GPU\nmtbert train …\n--resume", w=4.0, h=1.8)
    drive = c.box(14.8, 3.6, "Google Drive\nruns/<run>/last.safetensors\nresults/<run>.json", w=5.2, h=1.8, kind="param")
    figs = c.box(21.0, 3.6, "notebook 09's figures\nyours beside\nthe committed ones", w=4.4, h=1.8, kind="data")
    c.arrow(plan.right, gpu.left, "next run", text_offset=(-0.7, 0.35)); c.arrow(gpu.right, drive.left, "every epoch", text_offset=(-0.9, 0.35))
    c.arrow(drive.right, figs.left)
    c.arrow(drive.bottom, gpu.bottom, "disconnect: resume from\nthe last epoch", rad=-0.5, text_offset=(0.6, -1.5))
    return c.show()

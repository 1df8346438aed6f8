"""The graders of the course's exercises: one `check_*` per exercise, called in the cell right after it.

Each check runs the learner's function or class on real data (SST and STS sentences through the MiniLM tokenizer
and MiniLM's own activations) against the library's implementation (and PyTorch's, where it has one) and prints
exactly one line:

    EXERCISE <name>: PASS
    EXERCISE <name>: TODO                 (the body still raises NotImplementedError)
    EXERCISE <name>: FAIL: <reason>       (what is wrong: shape, values, masking, ...)

Hand-written (not generated from a notebook). The student editions of the notebooks (notebooks/exercises/, made by
tools/exercises.py with nbgrader's ClearSolutions) call the same checks; `mtbert grade NOTEBOOK.ipynb` collects the
lines of a whole notebook.
"""
import copy, functools, math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["check_attention", "check_heads", "check_transformer_layer", "check_embeddings", "check_pooler",
           "check_adamw", "check_balanced_round_robin", "check_ema_update", "check_symmetric_kl", "EXERCISES"]

# The exercises, by name: `check_<name>` grades exercise <name> and prints `EXERCISE <name>: ...`.
EXERCISES = ("attention", "heads", "transformer_layer", "embeddings", "pooler", "adamw", "balanced_round_robin",
             "ema_update", "symmetric_kl")


class Fail(Exception):
    """What is wrong with the learner's answer, in one line."""


def _ensure(ok, reason):
    if not ok:
        raise Fail(reason)


def _grade(name, check, *args):
    from mtbert_lib.data import DataError
    from mtbert_lib.model import CheckpointError
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):  # the notebook's random streams are the same with or without a grader
            check(*args)
        status = "PASS"
    except NotImplementedError:
        status = "TODO"
    except Fail as e:
        status = f"FAIL: {e}"
    except (DataError, CheckpointError) as e:  # the real data or MiniLM is missing: nothing to grade against
        status = f"FAIL: cannot grade without the data and MiniLM ({e})"
    except Exception as e:  # the learner's code crashed: its error is the reason
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        status = f"FAIL: raised {type(e).__name__}" + (f": {msg}" if msg else "")
    finally:
        np.random.set_state(np_state)
    print(f"EXERCISE {name}: {' '.join(status.split())}", flush=True)


def _maxdiff(a, b) -> float:
    return (a.detach().float() - b.detach().float()).abs().max().item()


def _close(a, b, atol=1e-5) -> bool:
    return tuple(a.shape) == tuple(b.shape) and _maxdiff(a, b) <= atol


def _shape(t):
    return tuple(t.shape) if torch.is_tensor(t) else type(t).__name__


# ------------------------------------------------------------------------------------------------ real data

@functools.lru_cache(maxsize=None)
def _tokenizer():
    from mtbert_lib.tokenizer import load_tokenizer
    return load_tokenizer("minilm")


@functools.lru_cache(maxsize=None)
def _minilm():
    from mtbert_lib.model import BertModel
    return BertModel.from_pretrained("minilm").eval()


@functools.lru_cache(maxsize=None)
def _sst_batch(n: int = 8):
    """The first n SST dev sentences, tokenized and padded (the batch has padding)."""
    from mtbert_lib.data import load_task
    b = _tokenizer()([e.text for e in load_task("sst", "dev", report=None)[:n]])
    assert (b["attention_mask"] == 0).any()
    return b


@functools.lru_cache(maxsize=None)
def _sts_pair_batch(n: int = 8):
    """The first n STS dev pairs as `[CLS] a [SEP] b [SEP]` (token types 0 and 1), padded."""
    from mtbert_lib.data import load_task
    pairs = load_task("sts", "dev", report=None)[:n]
    b = _tokenizer()([p.text1 for p in pairs], [p.text2 for p in pairs])
    assert (b["token_type_ids"] == 1).any() and (b["attention_mask"] == 0).any()
    return b


@functools.lru_cache(maxsize=None)
def _embedded():
    """MiniLM's embeddings of the SST batch, (B, T, 384), and its key mask (B, T) bool."""
    b = _sst_batch()
    with torch.no_grad():
        return _minilm().embeddings(b["input_ids"], b["token_type_ids"]), b["attention_mask"].bool()


@functools.lru_cache(maxsize=None)
def _qkv():
    """Layer 0's real queries, keys and values of the SST batch, (B, 12, T, 32) each, and the key mask."""
    from mtbert_lib.attention import split_heads
    x, mask = _embedded()
    att = _minilm().encoder.layers[0].attention
    with torch.no_grad():
        q, k, v = att.qkv(x).split(x.size(-1), dim=-1)
    return tuple(split_heads(t, att.h).contiguous() for t in (q, k, v)) + (mask,)


@functools.lru_cache(maxsize=None)
def _last_hidden():
    b = _sst_batch()
    with torch.no_grad():
        return _minilm()(**b).last_hidden_state


@functools.lru_cache(maxsize=None)
def _features(n: int = 16):
    """Mean-pooled MiniLM sentence vectors of the first n SST dev sentences, (n, 384), and their labels."""
    from mtbert_lib.data import load_task
    from mtbert_lib.model import mean_pool
    rows = load_task("sst", "dev", report=None)[:n]
    b = _tokenizer()([e.text for e in rows])
    with torch.no_grad():
        X = mean_pool(_minilm()(**b).last_hidden_state, b["attention_mask"])
    return X, torch.tensor([e.label for e in rows])


@functools.lru_cache(maxsize=None)
def _train_lengths():
    """Token lengths of the first training examples of SST (sentences), Quora and STS (pairs `[CLS] a [SEP] b [SEP]`)."""
    from mtbert_lib.data import load_task
    tok, out = _tokenizer(), {}
    for task, n in (("sst", 200), ("quora", 300), ("sts", 120)):
        rows = load_task(task, "train", report=None)[:n]
        enc = tok.encode([e.text for e in rows]) if task == "sst" else tok.encode([e.text1 for e in rows], [e.text2 for e in rows])
        out[task] = np.array([len(ids) for ids, _ in enc])
    return out


# ------------------------------------------------------------------------------------------------ 01 attention

def check_attention(scaled_dot_product_attention):
    """Exercise 01: scaled dot-product attention with a padding mask."""
    _grade("attention", _check_attention, scaled_dot_product_attention)


def _check_attention(fn):
    from mtbert_lib.attention import scaled_dot_product_attention as lib
    q, k, v, mask = _qkv()
    B, h, T, d = q.shape
    with torch.no_grad():
        got = fn(q.clone(), k.clone(), v.clone(), mask.clone())
        _ensure(isinstance(got, (tuple, list)) and len(got) == 2, "must return a pair (output, weights)")
        out, w = got
        _ensure(torch.is_tensor(w) and tuple(w.shape) == (B, h, T, T),
                f"shape: weights are {_shape(w)}, expected (B, h, T, T) = {(B, h, T, T)}")
        _ensure(torch.is_tensor(out) and tuple(out.shape) == (B, h, T, d),
                f"shape: output is {_shape(out)}, expected (B, h, T, d) = {(B, h, T, d)}")
        _ensure(bool(torch.isfinite(w).all() and torch.isfinite(out).all()), "values: NaN or inf in the output or weights")
        ref_out, ref_w = lib(q, k, v, mask)
        ones = torch.ones(B, h, T)
        if not _close(w.sum(-1), ones):
            _ensure(not _close(w.sum(-2), ones), "softmax over the wrong axis: each query's weights over the keys "
                                                 "(the last dimension) must sum to 1")
            raise Fail("weights: each query's weights over the keys must sum to 1 (a softmax over the last dimension)")
        padded = ~mask[:, None, None, :].expand_as(w)
        leak = w[padded].abs().max().item()
        if leak > 1e-6:
            _ensure(w[~padded].abs().max().item() > 1e-6, "masking is inverted: key_mask is True for the real tokens")
            _ensure(not _close(w, lib(q, k, v, None)[1]), "masking: key_mask is ignored, padded keys get weight")
            raise Fail(f"masking: padded keys get weight up to {leak:.2g}; they must get exactly 0")
        if not _close(w, ref_w):
            unscaled = (q @ k.transpose(-2, -1)).masked_fill(padded, torch.finfo(q.dtype).min).softmax(-1)
            _ensure(not _close(w, unscaled), "scaling: the scores q·kᵀ are not divided by √d")
            raise Fail(f"values: the weights differ from mtbert_lib's by {_maxdiff(w, ref_w):.2g}")
        torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        _ensure(_close(out, torch_out), f"values: the output differs from torch's scaled_dot_product_attention by "
                                        f"{_maxdiff(out, torch_out):.2g} (output = weights @ v)")
        out2, _ = fn(q.clone(), k.clone(), v.clone())
        _ensure(_close(out2, F.scaled_dot_product_attention(q, k, v)),
                "key_mask=None (no padding) must attend to every key")
        empty = mask.clone()
        empty[0] = False  # a sequence with no real key at all
        out3, w3 = fn(q.clone(), k.clone(), v.clone(), empty)
        _ensure(bool(torch.isfinite(out3).all() and torch.isfinite(w3).all()),
                "masking: a sequence with no real key gives NaN; fill with torch.finfo(scores.dtype).min, not -inf")
        out4, _ = fn(q.clone(), k.clone(), v.clone(), mask.clone(), dropout_p=0.5, training=False)
        _ensure(_close(out4, ref_out), "dropout: with training=False the weights must not be dropped")
    torch.manual_seed(0)
    out5, w5 = fn(q.clone(), k.clone(), v.clone(), mask.clone(), dropout_p=0.5, training=True)
    _ensure(not _close(out5, ref_out, 1e-4), "dropout: with training=True and dropout_p=0.5 the output does not change")
    _ensure(_close(w5, ref_w), "dropout: return the attention weights before dropout (the ones that sum to 1)")


def check_heads(split_heads, merge_heads):
    """Exercise 01: splitting the hidden vectors into heads and merging them back."""
    _grade("heads", _check_heads, split_heads, merge_heads)


def _check_heads(split, merge):
    from mtbert_lib.attention import split_heads as lib_split
    x, _ = _embedded()
    B, T, H = x.shape
    for h in (12, 6):
        d = H // h
        s = split(x.clone(), h)
        _ensure(torch.is_tensor(s) and tuple(s.shape) == (B, h, T, d),
                f"split_heads: shape {_shape(s)} for {h} heads, expected (B, h, T, d) = {(B, h, T, d)}")
        ref = lib_split(x, h)
        if not torch.equal(s, ref):
            _ensure(not torch.equal(s, x.reshape(B, h, T, d)), "split_heads: viewing (B, T, H) straight as (B, h, T, d) "
                    "mixes tokens across heads; view as (B, T, h, d), then swap the T and h axes")
            raise Fail(f"split_heads: values differ from mtbert_lib's by {_maxdiff(s, ref):.2g} ({h} heads)")
        try:
            m = merge(ref.contiguous())  # as attention returns it: (B, h, T, d), contiguous
        except RuntimeError as e:
            if "view" in str(e):
                raise Fail("merge_heads: after the transpose the tensor is not contiguous; use reshape, not view") from None
            raise
        _ensure(torch.is_tensor(m) and tuple(m.shape) == (B, T, H),
                f"merge_heads: shape {_shape(m)}, expected (B, T, H) = {(B, T, H)}")
        if not torch.equal(m, x):
            _ensure(not torch.equal(m, ref.reshape(B, T, H)), "merge_heads: reshaping (B, h, T, d) straight to (B, T, H) "
                    "mixes tokens; swap the h and T axes back first")
            raise Fail(f"merge_heads(split_heads(x)) differs from x by {_maxdiff(m, x):.2g}")


# ------------------------------------------------------------------------------------------------ 02 layer

def check_transformer_layer(TransformerLayer):
    """Exercise 02: the post-LN transformer layer's forward."""
    _grade("transformer_layer", _check_transformer_layer, TransformerLayer)


def _check_transformer_layer(cls):
    model = _minilm()
    c, lib = model.config, model.encoder.layers[0]
    layer = cls(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.hidden_dropout_prob,
                c.attention_probs_dropout_prob, c.layer_norm_eps)
    try:
        layer.load_state_dict(lib.state_dict())
    except RuntimeError as e:
        raise Fail(f"MiniLM's layer 0 weights do not fit the layer (keep __init__ as given): {str(e).splitlines()[0][:120]}")
    layer.eval()
    x, mask = _embedded()
    with torch.no_grad():
        y = layer(x.clone(), mask.clone())
        _ensure(torch.is_tensor(y) and tuple(y.shape) == tuple(x.shape), f"shape: output {_shape(y)}, expected (B, T, H) = {tuple(x.shape)}")
        ref = lib(x, mask)
        diff = (y - ref).abs()[mask].max().item()
        if diff > 1e-5:
            _ensure(not _close(y[mask], lib(x, None)[mask]), "masking: padding leaks into the real tokens; pass key_mask on to self.attention")
            raise Fail(f"values: the real tokens' outputs differ from mtbert_lib's layer (MiniLM layer 0) by {diff:.2g}; "
                       "post-LN is h = AddNorm(x, Attention(x)), out = AddNorm(h, FeedForward(h))")
        x2 = x.clone()
        x2[~mask] = 100.0  # scribble on the padding
        _ensure(_close(layer(x2, mask)[mask], y[mask]), "masking: changing a padded position changes the real tokens' outputs")
        layer.attention.last_weights = None
        layer(x.clone(), mask.clone(), keep_attention=True)
        _ensure(layer.attention.last_weights is not None,
                "keep_attention is not passed on to self.attention (layer.attention.last_weights stays None)")


# ------------------------------------------------------------------------------------------------ 03 BERT

def check_embeddings(BertEmbeddings):
    """Exercise 03: BERT's input embeddings (word + position + token type, LayerNorm, dropout)."""
    _grade("embeddings", _check_embeddings, BertEmbeddings)


def _check_embeddings(cls):
    model = _minilm()
    lib = model.embeddings
    emb = cls(model.config)
    try:
        emb.load_state_dict(lib.state_dict())
    except RuntimeError as e:
        raise Fail(f"MiniLM's embedding weights do not fit (keep __init__ as given): {str(e).splitlines()[0][:120]}")
    emb.eval()
    with torch.no_grad():
        for name, b in (("STS pairs", _sts_pair_batch()), ("SST sentences", _sst_batch())):
            ids, types = b["input_ids"], b["token_type_ids"]
            e = emb(ids.clone(), types.clone())
            B, T = ids.shape
            H = model.config.hidden_size
            _ensure(torch.is_tensor(e) and tuple(e.shape) == (B, T, H), f"shape: {_shape(e)} on {name}, expected (B, T, H) = {(B, T, H)}")
            ref = lib(ids, types)
            if not _close(e, ref):
                _ensure(not _close(e, lib(ids, torch.zeros_like(types))),
                        "token types: token_type_ids are ignored (the second sentence of a pair has type 1)")
                word, pos = lib.word_embeddings(ids), lib.position_embeddings(torch.arange(T))[None]
                typ = lib.token_type_embeddings(types)
                _ensure(not _close(e, lib.LayerNorm(word + pos)), "token type embeddings missing: add "
                        "self.token_type_embeddings(token_type_ids)")
                _ensure(not _close(e, word + pos + typ), "LayerNorm missing: normalise the sum with self.LayerNorm")
                _ensure(not _close(e, lib.LayerNorm(word + typ)), "position embeddings missing (positions 0…T−1)")
                raise Fail(f"values differ from mtbert_lib's embeddings by {_maxdiff(e, ref):.2g} on real {name}")
        ids = _sst_batch()["input_ids"]
        e0 = emb(ids.clone())
        _ensure(torch.is_tensor(e0) and _close(e0, lib(ids)), "token_type_ids=None must mean type 0 for every token (one sentence)")
    emb.train()
    with torch.no_grad():
        a, b = emb(ids.clone()), emb(ids.clone())
    _ensure(not torch.equal(a, b), "dropout: in training mode the embeddings must go through self.dropout")


def check_pooler(BertPooler):
    """Exercise 03: the pooler, tanh(W h_[CLS] + b)."""
    _grade("pooler", _check_pooler, BertPooler)


def _check_pooler(cls):
    model = _minilm()
    pooler = cls(model.config)
    try:
        pooler.load_state_dict(model.pooler.state_dict())
    except RuntimeError as e:
        raise Fail(f"MiniLM's pooler weights do not fit (keep __init__ as given): {str(e).splitlines()[0][:120]}")
    pooler.eval()
    h = _last_hidden()
    B, T, H = h.shape
    W, bias = model.pooler.dense.weight, model.pooler.dense.bias
    with torch.no_grad():
        p = pooler(h.clone())
        _ensure(torch.is_tensor(p) and tuple(p.shape) == (B, H), f"shape: {_shape(p)}, expected (B, H) = {(B, H)}")
        ref = torch.tanh(F.linear(h[:, 0], W, bias))
        _ensure(_close(ref, model.pooler(h)), "internal: the library's pooler disagrees with tanh(W h[:, 0] + b)")
        if not _close(p, ref):
            _ensure(not _close(p, torch.tanh(F.linear(h.mean(1), W, bias))),
                    "uses every token (a mean); the pooler reads only the first token, [CLS]: h[:, 0]")
            _ensure(not _close(p, torch.tanh(F.linear(h[:, -1], W, bias))), "reads the last position; [CLS] is the first: h[:, 0]")
            _ensure(not _close(p, F.linear(h[:, 0], W, bias)), "tanh missing: pooler = tanh(dense(h[:, 0]))")
            raise Fail(f"values differ from tanh(W h_[CLS] + b) by {_maxdiff(p, ref):.2g} on real MiniLM hidden states")


# ------------------------------------------------------------------------------------------------ 04 AdamW

def check_adamw(AdamW):
    """Exercise 04: the AdamW step (bias correction, decoupled weight decay), on the loop path."""
    _grade("adamw", _check_adamw, AdamW)


_LR, _WD, _BIAS_LR = 1e-2, 0.1, 2e-2


def _groups(head):
    return [{"params": [head.weight], "weight_decay": _WD}, {"params": [head.bias], "weight_decay": 0.0, "lr": _BIAS_LR}]


def _run_optimizer(make, steps, amsgrad=False):
    """A linear SST-5 head on real MiniLM sentence vectors, trained full-batch with cross-entropy."""
    X, y = _features()
    torch.manual_seed(0)
    head = nn.Linear(X.size(1), 5)
    opt = make(_groups(head), amsgrad)
    path = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(head(X), y).backward()
        opt.step()
        path.append([p.detach().clone() for p in head.parameters()])
    return head, opt, path


def _first_step_candidates():
    """What one step from the same start gives under the usual mistakes: name -> [weight, bias]."""
    X, y = _features()
    torch.manual_seed(0)
    head = nn.Linear(X.size(1), 5)
    F.cross_entropy(head(X), y).backward()
    b1, b2, eps = 0.9, 0.999, 1e-8
    out = {}
    for name in ("adamw", "no bias correction", "coupled", "no decay", "decay after"):
        ps = []
        for p, lr, wd in ((head.weight, _LR, _WD), (head.bias, _BIAS_LR, 0.0)):
            theta, g = p.detach(), p.grad
            if name == "coupled":
                g = g + wd * theta
            m, v = (1 - b1) * g, (1 - b2) * g * g
            mh, vh = (m, v) if name == "no bias correction" else (m / (1 - b1), v / (1 - b2))
            step = lr * mh / (vh.sqrt() + eps)
            if name in ("coupled", "no decay"):
                ps.append(theta - step)
            elif name == "decay after":
                ps.append((theta - step) * (1 - lr * wd))
            else:
                ps.append(theta * (1 - lr * wd) - step)
        out[name] = ps
    return out


def _check_adamw(cls):
    def ours(groups, amsgrad):
        return cls(groups, lr=_LR, amsgrad=amsgrad, foreach=False, fused=False)

    def torchs(groups, amsgrad):
        return torch.optim.AdamW(groups, lr=_LR, amsgrad=amsgrad, foreach=False)

    head, opt, path = _run_optimizer(ours, 1)
    _, ref_opt, ref_path = _run_optimizer(torchs, 1)
    _ensure(_close(ref_path[0][0], _first_step_candidates()["adamw"][0], 1e-7), "internal: the reference step is not AdamW's")
    if not all(_close(a, b, 1e-7) for a, b in zip(path[0], ref_path[0])):
        reasons = {"no bias correction": "bias correction missing: divide m by (1 − β1^t) and v by (1 − β2^t)",
                   "coupled": "weight decay is added to the gradient (Adam's L2); AdamW shrinks the weights directly: "
                              "p ← p·(1 − lr·weight_decay)",
                   "no decay": "weight decay missing: p ← p·(1 − lr·weight_decay) before the Adam step",
                   "decay after": "weight decay applied after the Adam step; shrink p first (as torch.optim.AdamW)"}
        for name, cand in _first_step_candidates().items():
            if name in reasons and all(_close(a, b, 1e-7) for a, b in zip(path[0], cand)):
                raise Fail(reasons[name])
        raise Fail(f"step 1: the parameters differ from torch.optim.AdamW's by "
                   f"{max(_maxdiff(a, b) for a, b in zip(path[0], ref_path[0])):.2g}")
    for p, q in zip(head.parameters(), ref_opt.param_groups[0]["params"] + ref_opt.param_groups[1]["params"]):
        for key in ("exp_avg", "exp_avg_sq"):
            _ensure(_close(opt.state[p][key], ref_opt.state[q][key], 1e-8),
                    f"self.state[p][{key!r}] is not updated: update m and v in place (m.lerp_ / mul_ / addcmul_), "
                    "they are the optimizer's memory")
    for amsgrad in (False, True):
        steps = 10
        _, _, path = _run_optimizer(ours, steps, amsgrad)
        _, _, ref_path = _run_optimizer(torchs, steps, amsgrad)
        for t in range(steps):
            d = max(_maxdiff(a, b) for a, b in zip(path[t], ref_path[t]))
            _ensure(d <= 1e-6, f"step {t + 1}{' (amsgrad)' if amsgrad else ''}: the parameters differ from "
                               f"torch.optim.AdamW's by {d:.2g} (bias correction uses this parameter's step count t)")


# ------------------------------------------------------------------------------------------------ 07 schedules

def check_balanced_round_robin(balanced_round_robin):
    """Exercise 07: the balanced round-robin sampler."""
    _grade("balanced_round_robin", _check_balanced, balanced_round_robin)


def _padding(rounds, lengths) -> int:
    return int(sum(lengths[t][b].max() * len(b) - lengths[t][b].sum() for r in rounds for t, b in r))


def _check_balanced(fn):
    from mtbert_lib.training import balanced_round_robin as lib
    lengths = {t: L.copy() for t, L in _train_lengths().items()}  # the learner's code may sort them in place
    tasks, sizes = list(lengths), {t: len(L) for t, L in lengths.items()}
    n = min(sizes.values())
    smallest = min(sizes, key=sizes.get)
    for batch_size, bucket in ((8, 0), (5, 50)):
        rounds = fn(lengths, batch_size, np.random.default_rng(1), bucket)
        _ensure(isinstance(rounds, list) and rounds, "must return a non-empty list of rounds")
        _ensure(len(rounds) == math.ceil(n / batch_size), f"{len(rounds)} rounds with batch size {batch_size}, expected "
                f"ceil(N / batch_size) = {math.ceil(n / batch_size)} (N = {n}, the smallest training set)")
        for r in rounds:
            _ensure(isinstance(r, (list, tuple)) and [x[0] for x in r] == tasks,
                    f"each round must hold one (task, batch) per task, in the order of `lengths` {tasks}")
            _ensure(all(1 <= len(b) <= batch_size for _, b in r), f"a batch is empty or larger than batch_size={batch_size}")
        for i, t in enumerate(tasks):
            drawn = [j for r in rounds for j in r[i][1]]
            _ensure(all(isinstance(j, (int, np.integer)) for j in drawn), f"{t}: batches must hold integer example indices")
            _ensure(len(drawn) == n, f"{t}: {len(drawn)} examples per epoch, expected N = {n} (the smallest training set)")
            _ensure(len(set(drawn)) == n, f"{t}: an example is drawn twice in one epoch; draw without replacement")
            _ensure(all(0 <= j < sizes[t] for j in drawn), f"{t}: an index is outside the training set (0…{sizes[t] - 1})")
            if t != smallest:
                _ensure(max(drawn) >= n, f"{t}: the indices point into the drawn subset (0…N−1), not into the training "
                                         "set; map each batch back through the drawn indices")
        _ensure(sorted(j for r in rounds for t, b in r if t == smallest for j in b) == list(range(n)),
                f"{smallest} (the smallest task) must be used completely every epoch")
        if bucket:
            ours = _padding(rounds, lengths)
            real = _train_lengths()
            _ensure(all(np.array_equal(lengths[t], real[t]) for t in tasks), "the lengths must not be changed in place")
            bucketed = _padding(lib(real, batch_size, np.random.default_rng(1), bucket), real)
            plain = _padding(lib(real, batch_size, np.random.default_rng(1), 0), real)
            _ensure(ours <= (bucketed + plain) / 2, f"bucket={bucket} is ignored: {ours} pad tokens per epoch, "
                    f"{bucketed} with length bucketing; pass bucket on to make_batches")
    np.random.seed(1)  # _grade restores numpy's global state afterwards
    a = fn(lengths, 8, np.random.default_rng(3))
    np.random.seed(2)
    b = fn(lengths, 8, np.random.default_rng(3))
    as_lists = lambda rounds: [[(t, [int(j) for j in bb]) for t, bb in r] for r in rounds]
    _ensure(as_lists(a) == as_lists(b), "not reproducible: draw only from the `rng` argument (not np.random or random)")
    c = fn(lengths, 8, np.random.default_rng(4))
    big = max(sizes, key=sizes.get)
    subset = lambda rounds: sorted(int(j) for r in rounds for t, bb in r if t == big for j in bb)
    _ensure(subset(a) != subset(c), f"{big}: every epoch draws the same examples; draw the subset with `rng`")


# ------------------------------------------------------------------------------------------------ 08 Mean Teacher

def check_ema_update(ema_update):
    """Exercise 08: the teacher's exponential moving average update."""
    _grade("ema_update", _check_ema_update, ema_update)


@functools.lru_cache(maxsize=None)
def _ema_pair():
    """A small head (Linear, BatchNorm, Linear) and a student copy trained 3 steps on real MiniLM sentence vectors,
    so that every parameter and the BatchNorm running statistics differ."""
    X, y = _features()
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(X.size(1), 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 5))
    student = copy.deepcopy(teacher).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(student(X), y).backward()
        opt.step()
    return teacher.eval(), student.eval()


def _check_ema_update(fn):
    from mtbert_lib.mean_teacher import ema_update as lib
    teacher0, student0 = _ema_pair()
    for decay in (0.99, 0.5, 0.0):
        teacher, student = copy.deepcopy(teacher0), copy.deepcopy(student0)
        before = [p.detach().clone() for p in teacher.parameters()]
        ids = [id(p) for p in teacher.parameters()]
        s_before = {k: v.clone() for k, v in student.state_dict().items()}
        try:
            fn(teacher, student, decay)
        except RuntimeError as e:
            if "leaf Variable" in str(e):
                raise Fail("in-place update of parameters that require grad: do it under torch.no_grad()") from None
            raise
        _ensure([id(p) for p in teacher.parameters()] == ids, "the teacher's parameters were replaced; update them in place")
        for (name, p), p0, s in zip(teacher.named_parameters(), before, student.parameters()):
            expected = decay * p0 + (1 - decay) * s.detach()
            if not _close(p, expected, 1e-6):
                _ensure(not torch.equal(p, p0), f"parameter {name} did not change (decay={decay}); update it in place")
                _ensure(not _close(p, (1 - decay) * p0 + decay * s.detach(), 1e-6),
                        "decay is swapped: the teacher keeps `decay` of itself, t ← decay·t + (1 − decay)·s")
                raise Fail(f"parameter {name} differs from decay·teacher + (1 − decay)·student by "
                           f"{_maxdiff(p, expected):.2g} (decay={decay})")
            _ensure(p.grad_fn is None, "the teacher's parameters got a gradient graph: update under torch.no_grad()")
        s_buffers = dict(student.named_buffers())
        for name, b in teacher.named_buffers():
            _ensure(torch.equal(b, s_buffers[name]), f"buffer {name} (BatchNorm's running statistics) must be copied "
                                                     "from the student, not averaged or left alone")
        _ensure(all(torch.equal(v, s_before[k]) for k, v in student.state_dict().items()), "the student must not change")
        ref = copy.deepcopy(teacher0)
        lib(ref, student, decay)
        _ensure(all(_close(a, b, 1e-6) for a, b in zip(teacher.state_dict().values(), ref.state_dict().values())),
                f"the teacher differs from mtbert_lib's ema_update (decay={decay})")


def check_symmetric_kl(symmetric_kl):
    """Exercise 08: the symmetric KL consistency loss."""
    _grade("symmetric_kl", _check_symmetric_kl, symmetric_kl)


def _reference_kl(s, t):
    logp, logq = F.log_softmax(s, -1), F.log_softmax(t, -1)
    kl_pq = F.kl_div(logq, logp, reduction="batchmean", log_target=True)  # KL(p‖q), p = student
    kl_qp = F.kl_div(logp, logq, reduction="batchmean", log_target=True)
    return kl_pq, kl_qp


def _check_symmetric_kl(fn):
    from mtbert_lib.mean_teacher import binary_logits, symmetric_kl as lib
    X, _ = _features()
    torch.manual_seed(0)
    student_head, teacher_head = nn.Linear(X.size(1), 5), nn.Linear(X.size(1), 5)
    with torch.no_grad():
        s0, t = 3 * student_head(X), 3 * teacher_head(X)  # SST-5 logits of two different heads on real sentence vectors
    B, C = s0.shape
    s = s0.clone().requires_grad_()
    val = fn(s, t.clone())
    _ensure(torch.is_tensor(val) and val.dim() == 0, f"must return one number (a 0-dim tensor, the batch mean), got {_shape(val)}")
    kl_pq, kl_qp = _reference_kl(s0, t)
    ref = kl_pq + kl_qp
    _ensure(_close(ref, lib(s0, t), 1e-6), "internal: the library's symmetric_kl disagrees with torch's kl_div")
    v = val.detach()
    if not _close(v, ref, 1e-5 * max(1.0, ref.item())):
        for cand, reason in ((ref * B, "summed over the batch; average over the batch"),
                             (ref / C, "averaged over the classes; sum over the classes, average over the batch"),
                             (kl_pq, "only KL(p‖q); add KL(q‖p)"), (kl_qp, "only KL(q‖p); add KL(p‖q)"),
                             (ref / 2, "half of KL(p‖q) + KL(q‖p); the loss is the plain sum")):
            _ensure(not _close(v, cand, 1e-5 * max(1.0, cand.item())), reason)
        raise Fail(f"value {v.item():.6f}, expected KL(p‖q) + KL(q‖p) = {ref.item():.6f} (torch kl_div, batch mean)")
    val.backward()
    _ensure(s.grad is not None and s.grad.abs().max().item() > 0, "no gradient reaches the student's logits (do not detach them)")
    with torch.no_grad():
        _ensure(abs(fn(s0.clone(), s0.clone()).item()) < 1e-6, "KL(p, p) must be 0")
        _ensure(_close(fn(t.clone(), s0.clone()), ref, 1e-5 * max(1.0, ref.item())), "not symmetric: swapping student and teacher changes the value")
        z1, z2 = s0[:, 0], t[:, 0]  # one logit per example (Quora): two-class logits [0, z]
        got = fn(binary_logits(z1), binary_logits(z2))
        bref = sum(_reference_kl(binary_logits(z1), binary_logits(z2)))
        _ensure(_close(got, bref, 1e-5 * max(1.0, bref.item())), "two-class (Quora) logits: value differs from the reference")

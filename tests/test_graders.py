"""The graders, called directly (no notebook): each one passes the library's own answer and rejects the typical wrong
answers with the message that names the mistake. One wrong submission per grader gap of issue 22 (02's dropout in
training mode, 03's positions from 1, 04's ε inside the root, 07's first N examples) and per typical mistake in the
exercises of notebooks 05, 06 and 09. Real data: SST/STS sentences through MiniLM and the project's own results/.
"""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from mtbert_lib import grading as G


@pytest.fixture(scope="module", autouse=True)
def real_data(data_path, minilm_dir):
    old = os.environ.get("MTBERT_DATA")
    os.environ["MTBERT_DATA"] = str(data_path)
    yield
    if old is None:
        os.environ.pop("MTBERT_DATA", None)
    else:
        os.environ["MTBERT_DATA"] = old


def verdict(capsys, check, *answer) -> str:
    check(*answer)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("EXERCISE ")]
    assert len(lines) == 1, lines
    return lines[0].split(": ", 1)[1]


# ------------------------------------------------------------------------------------------------ 02, 03, 04, 07 gaps

def _layer_classes():
    from mtbert_lib.layers import TransformerLayer

    class NoAddNormDropout(TransformerLayer):  # eval mode cannot tell: AddNorm's dropout is skipped
        def forward(self, x, key_mask=None, keep_attention=False):
            h = self.attention_norm.norm(x + self.attention(x, key_mask, keep_attention))
            return self.ffn_norm.norm(h + self.ffn(h))

    class DropoutAfterNorm(TransformerLayer):
        def forward(self, x, key_mask=None, keep_attention=False):
            h = self.attention_norm.dropout(self.attention_norm.norm(x + self.attention(x, key_mask, keep_attention)))
            return self.ffn_norm.dropout(self.ffn_norm.norm(h + self.ffn(h)))
    return TransformerLayer, NoAddNormDropout, DropoutAfterNorm


def test_transformer_layer_is_graded_in_training_mode_too(capsys):
    lib, no_dropout, after = _layer_classes()
    assert verdict(capsys, G.check_transformer_layer, lib) == "PASS"
    msg = verdict(capsys, G.check_transformer_layer, no_dropout)
    assert msg.startswith("FAIL: dropout: in training mode the output does not change") and "attention_norm" in msg
    assert verdict(capsys, G.check_transformer_layer, after).startswith("FAIL: training mode: with the same seed")


def test_embeddings_positions_from_one(capsys):
    from mtbert_lib.model import BertEmbeddings

    class FromOne(BertEmbeddings):
        def forward(self, input_ids, token_type_ids=None):
            T = input_ids.size(1)
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            e = (self.word_embeddings(input_ids) + self.position_embeddings(torch.arange(1, T + 1))[None]
                 + self.token_type_embeddings(types))
            return self.dropout(self.LayerNorm(e))
    assert verdict(capsys, G.check_embeddings, FromOne).startswith("FAIL: positions start at 1")


def _adamw_with(denominator):
    from mtbert_lib import optim

    def update(opt, group, params):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in params:
            st = opt.state[p]
            st["step"] += 1
            t, m, v = st["step"].item(), st["exp_avg"], st["exp_avg_sq"]
            p.mul_(1 - lr * wd)
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.add_(-lr * (m / (1 - b1 ** t)) / denominator(v, eps, 1 - b2 ** t))

    class Wrong(optim.AdamW):
        def step(self, closure=None):
            saved, optim._loop_update = optim._loop_update, update
            try:
                return super().step(closure)
            finally:
                optim._loop_update = saved
    return Wrong


def test_adamw_eps_mistakes_get_their_own_message(capsys):
    inside = _adamw_with(lambda v, eps, bias2: (v / bias2 + eps).sqrt())
    before = _adamw_with(lambda v, eps, bias2: (v.sqrt() + eps) / math.sqrt(bias2))
    assert verdict(capsys, G.check_adamw, inside).startswith("FAIL: eps is added inside the square root")
    assert verdict(capsys, G.check_adamw, before).startswith("FAIL: eps is added before the bias correction")


def test_balanced_round_robin_first_n_examples(capsys):
    from mtbert_lib.tasks import make_batches

    def first_n(lengths, batch_size, rng, bucket=0):  # the gap: it got the message for a different mistake
        n = min(len(L) for L in lengths.values())
        per = {t: make_batches(L[:n], batch_size, rng, bucket) for t, L in lengths.items()}
        return [[(t, b[i]) for t, b in per.items()] for i in range(len(next(iter(per.values()))))]

    def not_mapped_back(lengths, batch_size, rng, bucket=0):
        n, per = min(len(L) for L in lengths.values()), {}
        for t, L in lengths.items():
            chosen = np.sort(rng.choice(len(L), n, replace=False))
            per[t] = make_batches(L[chosen], batch_size, rng, bucket)
        return [[(t, b[i]) for t, b in per.items()] for i in range(len(next(iter(per.values()))))]
    assert "every epoch uses the first N" in verdict(capsys, G.check_balanced_round_robin, first_n)
    assert "map each batch back" in verdict(capsys, G.check_balanced_round_robin, not_mapped_back)


# ------------------------------------------------------------------------------------------------ 05 make_batches

def _bucketed(chunk_of, sort_all=False, shuffle_batches=True):
    from mtbert_lib.tasks import make_batches

    def fn(L, bs, rng=None, bucket=0, drop_last=False):
        if bucket <= 0:
            return make_batches(L, bs, rng, bucket, drop_last)
        n, order = len(L), rng.permutation(len(L))
        chunk = n if sort_all else chunk_of(bucket, bs)
        order = np.concatenate([c[np.argsort(L[c], kind="stable")] for c in np.split(order, range(chunk, n, chunk))])
        batches = [order[i:i + bs].tolist() for i in range(0, n, bs)]
        return [batches[i] for i in rng.permutation(len(batches))] if shuffle_batches else batches
    return fn


def test_make_batches_grader(capsys):
    from mtbert_lib.tasks import make_batches as lib
    assert verdict(capsys, G.check_make_batches, lib) == "PASS"
    wrong = {
        "bucket is ignored": (lambda L, bs, rng=None, bucket=0, drop_last=False: lib(L, bs, rng, min(bucket, 0), drop_last),
                              "about as many as random batches"),
        "one sort over the whole set": (_bucketed(None, sort_all=True), "as few as sorting the WHOLE set"),
        "chunks of `bucket` examples": (_bucketed(lambda bucket, bs: bucket), "about as many as random batches"),
        "batches in length order": (_bucketed(lambda bucket, bs: bucket * bs, shuffle_batches=False), "come out in length order"),
        "evaluation shuffled": (lambda L, bs, rng=None, bucket=0, drop_last=False:
                                lib(L, bs, rng or np.random.default_rng(0), bucket, drop_last), "must keep the data's order"),
        "np.random": (lambda L, bs, rng=None, bucket=0, drop_last=False:
                      lib(L, bs, None if rng is None else np.random.default_rng(np.random.randint(10**6)), bucket, drop_last),
                      "not reproducible"),
        "drop_last ignored": (lambda L, bs, rng=None, bucket=0, drop_last=False: lib(L, bs, rng, bucket), "drop_last=True"),
    }
    for name, (fn, expected) in wrong.items():
        msg = verdict(capsys, G.check_make_batches, fn)
        assert msg.startswith("FAIL") and expected in msg, (name, msg)


# ------------------------------------------------------------------------------------------------ 06 pair features, heads

def test_pair_features_grader(capsys):
    from mtbert_lib.multitask import pair_features as lib
    assert verdict(capsys, G.check_pair_features, lib) == "PASS"
    wrong = {
        "u − v without abs": (lambda u, v: torch.cat([u, v, u - v, u * v], -1), "changes sign"),
        "another order": (lambda u, v: torch.cat([u, v, u * v, (u - v).abs()], -1), "[u, v, u·v, |u−v|]"),
        "stacked on the batch axis": (lambda u, v: torch.cat([u, v, (u - v).abs(), u * v], 0), "batch axis"),
        "dot product": (lambda u, v: torch.cat([u, v, (u - v).abs(), (u * v).sum(-1, keepdim=True)], -1), "element-wise product"),
        "three parts": (lambda u, v: torch.cat([u, v, (u - v).abs()], -1), "four parts"),
        "detached": (lambda u, v: torch.cat([u, v, (u - v).abs(), u * v], -1).detach(), "no gradient"),
    }
    for name, (fn, expected) in wrong.items():
        msg = verdict(capsys, G.check_pair_features, fn)
        assert msg.startswith("FAIL") and expected in msg, (name, msg)


def test_task_heads_grader(capsys):
    from mtbert_lib.multitask import task_heads as lib

    def replaced(task, make):
        def fn(hidden, pair_enc, sts_head):
            heads = lib(hidden, pair_enc, sts_head)
            heads[task] = make(hidden, heads[task])
            return heads
        return fn
    assert verdict(capsys, G.check_task_heads, lib) == "PASS"
    wrong = {
        "pairs always 4H": (replaced("quora", lambda H, h: nn.Linear(4 * H, 1)), "a pair read jointly"),
        "STS with 5 classes": (replaced("sts", lambda H, h: nn.Linear(h.in_features, 5 if h.out_features == 6 else 1)),
                               "6 classes"),
        "CFIMDB with 5 classes": (replaced("cfimdb", lambda H, h: nn.Linear(H, 5)), "CFIMDB has 2 classes"),
        "a plain dict": (lambda h, p, s: dict(lib(h, p, s)), "nn.ModuleDict"),
    }
    for name, (fn, expected) in wrong.items():
        msg = verdict(capsys, G.check_task_heads, fn)
        assert msg.startswith("FAIL") and expected in msg, (name, msg)


# ------------------------------------------------------------------------------------------------ 09 paired difference

def _interval(q, ddof=1, se=lambda s, n: s / math.sqrt(n)):
    def fn(a, b):
        d = a.sub(b).dropna()
        n = len(d)
        if n < 2:
            return float(d.mean()), float("nan"), float("nan"), n
        h = q(n) * se(d.std(ddof=ddof), n)
        return float(d.mean()), float(d.mean() - h), float(d.mean() + h), n
    return fn


def test_paired_difference_grader(capsys):
    from mtbert_lib.plots import paired_difference as lib
    assert verdict(capsys, G.check_paired_difference, lib) == "PASS"

    def by_position(a, b):
        n = min(len(a), len(b))
        d = a.values[:n] - b.values[:n]
        h = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        return d.mean(), d.mean() - h, d.mean() + h, n

    def unpaired(a, b):
        s = sorted(set(a.index) & set(b.index))
        n, m = len(s), (a[s] - b[s]).mean()
        h = stats.t.ppf(0.975, n - 1) * math.sqrt(a[s].var(ddof=1) / n + b[s].var(ddof=1) / n)
        return m, m - h, m + h, n
    wrong = {
        "difference of the means": (lambda a, b: (a.mean() - b.mean(), 0.0, 0.0, len(a)), "paired by seed"),
        "paired by position": (by_position, "matched by position"),
        "normal quantile": (_interval(lambda n: 1.96), "Student's t"),
        "n degrees of freedom": (_interval(lambda n: stats.t.ppf(0.975, n)), "n − 1 = 2"),
        "population std": (_interval(lambda n: stats.t.ppf(0.975, n - 1), ddof=0), "ddof=1"),
        "s / n": (_interval(lambda n: stats.t.ppf(0.975, n - 1), se=lambda s, n: s / n), "s / √n"),
        "one-sided quantile": (_interval(lambda n: stats.t.ppf(0.95, n - 1)), "0.975"),
        "independent samples": (unpaired, "two independent samples"),
    }
    for name, (fn, expected) in wrong.items():
        msg = verdict(capsys, G.check_paired_difference, fn)
        assert msg.startswith("FAIL") and expected in msg, (name, msg)


def test_exercise_list_is_the_notebooks_grader_cells(repo_root):
    """EXERCISES (derived from grading's checks) is exactly the set of exercises the notebooks grade, in course order."""
    import re
    found = [m for p in sorted((repo_root / "notebooks").glob("[0-9][0-9]_*.py"))
             for m in re.findall(r"^check_(\w+)\(", p.read_text(), re.M)]
    assert found == list(G.EXERCISES)

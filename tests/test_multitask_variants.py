"""MultitaskBERT's variants: the sentence vector (pooler / cls / mean), the pair encoding (separate / joint / per
task), and the STS heads (regression, 6-class classification, cosine): output shapes, losses and predictions, with
values checked against closed forms written out here (not the library's own expressions).

A tiny random encoder in eval mode; sentence vectors are recomputed from the encoder's outputs directly.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT

pytestmark = pytest.mark.usefixtures("one_thread")

H = 16
# Forward passes compared with the same computation done step by step: measured max abs difference 0 (pooler, cls,
# both pair encodings) to 1.5e-8 (mean pooling: a masked sum / count vs a mean over the real rows), about one float32
# ulp of the vectors. Bound: 1e-7, under one ulp of the largest logits (|logit| ~ 2, ulp 2.4e-7).
TOL = 1e-7
# The cosine head vs u·v / (|u| |v|) by hand: measured 9.5e-7 = 2 float32 ulps of 5·cos ~ 4.5 (F.cosine_similarity
# normalises in another order); bound 4 ulps there.
COS_TOL = 2e-6


def encoder(seed=0):
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=60, hidden_size=H, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))


def model(seed=0, **kw):
    m = MultitaskBERT(encoder(seed), **kw).eval()
    torch.manual_seed(seed + 1)
    with torch.no_grad():  # random biases too, so that a dropped bias shows
        for head in m.heads.values():
            head.bias.normal_()
    return m


def enc_batch(lengths, T=None, seed=0, pad_id=0, second_segment=False):
    """A padded batch of random token ids with the given real lengths."""
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    ids = torch.randint(1, 60, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    types = torch.zeros_like(ids)
    if second_segment:
        for i, n in enumerate(lengths):
            types[i, n // 2:n] = 1
    return {"input_ids": torch.where(mask.bool(), ids, pad_id), "attention_mask": mask, "token_type_ids": types}


def pair_batch(seed=0):
    first, second = enc_batch([5, 3, 7, 2], seed=seed), enc_batch([4, 6, 2, 3], T=6, seed=seed + 1)
    joint = enc_batch([9, 8, 9, 5], seed=seed + 2, second_segment=True)
    return {"first": first, "second": second, "joint": joint}


def sentence_vector(m, b, how):
    """The pooled vector by hand from the encoder's outputs: pooler output, [CLS] state, or the mean over real tokens."""
    out = m.encoder(**b)
    if how == "pooler":
        return out.pooler_output
    if how == "cls":
        return out.last_hidden_state[:, 0]
    n = b["attention_mask"].sum(1)
    return torch.stack([out.last_hidden_state[i, :n[i]].mean(0) for i in range(len(n))])


def max_diff(a, b):
    return (a - b).abs().max().item()


# ------------------------------------------------------------------------------------------------ pooling

@pytest.mark.parametrize("how", ["pooler", "cls", "mean"])
def test_pooling_variants(how, measure):
    m = model(pooling=how)
    b = enc_batch([6, 3, 8, 1])
    with torch.no_grad():
        got = m("sst", {"single": b})
        want = sentence_vector(m, b, how) @ m.heads["sst"].weight.T + m.heads["sst"].bias
    assert got.shape == (4, 5)
    measure(f"MultitaskBERT pooling={how}: SST logits vs head(sentence vector by hand) {max_diff(got, want):.2e}")
    assert max_diff(got, want) <= TOL
    assert torch.equal(m.predict("sst", got), got.argmax(-1))
    # padding does not leak in: other ids at the padded positions give the same logits
    other = dict(b, input_ids=torch.where(b["attention_mask"].bool(), b["input_ids"], 7))
    with torch.no_grad():
        assert max_diff(m("sst", {"single": other}), got) <= TOL


def test_the_three_poolings_differ():
    b = enc_batch([6, 3, 8, 1])
    with torch.no_grad():
        v = {how: model(pooling=how).embed(b) for how in ("pooler", "cls", "mean")}
    assert all(t.shape == (4, H) for t in v.values())
    assert max_diff(v["pooler"], v["cls"]) > 1e-3 and max_diff(v["cls"], v["mean"]) > 1e-3


# ------------------------------------------------------------------------------------------------ pair encoding

@pytest.mark.parametrize("how", ["pooler", "mean"])
def test_separate_pair_encoding_features(how, measure):
    m = model(pooling=how, pair_encoding="separate")
    b = pair_batch()
    assert m.heads["quora"].in_features == m.heads["sts"].in_features == 4 * H
    with torch.no_grad():
        u, v = sentence_vector(m, b["first"], how), sentence_vector(m, b["second"], how)  # two separate calls
        feats = torch.cat([u, v, (u - v).abs(), u * v], -1)
        for task in ("quora", "sts"):
            got = m(task, b)
            want = feats @ m.heads[task].weight[0] + m.heads[task].bias[0]
            assert got.shape == (4,)
            measure(f"separate pair encoding ({how}), {task}: vs head([u, v, |u-v|, u*v]) by hand {max_diff(got, want):.2e}")
            assert max_diff(got, want) <= TOL


def test_joint_pair_encoding():
    m = model(pooling="cls", pair_encoding="joint")
    b = pair_batch()
    assert m.heads["quora"].in_features == m.heads["sts"].in_features == H
    with torch.no_grad():
        vec = sentence_vector(m, b["joint"], "cls")  # [CLS] a [SEP] b [SEP] in one sequence
        for task in ("quora", "sts"):
            got = m(task, b)
            assert got.shape == (4,)
            assert max_diff(got, vec @ m.heads[task].weight[0] + m.heads[task].bias[0]) <= TOL
        # only the joint sequence is read: other first/second sentences change nothing
        assert torch.equal(m("quora", dict(b, first=b["second"], second=b["first"])), m("quora", b))


def test_pair_encoding_per_task():
    m = model(pooling="mean", pair_encoding="quora:joint,sts:separate")
    b = pair_batch()
    assert m.heads["quora"].in_features == H and m.heads["sts"].in_features == 4 * H
    with torch.no_grad():
        q = sentence_vector(m, b["joint"], "mean") @ m.heads["quora"].weight[0] + m.heads["quora"].bias[0]
        u, v = sentence_vector(m, b["first"], "mean"), sentence_vector(m, b["second"], "mean")
        s = torch.cat([u, v, (u - v).abs(), u * v], -1) @ m.heads["sts"].weight[0] + m.heads["sts"].bias[0]
        assert max_diff(m("quora", b), q) <= TOL and max_diff(m("sts", b), s) <= TOL


# ------------------------------------------------------------------------------------------------ STS heads

def test_cosine_head_closed_form():
    """5 · cos(u, v), clipped at 0, on sentence vectors chosen by hand (the pair's vectors replaced)."""
    m = model(pooling="mean", sts_head="cosine")
    assert m.heads["sts"].out_features == 1  # unused by the cosine head
    c60 = math.cos(math.pi / 3)
    u = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [c60, math.sin(math.pi / 3)], [5.0, 0.0], [-c60, -0.1]])
    m.embed_pair = lambda a, b: (u, v)
    out = m("sts", {"first": None, "second": None})
    assert out.shape == (6,)
    torch.testing.assert_close(out, torch.tensor([5.0, 0.0, 0.0, 2.5, 5.0, 0.0]), rtol=0, atol=1e-6)
    assert torch.equal(m.predict("sts", out), out)  # the score itself
    labels = torch.tensor([4.0, 1.0, 0.0, 2.0, 5.0, 3.0])
    torch.testing.assert_close(m.loss("sts", out, labels), torch.tensor((1 + 1 + 0 + 0.25 + 0 + 9) / 6))


def test_cosine_head_on_the_encoder(measure):
    m = model(pooling="mean", sts_head="cosine")
    b = pair_batch()
    with torch.no_grad():
        u, v = sentence_vector(m, b["first"], "mean"), sentence_vector(m, b["second"], "mean")
        cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
        got = m("sts", b)
    assert got.shape == (4,)
    measure(f"cosine STS head vs 5·max(cos, 0) by hand: {max_diff(got, 5 * cos.clamp(min=0)):.2e}")
    assert max_diff(got, 5 * cos.clamp(min=0)) <= COS_TOL
    assert (cos > 0.5).all()  # the clip at 0 is checked on hand-made vectors above


def test_classification_sts_head_loss_rounds_labels_to_6_classes():
    m = model(pooling="mean", sts_head="classification")
    b = pair_batch()
    with torch.no_grad():
        out = m("sts", b)
    assert out.shape == (4, 6) and m.heads["sts"].out_features == 6
    labels = torch.tensor([0.2, 1.4, 3.6, 4.8])  # nearest similarity class: 0, 1, 4, 5
    classes = [0, 1, 4, 5]
    logp = out.log_softmax(-1)
    want = -sum(logp[i, c] for i, c in enumerate(classes)) / 4
    torch.testing.assert_close(m.loss("sts", out, labels), want)
    for labels, classes in [(torch.tensor([0.49, 0.51, 2.4, 5.0]), [0, 1, 2, 5]),
                            (torch.tensor([1.8, 2.6, 3.2, 4.4]), [2, 3, 3, 4])]:
        want = -sum(logp[i, c] for i, c in enumerate(classes)) / 4
        torch.testing.assert_close(m.loss("sts", out, labels), want)


def test_classification_sts_head_predicts_the_expected_similarity():
    m = model(sts_head="classification")
    probs = torch.tensor([[1 / 6] * 6, [0.1, 0.2, 0.3, 0.2, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                          [0.5, 0.0, 0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.25, 0.75, 0.0, 0.0]])
    logits = probs.clamp(min=1e-30).log() + 3.0  # softmax(log p + c) = p
    # Σ_k k · p_k by hand: 2.5; 0.2 + 0.6 + 0.6 + 0.4 + 0.5 = 2.3; 5; 2.5; 0.5 + 2.25 = 2.75
    torch.testing.assert_close(m.predict("sts", logits), torch.tensor([2.5, 2.3, 5.0, 2.5, 2.75]), rtol=0, atol=1e-6)


def test_regression_sts_head_and_the_classification_tasks():
    m = model(pooling="mean")
    b = pair_batch()
    with torch.no_grad():
        sts, quora = m("sts", b), m("quora", b)
        sst = m("sst", {"single": b["first"]})
    assert sts.shape == quora.shape == (4,) and sst.shape == (4, 5)
    y = torch.tensor([0.0, 2.5, 4.0, 5.0])
    torch.testing.assert_close(m.loss("sts", sts, y), ((sts - y) ** 2).mean())
    assert torch.equal(m.predict("sts", sts), sts)  # raw scores, not clipped to [0, 5]
    # Quora: one logit, binary cross-entropy by hand; predicted 1 iff the logit is positive
    z, t = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    bce = -(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(1 - torch.sigmoid(z))).mean()
    torch.testing.assert_close(m.loss("quora", z, t.long()), bce)
    assert m.predict("quora", z).tolist() == [1, 0, 1, 0]
    # SST: 5-way cross-entropy by hand; prediction = argmax
    y5 = torch.tensor([0, 4, 2, 2])
    torch.testing.assert_close(m.loss("sst", sst, y5), -sst.log_softmax(-1)[torch.arange(4), y5].mean())
    assert torch.equal(m.predict("sst", sst), sst.argmax(-1))


def test_dropout_applies_to_the_features_only_in_training():
    m = model(pooling="mean", dropout=0.5)
    b = pair_batch()
    with torch.no_grad():
        ev = m("quora", b)
        m.train()
        torch.manual_seed(0)
        tr1 = m("quora", b)
        torch.manual_seed(1)
        tr2 = m("quora", b)
    assert not torch.equal(tr1, tr2) and not torch.equal(tr1, ev)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m("quora", b), ev)

"""The recipe knobs the MiniLM search varies: learning-rate warm-up and decay, a separate learning rate for the
task heads, and a pair encoding chosen per task (a cross-encoder for Quora beside a cosine bi-encoder for STS)."""
import pytest
import torch

from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT, pair_encodings
from mtbert_lib.training import TrainConfig, lr_factor, param_groups


def tiny_encoder():
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))


def test_lr_factor_warmup_then_linear_decay():
    total, warm = 100, 0.1  # 10 warm-up steps
    f = [lr_factor(s, total, warm, "linear") for s in range(total)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])  # rises linearly to 1 at the 10th step
    assert f[10] == pytest.approx(1.0)
    assert f[-1] == pytest.approx(1 / 90)  # the last step is the smallest, never 0 or negative
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert [lr_factor(s, total, 0.0, "constant") for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(5, total, 0.1, "constant") == pytest.approx(0.6) and lr_factor(50, total, 0.1, "constant") == 1.0


def test_param_groups_heads_get_their_own_lr_and_no_decay_on_vectors():
    m = MultitaskBERT(tiny_encoder(), pooling="mean")
    names = {id(p): n for n, p in m.named_parameters()}
    plain = param_groups(m, 0.01)
    assert len(plain) == 2 and "lr" not in plain[0] and "lr" not in plain[1]
    split = param_groups(m, 0.01, head_lr=1e-3)
    heads = [g for g in split if g.get("lr") == 1e-3]
    assert {names[id(p)].split(".")[0] for g in heads for p in g["params"]} == {"heads"}
    assert {names[id(p)] for g in split if "lr" not in g for p in g["params"]} == \
        {n for n in names.values() if not n.startswith("heads.")}
    for g in split:  # weight decay on matrices only, biases and LayerNorm weights never
        assert all((p.ndim >= 2) == (g["weight_decay"] > 0) for p in g["params"])
    assert sum(len(g["params"]) for g in split) == sum(1 for _ in m.parameters())


def test_pair_encoding_per_task():
    assert pair_encodings("joint") == {"quora": "joint", "sts": "joint"}
    assert pair_encodings("quora:joint,sts:separate") == {"quora": "joint", "sts": "separate"}
    for bad in ("both", "quora:joint", "quora:joint,sts:cross", "quora=joint,sts=separate"):
        with pytest.raises(ValueError, match="pair_encoding"):
            pair_encodings(bad)
    m = MultitaskBERT(tiny_encoder(), pooling="mean", pair_encoding="quora:joint,sts:separate", sts_head="cosine").eval()
    H = 16
    assert m.heads["quora"].in_features == H  # joint: one vector of the pair
    ids = torch.randint(1, 50, (3, 6))
    enc = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    batch = {"joint": enc, "first": enc, "second": enc}
    assert m("quora", batch).shape == (3,)
    sims = m("sts", batch)  # identical sentences: cosine 1, similarity 5
    assert torch.allclose(sims, torch.full((3,), 5.0), atol=1e-5)
    with pytest.raises(ValueError, match="cosine"):
        MultitaskBERT(tiny_encoder(), pair_encoding="quora:separate,sts:joint", sts_head="cosine")
    with pytest.raises(ValueError, match="pair_encoding"):
        TrainConfig(pair_encoding="quora:joint").validate()
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay="cosine").validate()


def test_sts_classification_targets_round_halves_up():
    """3.1% of STS training labels are exact halves; torch.round would send 0.5, 2.5, 4.5 down to even classes."""
    m = MultitaskBERT(tiny_encoder(), sts_head="classification")
    logits = torch.randn(4, 6)
    labels = torch.tensor([0.5, 2.5, 4.5, 3.4])
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3, 5, 3]))
    assert torch.allclose(m.loss("sts", logits, labels), ref)

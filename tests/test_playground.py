"""The playground's model side (mtbert_lib.playground, notebook 10): attention maps against Hugging Face's
`output_attentions`, zero-shot predictions against a direct computation, and checkpoints loaded back exactly."""
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from mtbert_lib.model import BertConfig, mean_pool
from mtbert_lib.playground import SST_CLASSES, attention, find_checkpoints, from_checkpoint, predict, zero_shot
from mtbert_lib.training import TrainConfig, build_model

SENTENCE = "It 's a lovely film with lovely performances by Buy and Accorsi ."
PAIR = ("How can I learn to play the guitar quickly?", "What is the fastest way to learn guitar?")


@pytest.fixture(scope="module")
def pg(minilm_dir):
    return zero_shot()


@pytest.mark.parametrize("pair", [None, PAIR[1]], ids=["sentence", "pair"])
def test_attention_matches_hf_output_attentions(pg, minilm_dir, pair, measure):
    transformers = pytest.importorskip("transformers")
    text = SENTENCE if pair is None else PAIR[0]
    tokens, w = attention(pg, text, pair)
    hf = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(**pg.tokenizer(text, pair), output_attentions=True).attentions  # layers x (1, h, T, T)
    ref = torch.stack([a[0] for a in ref])
    assert w.shape == ref.shape == (6, 12, len(tokens), len(tokens))
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    diff = (w - ref).abs().max().item()
    measure(f"playground attention vs HF output_attentions ({'pair' if pair else 'sentence'}): {diff:.1e}")
    assert diff < 1e-5
    assert all(layer.attention.last_weights is None for layer in pg.model.encoder.encoder.layers)


def test_zero_shot_predictions(pg):
    r = predict(pg, SENTENCE, *PAIR)
    assert list(r["sst_probs"]) == list(SST_CLASSES) and r["sst_class"] in SST_CLASSES
    assert abs(sum(r["sst_probs"].values()) - 1) < 1e-5
    assert 0 < r["paraphrase_prob"] < 1
    with torch.no_grad():  # the zero-shot similarity is 5 x cosine of the mean-pooled MiniLM vectors
        a, b = (pg.tokenizer(t) for t in PAIR)
        u, v = (mean_pool(pg.model.encoder(**e).last_hidden_state, e["attention_mask"]) for e in (a, b))
    assert r["similarity"] == pytest.approx(5 * F.cosine_similarity(u, v).item(), abs=1e-5)
    assert r["similarity"] > 3.5  # MiniLM knows these two questions are close
    assert pg.untrained("sst") and pg.untrained("quora") and not pg.untrained("sts")
    assert predict(pg, SENTENCE, *PAIR) == r  # eval mode: no dropout noise


def test_checkpoint_round_trip(tmp_path, minilm_dir):
    cfg = TrainConfig(tasks=("sst",), eval_tasks=("sst",), pooling="cls", pair_encoding="quora:joint,sts:separate",
                      sts_head="classification", model="minilm", max_length=64)
    enc = asdict(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    torch.manual_seed(0)
    model = build_model(cfg, enc).eval()
    path = tmp_path / "runs" / "tiny" / "best.pt"
    path.parent.mkdir(parents=True)
    torch.save({"config": asdict(cfg), "encoder_config": enc, "model": model.state_dict(), "epoch": 1}, path)
    torch.save({"config": asdict(cfg), "model": model.state_dict()}, path.with_name("last.pt"))
    assert find_checkpoints(tmp_path / "runs") == [path] and find_checkpoints(tmp_path / "nowhere") == []
    pg = from_checkpoint(path)
    assert (pg.num_layers, pg.num_heads, pg.trained, pg.max_length) == (2, 4, ("sst",), 64)
    assert not pg.untrained("sst") and pg.untrained("quora") and pg.untrained("sts")
    r = predict(pg, SENTENCE, *PAIR)
    with torch.no_grad():
        logits = model("sst", {"single": pg.tokenizer(SENTENCE, max_length=64)})
        joint = {"joint": pg.tokenizer(*PAIR, max_length=64)}
        para = torch.sigmoid(model("quora", joint))
    assert list(r["sst_probs"].values()) == pytest.approx(logits.softmax(-1)[0].tolist(), abs=1e-6)
    assert r["paraphrase_prob"] == pytest.approx(para.item(), abs=1e-6)
    assert 0 <= r["similarity"] <= 5  # the expected class of the 6-way STS head
    assert attention(pg, SENTENCE)[1].shape[:2] == (2, 4)
    with pytest.raises(ValueError, match="not a best-model checkpoint"):
        from_checkpoint(path.with_name("last.pt"))

"""The speed switches of the library change speed, not results: torch.compile of the encoder, bf16 autocast,
one-call pair encoding. (Speed itself is measured by benchmarks/bench_speed.py, never by a test.)"""
import pytest
import torch

from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.training import TrainConfig, autocast, use_bf16

TINY = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def batch(B=4, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 128, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.mark.slow
def test_compiled_encoder_matches_eager():
    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY)).eval()
    b = batch()
    with torch.no_grad():
        eager = model(**b).last_hidden_state
        compiled_forward = torch.compile(model.forward, dynamic=True)
        compiled = compiled_forward(**b).last_hidden_state
    m = b["attention_mask"].bool()
    assert (eager[m] - compiled[m]).abs().max() < 1e-5


# bf16 autocast vs fp32, pooler output of the tiny random BERT (|values| <= ~0.35): measured max abs difference 1.3e-3
# here, at most 1.7e-3 over 6 weight seeds x 3 batches. The pooler output is returned in bf16, whose ulp in [0.25, 0.5)
# is 2^-9 = 2e-3, so the last rounding alone is up to 1e-3. Bound: 5e-3, ~4x the measured error (it was 5e-2).
BF16_TOL = 5e-3


def test_bf16_autocast_stays_close_to_fp32(measure):
    torch.manual_seed(0)
    model = BertModel(BertConfig(**TINY)).eval()
    b = batch()
    with torch.no_grad():
        ref = model(**b).pooler_output
        with autocast("cpu", "bf16"):
            low = model(**b).pooler_output
    assert low.dtype == torch.bfloat16  # autocast really ran the matmuls in bf16
    err = (ref - low.float()).abs().max().item()
    measure(f"bf16 autocast vs fp32, tiny BERT pooler output: {err:.2e}")
    assert err < BF16_TOL
    assert not torch.equal(ref, low.float())


def test_precision_choice():
    """On this machine's CPU (the rule itself, on faked GPUs too, is tested in test_precision.py)."""
    assert use_bf16("bf16", "cpu") and not use_bf16("fp32", "cpu") and not use_bf16("fp16", "cpu")
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    assert use_bf16("auto", "cpu") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError):
        TrainConfig(precision="fp8").validate()
    with pytest.raises(ValueError):
        TrainConfig(compile="fastest").validate()


def test_pair_sentences_in_one_encoder_call_match_two_calls():
    torch.manual_seed(0)
    m = MultitaskBERT(BertModel(BertConfig(**TINY)), pooling="mean").eval()
    a, b = batch(4, 9, 1), batch(4, 6, 2)
    with torch.no_grad():
        u, v = m.embed_pair(a, b)
        assert (u - m.embed(a)).abs().max() < 1e-5
        assert (v - m.embed(b)).abs().max() < 1e-5

"""The CPU speed plumbing changes how the numbers are computed, never what they mean: the manual attention (the
path that keeps attention weights for pictures) takes its softmax in fp32 and keeps the input's dtype, and the
allocator switch of notebook 07 leaves a user's own MALLOC_* settings alone. (Speed itself: benchmarks/.)"""
import os

import pytest
import torch
import torch.nn.functional as F

import mtbert_lib.training as training
from mtbert_lib.attention import scaled_dot_product_attention


def test_manual_attention_keeps_bf16_and_its_weights_sum_to_one():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 16).bfloat16() for _ in range(3))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4]).bool()
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert out.dtype == w.dtype == torch.bfloat16
    assert w[1, :, :, 5:].abs().max() == 0  # padding: exactly zero weight
    torch.testing.assert_close(w.float().sum(-1), torch.ones(2, 4, 9), rtol=0, atol=1e-2)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=5e-2)


def test_the_allocator_switch_leaves_a_users_settings_alone(monkeypatch):
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert training.tune_cpu_allocator() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = hasattr(os, "confstr") and "glibc" in (os.confstr("CS_GNU_LIBC_VERSION") or "")
    assert training.tune_cpu_allocator() is glibc


def test_start_run_tunes_the_allocator_on_the_cpu(monkeypatch, tiny_bert_dir, small_data_dir, tmp_path):
    from engine_helpers import data_env
    from wiring_helpers import quiet
    calls = []
    monkeypatch.setattr(training, "tune_cpu_allocator", lambda: calls.append(1) or True)
    cfg = training.TrainConfig(name="alloc", model=str(tiny_bert_dir), tasks=("sst",), eval_tasks=("sst",),
                               schedule="single", epochs=1, max_length=32, precision="fp32", device="cpu")
    with data_env(small_data_dir):
        training.start_run(cfg, tmp_path, resume=False, log=quiet)
    assert calls == [1]

"""The CPU speed plumbing (notebooks 01 and 07) changes how the numbers are computed, never what they mean:
`dropout`'s cheap masks keep each element with probability 1 − p (in every 16-bit lane of the 64-bit draws, and
independently between lanes), scale the kept ones by 1/(1 − p), replay under a seed and send gradients through the
same mask; in training on the CPU attention takes those masks whatever its `impl`; the manual attention keeps the
input's dtype; training with the word embeddings' kept gradient buffer ends at the weights of the plain dense
gradient; the allocator switch leaves a user's own MALLOC_* settings alone. (Speed itself: benchmarks/bench_epoch.py.)"""
import os

import pytest
import torch
import torch.nn.functional as F

import mtbert_lib.attention as attention
import mtbert_lib.training as training
from engine_helpers import data_env
from mtbert_lib import distributed
from mtbert_lib.attention import MultiHeadSelfAttention, dropout, keep_mask, scaled_dot_product_attention
from wiring_helpers import quiet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_mask_keeps_one_minus_p_in_every_lane_independently(p):
    torch.manual_seed(0)
    keep, q = keep_mask((4_000_000,), p)
    assert keep.dtype == torch.bool and abs(q - (1 - p)) < 1e-5
    lanes = keep.view(-1, 4).float()  # the four 16-bit integers of each 64-bit draw, 1M draws
    sigma = (q * (1 - q) / lanes.shape[0]) ** 0.5
    assert (lanes.mean(0) - q).abs().max() < 6 * sigma, lanes.mean(0)  # a stuck sign bit would keep a lane at 1.0
    both = (lanes[:, 0] * lanes[:, 3]).mean()  # lowest and highest lane of the same draw
    assert abs(both - q * q) < 6 * (q * q * (1 - q * q) / lanes.shape[0]) ** 0.5


def test_dropout_scales_replays_and_sends_gradients_through_the_mask():
    x = (torch.rand(64, 300) + 0.5).requires_grad_()  # no zeros: a zero in the output means dropped
    torch.manual_seed(1)
    y1 = dropout(x, 0.2, True)
    torch.manual_seed(1)
    y2 = dropout(x, 0.2, True)
    assert torch.equal(y1, y2)
    kept, q = y1 != 0, keep_mask((1,), 0.2)[1]
    assert 0.75 < kept.float().mean() < 0.85
    torch.testing.assert_close(y1[kept], x[kept] / q)
    y1.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / q)
    assert dropout(x, 0.2, False) is x and dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))
    torch.manual_seed(2)
    assert abs(dropout(torch.ones(2000, 1000), 0.1, True).mean().item() - 1.0) < 3e-3  # unbiased


def test_the_torch_switch_is_F_dropout(monkeypatch):
    x = torch.randn(50, 40)
    torch.manual_seed(3)
    fast = dropout(x, 0.1, True)
    monkeypatch.setattr(attention, "CPU_DROPOUT", "torch")
    torch.manual_seed(3)
    ours = dropout(x, 0.1, True)
    torch.manual_seed(3)
    assert torch.equal(ours, F.dropout(x, 0.1, True)) and not torch.equal(ours, fast)


def _pair_of_attentions(dropout_p):
    torch.manual_seed(0)
    a = MultiHeadSelfAttention(32, 4, dropout=dropout_p, impl="sdpa")
    b = MultiHeadSelfAttention(32, 4, dropout=dropout_p, impl="manual")
    b.load_state_dict(a.state_dict())
    return a, b


def test_training_attention_on_the_cpu_takes_the_cheap_masks_whatever_its_impl():
    a, b = _pair_of_attentions(0.3)
    x, mask = torch.randn(2, 7, 32), torch.tensor([[1] * 7, [1] * 4 + [0] * 3]).bool()
    a.train(), b.train()
    torch.manual_seed(5)
    ya = a(x, mask)
    torch.manual_seed(5)
    yb = b(x, mask)
    assert torch.equal(ya, yb)  # both: the manual function with `dropout`'s masks
    a.eval(), b.eval()
    torch.testing.assert_close(a(x, mask), b(x, mask), rtol=0, atol=1e-6)  # eval: SDPA vs manual, no dropout


def test_manual_attention_keeps_bf16_and_its_weights_sum_to_one():
    q, k, v = (torch.randn(2, 4, 9, 16).bfloat16() for _ in range(3))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4]).bool()
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert out.dtype == w.dtype == torch.bfloat16
    torch.testing.assert_close(w.float().sum(-1), torch.ones(2, 4, 9), rtol=0, atol=1e-2)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=5e-2)


def _config(tiny_bert_dir, **changes):
    base = dict(name="kept-grad", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst",),
                schedule="balanced", batch_size=4, epochs=1, max_length=32, precision="fp32", pooling="mean",
                dropout=0.1, lr=1e-3, train_eval_limit=4, eval_batch_size=16, consistency="kl", device="cpu")
    return training.TrainConfig(**{**base, **changes})


def _steps(R, n=6):
    """n optimizer steps of the library's train_step from a fixed dropout seed; the word-embedding gradients'
    storage addresses seen after each step."""
    torch.manual_seed(123)
    net, record = distributed.wrap(R.model), training.EpochRecord(R.cfg.tasks)
    groups = [[b] for rnd in R.cfg.sample_epoch(R.lengths, 0) for b in rnd][:n]
    assert len(groups) == n
    ptrs = set()
    for g in groups:
        training.train_step(R, net, g, record, 0)
        ptrs.add(R.model.encoder.embeddings.word_embeddings.weight.grad.data_ptr())
    return ptrs


def test_the_kept_word_embedding_gradient_gives_the_plain_runs_weights(tiny_bert_dir, small_data_dir, tmp_path):
    cfg = _config(tiny_bert_dir)
    with data_env(small_data_dir):
        kept = training.start_run(cfg, tmp_path / "kept", resume=False, log=quiet)
        plain = training.start_run(cfg, tmp_path / "plain", resume=False, log=quiet)
    emb = kept.model.encoder.embeddings.word_embeddings
    assert emb.sparse and len(kept.grad_buffers) == 1 and kept.grad_buffers[0][0] is emb.weight
    plain.grad_buffers = ()
    w0 = emb.weight.detach().clone()
    plain.model.encoder.embeddings.word_embeddings.sparse = False
    assert _steps(kept) == {kept.grad_buffers[0][1].data_ptr()}  # one buffer, reused at every step
    _steps(plain)
    assert not plain.model.encoder.embeddings.word_embeddings.weight.grad.is_sparse
    a, b = kept.model.state_dict(), plain.model.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert (a["encoder.embeddings.word_embeddings.weight"] - w0).abs().max() > 0  # the steps did train it
    ta, tb = kept.teacher.state_dict(), plain.teacher.state_dict()
    assert max((ta[k] - tb[k]).abs().max().item() for k in ta) <= 1e-6


@pytest.mark.parametrize("changes", [dict(update="pcgrad"), dict(freeze_encoder=True)])
def test_no_kept_gradient_where_gradients_are_taken_apart_or_absent(tiny_bert_dir, small_data_dir, tmp_path, changes):
    with data_env(small_data_dir):
        R = training.start_run(_config(tiny_bert_dir, **changes), tmp_path, resume=False, log=quiet)
    assert R.grad_buffers == () and not R.model.encoder.embeddings.word_embeddings.sparse


def test_the_allocator_switch_leaves_a_users_settings_alone(monkeypatch):
    for k in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert training.tune_cpu_allocator() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = hasattr(os, "confstr") and "glibc" in (os.confstr("CS_GNU_LIBC_VERSION") or "")
    assert training.tune_cpu_allocator() is glibc

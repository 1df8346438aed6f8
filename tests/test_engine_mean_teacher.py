"""Mean Teacher: EMA arithmetic, warm-up, consistency losses against references, gradient flow, ramp-up."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mtbert_lib.mean_teacher import (MeanTeacher, binary_logits, consistency_loss, ema_decay_at, ema_update,
                                     sigmoid_rampup, symmetric_kl)
from mtbert_lib.optim import AdamW


class TinyMultitask(nn.Module):
    """A stand-in with MultitaskBERT's interface (forward(task, batch)), a buffer-holding BatchNorm and a head per task."""
    def __init__(self, d=6):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 8), nn.BatchNorm1d(8), nn.Tanh())
        self.heads = nn.ModuleDict({"sst": nn.Linear(8, 5), "quora": nn.Linear(8, 1), "sts": nn.Linear(8, 1)})

    def forward(self, task, batch):
        out = self.heads[task](self.body(batch["x"]))
        return out if task == "sst" else out.squeeze(-1)


def perturbed_copy(module, seed, scale=0.5):
    import copy
    other = copy.deepcopy(module)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for b in other.buffers():
            if b.is_floating_point():
                b.add_(torch.rand(b.shape, generator=g, dtype=b.dtype))
            else:
                b.add_(3)
    return other


# ------------------------------------------------------------------------------------------------ EMA

@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9, 0.999])
def test_ema_update_arithmetic(decay):
    torch.manual_seed(0)
    teacher = TinyMultitask().double()
    student = perturbed_copy(teacher, seed=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, decay)
    params = dict(teacher.named_parameters())
    student_sd = student.state_dict()
    for name, s in student.named_parameters():
        expected = decay * before[name] + (1 - decay) * s.detach()
        torch.testing.assert_close(params[name].detach(), expected, rtol=0, atol=1e-12, msg=name)
    assert len(params) == 10  # 2 body Linear + 2 BatchNorm affine + 3 heads × 2
    buffers = dict(teacher.named_buffers())
    assert set(buffers) == {"body.1.running_mean", "body.1.running_var", "body.1.num_batches_tracked"}
    for name, b in buffers.items():  # buffers are copied, not averaged
        assert torch.equal(b, student_sd[name]), name
        assert not torch.equal(b, before[name]), name


def test_ema_update_does_not_touch_the_student_or_build_a_graph():
    torch.manual_seed(0)
    teacher, student = TinyMultitask(), TinyMultitask()
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for k, v in student.state_dict().items():
        assert torch.equal(v, s_before[k])
    assert all(p.grad_fn is None for p in teacher.parameters())


def test_ema_decay_warmup():
    assert ema_decay_at(0, 0.999) == 0.0  # first update: the teacher becomes the student
    assert ema_decay_at(1, 0.999) == 0.5
    assert ema_decay_at(3, 0.999) == 0.75
    assert ema_decay_at(9, 0.999) == pytest.approx(0.9)
    assert ema_decay_at(999, 0.999) == pytest.approx(0.999)
    assert ema_decay_at(10_000, 0.999) == 0.999  # capped at the configured decay
    assert ema_decay_at(1, 0.3) == 0.3
    for step in (0, 1, 50, 10_000):
        assert ema_decay_at(step, 0.999, warmup=False) == 0.999
    values = [ema_decay_at(s, 0.99) for s in range(300)]
    assert values == sorted(values)  # non-decreasing


# ------------------------------------------------------------------------------------------------ symmetric KL

def reference_symmetric_kl(a, b):
    """KL(p‖q) + KL(q‖p) with torch's kl_div (batchmean), p = softmax(a), q = softmax(b)."""
    la, lb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    return (F.kl_div(lb, la, reduction="batchmean", log_target=True)
            + F.kl_div(la, lb, reduction="batchmean", log_target=True))


def test_symmetric_kl_properties_and_reference():
    g = torch.Generator().manual_seed(0)
    for shape in [(4, 5), (1, 2), (16, 6)]:
        a = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
        b = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
        assert symmetric_kl(a, a).item() == pytest.approx(0.0, abs=1e-12)
        assert symmetric_kl(a, a + 7.0).item() == pytest.approx(0.0, abs=1e-12)  # softmax is shift-invariant
        ab, ba = symmetric_kl(a, b), symmetric_kl(b, a)
        assert ab.item() == pytest.approx(ba.item(), rel=1e-12)
        assert ab.item() > 0
        torch.testing.assert_close(ab, reference_symmetric_kl(a, b), rtol=1e-10, atol=1e-12)
    for _ in range(20):
        a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
        assert symmetric_kl(a, b).item() >= 0


def test_quora_kl_is_bernoulli_symmetric_kl():
    g = torch.Generator().manual_seed(1)
    zs, zt = 2 * torch.randn(10, generator=g, dtype=torch.float64), 2 * torch.randn(10, generator=g, dtype=torch.float64)
    p, q = torch.sigmoid(zs), torch.sigmoid(zt)
    kl_pq = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    kl_qp = q * torch.log(q / p) + (1 - q) * torch.log((1 - q) / (1 - p))
    by_hand = (kl_pq + kl_qp).mean()
    got = consistency_loss("quora", zs, zt, "kl")
    assert got.shape == ()
    torch.testing.assert_close(got, by_hand, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(binary_logits(zs).softmax(-1)[:, 1], p)


def test_mse_probs_is_tarvainen_and_valpolas_softmax_mse():
    """`mse-probs`: their softmax_mse_loss (sum of squared probability differences / classes) / batch size, the
    CuriousAI/mean-teacher PyTorch code; Quora's one logit: (σ(z_s) − σ(z_t))²; unchanged when logits shift."""
    g = torch.Generator().manual_seed(3)
    s5, t5 = 3 * torch.randn(6, 5, generator=g, dtype=torch.float64), 3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    theirs = F.mse_loss(F.softmax(s5, 1), F.softmax(t5, 1), reduction="sum") / 5 / 6
    torch.testing.assert_close(consistency_loss("sst", s5, t5, "mse-probs"), theirs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(consistency_loss("sst", s5 + 4.0, t5, "mse-probs"), theirs, rtol=1e-10, atol=1e-12)
    assert consistency_loss("sst", s5 + 4.0, t5, "mse") > consistency_loss("sst", s5, t5, "mse")  # logits: not invariant
    zs, zt = 2 * torch.randn(10, generator=g, dtype=torch.float64), 2 * torch.randn(10, generator=g, dtype=torch.float64)
    torch.testing.assert_close(consistency_loss("quora", zs, zt, "mse-probs"), ((zs.sigmoid() - zt.sigmoid()) ** 2).mean())
    s1, t1 = torch.randn(4, generator=g), torch.randn(4, generator=g)
    torch.testing.assert_close(consistency_loss("sts", s1, t1, "mse-probs", "regression"), F.mse_loss(s1, t1))
    assert MeanTeacher(TinyMultitask(), kind="mse-probs").kind == "mse-probs"


def test_consistency_loss_kinds():
    g = torch.Generator().manual_seed(2)
    s5, t5 = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    s1, t1 = torch.randn(4, generator=g), torch.randn(4, generator=g)
    torch.testing.assert_close(consistency_loss("sst", s5, t5, "kl"), symmetric_kl(s5, t5))
    torch.testing.assert_close(consistency_loss("sst", s5, t5, "mse"), F.mse_loss(s5, t5))
    torch.testing.assert_close(consistency_loss("quora", s1, t1, "mse"), F.mse_loss(s1, t1))
    # STS regression outputs are not distributions: KL falls back to MSE; the 6-class STS head uses KL
    torch.testing.assert_close(consistency_loss("sts", s1, t1, "kl", "regression"), F.mse_loss(s1, t1))
    s6, t6 = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    torch.testing.assert_close(consistency_loss("sts", s6, t6, "kl", "classification"), symmetric_kl(s6, t6))
    with pytest.raises(ValueError):
        consistency_loss("sst", s5, t5, "l1")
    with pytest.raises(ValueError):
        MeanTeacher(TinyMultitask(), kind="l1")


@pytest.mark.parametrize("task,kind", [("sst", "kl"), ("quora", "kl"), ("sts", "kl"), ("sst", "mse")])
def test_gradient_reaches_only_the_student_output(task, kind):
    g = torch.Generator().manual_seed(3)
    shape = (4, 5) if task == "sst" else (4,)
    student = torch.randn(shape, generator=g, requires_grad=True)
    teacher = torch.randn(shape, generator=g, requires_grad=True)
    consistency_loss(task, student, teacher, kind).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_mean_teacher_model_is_frozen_and_moves_only_by_update():
    torch.manual_seed(0)
    student = TinyMultitask()
    mt = MeanTeacher(student, kind="kl", decay=0.9, warmup=False)
    assert mt.model is not student
    assert all(not p.requires_grad for p in mt.model.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert not mt.model.training
    teacher_before = {k: v.clone() for k, v in mt.model.state_dict().items()}
    student.train()
    opt = AdamW(student.parameters(), lr=1e-2, weight_decay=0.0)
    batch = {"x": torch.randn(8, 6)}
    for task in ("sst", "quora", "sts"):
        out = student(task, batch)
        loss = mt.weight(0) * mt.consistency(task, out, batch) + out.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in mt.model.parameters())
    for k, v in mt.model.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher {k} changed without update()"
    s_sd = student.state_dict()
    assert any(not torch.equal(s_sd[k], teacher_before[k]) for k in s_sd)
    mt.update(student, step=1)
    for name, p in mt.model.named_parameters():
        torch.testing.assert_close(p, 0.9 * teacher_before[name] + 0.1 * s_sd[name], msg=name)
    # state_dict round trip (what training checkpoints hold)
    other = MeanTeacher(TinyMultitask(), kind="kl")
    other.load_state_dict(mt.state_dict())
    for k, v in other.state_dict().items():
        assert torch.equal(v, mt.state_dict()[k])


def test_mean_teacher_update_uses_warmup_decay():
    torch.manual_seed(0)
    student = TinyMultitask()
    mt = MeanTeacher(student, decay=0.999, warmup=True)
    target = perturbed_copy(student, seed=5)
    mt.update(target, step=0)  # decay 0 at step 0: a plain copy
    for k, v in mt.model.state_dict().items():
        torch.testing.assert_close(v, target.state_dict()[k], rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ ramp-up

def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(500, 100) == 1.0  # clipped after the ramp
    assert sigmoid_rampup(-5, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(0, 0) == 1.0 and sigmoid_rampup(7, 0) == 1.0  # no ramp-up
    values = [sigmoid_rampup(s, 40) for s in range(60)]
    assert values == sorted(values)
    mt = MeanTeacher(TinyMultitask(), weight=2.0, rampup=10)
    assert mt.weight(10) == 2.0 and mt.weight(0) == pytest.approx(2.0 * math.exp(-5))


def test_tarvainen_valpola_schedule_decay_switches_at_the_end_of_the_rampup():
    """Decay 0.99 for the first `decay_rampup_steps` optimizer steps, then 0.999 (their TF code's step_rampup), with the
    warm-up cap min(α, 1 − 1/(t+1)) on top; λ follows exp(−5(1 − t/L)²) up to L, then stays at its full value."""
    mt = MeanTeacher(TinyMultitask(), "kl", decay=0.999, weight=2.0, rampup=400, decay_rampup=0.99, decay_rampup_steps=400)
    assert mt.decay_at(1) == 0.5 and mt.decay_at(50) == pytest.approx(1 - 1 / 51)  # warm-up: the plain mean
    assert mt.decay_at(200) == 0.99 and mt.decay_at(399) == 0.99
    assert mt.decay_at(400) == pytest.approx(1 - 1 / 401) and mt.decay_at(5000) == 0.999  # 0.999, under the warm-up cap
    assert mt.weight(0) == pytest.approx(2.0 * math.exp(-5)) and mt.weight(200) == pytest.approx(2.0 * math.exp(-1.25))
    assert mt.weight(400) == mt.weight(10_000) == 2.0
    plain = MeanTeacher(TinyMultitask(), "kl", decay=0.999)  # the older setting: one decay, λ constant
    assert plain.decay_at(200) == pytest.approx(1 - 1 / 201) and plain.decay_at(5000) == 0.999 and plain.weight(0) == 1.0


def test_rampup_shares_become_steps_of_the_run(tmp_path, monkeypatch, request):
    """consistency_rampup_share and ema_decay_rampup_share are shares of all optimizer steps of the run."""
    from engine_helpers import data_env, resolve_data_dir, write_tiny_checkpoint
    from mtbert_lib.training import TrainConfig, start_run
    seen = {}
    real = MeanTeacher.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.update(rampup=self.rampup, decay_steps=self.decay_rampup_steps, decay_rampup=self.decay_rampup)
    monkeypatch.setattr(MeanTeacher, "__init__", spy)
    tiny = write_tiny_checkpoint(tmp_path / "tiny")
    cfg = TrainConfig(name="x", model=str(tiny), tasks=("sst",), eval_tasks=("sst",), schedule="single", epochs=3,
                      train_limit=40, dev_limit=8, batch_size=8, bucket=0, consistency="kl",
                      consistency_rampup_share=0.5, ema_decay_rampup=0.99, ema_decay_rampup_share=0.25)
    with data_env(resolve_data_dir(request)):
        R = start_run(cfg, tmp_path / "runs", resume=False, log=lambda *a: None)
    assert R.total_steps == 15 and seen == {"rampup": 8, "decay_steps": 4, "decay_rampup": 0.99}  # 3 epochs x 5 batches
    with pytest.raises(ValueError, match="share of training"):
        TrainConfig(consistency_rampup_share=1.5).validate()

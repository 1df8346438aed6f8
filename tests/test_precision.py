"""Precision by card (notebook 07, section 4), on the CPU with the GPU faked where needed.

* precision='auto': bf16 on CUDA compute capability ≥ 8.0 and on CPUs with AVX512-BF16/AMX, fp16 + loss scaling on
  older CUDA cards (T4 7.5, V100 7.0) whatever torch.cuda.is_bf16_supported() says, fp32 on other CPUs; explicit
  precisions pass through; each result's provenance records the choice.
* fp16 runs through torch.amp.GradScaler (also on the CPU, where torch ≥ 2.3 has one): a step whose gradients are
  inf/NaN is skipped and the loss scale halved, the run goes on; in fp32 and bf16 a non-finite loss still stops the
  run; the scaler's state is checkpointed, and an interrupted fp16 run resumes to the same end as an uninterrupted one.

The training runs use a tiny random-weight BERT (2 x 32, character-level vocabulary; conftest's tiny_checkpoint).
"""
import math
from dataclasses import replace

import pytest
import torch

import mtbert_lib.precision as precision_module
import mtbert_lib.training as training
from engine_helpers import data_env, one_line, resolve_data_dir
from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.optim import AdamW
from mtbert_lib.training import (read_checkpoint, NonFiniteLoss, TrainConfig, auto_precision, autocast, grad_scaler, optimizer_step,
                                 provenance, resolve_precision, run_name, train)

CARDS = [  # (card, compute capability, what auto must pick)
    ("Tesla T4 (free Colab)", (7, 5), "fp16"),
    ("Tesla V100", (7, 0), "fp16"),
    ("A100", (8, 0), "bf16"),
    ("L4", (8, 9), "bf16"),
    ("H100", (9, 0), "bf16"),
]


def quiet(*_):
    pass


def fake_cuda(monkeypatch, name, capability):
    """Make torch believe a CUDA card of this compute capability is there; is_bf16_supported says True, as it does
    on a T4 (emulated bf16), so the rule must not rely on it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


# ------------------------------------------------------------------------------------------------ the decision

@pytest.mark.parametrize("card,cc,expected", CARDS, ids=[c[0].split()[-1] if "(" not in c[0] else "T4" for c in CARDS])
def test_auto_picks_by_compute_capability(monkeypatch, card, cc, expected):
    assert auto_precision("cuda", cc) == expected
    fake_cuda(monkeypatch, card, cc)
    assert resolve_precision("auto", "cuda") == expected
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected
    assert training.native_bf16("cuda") == (expected == "bf16")
    for explicit in ("fp32", "bf16", "fp16"):  # an explicit precision is taken as it is
        assert resolve_precision(explicit, "cuda") == explicit


@pytest.mark.parametrize("has_bf16,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, has_bf16, expected):
    assert auto_precision("cpu", cpu_bf16=has_bf16) == expected
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: has_bf16)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("fp16", "cpu") == "fp16"
    assert auto_precision("mps") == "fp32"


def test_provenance_records_the_precision(monkeypatch):
    fake_cuda(monkeypatch, "Tesla T4", (7, 5))
    prov = provenance(TrainConfig(), "cuda")
    assert prov["precision"] == "fp16 + loss scaling"
    assert prov["hardware"] == "Tesla T4, compute capability 7.5"
    fake_cuda(monkeypatch, "NVIDIA H100 80GB HBM3", (9, 0))
    assert provenance(TrainConfig(), "cuda")["precision"] == "bf16"
    assert provenance(TrainConfig(precision="fp16"), "cuda")["precision"] == "fp16 + loss scaling"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert provenance(TrainConfig(), "cpu")["precision"] == "fp32"


def test_fp16_is_a_valid_precision_and_others_are_not():
    TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError) as e:
        TrainConfig(name="x", precision="half").validate()
    assert "fp16" in one_line(e)


# ------------------------------------------------------------------------------------------------ autocast, scaler

@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16),
                                             (True, torch.bfloat16), (False, torch.float32)])
def test_autocast_runs_the_matmuls_in_the_named_format(precision, dtype):
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=16)).eval()
    ids = torch.randint(1, 64, (2, 7))
    with torch.no_grad(), autocast("cpu", precision):
        out = model(ids, torch.ones_like(ids)).pooler_output
    assert out.dtype == dtype


def test_only_fp16_scales_the_loss():
    assert grad_scaler("fp16", "cpu").is_enabled()
    assert not grad_scaler("bf16", "cpu").is_enabled() and not grad_scaler("fp32", "cpu").is_enabled()
    assert grad_scaler("fp32", "cpu").state_dict() == {}  # nothing to checkpoint


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_halves():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 2)
    opt = AdamW(lin.parameters(), lr=1e-2, fused=True)
    scaler = grad_scaler("fp16", "cpu")
    x = torch.randn(3, 4)
    scale0 = scaler.get_scale()

    scaler.scale(lin(x).pow(2).mean()).backward()
    before = [p.detach().clone() for p in lin.parameters()]
    assert bool(optimizer_step(opt, scaler)) is True  # fp16: a flag on the device
    assert scaler.get_scale() == scale0
    assert any(not torch.equal(a, p) for a, p in zip(before, lin.parameters()))  # it stepped

    opt.zero_grad()
    scaler.scale(lin(x).pow(2).mean() * math.inf).backward()  # inf/NaN gradients
    before = [p.detach().clone() for p in lin.parameters()]
    state_before = {k: v.clone() for k, v in opt.state[lin.weight].items()}
    assert bool(optimizer_step(opt, scaler)) is False
    assert scaler.get_scale() == scale0 / 2
    assert all(torch.equal(a, p) for a, p in zip(before, lin.parameters()))  # weights untouched
    assert all(torch.equal(v, opt.state[lin.weight][k]) for k, v in state_before.items())  # so is AdamW's state


# ------------------------------------------------------------------------------------------------ in train()

CFG = TrainConfig(name="prec", tasks=("sst", "sts"), eval_tasks=("sst", "sts"), schedule="balanced", train_limit=16,
                  dev_limit=16, train_eval_limit=8, epochs=2, batch_size=8, consistency="kl", pooling="mean",
                  max_length=32, lr=1e-3, device="cpu", eval_batch_size=16)
STEPS_PER_EPOCH = 4  # balanced: N = 16 per task, batch 8 -> 2 rounds x 2 tasks, one step per task batch


def poison_loss(monkeypatch, at_call: int, factor=math.inf, interrupt_at: int | None = None):
    """The `at_call`-th student loss of the run (1-based; one per step here) is multiplied by `factor` (inf: a
    non-finite loss); the `interrupt_at`-th raises KeyboardInterrupt (the run is killed in that step)."""
    real, calls = MultitaskBERT.loss, {"n": 0}

    def loss(self, task, outputs, labels):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            raise KeyboardInterrupt
        value = real(self, task, outputs, labels)
        return value * factor if calls["n"] == at_call else value

    monkeypatch.setattr(MultitaskBERT, "loss", loss)
    return calls


@pytest.fixture
def cfg(tiny_checkpoint):
    return replace(CFG, model=str(tiny_checkpoint))


def test_fp16_run_skips_an_inf_step_and_goes_on(request, tmp_path, monkeypatch, cfg):
    """SST alone, whose cross-entropy gradients never overflow at the initial scale (2**16) here: the one inf loss
    is the one skipped step, the scale halves once, and the run goes on. (With STS's MSE on a random model the first
    steps of an fp16 run overflow by themselves while the scale finds its level: the scaler's normal work.)"""
    cfg = replace(cfg, precision="fp16", tasks=("sst",), eval_tasks=("sst",), schedule="single", train_limit=32)
    poison_loss(monkeypatch, at_call=3)  # step 2 of epoch 1
    with data_env(resolve_data_dir(request)):
        result = train(cfg, tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    e1, e2 = result["epochs"]
    assert e1["fp16"] == {"skipped_steps": 1, "loss_scale": 2.0 ** 15}
    assert e2["fp16"] == {"skipped_steps": 0, "loss_scale": 2.0 ** 15}
    assert e2["step"] == 2 * STEPS_PER_EPOCH  # a skipped step still counts as a step of the schedule
    assert all(math.isfinite(v) for e in result["epochs"] for v in e["train_loss"].values())
    assert result["provenance"]["precision"] == "fp16 + loss scaling"
    last = read_checkpoint(tmp_path / "runs" / run_name(cfg) / "last.safetensors")
    assert last["scaler"]["scale"] == 2.0 ** 15 and last["scaler"]["_growth_tracker"] == 2 * STEPS_PER_EPOCH - 3
    steps_taken = {int(s["step"]) for s in last["optimizer"]["state"].values()}
    assert steps_taken == {2 * STEPS_PER_EPOCH - 1}  # AdamW did not step when the scaler skipped


def test_fp16_run_that_keeps_overflowing_is_stopped(request, tmp_path, monkeypatch, cfg):
    monkeypatch.setattr(training, "MAX_SKIPPED_STEPS_IN_A_ROW", 3)
    real = MultitaskBERT.loss
    monkeypatch.setattr(MultitaskBERT, "loss", lambda self, *a: real(self, *a) * math.nan)
    with data_env(resolve_data_dir(request)), pytest.raises(NonFiniteLoss) as e:
        train(replace(cfg, precision="fp16"), tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    msg = one_line(e)
    assert msg.startswith("fp16: 3 steps in a row") and "step 2, epoch 0" in msg and "diverged" in msg


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_non_finite_loss_still_stops_fp32_and_bf16(request, tmp_path, monkeypatch, cfg, precision):
    poison_loss(monkeypatch, at_call=3)
    with data_env(resolve_data_dir(request)), pytest.raises(NonFiniteLoss) as e:
        train(replace(cfg, precision=precision), tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    assert "non-finite loss (inf) at step 2, epoch 0, task sst" in one_line(e)


def test_interrupted_fp16_run_resumes_to_the_same_end(request, tmp_path, monkeypatch, cfg):
    """An inf step in epoch 1 halves the loss scale; the run is killed in epoch 2 and resumed. The scale lives only
    in the scaler: a resume that forgot the scaler's state would restart at 65536 and end elsewhere."""
    cfg = replace(cfg, precision="fp16")
    A, B = tmp_path / "A", tmp_path / "B"
    with data_env(resolve_data_dir(request)):
        with monkeypatch.context() as mp:
            poison_loss(mp, at_call=3)
            result_a = train(cfg, A / "runs", A / "results", progress=False, log=quiet)
        with monkeypatch.context() as mp:
            poison_loss(mp, at_call=3, interrupt_at=STEPS_PER_EPOCH + 2)  # killed in the 2nd step of epoch 2
            with pytest.raises(KeyboardInterrupt):
                train(cfg, B / "runs", B / "results", progress=False, log=quiet)
        log = []
        result_b = train(cfg, B / "runs", B / "results", resume=True, progress=False, log=log.append)
    assert any(line.startswith("resumed ") for line in log)
    strip = lambda eps: [{k: v for k, v in e.items() if k != "wall_s"} for e in eps]  # noqa: E731
    assert strip(result_a["epochs"]) == strip(result_b["epochs"])
    assert result_b["epochs"][0]["fp16"]["skipped_steps"] >= 1 and len(result_b["epochs"]) == 2
    name = run_name(cfg)
    la = read_checkpoint(A / "runs" / name / "last.safetensors")
    lb = read_checkpoint(B / "runs" / name / "last.safetensors")
    assert la["scaler"] == lb["scaler"] and la["scaler"]["scale"] < 2.0 ** 16
    for k in la["model"]:
        assert torch.equal(la["model"][k], lb["model"][k]), k
    for k in la["teacher"]:
        assert torch.equal(la["teacher"][k], lb["teacher"][k]), k


# ------------------------------------------------------------------------------------------------ resolved once

def test_provenance_records_the_precision_the_run_resolved(monkeypatch):
    """Given the run's own precision, provenance records it and resolves nothing again (issue 22: it was resolved
    in three places)."""
    monkeypatch.setattr(precision_module, "resolve_precision", lambda *a: 1 / 0)
    monkeypatch.setattr(training, "resolve_precision", lambda *a: 1 / 0)
    assert provenance(TrainConfig(precision="auto"), "cpu", "bf16")["precision"] == "bf16"
    assert provenance(TrainConfig(precision="auto"), "cpu", "fp16")["precision"] == "fp16 + loss scaling"


def test_pretrain_mlm_record_names_the_precision_it_ran_in(monkeypatch, tmp_path):
    """`mtbert pretrain-mlm --precision bf16` on the CPU recorded 'fp32' (cli.py wrote fp32 for every run)."""
    import json
    import mtbert_lib.beyond as beyond
    from mtbert_lib.cli import main
    monkeypatch.setattr(beyond, "pretrain_mlm", lambda *a, **k: {
        "device": "cpu", "precision": k["precision"], "folder": str(tmp_path / "mlm"), "steps": 1, "wall_s": 0.0,
        "accuracy_before": 0.1, "accuracy_after": 0.2})
    assert main(["pretrain-mlm", "--out", str(tmp_path / "mlm"), "--precision", "bf16", "--steps", "1",
                 "--results-dir", str(tmp_path / "results")]) == 0
    record = json.loads((tmp_path / "results" / "mlm-pretraining-mlm.json").read_text())
    assert record["provenance"]["precision"] == "bf16" and record["provenance"]["device"] == "cpu"


def test_precision_is_resolved_once_per_run(request, tmp_path, monkeypatch, cfg):
    calls = []
    real = training.resolve_precision
    monkeypatch.setattr(training, "resolve_precision", lambda p, d: calls.append(p) or real(p, d))
    with data_env(resolve_data_dir(request)):
        result = train(replace(cfg, epochs=1, precision="auto"), tmp_path / "runs", tmp_path / "results",
                       progress=False, log=quiet)
    assert calls == ["auto"] and result["provenance"]["precision"] == real("auto", "cpu")

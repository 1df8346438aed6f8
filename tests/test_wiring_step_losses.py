"""The per-batch training record of `train()` (each history entry's `step_losses` and `step_tasks`) and the
`eval_student_too` option: the record is every batch's loss as the loop computed it, in the sampler's order; an
interrupted and resumed run records the same; scoring the student too changes no other number; a checkpoint whose
config predates a new field still resumes. A tiny random BERT on the first rows of the real task files
(tests/wiring_helpers.py).
"""
import pytest
import torch

import mtbert_lib.training as training
from engine_helpers import data_env, interrupt_at_step
from mtbert_lib.training import TrainConfig, evaluate, run_name, step_loss_curves, train
from wiring_helpers import TrainProbe, load_pt, quiet

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS_PER_EPOCH = 6  # balanced: N = 8 (STS, the smallest), batch 4 -> 2 rounds x 3 tasks, one step per batch


def config(tiny_bert_dir, **changes):
    base = dict(name="steps", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst", "quora", "sts"),
                schedule="balanced", batch_size=4, epochs=3, max_length=32, precision="fp32", pooling="mean",
                dropout=0.3, lr=2e-3, train_eval_limit=4, eval_batch_size=16)
    return TrainConfig(**{**base, **changes})


def five_digits(x: float) -> float:
    return float(f"{x:.5g}")


def without(entries: list, *keys) -> list:
    return [{k: v for k, v in e.items() if k not in ("wall_s", *keys)} for e in entries]


@pytest.mark.parametrize("update", ["per_task", "sum"])
def test_step_losses_are_the_loops_losses_in_sampler_order(tiny_bert_dir, small_data_dir, tmp_path, update):
    cfg = config(tiny_bert_dir, update=update, epochs=2)
    with pytest.MonkeyPatch.context() as mp, data_env(small_data_dir):
        probe = TrainProbe(mp, params=False)
        result = train(cfg, tmp_path / "runs", None, progress=False, log=quiet)
    batches = iter(probe.losses)  # (task, supervised loss, batch size) of every training batch, in order
    for epoch, e in enumerate(result["epochs"]):
        order = [task for rnd in probe.rounds[epoch] for task, _ in rnd]
        assert e["step_tasks"] == "".join(str(cfg.tasks.index(t)) for t in order)
        seen = [next(batches) for _ in order]
        assert [t for t, _, _ in seen] == order
        for task in cfg.tasks:
            assert e["step_losses"][task] == [five_digits(v) for t, v, _ in seen if t == task]
            assert e["train_loss"][task] == pytest.approx(sum(v for t, v, _ in seen if t == task) /
                                                          order.count(task), rel=1e-12)
    assert next(batches, None) is None
    assert [e["step"] for e in result["epochs"]] == ([6, 12] if update == "per_task" else [2, 4])
    curves = step_loss_curves(result)
    digits = "".join(e["step_tasks"] for e in result["epochs"])
    for i, task in enumerate(cfg.tasks):
        x, y = curves[task]
        assert x.tolist() == [n + 1 for n, d in enumerate(digits) if d == str(i)]
        assert y.tolist() == [v for e in result["epochs"] for v in e["step_losses"][task]]


def test_step_loss_curves_of_an_older_result_is_a_clear_error():
    old = {"experiment": "old", "config": {"tasks": ["sst"]}, "epochs": [{"epoch": 1, "train_loss": {"sst": 1.0}}]}
    with pytest.raises(ValueError, match="old: epoch 1 has no step_losses"):
        step_loss_curves(old)


@pytest.fixture(scope="module")
def resumed(tiny_bert_dir, small_data_dir, tmp_path_factory):
    """A Mean Teacher run uninterrupted (A) and killed in epoch 2, after epoch 1's checkpoint, then resumed (B)."""
    cfg = config(tiny_bert_dir, consistency="kl", ema_decay=0.8)
    A, B = tmp_path_factory.mktemp("A"), tmp_path_factory.mktemp("B")
    with data_env(small_data_dir):
        result_a = train(cfg, A / "runs", A / "results", progress=False, log=quiet)
        with interrupt_at_step(STEPS_PER_EPOCH + 2):
            with pytest.raises(KeyboardInterrupt):
                train(cfg, B / "runs", B / "results", progress=False, log=quiet)
        interrupted = load_pt(B / "runs" / run_name(cfg) / "last.safetensors")
        log = []
        result_b = train(cfg, B / "runs", B / "results", resume=True, progress=False, log=log.append)
    return dict(cfg=cfg, a=result_a, b=result_b, interrupted=interrupted, log=log)


def test_resumed_run_records_the_same_step_losses(resumed):
    a, b = resumed["a"]["epochs"], resumed["b"]["epochs"]
    assert resumed["interrupted"]["state"]["epoch"] == 1 and len(resumed["interrupted"]["state"]["history"]) == 1
    assert any(line.startswith("resumed ") for line in resumed["log"])
    assert len(a) == len(b) == 3
    for ea, eb in zip(a, b):
        assert len(ea["step_tasks"]) == STEPS_PER_EPOCH
        assert ea["step_tasks"] == eb["step_tasks"] and ea["step_losses"] == eb["step_losses"], ea["epoch"]
    assert without(a) == without(b)
    assert a[0]["step_losses"] != a[1]["step_losses"]  # the record follows the training: epochs differ


def test_checkpoint_older_than_a_config_field_still_resumes(resumed, tiny_bert_dir, small_data_dir, tmp_path):
    """A last.pt written before `eval_student_too` existed (its config lacks the key) resumes as the default value."""
    cfg = resumed["cfg"]
    run = tmp_path / "runs" / run_name(cfg)
    run.mkdir(parents=True)
    ck = dict(resumed["interrupted"])
    ck["config"] = {k: v for k, v in ck["config"].items() if k != "eval_student_too"}
    torch.save(ck, run / "last.pt")
    with data_env(small_data_dir):
        result = train(cfg, tmp_path / "runs", None, resume=True, progress=False, log=quiet)
        with pytest.raises(ValueError, match="another config"):  # a field that differs is still refused
            train(config(tiny_bert_dir, consistency="kl", ema_decay=0.8, eval_student_too=True), tmp_path / "runs",
                  None, resume=True, progress=False, log=quiet)
    assert without(result["epochs"]) == without(resumed["a"]["epochs"])


def test_eval_student_too_scores_the_student_and_changes_nothing_else(tiny_bert_dir, small_data_dir, tmp_path):
    runs = {}
    for too in (False, True):
        cfg = config(tiny_bert_dir, consistency="kl", ema_decay=0.8, epochs=2, eval_student_too=too)
        with data_env(small_data_dir):
            runs[too] = train(cfg, tmp_path / str(too), None, progress=False, log=quiet), cfg
    (plain, _), (both, cfg) = runs[False], runs[True]
    assert all("dev_student" not in e for e in plain["epochs"])
    assert without(plain["epochs"]) == without(both["epochs"], "dev_student")
    last = load_pt(tmp_path / "True" / run_name(cfg) / "last.safetensors")
    best = load_pt(tmp_path / "True" / run_name(cfg) / "best.safetensors")
    assert not all(torch.equal(last["model"][k], last["teacher"][k]) for k in last["model"])  # two different models
    with data_env(small_data_dir):
        from mtbert_lib.tasks import encode_split
        from mtbert_lib.tokenizer import load_tokenizer
        tok = load_tokenizer(cfg.model)
        dev = {t: encode_split(t, "dev", tok, cfg.max_length, cfg.dev_limit, report=None) for t in cfg.eval_tasks}
    student = training.build_model(cfg, best["encoder_config"])
    student.load_state_dict(last["model"])
    assert both["epochs"][-1]["dev_student"] == evaluate(student, dev, tok, cfg.eval_batch_size)
    teacher = training.build_model(cfg, best["encoder_config"])
    teacher.load_state_dict(last["teacher"])
    assert both["epochs"][-1]["dev"] == evaluate(teacher, dev, tok, cfg.eval_batch_size)


def test_eval_student_too_without_a_kept_teacher_adds_nothing(tiny_bert_dir, small_data_dir, tmp_path):
    for changes in (dict(consistency="none"), dict(consistency="mse", eval_teacher=False)):
        cfg = config(tiny_bert_dir, epochs=1, eval_student_too=True, **changes)
        with data_env(small_data_dir):
            r = train(cfg, tmp_path / cfg.consistency, None, progress=False, log=quiet)
        assert "dev_student" not in r["epochs"][0], changes

"""The training loop on real data and MiniLM: interrupted-and-resumed runs equal uninterrupted ones, a small set is
overfit, a non-finite loss stops the run with a clear message, and bad configurations are refused in one line.
Tests marked `slow` train MiniLM.
"""
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from engine_helpers import data_env, interrupt_at_step, one_line, require_minilm, resolve_data_dir, strip_timing
from mtbert_lib.experiments import EXPERIMENTS, get_experiment
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.training import NonFiniteLoss, TrainConfig, read_checkpoint, run_name, train

RESUME_CFG = TrainConfig(name="t", tasks=("sst", "sts"), eval_tasks=("sst", "sts"), schedule="balanced",
                         train_limit=16, dev_limit=16, train_eval_limit=8, epochs=3, batch_size=8,
                         consistency="kl", pooling="mean", max_length=32)  # max_length: only to save time
STEPS_PER_EPOCH = 4  # balanced: N = 16 per task, batch 8 -> 2 rounds x 2 tasks, one step per task batch
INTERRUPT_AT_STEP = STEPS_PER_EPOCH + 2  # the 6th optimizer step: the middle of epoch 2


def quiet(*_):
    pass


def load(path):
    return read_checkpoint(path)


def assert_state_dicts_equal(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs (max abs diff {(a[k].double() - b[k].double()).abs().max()})"


def assert_nested_equal(a, b, what):
    """Equal nested containers of tensors / numbers (an optimizer state dict), tensors compared bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), what
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_nested_equal(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_nested_equal(x, y, f"{what}[{i}]")
    else:
        assert a == b, what


# ------------------------------------------------------------------------------------------------ resume

@pytest.fixture(scope="module")
def resume_runs(request, tmp_path_factory):
    """Run A uninterrupted; run B interrupted (KeyboardInterrupt) in the middle of epoch 2, then resumed."""
    require_minilm(request)
    base = tmp_path_factory.mktemp("resume")
    A, B = base / "A", base / "B"
    with data_env(resolve_data_dir(request)):
        result_a = train(RESUME_CFG, A / "runs", A / "results", progress=False, log=quiet)

        with interrupt_at_step(INTERRUPT_AT_STEP) as calls:
            with pytest.raises(KeyboardInterrupt):
                train(RESUME_CFG, B / "runs", B / "results", progress=False, log=quiet)
        interrupted_last = load(B / "runs" / run_name(RESUME_CFG) / "last.safetensors")
        interrupted_json = json.loads((B / "results" / f"{run_name(RESUME_CFG)}.json").read_text())

        log = []
        result_b = train(RESUME_CFG, B / "runs", B / "results", resume=True, progress=False, log=log.append)
    return dict(A=A, B=B, result_a=result_a, result_b=result_b, log=log, calls=calls,
                interrupted_last=interrupted_last, interrupted_json=interrupted_json)


@pytest.mark.slow
def test_interruption_left_the_epoch_1_checkpoint(resume_runs):
    r = resume_runs
    assert r["calls"]["step"] == INTERRUPT_AT_STEP
    assert r["interrupted_last"]["state"]["epoch"] == 1
    assert r["interrupted_last"]["state"]["step"] == STEPS_PER_EPOCH
    assert len(r["interrupted_json"]["epochs"]) == 1
    assert any(line.startswith("resumed ") and "epoch 1" in line for line in r["log"]), r["log"]


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(resume_runs):
    a, b = resume_runs["result_a"], resume_runs["result_b"]
    assert len(a["epochs"]) == len(b["epochs"]) == 3
    assert [e["step"] for e in a["epochs"]] == [4, 8, 12]
    for ea, eb in zip(a["epochs"], b["epochs"]):
        assert set(ea["dev"]) == {"sst", "sts"} and set(ea["train"]) == {"sst", "sts"}
        assert set(ea["train_loss"]) == {"sst", "sts"}
        assert ea["dev"] == eb["dev"], f"epoch {ea['epoch']}: dev metrics differ"
        assert ea["train"] == eb["train"], f"epoch {ea['epoch']}: train metrics differ"
        assert ea["train_loss"] == eb["train_loss"], f"epoch {ea['epoch']}: training losses differ"
    assert strip_timing(a["epochs"]) == strip_timing(b["epochs"])
    assert a["best_epoch"] == b["best_epoch"] and a["best_dev"] == b["best_dev"]


@pytest.mark.slow
def test_resumed_run_has_identical_weights(resume_runs):
    name = run_name(RESUME_CFG)
    last_a, last_b = load(resume_runs["A"] / "runs" / name / "last.safetensors"), load(resume_runs["B"] / "runs" / name / "last.safetensors")
    assert last_a["state"]["epoch"] == last_b["state"]["epoch"] == 3
    assert_state_dicts_equal(last_a["model"], last_b["model"], "student")
    assert_state_dicts_equal(last_a["teacher"], last_b["teacher"], "teacher")
    assert_nested_equal(last_a["optimizer"], last_b["optimizer"], "optimizer")
    best_a, best_b = load(resume_runs["A"] / "runs" / name / "best.safetensors"), load(resume_runs["B"] / "runs" / name / "best.safetensors")
    assert best_a["epoch"] == best_b["epoch"] and best_a["dev"] == best_b["dev"]
    assert_state_dicts_equal(best_a["model"], best_b["model"], "best")
    # the run really trained: the student moved away from the teacher and from its first-epoch weights
    first = resume_runs["interrupted_last"]["model"]
    assert any(not torch.equal(first[k], last_a["model"][k]) for k in first)


@pytest.mark.slow
def test_result_json_of_a_run(resume_runs):
    name = run_name(RESUME_CFG)
    files = sorted((resume_runs["A"] / "results").glob("*.json"))
    assert [f.name for f in files] == [f"{name}.json"]
    res = json.loads(files[0].read_text())
    assert res["config"] == json.loads(json.dumps(asdict(RESUME_CFG)))
    assert res["quick"] is True and res["best_epoch"] in (1, 2, 3)
    assert res["best_dev"] == res["epochs"][res["best_epoch"] - 1]["dev"]
    assert res["checkpoint"].endswith(f"{name}/best.safetensors")
    for e in res["epochs"]:
        assert e["dev_score"] == pytest.approx(np.mean([e["dev"]["sst"], e["dev"]["sts"]]))
        assert all(np.isfinite(v) for v in e["train_loss"].values())
        assert 0 <= e["dev"]["sst"] <= 1 and -1 <= e["dev"]["sts"] <= 1


@pytest.mark.slow
def test_resume_with_another_config_is_refused(request, resume_runs):
    changed = replace(RESUME_CFG, lr=2e-5)
    assert run_name(changed) == run_name(RESUME_CFG)  # same run folder, different settings
    with data_env(resolve_data_dir(request)), pytest.raises(ValueError) as e:
        train(changed, resume_runs["B"] / "runs", resume_runs["B"] / "results", resume=True, progress=False, log=quiet)
    msg = one_line(e)
    assert "last.safetensors" in msg and "another config" in msg


@pytest.mark.slow
def test_resuming_a_finished_run_returns_its_result(request, resume_runs):
    with data_env(resolve_data_dir(request)):
        again = train(RESUME_CFG, resume_runs["B"] / "runs", resume_runs["B"] / "results", resume=True,
                      progress=False, log=quiet)
    assert strip_timing(again["epochs"]) == strip_timing(resume_runs["result_b"]["epochs"])


# ------------------------------------------------------------------------------------------------ overfit

OVERFIT_STEPS = 16


@pytest.mark.slow
def test_overfits_32_sst_examples(request, measure):
    require_minilm(request)
    from mtbert_lib.model import BertModel
    from mtbert_lib.optim import AdamW
    from mtbert_lib.tasks import collate, encode_split, make_batches
    from mtbert_lib.tokenizer import load_tokenizer
    tok = load_tokenizer("minilm")
    with data_env(resolve_data_dir(request)):
        split = encode_split("sst", "train", tok, max_length=32, limit=32, report=None)
    assert len(split) == 32 and len(set(split.labels.tolist())) > 1
    torch.manual_seed(0)
    model = MultitaskBERT(BertModel.from_pretrained("minilm"), pooling="mean", dropout=0.0)
    opt = AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, foreach=True)
    everything = collate(split, list(range(32)), tok)

    def full_loss():
        model.eval()
        with torch.no_grad():
            return model.loss("sst", model("sst", everything), everything["labels"]).item()

    initial = full_loss()
    rng, steps = np.random.default_rng(0), 0
    model.train()
    while steps < OVERFIT_STEPS:  # passes over 4 batches of 8
        for b in make_batches(split.lengths(), 8, rng, bucket=50):
            batch = collate(split, b, tok)
            loss = model.loss("sst", model("sst", batch), batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    final = full_loss()
    model.eval()
    with torch.no_grad():
        acc = (model.predict("sst", model("sst", everything)) == everything["labels"]).float().mean().item()
    measure(f"overfit 32 SST examples, {steps} steps lr 1e-4: loss {initial:.3f} -> {final:.3f}, train accuracy {acc:.2f}")
    assert final < 0.5 * initial
    assert acc >= 0.75


# ------------------------------------------------------------------------------------------------ non-finite loss

@pytest.mark.parametrize("bad_call,bad,words", [
    (2, float("nan"), ["non-finite loss (nan)", "step 1", "epoch 0", "task sts"]),  # the first sts batch
    (3, float("inf"), ["non-finite loss (inf)", "step 2", "epoch 0", "task sst"]),  # the second sst batch
])
def test_non_finite_loss_names_step_and_task(request, tmp_path, monkeypatch, bad_call, bad, words):
    require_minilm(request)
    monkeypatch.setenv("MTBERT_DATA", str(resolve_data_dir(request)))
    real_loss, calls = MultitaskBERT.loss, {"n": 0}

    def loss(self, task, outputs, labels):
        calls["n"] += 1
        value = real_loss(self, task, outputs, labels)
        return value * bad if calls["n"] == bad_call else value

    monkeypatch.setattr(MultitaskBERT, "loss", loss)
    cfg = TrainConfig(name="nan", tasks=("sst", "sts"), eval_tasks=("sst", "sts"), schedule="balanced", batch_size=4,
                      train_limit=8, dev_limit=8, train_eval_limit=4, epochs=1, pooling="mean")
    with pytest.raises(NonFiniteLoss) as e:
        train(cfg, tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    msg = one_line(e)
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "runs" / run_name(cfg) / "best.safetensors").exists()


# ------------------------------------------------------------------------------------------------ bad configs

@pytest.mark.parametrize("changes,words", [
    (dict(lr=-1e-5), ["lr", "≥ 0"]),
    (dict(lr=float("nan")), ["lr"]),
    (dict(weight_decay=-0.1), ["weight_decay"]),
    (dict(dropout=-0.3), ["dropout"]),
    (dict(batch_size=0), ["batch size"]),
    (dict(eval_batch_size=0), ["batch size"]),
    (dict(schedule="uneven", batch_sizes={"sst": 8, "quora": 0, "sts": 8}), ["batch size"]),
    (dict(schedule="uneven"), ["batch_sizes"]),
    (dict(pooling="nope"), ["pooling", "'nope'"]),
    (dict(pair_encoding="both"), ["pair_encoding"]),
    (dict(sts_head="ranking"), ["sts_head"]),
    (dict(schedule="nope"), ["schedule", "'nope'"]),
    (dict(update="mean"), ["update"]),
    (dict(consistency="l1"), ["consistency"]),
    (dict(tasks=("sst", "imdb")), ["task", "'imdb'"]),
    (dict(ema_decay=1.0), ["ema_decay"]),
    (dict(epochs=0), ["epochs"]),
])
def test_bad_config_is_one_line_value_error(changes, words):
    cfg = replace(TrainConfig(name="bad"), **changes)
    with pytest.raises(ValueError) as e:
        cfg.validate()
    msg = one_line(e)
    assert msg.startswith("config 'bad': ")
    for w in words:
        assert w in msg, (w, msg)


def test_bad_config_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError) as e:
        train(TrainConfig(name="bad", batch_size=0), tmp_path / "runs", tmp_path / "results", progress=False, log=quiet)
    one_line(e)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_unknown_experiment():
    with pytest.raises(ValueError) as e:
        get_experiment("nope")
    msg = one_line(e)
    assert "'nope'" in msg and "mtbert experiments" in msg


def test_every_named_experiment_validates():
    for name, cfg in EXPERIMENTS.items():
        assert cfg.name == name
        assert cfg.validate() is cfg
        quick = cfg.quick().validate()
        assert quick.train_limit is not None and quick.epochs <= 2


def test_rng_states_round_trip_on_the_cpu():
    """What last.pt keeps of the random streams: on the CPU only the CPU's (a GPU run adds the card's); restoring it
    replays the same draws."""
    from mtbert_lib.training import rng_states, set_rng_states
    saved = rng_states("cpu")
    assert set(saved) == {"torch"}
    first = torch.rand(5)
    set_rng_states(saved, "cpu")
    assert torch.equal(torch.rand(5), first)

"""The `mtbert` command line: user errors end in one line and exit status 2; a tiny real train + predict run.

"""
import hashlib
import json
import pickle

import numpy as np
import pytest

import mtbert_lib.training as training
from engine_helpers import data_env, require_minilm, resolve_data_dir
from mtbert_lib.cli import main
from mtbert_lib.data import load_task
from mtbert_lib.experiments import EXPERIMENTS, TABLE1


def assert_one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mtbert: error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------------------ user errors

@pytest.mark.parametrize("argv,words", [
    (["train", "--experiment", "nope"], ["unknown experiment 'nope'"]),
    (["train", "--experiment", "only-sst", "--set", "lr=-1", "--quick"], ["lr must be ≥ 0"]),
    (["train", "--experiment", "only-sst", "--set", "pooling=nope", "--quick"], ["unknown pooling 'nope'"]),
    (["train", "--experiment", "only-sst", "--set", "batch_size=0", "--quick"], ["batch size"]),
    (["train", "--experiment", "only-sst", "--set", "schedule=nope", "--quick"], ["unknown schedule 'nope'"]),
    (["train", "--experiment", "only-sst", "--set", "no_such_field=1"], ["--set", "no_such_field"]),
    (["train", "--experiment", "only-sst", "--set", "lr"], ["--set 'lr'", "FIELD=VALUE"]),
    (["predict", "--checkpoint", "/nonexistent.pt"], ["/nonexistent.pt", "no such checkpoint"]),
])
def test_user_errors_exit_2_with_one_line(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing relative to the caller's folder
    called = []
    monkeypatch.setattr(training.BertModel, "from_pretrained", lambda *a, **k: called.append(a) or 1 / 0)
    rc = main([*argv, "--run-dir", str(tmp_path / "runs")] if argv[0] == "train" else argv)
    assert rc == 2
    err = assert_one_error_line(capsys)
    for w in words:
        assert w in err, (w, err)
    assert not called, "the model was loaded before the configuration was checked"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting", ["lr=abc", "epochs=abc", "dropout=high"])
def test_non_numeric_set_value_is_one_line_error(setting, capsys, tmp_path):
    rc = main(["train", "--experiment", "only-sst", "--set", setting, "--quick", "--run-dir", str(tmp_path / "runs")])
    assert rc == 2
    assert_one_error_line(capsys)


def test_predict_with_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "best.pt"
    bogus.write_text("not a checkpoint\n")
    assert main(["predict", "--checkpoint", str(bogus), "--out", str(tmp_path / "p")]) == 2
    assert_one_error_line(capsys)


def test_predict_with_last_pt_is_a_one_line_error(tmp_path, capsys):
    import torch
    from dataclasses import asdict
    from mtbert_lib.training import TrainConfig
    last = tmp_path / "last.pt"  # the layout train() writes to last.pt (weights left out: they are never reached)
    torch.save({"config": asdict(TrainConfig()), "model": {}, "optimizer": {}, "teacher": None, "state": {}}, last)
    assert main(["predict", "--checkpoint", str(last), "--out", str(tmp_path / "p")]) == 2
    assert_one_error_line(capsys)


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["train"])  # --experiment missing
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------------ config plumbing

def test_train_flags_reach_the_config(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_train(cfg, run_dir, results_dir, resume, progress):
        seen.update(cfg=cfg, run_dir=run_dir, results_dir=results_dir, resume=resume, progress=progress)
        return {"best_dev": {"sst": 0.5}, "best_epoch": 1, "checkpoint": "x/best.safetensors"}

    monkeypatch.setattr(training, "train", fake_train)
    rc = main(["train", "--experiment", "only-sst", "--quick", "--epochs", "1", "--seed", "3", "--set", "pooling=mean",
               "--set", "train_limit=16", "--set", "dev_limit=16", "--set", "lr=2e-5", "--set", 'eval_tasks=["sst","sts"]',
               "--run-dir", str(tmp_path / "r"), "--results-dir", str(tmp_path / "s"), "--no-progress", "--resume"])
    assert rc == 0
    cfg = seen["cfg"]
    assert cfg.name == "only-sst" and cfg.seed == 3 and cfg.epochs == 1
    assert cfg.pooling == "mean" and cfg.lr == 2e-5 and cfg.eval_tasks == ("sst", "sts")
    assert cfg.train_limit == 16 and cfg.dev_limit == 16  # --quick never enlarges an explicit --set limit
    assert cfg.train_eval_limit == 32 and cfg.max_length == 128
    assert seen["resume"] is True and seen["progress"] is False
    assert seen["run_dir"] == str(tmp_path / "r") and seen["results_dir"] == str(tmp_path / "s")
    assert "best dev (epoch 1): sst 0.500" in capsys.readouterr().out


def test_quick_defaults(monkeypatch):
    seen = {}
    monkeypatch.setattr(training, "train", lambda cfg, **kw: seen.update(cfg=cfg) or
                        {"best_dev": {}, "best_epoch": 1, "checkpoint": "-"})
    assert main(["train", "--experiment", "rr-balanced", "--quick", "--no-progress"]) == 0
    cfg = seen["cfg"]
    assert (cfg.train_limit, cfg.dev_limit, cfg.train_eval_limit, cfg.epochs) == (64, 64, 32, 2)
    assert cfg.schedule == "balanced" and cfg.update == "sum" and cfg.sts_head == "classification"


def test_experiments_lists_table1(capsys):
    assert main(["experiments"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert listed == list(EXPERIMENTS)
    for name in TABLE1:
        assert name in listed
    line = next(l for l in out.splitlines() if l.split()[0] == "only-sts-mse-mt")
    assert "consistency=kl" in line and "tasks=('sts',)" in line


# ------------------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def cli_run(request, tmp_path_factory):
    """`mtbert train` on a tiny slice of real data, then `mtbert predict` on the full STS dev and test splits."""
    require_minilm(request)
    base = tmp_path_factory.mktemp("cli")
    runs, results, preds = base / "runs", base / "results", base / "predictions"
    with data_env(resolve_data_dir(request)):
        rc_train = main(["train", "--experiment", "only-sts-mse-mt", "--quick", "--epochs", "1", "--run-dir", str(runs),
                         "--results-dir", str(results), "--no-progress", "--set", "train_limit=16",
                         "--set", "dev_limit=16"])
        best = sorted(runs.glob("*/best.safetensors"))
        rc_predict = None
        if rc_train == 0 and len(best) == 1:
            rc_predict = main(["predict", "--checkpoint", str(best[0]), "--out", str(preds), "--tasks", "sts"])
        data = resolve_data_dir(request)
    return dict(rc_train=rc_train, rc_predict=rc_predict, runs=runs, results=results, preds=preds, best=best,
                data=data)


QUORA_OFFLINE_TRAIN_SHA256 = "e49493d3820a71d930fe7650282a8d1620a2bfa028c90631a0f3e11a8edbcf5f"


def expected_edition(folder) -> str:
    """The data edition, written out: the offline Quora files (recognised by quora-train.csv's sha256) or the
    original starter ones; SST, CFIMDB and STS are the same in both."""
    digest = hashlib.sha256((folder / "quora-train.csv").read_bytes()).hexdigest()
    return "cs224n-starter+quora-offline" if digest == QUORA_OFFLINE_TRAIN_SHA256 else "cs224n-starter+quora-starter"


@pytest.mark.slow
def test_cli_train_writes_result_json(cli_run):
    assert cli_run["rc_train"] == 0
    files = sorted(cli_run["results"].glob("*.json"))
    assert [f.name for f in files] == ["only-sts-mse-mt-minilm-tuned-seed0-quick.json"]  # MiniLM's own recipe
    res = json.loads(files[0].read_text())
    cfg = res["config"]
    assert res["experiment"] == cfg["name"] == "only-sts-mse-mt"
    assert cfg["seed"] == 0 and cfg["tasks"] == ["sts"] and cfg["consistency"] == "kl"
    assert cfg["train_limit"] == 16 and cfg["dev_limit"] == 16 and cfg["epochs"] == 1
    assert cfg["recipe"] == "tuned" and cfg["pooling"] == "mean" and cfg["sts_head"] == "cosine"  # the row's MSE head
    prov = res["provenance"]
    assert prov["model"] == "minilm" and prov["seed"] == 0
    assert isinstance(prov["git_revision"], str) and len(prov["git_revision"]) >= 7
    assert prov["recorded"] == "at start"  # the code the run started with, not the code when it ended
    assert prov["git_dirty"] == bool(prov["git_dirty_files"])
    assert (prov["git_diff_sha256"] is None) == (not any(f.startswith("mtbert_lib/") for f in prov["git_dirty_files"]))
    assert prov["data_edition"] == expected_edition(cli_run["data"])
    assert isinstance(prov["hardware"], str) and prov["hardware"]
    assert res["quick"] is True
    assert len(res["epochs"]) == 1
    e = res["epochs"][0]
    assert set(e["dev"]) == {"sst", "quora", "sts"}  # the experiment evaluates all three tasks
    assert set(e["train"]) == {"sts"} and set(e["train_loss"]) == {"sts"}
    assert e["step"] == 2  # 16 examples, batch 8
    assert {"dev_paper_average", "dev_leaderboard"} <= set(e)
    assert isinstance(res["wall_s"], (int, float)) and res["wall_s"] >= 0
    assert res["best_epoch"] == 1 and res["best_dev"] == e["dev"]
    assert [p.name for p in cli_run["best"]] == ["best.safetensors"] and res["checkpoint"] == str(cli_run["best"][0])


@pytest.mark.slow
@pytest.mark.parametrize("split,file,n", [("dev", "sts-dev-output.csv", 863),
                                          ("test-student", "sts-test-output.csv", 1725)])
def test_cli_predict_writes_cs224n_files(request, cli_run, split, file, n):
    assert cli_run["rc_predict"] == 0
    assert sorted(p.name for p in cli_run["preds"].iterdir()) == ["sts-dev-output.csv", "sts-test-output.csv"]
    lines = (cli_run["preds"] / file).read_text().splitlines()
    assert lines[0] == "id \t Predicted_Similiary "
    assert len(lines) == n + 1
    with data_env(resolve_data_dir(request)):
        ids = [r.id for r in load_task("sts", split, report=None)]
    assert len(ids) == n
    rows = [l.split(" , ") for l in lines[1:]]
    assert [r[0] for r in rows] == ids  # one line per example, in the split's order
    values = np.array([float(r[1]) for r in rows])
    assert np.isfinite(values).all()
    assert all(len(r[1].strip().partition(".")[2]) <= 4 for r in rows)  # rounded to 4 decimals

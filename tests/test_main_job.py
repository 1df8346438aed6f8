"""`make run` (`mtbert main-job`): the best recipe for 300 rounds drawn from the full training data, its dev scores printed beside
the baselines; result and checkpoint under runs/, never results/; and the playground's pick of the model it answers with."""
import json

import pytest

from engine_helpers import data_env
from mtbert_lib.baselines import beside_baselines
from mtbert_lib.cli import main
from mtbert_lib.experiments import main_job
from mtbert_lib.playground import ranked_checkpoints, record_summary, run_record

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"majority": {"sst": 0.253, "quora": 0.625, "cfimdb": 0.502, "sts": 0.0},
        "zero_shot": {"sts": 0.838, "quora": 0.788, "quora_threshold": 0.81}}


def test_the_main_job_is_the_best_row_on_the_full_data_for_a_short_budget():
    cfg = main_job("minilm")
    assert (cfg.name, cfg.model, cfg.recipe, cfg.epochs) == ("rr-balanced-specialized", "minilm", "tuned", 1)
    assert cfg.rounds_limit == 300 and cfg.lr_decay == "linear"  # 900 steps, the learning rate reaching 0 with them
    assert cfg.train_limit is None and cfg.dev_limit is None and not cfg.eval_before
    assert main_job("minilm", score_untrained=True).eval_before  # `--score-untrained`: dev scored before, too
    assert (cfg.pooling, cfg.sts_head, cfg.consistency) == ("mean", "cosine", "none")  # the tuned recipe, no MT


def test_scores_beside_the_baselines_say_what_they_beat():
    r = {"best_epoch": 1, "best_dev": {"sst": 0.46, "quora": 0.70, "sts": 0.87},
         "dev_before": {"sst": 0.19, "quora": 0.48, "sts": 0.84}}
    lines = beside_baselines(r, BASE).splitlines()
    sst, quora, sts = (next(line for line in lines if line.startswith(name)) for name in ("SST-5", "Quora", "STS"))
    assert sst.split()[3:7] == ["0.253", "–", "0.190", "0.460"]
    assert sst.endswith("majority") and "0.460" in sst
    assert quora.endswith("majority (NOT zero-shot)") and "0.788" in quora
    assert sts.endswith("zero-shot") and "0.838" in sts and "0.000" not in sts  # no majority r for STS
    assert "after 1 epoch" in lines[0] and "untrained" in lines[0]
    short = beside_baselines({"best_epoch": 1, "best_dev": r["best_dev"], "config": {"rounds_limit": 300}}, BASE).splitlines()
    assert "after 300 rounds" in short[0] and "untrained" not in short[0]  # no dev_before: no untrained column
    assert short[2].split()[3:6] == ["0.253", "–", "0.460"]
    assert beside_baselines(r, None).splitlines()[2].endswith("–")  # no baselines file: nothing claimed


def test_the_main_job_never_writes_into_results(capsys, tmp_path, monkeypatch):
    import mtbert_lib.training as training
    monkeypatch.setattr(training, "train", lambda *a, **k: 1 / 0)
    from mtbert_lib.data import project_root
    rc = main(["main-job", "--out", str(project_root() / "results" / "main"), "--quick"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mtbert: error: --out ") and "runs/" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def main_run(tiny_bert_dir, small_data_dir, tmp_path_factory):
    """`mtbert main-job --quick` on a tiny random BERT and the first rows of the real files: the whole path in seconds."""
    out = tmp_path_factory.mktemp("runs") / "main"
    import contextlib, io
    buf = io.StringIO()
    with data_env(small_data_dir), contextlib.redirect_stdout(buf):
        rc = main(["main-job", "--model", str(tiny_bert_dir), "--quick", "--out", str(out), "--no-progress", "--score-untrained"])
    return rc, buf.getvalue(), out


def test_main_job_end_to_end(main_run):
    rc, text, out = main_run
    assert rc == 0, text
    assert "QUICK MODE" in text and "beats" in text and "none for" in text  # no baselines for the tiny model
    results = sorted(out.glob("*.json"))
    assert len(results) == 1 and results[0].stem.startswith("rr-balanced-specialized-")
    r = json.loads(results[0].read_text())
    assert r["config"]["epochs"] == 1 and r["config"]["rounds_limit"] is None  # quick: the subset, whole
    assert set(r["best_dev"]) == {"sst", "quora", "sts"} and "dev_before" in r  # --score-untrained
    assert "untrained" in text and "before and after" in text
    ck = [p for p in (out / results[0].stem).iterdir() if p.name.startswith("best.")]
    assert len(ck) == 1 and str(ck[0]) in text
    for task in ("SST-5", "Quora", "STS"):
        assert any(line.startswith(task) for line in text.splitlines())


def test_the_playground_picks_the_best_trained_run(main_run, tmp_path):
    _, _, out = main_run
    runs = out.parent
    [(ck, rec)] = ranked_checkpoints(runs)
    assert rec is not None and rec["experiment"] == "rr-balanced-specialized"
    assert run_record(ck) == rec and "dev SST acc" in record_summary(rec) and "(quick)" in record_summary(rec)
    assert "unknown" in record_summary(None)
    main_rec = dict(rec, quick=False, config=dict(rec["config"], train_limit=None, rounds_limit=300))
    assert "300 rounds drawn from the full training data" in record_summary(main_rec)
    # a better full run, a worse full run and a single-task run beside it: the full three-task runs come first, best first
    import shutil
    for name, dev, tasks, limit in [("good", 0.9, ["sst", "quora", "sts"], None), ("bad", 0.5, ["sst", "quora", "sts"], None),
                                    ("single", 0.99, ["sst"], None)]:
        (runs / name).mkdir()
        shutil.copy(ck, runs / name / ck.name)
        r = dict(rec, experiment=name, best_dev={t: dev for t in tasks}, quick=False,
                 config=dict(rec["config"], tasks=tasks, train_limit=limit))
        (runs / f"{name}.json").write_text(json.dumps(r))
    (runs / "orphan").mkdir()
    shutil.copy(ck, runs / "orphan" / ck.name)  # no result file
    order = [p.parent.name for p, _ in ranked_checkpoints(runs)]
    assert order == ["good", "bad", "single", ck.parent.name, "orphan"], order
    assert ranked_checkpoints(tmp_path / "nowhere") == []

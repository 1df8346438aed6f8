"""Metrics against scikit-learn/SciPy, the paper's averages and the CS224N prediction-file layout.

"""
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score

from mtbert_lib.experiments import PAPER_TABLE1
from mtbert_lib.tasks import TASKS, leaderboard_score, paper_average, task_metric, write_predictions


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("task,classes", [("sst", 5), ("cfimdb", 2), ("quora", 2)])
def test_accuracy_matches_sklearn(task, classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, classes, 200))
    got = task_metric(task, p, y)
    assert isinstance(got, float)
    assert got == accuracy_score(y, p)
    # labels arrive as float tensors for quora: the metric casts them
    assert task_metric(task, p.astype(float), y.astype(float)) == accuracy_score(y, p)


@pytest.mark.parametrize("seed", range(5))
def test_pearson_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 5, 300)
    p = np.clip(y + rng.normal(0, 1.5, 300), 0, 5)
    got = task_metric("sts", p, y)
    assert isinstance(got, float)
    assert got == pytest.approx(pearsonr(p, y)[0], abs=1e-12)
    assert task_metric("sts", -p, y) == pytest.approx(-pearsonr(p, y)[0], abs=1e-12)


def test_pearson_degenerate_cases_are_zero():
    y = np.array([0.5, 1.0, 4.0, 2.0])
    assert task_metric("sts", np.full(4, 2.5), y) == 0.0  # constant predictions (e.g. a collapsed model)
    assert task_metric("sts", [3.0], [1.0]) == 0.0  # one example


def test_pearson_with_constant_labels_is_finite():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(task_metric("sts", [1.0, 2.0, 4.0], [3.0, 3.0, 3.0]))


def test_paper_average_of_the_best_row():
    sst, quora, sts = PAPER_TABLE1["rr-balanced-specialized-mt"]
    assert (sst, quora, sts) == (0.519, 0.746, 0.727)
    avg = paper_average({"sst": sst, "quora": quora, "sts": sts})
    assert round(avg, 3) == 0.664
    assert avg == pytest.approx((0.519 + 0.746 + 0.727) / 3)
    assert paper_average({"sst": 0.5, "quora": 0.8, "sts": 0.2, "cfimdb": 1.0}) == pytest.approx(0.5)  # cfimdb ignored


def test_leaderboard_formula():
    m = {"sst": 0.519, "quora": 0.746, "sts": 0.727}
    assert leaderboard_score(m) == pytest.approx((0.519 + 0.746 + (0.727 + 1) / 2) / 3)
    assert leaderboard_score({"sst": 1.0, "quora": 1.0, "sts": 1.0}) == pytest.approx(1.0)
    assert leaderboard_score({"sst": 0.0, "quora": 0.0, "sts": -1.0}) == pytest.approx(0.0)


@pytest.mark.parametrize("task,split,file,column,preds", [
    ("sst", "dev", "sst-dev-output.csv", "Predicted_Sentiment", [3, 0, 4]),
    ("sst", "test-student", "sst-test-output.csv", "Predicted_Sentiment", [1, 2, 2]),
    ("cfimdb", "dev", "cfimdb-dev-output.csv", "Predicted_Sentiment", [1, 0, 1]),
    ("quora", "test-student", "para-test-output.csv", "Predicted_Is_Paraphrase", [1, 0, 0]),
    ("quora", "dev", "para-dev-output.csv", "Predicted_Is_Paraphrase", [0, 0, 1]),
    ("sts", "dev", "sts-dev-output.csv", "Predicted_Similiary", [4.6, 0.25, 3.1234]),
])
def test_write_predictions_layout(tmp_path, task, split, file, column, preds):
    ids = ["a7d575c9ed86ea9633660c67e", "33cfa32975091f471e3a19656", "876d0172eef5db7776e39c5de"]
    out = write_predictions(task, split, ids, preds, tmp_path / "pred")
    assert out == tmp_path / "pred" / file
    assert TASKS[task].prediction_column == column
    expected = f"id \t {column} \n" + "".join(f"{i} , {p} \n" for i, p in zip(ids, preds))
    assert out.read_text() == expected
    # the CS224N evaluation script reads it back: header, then 'id , value' per line
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[0].strip() == "id" and lines[0].split("\t")[1].strip() == column
    assert [l.split(",")[0].strip() for l in lines[1:]] == ids
    assert [float(l.split(",")[1]) for l in lines[1:]] == [float(p) for p in preds]

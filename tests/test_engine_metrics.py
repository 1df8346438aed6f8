"""Metrics against references written out with numpy (task_metric wraps scikit-learn and SciPy, so those would be
its own code, not a reference) and hand-computed values, the paper's averages and the CS224N prediction-file layout
against golden text written by hand.

"""
import warnings

import numpy as np
import pytest

from mtbert_lib.experiments import PAPER_TABLE1
from mtbert_lib.tasks import TASKS, leaderboard_score, paper_average, task_metric, write_predictions


def numpy_accuracy(p, y) -> float:
    return float(np.count_nonzero(np.asarray(p) == np.asarray(y)) / len(y))


def numpy_pearson(p, y) -> float:
    """Σ (p − p̄)(y − ȳ) / sqrt(Σ (p − p̄)² · Σ (y − ȳ)²)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    dp, dy = p - p.mean(), y - y.mean()
    return float(np.sum(dp * dy) / np.sqrt(np.sum(dp ** 2) * np.sum(dy ** 2)))


def test_metrics_by_hand():
    assert task_metric("sst", [3, 0, 4, 2], [3, 1, 4, 2]) == 0.75
    assert task_metric("quora", [1, 0, 0, 1, 1], [1.0, 1.0, 0.0, 0.0, 1.0]) == 0.6
    # p = 1..4, y = 1, 3, 2, 4 (means 2.5): Σ dp·dy = 2.25 − 0.25 − 0.25 + 2.25 = 4, Σ dp² = Σ dy² = 5, r = 4 / 5
    assert task_metric("sts", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8, abs=1e-15)
    assert task_metric("sts", [0.0, 1.0, 2.0], [5.0, 3.0, 1.0]) == pytest.approx(-1.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("task,classes", [("sst", 5), ("cfimdb", 2), ("quora", 2)])
def test_accuracy_matches_numpy(task, classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, 200)
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, classes, 200))
    got = task_metric(task, p, y)
    assert isinstance(got, float)
    assert got == numpy_accuracy(p, y)
    # labels arrive as float tensors for quora: the metric casts them
    assert task_metric(task, p.astype(float), y.astype(float)) == numpy_accuracy(p, y)


# task_metric (SciPy) vs the formula in numpy on 300 values: measured max abs difference 1.1e-16 (float64 rounding of
# different summation orders, 1 ulp at r ~ 0.8); bound 1e-15, about 9 ulps.
PEARSON_TOL = 1e-15


@pytest.mark.parametrize("seed", range(5))
def test_pearson_matches_numpy(seed, measure):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 5, 300)
    p = np.clip(y + rng.normal(0, 1.5, 300), 0, 5)
    got = task_metric("sts", p, y)
    assert isinstance(got, float)
    d = max(abs(got - numpy_pearson(p, y)), abs(task_metric("sts", -p, y) + numpy_pearson(p, y)))
    measure(f"Pearson r, task_metric vs numpy formula (seed {seed}): {d:.1e}")
    assert d <= PEARSON_TOL


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


IDS = ["a7d575c9ed86ea9633660c67e", "33cfa32975091f471e3a19656", "876d0172eef5db7776e39c5de"]


@pytest.mark.parametrize("task,split,file,column,preds,golden", [
    ("sst", "dev", "sst-dev-output.csv", "Predicted_Sentiment", [3, 0, 4],
     "id \t Predicted_Sentiment \na7d575c9ed86ea9633660c67e , 3 \n33cfa32975091f471e3a19656 , 0 \n"
     "876d0172eef5db7776e39c5de , 4 \n"),
    ("sst", "test-student", "sst-test-output.csv", "Predicted_Sentiment", [1, 2, 2],
     "id \t Predicted_Sentiment \na7d575c9ed86ea9633660c67e , 1 \n33cfa32975091f471e3a19656 , 2 \n"
     "876d0172eef5db7776e39c5de , 2 \n"),
    ("cfimdb", "dev", "cfimdb-dev-output.csv", "Predicted_Sentiment", [1, 0, 1],
     "id \t Predicted_Sentiment \na7d575c9ed86ea9633660c67e , 1 \n33cfa32975091f471e3a19656 , 0 \n"
     "876d0172eef5db7776e39c5de , 1 \n"),
    ("quora", "test-student", "para-test-output.csv", "Predicted_Is_Paraphrase", [1, 0, 0],
     "id \t Predicted_Is_Paraphrase \na7d575c9ed86ea9633660c67e , 1 \n33cfa32975091f471e3a19656 , 0 \n"
     "876d0172eef5db7776e39c5de , 0 \n"),
    ("quora", "dev", "para-dev-output.csv", "Predicted_Is_Paraphrase", [0, 0, 1],
     "id \t Predicted_Is_Paraphrase \na7d575c9ed86ea9633660c67e , 0 \n33cfa32975091f471e3a19656 , 0 \n"
     "876d0172eef5db7776e39c5de , 1 \n"),
    ("sts", "dev", "sts-dev-output.csv", "Predicted_Similiary", [4.6, 0.25, 3.1234],
     "id \t Predicted_Similiary \na7d575c9ed86ea9633660c67e , 4.6 \n33cfa32975091f471e3a19656 , 0.25 \n"
     "876d0172eef5db7776e39c5de , 3.1234 \n"),
])
def test_write_predictions_layout(tmp_path, task, split, file, column, preds, golden):
    out = write_predictions(task, split, IDS, preds, tmp_path / "pred")
    assert out == tmp_path / "pred" / file
    assert TASKS[task].prediction_column == column
    assert out.read_text() == golden  # the CS224N layout, written out by hand
    # the CS224N evaluation script reads it back: header, then 'id , value' per line
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[0].strip() == "id" and lines[0].split("\t")[1].strip() == column
    assert [l.split(",")[0].strip() for l in lines[1:]] == IDS
    assert [float(l.split(",")[1]) for l in lines[1:]] == [float(p) for p in preds]

"""The tables the README and notebook 09 show are computed right from results/*.json: best epoch per run, mean and
sample std over seeds (numpy as the reference), sweep aliases, and the claim verdicts."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mtbert_lib import plots

ROOT = Path(__file__).resolve().parents[1]


def fake_run(folder, name, seed, dev_by_epoch, quick=False):
    epochs = [{"epoch": i + 1, "step": 10 * (i + 1), "dev": d, "train": d, "wall_s": 60.0 * (i + 1)}
              for i, d in enumerate(dev_by_epoch)]
    score = [np.mean(list(d.values())) for d in dev_by_epoch]
    best = int(np.argmax(score)) + 1
    r = {"experiment": name, "config": {"epochs": len(epochs), "recipe": "tuned", "pooling": "mean", "lr": 5e-5},
         "provenance": {"model": "minilm", "seed": seed, "data_edition": "cs224n-starter+quora-offline",
                        "git_revision": "abc1234", "hardware": "test cpu"},
         "quick": quick, "epochs": epochs, "best_epoch": best, "best_dev": epochs[best - 1]["dev"], "wall_s": 60.0 * len(epochs)}
    (folder / f"{name}-minilm-tuned-seed{seed}.json").write_text(json.dumps(r))
    return epochs[best - 1]["dev"]


def test_mean_std_over_seeds_of_the_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    best = {}
    for seed in range(3):
        devs = [{t: float(rng.uniform(0.3, 0.9)) for t in ("sst", "quora", "sts")} for _ in range(2)]
        best[seed] = fake_run(tmp_path, "rr-balanced", seed, devs)
    fake_run(tmp_path, "rr-uneven", 0, [{"sst": 0.1, "quora": 0.2, "sts": 0.3}])
    fake_run(tmp_path, "rr-uneven", 1, [{"sst": 0.9, "quora": 0.9, "sts": 0.9}], quick=True)  # quick: not counted
    df = plots.load_results(tmp_path)
    t = plots.table1(df[~df.quick])
    for task in ("sst", "quora", "sts"):
        v = np.array([best[s][task] for s in range(3)])
        assert t.loc["rr-balanced", task] == pytest.approx(v.mean(), abs=1e-12)
        assert t.loc["rr-balanced", f"{task} std"] == pytest.approx(v.std(ddof=1), abs=1e-12)
    assert t.loc["rr-balanced", "runs"] == 3 and t.loc["rr-uneven", "runs"] == 1
    assert np.isnan(t.loc["rr-uneven", "sst std"]) and t.loc["rr-uneven", "sst"] == 0.1
    assert t.loc["only-sst", "runs"] == 0
    md = plots.table1_markdown(t, None)
    assert f"| rr-uneven | 1 | 0.100 | 0.200 | 0.300 |" in md  # one run: no ±
    assert plots.pm(0.5, 0.0123, 3) == "0.500 ± 0.012 (3)" and plots.pm(float("nan"), None) == "–"


def test_claims_need_two_seeds_and_a_gap_beyond_the_noise(tmp_path):
    for seed, (a, b) in enumerate([(0.80, 0.60), (0.82, 0.61), (0.81, 0.62)]):
        fake_run(tmp_path, "rr-balanced", seed, [{"sst": a, "quora": a, "sts": a}])
        fake_run(tmp_path, "rr-uneven", seed, [{"sst": b, "quora": b, "sts": b}])
    df = plots.load_results(tmp_path)
    df["dev_avg"] = df[["dev_sst", "dev_quora", "dev_sts"]].mean(axis=1)
    diff, verdict = plots.compare(df, "rr-balanced", "rr-uneven", "avg")
    assert diff == pytest.approx(0.2, abs=1e-9) and verdict == "rr-balanced > rr-uneven"
    first = plots.claim_sentences(df)[0]
    assert "**reproduced**" in first and "(figures/table1.png)" in first  # each claim points to its figure
    one = df[df.seed == 0]
    assert plots.compare(one, "rr-balanced", "rr-uneven", "avg")[1].startswith("unsettled")


def test_aliases_borrow_the_table1_rows_runs(tmp_path):
    fake_run(tmp_path, "rr-balanced-specialized", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    df = plots.with_aliases(plots.load_results(tmp_path))
    for alias in ("fig3-batch8", "fig4-sts-mse", "fig5-mt-none"):
        assert (df.experiment == alias).sum() == 1
    assert not (df.experiment == "fig5-mt-kl").any()  # its row has no runs here


def test_readme_section_renders(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import results_table
    fake_run(tmp_path, "rr-balanced", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    text = results_table.section(tmp_path)
    assert "**Table 1, full runs**" in text and "| rr-balanced | 1 | 0.500 | 0.800 | 0.870 |" in text
    assert "seeds 0" in text and "git abc1234" in text


def test_runs_in_progress_are_left_out(tmp_path):
    fake_run(tmp_path, "rr-balanced", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    f = tmp_path / "rr-balanced-minilm-tuned-seed0.json"
    r = json.loads(f.read_text()); r["config"]["epochs"] = 2; f.write_text(json.dumps(r))  # 1 of 2 epochs done
    assert len(plots.load_results(tmp_path)) == 0 and len(plots.load_results(tmp_path, complete_only=False)) == 1


def test_part_epoch_runs_are_never_protocol_runs(tmp_path):
    """A run over the first N rounds of each epoch (`rounds_limit`, the main job's budget) counts like a quick run."""
    fake_run(tmp_path, "rr-balanced", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    f = tmp_path / "rr-balanced-minilm-tuned-seed1.json"
    fake_run(tmp_path, "rr-balanced", 1, [{"sst": 0.1, "quora": 0.1, "sts": 0.1}])
    r = json.loads(f.read_text()); r["config"]["rounds_limit"] = 300; f.write_text(json.dumps(r))
    df = plots.load_results(tmp_path)
    assert list(df.quick) == [False, True] and len(plots.protocol(df)) == 1
    from mtbert_lib.training import TrainConfig, run_name
    assert run_name(TrainConfig(name="x", recipe="tuned", rounds_limit=300)) == "x-minilm-tuned-seed0-r300"
    assert run_name(TrainConfig(name="x", recipe="tuned")) == "x-minilm-tuned-seed0"  # protocol names unchanged


def test_beyond_table_and_verdicts_against_the_best_row(tmp_path):
    from mtbert_lib.experiments import BEYOND
    assert list(plots.BEYOND_LABELS) == BEYOND  # every named technique gets a row and a sentence
    base = [(0.48, 0.82, 0.87), (0.49, 0.83, 0.88), (0.47, 0.82, 0.87)]
    for seed, (s, q, r) in enumerate(base):
        fake_run(tmp_path, "rr-balanced-specialized", seed, [{"sst": s, "quora": q, "sts": r}])
        fake_run(tmp_path, "smart", seed, [{"sst": s + 0.05, "quora": q + 0.05, "sts": r + 0.05}])  # clearly better
        fake_run(tmp_path, "pcgrad-sum", seed, [{"sst": s - 0.002, "quora": q + 0.001, "sts": r}])  # noise
        fake_run(tmp_path, "pcgrad", seed, [{"sst": s - 0.1, "quora": q - 0.1, "sts": r - 0.1}])  # clearly worse
    fake_run(tmp_path, "mlm", 0, [{"sst": 0.6, "quora": 0.9, "sts": 0.9}])  # one seed: unsettled
    df = plots.load_results(tmp_path)
    t = plots.beyond_table(df)
    assert t.loc["smart", "Δ sst"] == pytest.approx(0.05, abs=1e-9) and t.loc["smart", "runs"] == 3
    avg = np.mean([np.mean(b) for b in base])
    assert t.loc["rr-balanced-specialized", "avg"] == pytest.approx(avg, abs=1e-12)
    assert t.loc["beyond-best", "runs"] == 0
    s = {line.split("(`")[1].split("`")[0]: line for line in plots.beyond_sentences(df)}
    assert "**helps**" in s["smart"] and "+0.050 on the average" in s["smart"]
    assert "**hurts**" in s["pcgrad"] and "**within seed noise**" in s["pcgrad-sum"]
    assert "**unsettled (1 and 3 runs)**" in s["mlm"] and "**no runs yet**" in s["beyond-best"]
    surgery = [line for line in plots.beyond_sentences(df) if "surgery alone" in line][0]
    assert "`pcgrad` − `pcgrad-sum`" in surgery and "**hurts**" in surgery
    fig = plots.plot_beyond(t, None, "test", tmp_path / "beyond.png")
    assert (tmp_path / "beyond.png").stat().st_size > 0 and len(fig.axes) == 3


def test_readme_section_has_the_beyond_table_and_the_protocol_wall_time(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import results_table
    fake_run(tmp_path, "rr-balanced-specialized", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    assert "Beyond the paper" not in results_table.section(tmp_path)  # no technique run yet: no empty table
    fake_run(tmp_path, "smart", 0, [{"sst": 0.52, "quora": 0.8, "sts": 0.87}])
    text = results_table.section(tmp_path)
    assert "**Beyond the paper**" in text and "| smart | 1 | 0.520 | 0.800 | 0.870 | +0.020 / +0.000 / +0.000 | +0.007 |" in text
    assert "Wall time of the protocol's 1 full runs" in text  # the technique's run is not counted in the protocol


def test_best_configuration_and_goals(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import results_table
    fake_run(tmp_path, "rr-balanced", 0, [{"sst": 0.51, "quora": 0.80, "sts": 0.88}])
    fake_run(tmp_path, "rr-uneven", 0, [{"sst": 0.49, "quora": 0.83, "sts": 0.86}])
    fake_run(tmp_path, "only-sts-mse-mt", 0, [{"sst": 0.9, "quora": 0.9, "sts": 0.9}])  # single-task rows don't count
    line = results_table.best_configuration(plots.table1(plots.load_results(tmp_path)))
    assert line.startswith("**Best configuration on dev**") and "rr-uneven 0.7267 (1 runs); next rr-balanced 0.7300" not in line
    assert "rr-balanced 0.7300 (1 runs); next rr-uneven 0.7267 (1 runs)" in line
    assert "sst 0.510 ≥ 0.50 met" in line and "quora 0.800 ≥ 0.84 missed by 0.040" in line


def test_paired_difference_and_interval_match_scipy(tmp_path):
    """The paired-by-seed difference and its 95% t-interval are scipy's (ttest_rel's confidence interval)."""
    from scipy import stats
    a, b = [0.81, 0.83, 0.80], [0.80, 0.815, 0.79]
    for seed in range(3):
        fake_run(tmp_path, "fig5-mt-kl", seed, [{"sst": a[seed], "quora": 0.5, "sts": 0.5}])
        fake_run(tmp_path, "fig5-mt-none", seed, [{"sst": b[seed], "quora": 0.5, "sts": 0.5}])
    fake_run(tmp_path, "fig5-mt-none", 3, [{"sst": 0.1, "quora": 0.5, "sts": 0.5}])  # no partner: not paired
    df = plots.load_results(tmp_path)
    p = plots.paired(df, "fig5-mt-kl", "fig5-mt-none", "sst")
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert p["n"] == 3 and p["mean"] == pytest.approx(np.mean(np.subtract(a, b)), abs=1e-12)
    assert (p["lo"], p["hi"]) == (pytest.approx(ci.low, abs=1e-12), pytest.approx(ci.high, abs=1e-12))
    assert plots.paired_verdict(p, +1) == "reproduced" and plots.paired_verdict(p, -1) == "the opposite holds"
    assert plots.paired_verdict({**p, "lo": -0.01}, +1).startswith("not settled")
    assert plots.paired_verdict(plots.paired(df[df.seed == 0], "fig5-mt-kl", "fig5-mt-none", "sst"), 1).startswith("unsettled")


def test_the_rule_misses_what_the_pairs_show(tmp_path):
    """A difference smaller than the spread between seeds but the same on every seed: the rule says noise, the paired
    interval says reproduced — the case of specialized − balanced (issue 20)."""
    for seed, level in enumerate([0.60, 0.70, 0.80]):
        fake_run(tmp_path, "rr-balanced-specialized", seed, [{t: level + 0.01 for t in ("sst", "quora", "sts")}])
        fake_run(tmp_path, "rr-balanced", seed, [{t: level + 0.002 * seed for t in ("sst", "quora", "sts")}])
    line = next(l for l in plots.claim_sentences(plots.load_results(tmp_path)) if "`rr-balanced-specialized` − `rr-balanced`" in l)
    assert "*within seed noise*" in line and "**reproduced**" in line


def test_students_and_protocols(tmp_path):
    """with_students: a Mean Teacher run's student is a run of its own, at its own best epoch; protocol never pools
    recipes or models."""
    fake_run(tmp_path, "mt-faithful-kl", 0, [{"sst": 0.5, "quora": 0.5, "sts": 0.5}, {"sst": 0.6, "quora": 0.6, "sts": 0.6}])
    f = tmp_path / "mt-faithful-kl-minilm-tuned-seed0.json"
    r = json.loads(f.read_text())
    r["epochs"][0]["dev_student"] = {"sst": 0.7, "quora": 0.7, "sts": 0.7}  # the student peaks at epoch 1
    r["epochs"][1]["dev_student"] = {"sst": 0.4, "quora": 0.4, "sts": 0.4}
    f.write_text(json.dumps(r))
    long = dict(r, config=dict(r["config"], recipe="tuned10"))
    (tmp_path / "mt-faithful-kl-minilm-tuned10-seed0.json").write_text(json.dumps(long))
    other = dict(r, provenance=dict(r["provenance"], model="bert-base-uncased"))
    (tmp_path / "mt-faithful-kl-bert-base-uncased-tuned-seed0.json").write_text(json.dumps(other))
    df = plots.load_results(tmp_path)
    two = plots.protocol(df, "tuned")
    assert two.file.nunique() == 1 and len(plots.protocol(df, "tuned10")) == 2
    b = plots.best_rows(plots.with_students(two)).set_index("experiment")
    assert b.loc["mt-faithful-kl", "dev_sst"] == 0.6 and b.loc["mt-faithful-kl:student", "dev_sst"] == 0.7

def test_readme_and_docs_show_what_the_committed_results_render():
    """No number on the front page or in docs/results.md that `python tools/results_table.py --readme` did not write
    from the committed results/."""
    sys.path.insert(0, str(ROOT / "tools"))
    import results_table
    assert set(results_table.TARGETS) == {"README.md", "docs/results.md"}
    for rel, (start, end, render) in results_table.TARGETS.items():
        text = (ROOT / rel).read_text()
        assert text.count(start) == 1 and text.count(end) == 1, f"{rel}: its generated-results markers"
        shown = text.split(start)[1].split(end)[0]
        assert shown == "\n" + render(ROOT / "results"), f"{rel} is stale: run python tools/results_table.py --readme"
    assert "| rr-balanced-specialized | 3 |" in (ROOT / "README.md").read_text()


def test_headline_rewrite_touches_only_the_marked_region(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    import results_table
    (tmp_path / "results").mkdir()
    fake_run(tmp_path / "results", "rr-balanced", 0, [{"sst": 0.5, "quora": 0.8, "sts": 0.87}])
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"# front\n{results_table.HEAD_START}\nold\n{results_table.HEAD_END}\ntail\n")
    (tmp_path / "docs/results.md").write_text(f"x\n{results_table.START}\n{results_table.END}\n")
    assert results_table.rewrite(tmp_path / "results", tmp_path) == ["README.md", "docs/results.md"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# front\n") and readme.endswith(f"{results_table.HEAD_END}\ntail\n") and "old" not in readme
    assert "| rr-balanced | 1 | 0.500 | 0.800 | 0.870 |" in readme
    (tmp_path / "docs/results.md").write_text("no markers\n")
    with pytest.raises(SystemExit, match="docs/results.md has no generated-results markers"):
        results_table.rewrite(tmp_path / "results", tmp_path)

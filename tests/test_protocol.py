"""tools/run_protocol.py: the plan covers every run the tables need (3 seeds of each Table 1 row, the claims' sweeps,
§4.1, notebook 11's techniques), and notebook 11's rows that start from the MLM folder keep that model."""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtbert_lib.experiments import BEYOND, TABLE1

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import run_protocol  # noqa: E402


def test_plan_has_three_seeds_of_every_table1_row_and_each_claim_row_once():
    p = run_protocol.plan()
    assert len(p) == len(set(p))
    for row in TABLE1 + run_protocol.CLAIM_ROWS:
        assert {s for n, s in p if n == row} == {0, 1, 2}, row
    for row in run_protocol.SECTION41 + run_protocol.SWEEP_EXTRA:
        assert (row, 0) in p
    # the claims' seeds come before the single-task rows' extra seeds
    assert p.index(("rr-uneven", 2)) < p.index(("only-sst", 1))


def test_beyond_plan_runs_each_technique_seed_by_seed():
    p = run_protocol.beyond_plan()
    assert p[:len(BEYOND)] == [(n, 0) for n in BEYOND] and len(p) == 3 * len(BEYOND)


def test_beyond_dry_run_keeps_the_mlm_folder_as_the_model(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools/run_protocol.py"), "--beyond", "--dry-run",
                          "--results-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "mlm seed 0 -> mlm-mlm-minilm-tuned-seed0.json" in out  # not overridden by --model minilm
    assert "pcgrad seed 2 -> pcgrad-minilm-tuned-seed2.json" in out


# ------------------------------------------------------------------------------------------------ --preset paper

def test_paper_preset_is_every_table1_row_and_figure_variant_with_three_seeds():
    from mtbert_lib.experiments import EXPERIMENTS
    p = run_protocol.paper_plan()
    assert len(p) == len(set(p)) == 3 * len(run_protocol.PAPER_ROWS)
    for row in TABLE1 + ["fig3-batch32", "fig3-batch64", "fig4-sts-ce", "fig4-sts-mse", "fig5-mt-mse", "fig5-mt-kl"]:
        assert {s for n, s in p if n == row} == {0, 1, 2}, row
    assert all(n in EXPERIMENTS for n, _ in p)
    assert {s for _, s in p[:len(run_protocol.PAPER_ROWS)]} == {0}  # a complete first seed before the others
    assert run_protocol.PAPER_RECIPE == {"bert-base-uncased": "paper", "minilm": "tuned10"}


def test_paper_preset_model_follows_the_device(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert run_protocol.preset_model() == "bert-base-uncased"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_protocol.preset_model() == "minilm"


def test_paper_preset_prints_its_estimate_before_it_starts(tiny_bert_dir, small_data_dir, tmp_path, capsys):
    """--estimate-only: the time measured on this device for the runs not done yet, and nothing trained."""
    from engine_helpers import data_env
    with data_env(small_data_dir):
        rc = run_protocol.main(["--preset", "paper", "--model", str(tiny_bert_dir), "--quick", "--estimate-only",
                                "--threads", "1", "--results-dir", str(tmp_path / "results"), "--run-dir",
                                str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "paper protocol: 48 runs (16 rows x seeds)" in out
    assert "estimate: 48 of 48 runs left, about" in out and "training examples/s measured" in out
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_run_logged_passes_every_line_of_a_run_through_log():
    """The protocol's runs print through `log` (notebook 13 keeps times out of its stored quick output that way)."""
    import run_protocol
    got = []
    rc = run_protocol.run_logged([sys.executable, "-c", "import sys; print('epoch 1 | 12s'); print('oops', file=sys.stderr); "
                                  "sys.stdout.flush(); sys.exit(3)"], log=lambda line, **kw: got.append(line))
    assert rc == 3 and sorted(got) == ["epoch 1 | 12s", "oops"]


def test_run_logged_kills_the_run_when_interrupted():
    """Stopping notebook 13's cell must not leave the training running (it resumes from its checkpoint later)."""
    import run_protocol

    def interrupt(line, **kw):
        raise KeyboardInterrupt
    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        run_protocol.run_logged([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], log=interrupt)
    assert time.time() - t0 < 30

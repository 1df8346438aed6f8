"""tools/run_protocol.py: the plan covers every run the tables need (3 seeds of each Table 1 row, the claims' sweeps,
§4.1, notebook 11's techniques), and notebook 11's rows that start from the MLM folder keep that model."""
import subprocess
import sys
from pathlib import Path

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

"""benchmarks/bench_epoch.py on a tiny random BERT and a small slice of the data: both sides run, every breakdown
category is there and non-negative, the parts add up to the replica's own end-to-end time, and the timed replica of
the library's step ends with exactly the weights of the library's `train_step`. (Speed itself is never asserted.)"""
import json
import math
import sys

import pytest

from engine_helpers import REPO_ROOT, data_env

pytestmark = pytest.mark.usefixtures("one_thread")

if str(REPO_ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def result(tiny_bert_dir, small_data_dir, tmp_path_factory):
    import bench_epoch
    out = tmp_path_factory.mktemp("bench-epoch") / "epoch.json"
    with data_env(small_data_dir):
        bench_epoch.main(["--model", str(tiny_bert_dir), "--threads", "1", "--rounds", "2", "--eval-limit", "8",
                          "--warmup-rounds", "0", "--quick-probes", "--json", str(out)])
    return json.loads(out.read_text())


def test_both_sides_have_every_category_and_the_parts_add_up(result):
    import bench_epoch
    assert set(result["sides"]) == {"mtbert", "hf"}
    for name, side in result["sides"].items():
        b = side["breakdown_s"]
        assert set(b) == set(bench_epoch.CATEGORIES), name
        assert all(v >= 0 for v in b.values()), (name, b)
        assert b["forward"] > 0 and b["backward"] > 0 and b["optimizer"] > 0 and b["evaluation"] > 0, (name, b)
        assert b["ema"] > 0 and b["consistency"] > 0, (name, b)  # the recipe has a Mean Teacher
        assert math.isclose(sum(b.values()), side["replica_total_s"], rel_tol=1e-9), name
        assert side["e2e_s"] > 0 and side["replica_total_s"] > 0
        # the two passes time the same work: far apart only if something else ran (a loose sanity bound, not a speed test)
        assert side["replica_total_s"] < 5 * side["e2e_s"] + 1.0, name
        assert math.isclose(sum(side["breakdown_pct"].values()), 100.0, rel_tol=1e-6)
        assert set(side["dev"]) == {"sst", "quora", "sts"}
    assert math.isclose(result["hf_over_mtbert_e2e"], result["sides"]["hf"]["e2e_s"] / result["sides"]["mtbert"]["e2e_s"])


def test_the_timed_replica_is_the_librarys_step(result):
    """Same starting weights, same rounds, same dropout seed: the replica must end where train_step ends."""
    mt = result["sides"]["mtbert"]
    assert mt["replica_max_abs_weight_diff"] == 0.0
    assert mt["dev"] == mt["dev_replica"]


def test_schedule_work_and_floor(result):
    assert result["rounds"] == min(2, result["rounds_in_epoch"])
    assert result["dev_examples"] == {"sst": 8, "quora": 8, "sts": 8}
    w, f, m = result["work"], result["floor"], result["machine"]
    assert w["optimizer_steps"] == 3 * result["rounds"]  # per-task steps: one per task batch
    assert w["train_flops"] == 3 * w["teacher_flops"] > 0  # training = 3 forwards; the teacher's forward = 1
    assert w["optimizer_bytes"] > 0 and w["ema_bytes"] > 0
    assert m["matmul_peak_fp32_gflops"] > 0 and m["matmul_peak_bf16_gflops"] > 0 and m["copy_bandwidth_gbs"] > 0
    assert math.isclose(f["seconds"], f["compute_s"] + f["memory_s"])
    for side in result["sides"].values():
        assert math.isclose(side["e2e_over_floor"], side["e2e_s"] / f["seconds"])


def test_bad_options_are_refused_in_one_line(capsys):
    import bench_epoch
    with pytest.raises(SystemExit):
        bench_epoch.parse_args(["--rounds", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--rounds must be ≥ 1" in err


def test_the_profile_names_the_top_operators(result):
    pr = result["profile"]
    assert pr["rounds"] == result["rounds"] and pr["seconds_profiled"] > 0
    rows = pr["top_ops"]
    assert rows and all(r["name"] and r["calls"] >= 1 and r["self_ms"] >= 0 for r in rows)
    assert [r["self_ms"] for r in rows] == sorted((r["self_ms"] for r in rows), reverse=True)
    assert 0 < sum(r["self_pct"] for r in rows) <= 100 + 1e-6
    assert any(r["name"].startswith("aten::") for r in rows)
    for side in result["sides"].values():
        assert side["e2e_minor_faults_per_step"] >= 0 and side["e2e_kernel_s"] >= 0

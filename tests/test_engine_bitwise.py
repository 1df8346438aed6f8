"""The training engine's numbers stay bitwise the same through refactors of the loop.

`tests/data/engine_golden.json` holds, for each config below, every epoch's history entry (per-batch and mean
losses at full precision, dev and train metrics; not the wall time) of a fixed-seed `train()` of a tiny random BERT
on the first rows of the real task files, recorded before the loop was restructured (precision module, update
modes as a table, a step without host syncs). A refactor that changes one bit of one loss or metric fails here.

The numbers are those of one CPU and one torch build: on another machine (another CPU model or torch version,
recorded in the file) the comparison is skipped, and `python tests/test_engine_bitwise.py --record` writes the file
anew from a revision whose numbers are trusted.
"""
import json, platform, sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "engine_golden.json"

BASE = dict(tasks=("sst", "quora", "sts"), eval_tasks=("sst", "quora", "sts"), schedule="balanced", batch_size=4,
            epochs=2, max_length=32, precision="fp32", pooling="mean", dropout=0.3, lr=2e-3, train_eval_limit=4,
            eval_batch_size=16)
CONFIGS = {  # name: changes to BASE — every update mode, precision, optimizer path and extension the loop has
    "per_task-mt-kl": dict(update="per_task", consistency="kl", consistency_rampup=3),
    "sum-sts-ce": dict(update="sum", sts_head="classification"),
    "pcgrad": dict(update="pcgrad"),
    "smart": dict(update="per_task", smart_weight=1.0),
    "bf16-mt": dict(update="per_task", consistency="mse", precision="bf16"),
    "fp16-mt": dict(update="per_task", consistency="kl", precision="fp16"),
    "fp16-sum": dict(update="sum", precision="fp16"),
    "foreach-wd-head-lr": dict(optimizer_impl="foreach", weight_decay=0.01, head_lr=5e-3, warmup=0.2, lr_decay="linear"),
    "loop": dict(optimizer_impl="loop"),
    "uneven-joint": dict(schedule="uneven", batch_sizes={"sst": 4, "quora": 8, "sts": 4}, update="sum",
                         pair_encoding="joint", pooling="cls"),
}


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "torch": torch.__version__}


def run_all(tiny_bert_dir, data_dir, tmp_path, names=CONFIGS) -> dict:
    from engine_helpers import data_env
    import mtbert_lib.experiments  # noqa: F401  as the CLI: notebook 11's rows (pcgrad, SMART) join the loop's tables
    from mtbert_lib.training import TrainConfig, train
    out = {}
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with data_env(data_dir):
            for name in names:
                cfg = TrainConfig(name=name, model=str(tiny_bert_dir), **{**BASE, **CONFIGS[name]})
                r = train(cfg, Path(tmp_path) / name, None, progress=False, log=lambda *a, **k: None)
                out[name] = [{k: v for k, v in e.items() if k != "wall_s"} for e in r["epochs"]]
    finally:
        torch.set_num_threads(n)
    return json.loads(json.dumps(out))  # as the file stores it (tuples -> lists)


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.is_file():
        pytest.skip(f"{GOLDEN} not recorded (python tests/test_engine_bitwise.py --record)")
    g = json.loads(GOLDEN.read_text())
    if g["machine"] != machine():
        pytest.skip(f"golden numbers recorded on {g['machine']}, this is {machine()}")
    return g["runs"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_loop_computes_the_recorded_numbers(golden, tiny_bert_dir, small_data_dir, tmp_path, name):
    got = run_all(tiny_bert_dir, small_data_dir, tmp_path, [name])[name]
    want = golden[name]
    assert len(got) == len(want)
    for e_got, e_want in zip(got, want):
        for k in e_want:
            assert e_got.get(k) == e_want[k], (name, e_want["epoch"], k)


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile
    sys.path.insert(0, str(HERE))
    from engine_helpers import REPO_ROOT
    from wiring_helpers import write_small_data, write_tiny_checkpoint
    from mtbert_lib.model import resolve_checkpoint
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tiny = write_tiny_checkpoint(d / "tiny", resolve_checkpoint("minilm") / "vocab.txt")
        data = write_small_data(REPO_ROOT / "data", d / "data")
        runs = run_all(tiny, data, d / "runs")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=0))
    print(f"wrote {GOLDEN}: {', '.join(runs)}")

"""Data-parallel training (notebook 12, mtbert_lib.distributed): the command line under `torchrun` with 2 CPU
processes (gloo) ends where a single process ends with the same global batches; only rank 0 writes files; `--resume`
continues a single-process checkpoint under torchrun; the shards and loss factors behind it.

The runs: a tiny random BERT without dropout (2 layers of width 32, character vocabulary), the first rows of the real
task files (tests/wiring_helpers.py), fp32, balanced round-robin with batch 3 over 7 examples per task, so every epoch
has batches of 3 (shards of 2 + 1) and a batch of 1 (rank 1 borrows an example with factor 0), with Mean Teacher.

Tolerances (fp32). The two runs compute the same sums in another order (two shards, padded to their own longest
sentence, then an all-reduce, against one batch), so each gradient agrees to float32 rounding; Adam divides each
gradient by its running RMS, which passes rounding on to the weights undamped for the smallest gradients. Measured
after 2 epochs (18 steps, lr 1e-3 / heads 3e-3): weights, EMA teacher and Adam moments within 5.7e-6, training
losses within 6e-8 relative, dev metrics within 1.3e-6. The bound is WEIGHT_TOL = 5e-5; the mistake it guards
against, averaging the shards' mean losses without the factor N·n_r/n, moves the weights by 1.1e-2.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from engine_helpers import REPO_ROOT, data_env, interrupt_at_step, write_tiny_checkpoint
from mtbert_lib import distributed
from mtbert_lib.cli import main
from mtbert_lib.distributed import shard
import mtbert_lib.training as training
from mtbert_lib.training import TrainConfig
from wiring_helpers import load_pt

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHT_TOL = 5e-5  # weights, teacher and optimizer moments after 2 epochs (measured 5.7e-6)
METRIC_TOL = 2e-5  # dev / train-eval metrics (measured 1.3e-6; accuracies on 10 examples are equal)
LOSS_RTOL = 1e-5  # per-epoch mean training loss, relative (measured 6e-8)
SETTINGS = ["dropout=0", "precision=fp32", "batch_size=3", "train_limit=7", "dev_limit=10", "max_length=32",
            "lr=1e-3", "head_lr=3e-3", "train_eval_limit=4", "ema_decay=0.9"]

# Installed in the torchrun workers (and only there: RANK is set) through PYTHONPATH: records every file or folder
# a process creates, opens for writing, renames or removes under $MTBERT_AUDIT_WATCH, and reports at exit.
SITECUSTOMIZE = textwrap.dedent('''
    import atexit, json, os, sys
    if os.environ.get("RANK") is not None and os.environ.get("MTBERT_AUDIT"):
        _watch, _writes = os.path.realpath(os.environ["MTBERT_AUDIT_WATCH"]), []
        def _hook(event, args):
            if event == "open":
                path, mode, flags = args
                writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            else:
                writing, path = event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate"), (
                    args[1] if event == "os.rename" else args[0])
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.realpath(os.fsdecode(path))
                if path.startswith(_watch + os.sep):
                    _writes.append([event, os.path.relpath(path, _watch)])
        sys.addaudithook(_hook)
        atexit.register(lambda: open(os.path.join(os.environ["MTBERT_AUDIT"], "rank%s.json" % os.environ["RANK"]),
                                     "w").write(json.dumps(_writes)))
''')


# ------------------------------------------------------------------------------------------------ shards

def test_shards_cover_the_batch_and_their_weighted_means_average_to_the_global_mean():
    rng = np.random.default_rng(0)
    for n in range(1, 10):
        batch = list(rng.permutation(100)[:n])
        losses = dict(zip(batch, rng.random(n)))
        for world in range(1, 5):
            pieces = [shard(batch, r, world) for r in range(world)]
            real = [(idx, f) for idx, f in pieces if f > 0]
            assert [i for idx, _ in real for i in idx] == batch  # contiguous, in order, each example once
            sizes = [len(idx) for idx, _ in real]
            assert max(sizes) - min(sizes) <= 1 and len(real) == min(n, world)
            assert all(idx == batch[:1] and f == 0 for idx, f in pieces if f == 0)  # borrowed, weighs nothing
            ddp = np.mean([f * np.mean([losses[i] for i in idx]) for idx, f in pieces])  # what DDP averages
            assert ddp == pytest.approx(np.mean(list(losses.values())), abs=1e-12), (n, world)


def test_shard_rejects_bad_input_in_one_line():
    for args in [([], 0, 2), ([1, 2], 2, 2), ([1, 2], -1, 2)]:
        with pytest.raises(ValueError, match="shard: need a non-empty batch") as e:
            shard(*args)
        assert "\n" not in str(e.value)


def test_without_torchrun_the_world_is_one_process_and_hands_everything_back(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    world = distributed.init_from_env("cpu")
    assert (world.rank, world.size, world.is_main, distributed.current()) == (0, 1, True, world)
    assert not torch.distributed.is_initialized()
    model, batch, loss, preds = torch.nn.Linear(2, 1), [3, 1, 2], torch.tensor(0.7, requires_grad=True), np.arange(3.0)
    assert distributed.wrap(model) is model and world.shard(batch) == (batch, 1.0)
    out, seen = world.weigh(loss, 1.0)
    assert out is loss and seen.item() == loss.item()
    assert distributed.mine(batch) == batch and distributed.combine(preds) is preds


# ------------------------------------------------------------------------------------------------ torchrun runs

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-no-dropout"), dropout=False)


def cli_args(experiment, tiny, base, *extra):
    sets = [a for kv in SETTINGS for a in ("--set", kv)]
    return ["train", "--experiment", experiment, "--model", str(tiny), "--recipe", "tuned", "--epochs", "2",
            "--no-progress", *sets, "--run-dir", str(base / "runs"), "--results-dir", str(base / "results"), *extra]


def torchrun(args, data, base):
    """`python -m torch.distributed.run --standalone --nproc_per_node 2 -m mtbert_lib.cli ARGS` on CPU (gloo), with
    the write audit in the workers; returns {rank: [[event, path under base], ...]}."""
    audit = base.parent / f"{base.name}-audit"  # outside the watched folder
    audit.mkdir(parents=True)
    (audit / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(MTBERT_DATA=str(data), OMP_NUM_THREADS="1", MTBERT_AUDIT=str(audit), MTBERT_AUDIT_WATCH=str(base),
               PYTHONPATH=os.pathsep.join([str(audit), str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mtbert_lib.cli", *args]
    r = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    assert r.stdout.count("best dev (epoch") == 1, r.stdout  # rank 0 alone reports
    return {rank: json.loads((audit / f"rank{rank}.json").read_text()) for rank in (0, 1)}


def outputs(base):
    (result,) = (base / "results").glob("*.json")
    (run,) = (base / "runs").iterdir()
    return json.loads(result.read_text()), load_pt(run / "last.safetensors")


def assert_same_training(one, two, measure, label):
    """The results and last checkpoints of a single-process run and a two-process run, within the stated tolerances."""
    (r1, last1), (r2, last2) = outputs(one), outputs(two)
    assert len(r1["epochs"]) == len(r2["epochs"]) == 2 and last1["state"]["step"] == last2["state"]["step"]
    for e1, e2 in zip(r1["epochs"], r2["epochs"]):
        assert e1["step"] == e2["step"] and e1["train_loss"].keys() == e2["train_loss"].keys()
        for t in e1["train_loss"]:
            assert e2["train_loss"][t] == pytest.approx(e1["train_loss"][t], rel=LOSS_RTOL), (e1["epoch"], t)
        for split in ("dev", "train"):
            for t in e1[split]:
                assert e2[split][t] == pytest.approx(e1[split][t], abs=METRIC_TOL), (e1["epoch"], split, t)
    assert r2["best_epoch"] == r1["best_epoch"]
    # the two-process part is on record: from the start, or (a run resumed under torchrun) in what it continued with
    ran = [r2["provenance"], *r2["provenance"].get("resumed_with", [])]
    assert any(p.get("world_size") == 2 for p in ran) and "world_size" not in r1["provenance"]
    worst = {}
    for part in [p for p in ("model", "teacher") if last1[p] is not None or last2[p] is not None]:
        assert last1[part].keys() == last2[part].keys()
        worst[part] = max((last1[part][k] - last2[part][k]).abs().max().item() for k in last1[part])
    s1, s2 = last1["optimizer"]["state"], last2["optimizer"]["state"]
    worst["adam"] = max((s1[i][k].float() - s2[i][k].float()).abs().max().item() for i in s1 for k in s1[i])
    cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in r1["config"].items()})
    torch.manual_seed(cfg.seed)  # as train() does before it builds the model
    initial = training.build_model(cfg).state_dict()
    moved = max((last1["model"][k] - initial[k]).abs().max().item() for k in initial)
    measure(f"DDP 2 gloo processes vs 1 process, {label}: max |Δ| " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
            + f" (tolerance {WEIGHT_TOL:.0e}); "
            f"the weights moved up to {moved:.1e} from their initial values")
    assert max(worst.values()) <= WEIGHT_TOL, worst
    assert moved > 100 * WEIGHT_TOL  # the runs trained: agreeing weights are not the untouched initial ones


@pytest.fixture(scope="module")
def per_task_runs(tiny, small_data_dir, tmp_path_factory):
    """Row 8's recipe (per-task steps, Mean Teacher): one process in this process, then two under torchrun."""
    base = tmp_path_factory.mktemp("ddp-per-task")
    with data_env(small_data_dir):
        assert main(cli_args("rr-balanced-specialized-mt", tiny, base / "one")) == 0
    (base / "two").mkdir()
    writes = torchrun(cli_args("rr-balanced-specialized-mt", tiny, base / "two"), small_data_dir, base / "two")
    return base, writes


def test_two_processes_under_torchrun_end_where_one_process_ends(per_task_runs, measure):
    base, _ = per_task_runs
    assert_same_training(base / "one", base / "two", measure, "per-task steps + Mean Teacher")


def test_only_rank_0_writes_files(per_task_runs):
    base, writes = per_task_runs
    assert writes[1] == [], f"rank 1 wrote: {writes[1]}"
    two = base / "two"
    (result,) = (two / "results").glob("*.json")
    (run,) = (two / "runs").iterdir()
    files = {p.relative_to(two).as_posix() for p in two.rglob("*") if p.is_file()}
    assert files == {f"results/{result.name}", f"runs/{run.name}/best.safetensors", f"runs/{run.name}/last.safetensors"}  # no .tmp left
    renamed = {p.replace(os.sep, "/") for event, p in writes[0] if event == "os.rename"}  # each: a .tmp, then os.replace
    assert files <= renamed, writes[0]


def test_update_sum_resumed_under_torchrun_ends_where_one_process_ends(tiny, small_data_dir, tmp_path, measure):
    """update='sum' (three backward passes per step: the first two inside DDP's no_sync), STS as classification: a
    single-process run stopped after epoch 1 is resumed by two processes, and ends where one process ends."""
    steps_per_epoch = 3  # 7 examples per task in batches of 3: 3 rounds, one step each
    with data_env(small_data_dir):
        assert main(cli_args("rr-balanced", tiny, tmp_path / "one")) == 0
        with interrupt_at_step(steps_per_epoch + 1):
            assert main(cli_args("rr-balanced", tiny, tmp_path / "two")) == 130  # interrupted in epoch 2
    (run,) = (tmp_path / "two" / "runs").iterdir()
    assert load_pt(run / "last.safetensors")["state"]["epoch"] == 1
    writes = torchrun(cli_args("rr-balanced", tiny, tmp_path / "two", "--resume"), small_data_dir, tmp_path / "two")
    assert writes[1] == []
    assert_same_training(tmp_path / "one", tmp_path / "two", measure, "update=sum, resumed after epoch 1")

"""Schedules and batching: single task, uneven and balanced round-robin, length bucketing, (seed, epoch) determinism."""
from collections import Counter

import numpy as np
import pytest

from engine_helpers import data_env, require_minilm, resolve_data_dir
from mtbert_lib.tasks import make_batches
from mtbert_lib.training import TrainConfig, balanced_round_robin, single_task, uneven_round_robin

SIZES = {"sst": 50, "quora": 37, "sts": 23}  # deliberately unequal, none a multiple of the batch size


def synthetic_lengths(sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return {t: rng.integers(3, 60, n) for t, n in sizes.items()}


@pytest.fixture(scope="module")
def sst_lengths(request):
    """Token lengths of the real SST training set (8,544 sentences)."""
    require_minilm(request)
    from mtbert_lib.tasks import encode_split
    from mtbert_lib.tokenizer import load_tokenizer
    with data_env(resolve_data_dir(request)):
        split = encode_split("sst", "train", load_tokenizer("minilm"), 128, report=None)
    assert len(split) == 8544
    return split.lengths()


def padding(batches, lengths) -> int:
    """Pad tokens the batches need: Σ (longest · batch size − Σ lengths)."""
    return int(sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches))


# ------------------------------------------------------------------------------------------------ balanced

@pytest.mark.parametrize("bucket", [0, 50, 2])
@pytest.mark.parametrize("batch_size", [8, 5])
def test_balanced_round_robin(bucket, batch_size):
    lengths = synthetic_lengths()
    n = min(SIZES.values())
    rounds = balanced_round_robin(lengths, batch_size, np.random.default_rng(1), bucket)
    assert len(rounds) == -(-n // batch_size)
    for rnd in rounds:  # one batch per task, always in the config's task order
        assert [t for t, _ in rnd] == list(SIZES)
    for i, task in enumerate(SIZES):
        drawn = [j for rnd in rounds for j in rnd[i][1]]
        assert len(drawn) == n, f"{task}: {len(drawn)} examples, expected N = min(size) = {n}"
        assert len(set(drawn)) == n, f"{task}: duplicates within one epoch"
        assert all(0 <= j < SIZES[task] for j in drawn)
        assert all(isinstance(j, int) for j in drawn)
    # the smallest task is used completely
    smallest = min(SIZES, key=SIZES.get)
    assert sorted(j for rnd in rounds for t, b in rnd if t == smallest for j in b) == list(range(n))


def test_balanced_draws_different_subsets_each_epoch():
    lengths = synthetic_lengths()
    cfg = TrainConfig(tasks=tuple(SIZES), schedule="balanced", batch_size=8, seed=3)
    subsets = [sorted(j for rnd in cfg.sample_epoch(lengths, e) for t, b in rnd if t == "sst" for j in b) for e in range(3)]
    assert subsets[0] != subsets[1] and subsets[1] != subsets[2]


# ------------------------------------------------------------------------------------------------ uneven

@pytest.mark.parametrize("bucket", [0, 50])
def test_uneven_round_robin_covers_everything_once(bucket):
    lengths = synthetic_lengths()
    batch_sizes = {"sst": 8, "quora": 4, "sts": 16}
    n_batches = {t: -(-SIZES[t] // batch_sizes[t]) for t in SIZES}  # 7, 10, 2
    rounds = uneven_round_robin(lengths, batch_sizes, np.random.default_rng(2), bucket)
    assert len(rounds) == max(n_batches.values())  # the epoch lasts as long as the largest task's batch count
    for i, rnd in enumerate(rounds):  # exhausted tasks drop out; the others keep their order
        assert [t for t, _ in rnd] == [t for t in SIZES if i < n_batches[t]]
    for task in SIZES:
        batches = [b for rnd in rounds for t, b in rnd if t == task]
        assert len(batches) == n_batches[task]
        assert all(len(b) <= batch_sizes[task] for b in batches)
        assert sorted(j for b in batches for j in b) == list(range(SIZES[task])), f"{task}: not every example exactly once"


def test_uneven_uses_the_config_batch_sizes():
    cfg = TrainConfig(tasks=tuple(SIZES), schedule="uneven", batch_sizes={"sst": 8, "quora": 32, "sts": 8}).validate()
    rounds = cfg.sample_epoch(synthetic_lengths(), 0)
    assert max(len(b) for rnd in rounds for t, b in rnd if t == "quora") == 32
    assert max(len(b) for rnd in rounds for t, b in rnd if t == "sst") == 8


# ------------------------------------------------------------------------------------------------ single task

@pytest.mark.parametrize("bucket", [0, 50])
def test_single_task_covers_all(bucket):
    lengths = {"sts": synthetic_lengths()["sst"]}
    rounds = single_task(lengths, 8, np.random.default_rng(0), bucket)
    assert all(len(rnd) == 1 and rnd[0][0] == "sts" for rnd in rounds)
    assert len(rounds) == -(-50 // 8)
    assert sorted(j for rnd in rounds for j in rnd[0][1]) == list(range(50))


def test_single_task_rejects_several_tasks():
    lengths = synthetic_lengths()
    with pytest.raises(ValueError):
        single_task(lengths, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="single"):
        TrainConfig(tasks=("sst", "sts"), schedule="single").validate()


# ------------------------------------------------------------------------------------------------ make_batches

def test_make_batches_without_rng_keeps_data_order():
    L = np.array([5, 3, 9, 1, 7])
    assert make_batches(L, 2) == [[0, 1], [2, 3], [4]]
    assert make_batches(L, 2, drop_last=True) == [[0, 1], [2, 3]]
    assert make_batches(L, 2, bucket=-1) == [[3, 1], [0, 4], [2]]  # evaluation: sorted by length over the whole set
    assert make_batches(np.array([], dtype=int), 4, np.random.default_rng(0), bucket=50) == []


def test_bucketing_keeps_the_examples_and_cuts_padding_on_real_sst(sst_lengths):
    plain = make_batches(sst_lengths, 8, np.random.default_rng(0), bucket=0)
    bucketed = make_batches(sst_lengths, 8, np.random.default_rng(0), bucket=50)
    n = len(sst_lengths)
    assert sorted(j for b in bucketed for j in b) == list(range(n))  # same multiset: every example exactly once
    assert sorted(j for b in plain for j in b) == list(range(n))
    assert len(bucketed) == len(plain) == -(-n // 8)
    pad_plain, pad_bucketed = padding(plain, sst_lengths), padding(bucketed, sst_lengths)
    print(f"\nSST train, batch 8: {pad_plain} pad tokens unbucketed, {pad_bucketed} with bucket=50")
    assert pad_bucketed < 0.5 * pad_plain
    # within a bucket of 50 batches the batches are length-sorted, so most batches are nearly uniform
    spread = np.array([sst_lengths[b].max() - sst_lengths[b].min() for b in bucketed])
    assert np.median(spread) <= 2


def test_bucketed_batch_order_is_shuffled(sst_lengths):
    batches = make_batches(sst_lengths, 8, np.random.default_rng(0), bucket=50)
    longest = np.array([sst_lengths[b].max() for b in batches])
    assert not (np.all(np.diff(longest) >= 0) or np.all(np.diff(longest) <= 0))  # batches are not served sorted


# ------------------------------------------------------------------------------------------------ determinism

@pytest.mark.parametrize("schedule", ["single", "uneven", "balanced"])
def test_same_seed_and_epoch_same_batches(schedule):
    lengths = synthetic_lengths() if schedule != "single" else {"sst": synthetic_lengths()["sst"]}
    cfg = TrainConfig(tasks=tuple(lengths), schedule=schedule, batch_size=8, seed=7,
                      batch_sizes={"sst": 8, "quora": 4, "sts": 16} if schedule == "uneven" else None).validate()
    a, b = cfg.sample_epoch(lengths, 2), cfg.sample_epoch(lengths, 2)
    assert a == b
    assert cfg.sample_epoch(lengths, 3) != a  # another epoch, another order
    other_seed = TrainConfig(**{**cfg.__dict__, "seed": 8})
    assert other_seed.sample_epoch(lengths, 2) != a


def test_sample_epoch_is_independent_of_history():
    """The sampler's whole state is (seed, epoch): sampling epoch 1 first or after epoch 0 gives the same batches."""
    lengths = synthetic_lengths()
    cfg = TrainConfig(tasks=tuple(SIZES), schedule="balanced", batch_size=8)
    direct = cfg.sample_epoch(lengths, 1)
    cfg.sample_epoch(lengths, 0)
    assert cfg.sample_epoch(lengths, 1) == direct
    assert Counter(t for rnd in direct for t, _ in rnd) == {t: len(direct) for t in SIZES}


# ------------------------------------------------------------------------------------------------ rounds_limit

def test_rounds_limit_keeps_the_first_rounds_of_the_same_epoch():
    """`make run`'s short budget: the first N rounds of the epoch the full run would draw (from all the data)."""
    lengths = synthetic_lengths({"sst": 400, "quora": 900, "sts": 300})
    full = TrainConfig(seed=3, batch_size=8)
    short = TrainConfig(seed=3, batch_size=8, rounds_limit=10)
    for epoch in (0, 1):
        a, b = full.sample_epoch(lengths, epoch), short.sample_epoch(lengths, epoch)
        assert len(a) == 38 and len(b) == 10 and b == a[:10]
    # the batches come from the whole data set, not from its first rows (unlike train_limit)
    drawn = [j for rnd in short.sample_epoch(lengths, 0) for t, b in rnd if t == "quora" for j in b]
    assert max(drawn) >= 300
    assert TrainConfig(seed=3, batch_size=8, rounds_limit=1000).sample_epoch(lengths, 0) == full.sample_epoch(lengths, 0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_rounds_limit_is_checked(bad):
    with pytest.raises(ValueError, match="rounds_limit must be"):
        TrainConfig(rounds_limit=bad).validate()


def test_rounds_limit_sets_the_learning_rate_schedule(request, tmp_path):
    """The linear decay ends with the budget's last step, not at the end of the whole epoch."""
    from engine_helpers import write_tiny_checkpoint
    from mtbert_lib.training import start_run
    tiny = write_tiny_checkpoint(tmp_path / "tiny")
    cfg = dict(name="x", model=str(tiny), tasks=("sst", "sts"), eval_tasks=("sst",), epochs=2, train_limit=80,
               dev_limit=8, batch_size=8, bucket=0, lr_decay="linear")
    with data_env(resolve_data_dir(request)):
        full = start_run(TrainConfig(**cfg), tmp_path / "runs", resume=False, log=lambda *a: None)
        short = start_run(TrainConfig(**cfg, rounds_limit=3), tmp_path / "runs", resume=False, log=lambda *a: None)
    assert full.total_steps == 2 * 10 * 2 and short.total_steps == 2 * 3 * 2  # epochs x rounds x tasks

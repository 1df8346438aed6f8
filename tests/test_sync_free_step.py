"""A training step that never waits for the device (issue 21, part 1), shown on the CPU.

* Scalar reads: every way a tensor's value reaches Python (`.item()`, `bool`, `float`, `int`, `.tolist()`,
  `.cpu()`, `.numpy()`) is counted while `train_step` runs; on a GPU each would block the host until the card has
  caught up. For every precision and update mode (Mean Teacher on; SMART once) a step reads nothing: the losses and
  fp16's step flags stay on the device until the epoch record reads them in bulk (counted too, to show the counter
  works).
* Operator dispatches: the aten operators one step issues (forward, loss, backward, AdamW), counted with a
  TorchDispatchMode, against a Hugging Face BertModel at its best on the same tiny checkpoint (sdpa attention, fused
  torch AdamW, gradients set to None): ours must not issue more.

The runs use the tiny random BERT and the small data folder of the wiring tests (tests/wiring_helpers.py).
"""
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mtbert_lib.experiments  # noqa: F401  notebook 11's rows (pcgrad, SMART) join the loop's tables
from engine_helpers import data_env
from mtbert_lib.training import EpochRecord, TrainConfig, start_run, train_step

pytestmark = pytest.mark.usefixtures("one_thread")

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy")


def quiet(*_):
    pass


@contextmanager
def counting_reads():
    """counts[name] += 1 for each scalar read while on[0] is True."""
    counts, on = Counter(), [False]
    with pytest.MonkeyPatch.context() as mp:
        for name in READS:
            real = getattr(torch.Tensor, name)

            def read(self, *a, _real=real, _name=name, **k):
                if on[0]:
                    counts[_name] += 1
                return _real(self, *a, **k)

            mp.setattr(torch.Tensor, name, read)
        yield counts, on


def config(tiny_bert_dir, **changes):
    base = dict(name="sync", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst",),
                schedule="balanced", batch_size=2, epochs=1, max_length=32, precision="fp32", pooling="mean",
                lr=2e-3, train_eval_limit=4, eval_batch_size=16, consistency="kl", device="cpu")
    return TrainConfig(**{**base, **changes})


def run_steps(cfg, tmp_path, counted: int = 3, warm: int = 1):
    """start_run, then `warm` steps uncounted and `counted` steps counted; returns (counts, R, record)."""
    from mtbert_lib.training import UPDATES
    R = start_run(cfg, tmp_path / "runs", False, quiet)
    record = EpochRecord(cfg.tasks, 0, R.scaler, read_every=10**6)  # the test reads the record itself, below
    groups = [g for rnd in cfg.sample_epoch(R.lengths, 0) for g in UPDATES[cfg.update].steps(rnd)]
    assert len(groups) >= warm + counted
    R.model.train()
    with counting_reads() as (counts, on):
        for i, group in enumerate(groups[:warm + counted]):
            on[0] = i >= warm
            train_step(R, R.model, group, record, 0)
        on[0] = False
        steps_counts = Counter(counts)
        on[0] = True
        record.read(R.state)  # the bulk read: one transfer (and it must count, or the counter is blind)
        on[0] = False
    return steps_counts, counts - steps_counts, R, record


@pytest.mark.parametrize("update", ["per_task", "sum", "pcgrad"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_step_reads_nothing_back(tiny_bert_dir, small_data_dir, tmp_path, precision, update):
    cfg = config(tiny_bert_dir, precision=precision, update=update)
    with data_env(small_data_dir):
        in_steps, in_read, R, record = run_steps(cfg, tmp_path)
    assert dict(in_steps) == {}, f"{precision}/{update}: scalar reads inside train_step: {dict(in_steps)}"
    assert sum(in_read.values()) >= 1  # the record's bulk read is seen by the counter
    assert sum(len(v) for v in record.losses.values()) == len(record.order) >= 4  # and it read every loss
    if update == "pcgrad":
        assert len(record.conflicts) == 4 and all(isinstance(c, float) for c in record.conflicts)


def test_smart_step_reads_nothing_back(tiny_bert_dir, small_data_dir, tmp_path):
    cfg = config(tiny_bert_dir, smart_weight=1.0, consistency="none")
    with data_env(small_data_dir):
        in_steps, _, _, _ = run_steps(cfg, tmp_path, counted=2)
    assert dict(in_steps) == {}


def test_the_counter_sees_the_old_per_batch_read(tiny_bert_dir, small_data_dir, tmp_path, monkeypatch):
    """The read the loop used to do after every batch (bool(isfinite(loss)), loss.item()) is counted."""
    real = EpochRecord.batch

    def old_batch(self, task, loss, step):
        if bool(torch.isfinite(loss)):
            loss.item()
        return real(self, task, loss, step)

    monkeypatch.setattr(EpochRecord, "batch", old_batch)
    with data_env(small_data_dir):
        in_steps, _, _, _ = run_steps(config(tiny_bert_dir), tmp_path, counted=2)
    assert in_steps == Counter({"__bool__": 2, "item": 2})


# ------------------------------------------------------------------------------------------------ dispatches

class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def ours_per_step(cfg, tmp_path, steps: int = 3) -> float:
    from mtbert_lib.training import UPDATES
    R = start_run(cfg, tmp_path / "runs", False, quiet)
    record = EpochRecord(cfg.tasks, 0, R.scaler, read_every=10**6)
    groups = [g for rnd in cfg.sample_epoch(R.lengths, 0) for g in UPDATES[cfg.update].steps(rnd)]
    R.model.train()
    train_step(R, R.model, groups[0], record, 0)  # lazy state (AdamW moments) made outside the count
    with CountOps() as c:
        for g in groups[1:1 + steps]:
            train_step(R, R.model, g, record, 0)
    return c.n / steps, R, groups[1:1 + steps]


def hf_per_step(tiny_bert_dir, R, groups) -> float:
    """Hugging Face at its best on the same checkpoint and the same SST batches: BertModel (sdpa), a linear head on
    the mean-pooled output, cross-entropy, torch.optim.AdamW(fused=True), zero_grad(set_to_none=True)."""
    from transformers import BertModel as HFBert
    from mtbert_lib.model import mean_pool
    torch.manual_seed(0)
    hf = HFBert.from_pretrained(str(tiny_bert_dir), attn_implementation="sdpa", add_pooling_layer=False).train()
    head = torch.nn.Linear(hf.config.hidden_size, 5)
    opt = torch.optim.AdamW(list(hf.parameters()) + list(head.parameters()), lr=2e-3, fused=True)

    def step(idx):
        b = R.batch("sst", idx)[0]["single"], R.train_sets["sst"].labels[idx]
        enc, y = b
        out = hf(**enc).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(mean_pool(out, enc["attention_mask"])), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(groups[0][0][1])
    with CountOps() as c:
        for g in groups:
            step(g[0][1])
    return c.n / len(groups)


def test_dispatches_per_step_at_most_hugging_face_at_its_best(tiny_bert_dir, small_data_dir, tmp_path, measure):
    cfg = config(tiny_bert_dir, tasks=("sst",), eval_tasks=("sst",), schedule="single", consistency="none",
                 dropout=0.1, pooling="mean")
    with data_env(small_data_dir):
        ours, R, groups = ours_per_step(cfg, tmp_path, steps=2)
        theirs = hf_per_step(tiny_bert_dir, R, groups)
    measure(f"aten dispatches per SST training step, tiny BERT fp32: mtbert {ours:.0f}, Hugging Face at its best {theirs:.0f}")
    assert ours <= theirs, (ours, theirs)


# ------------------------------------------------------------------------------------------------ deferred checks

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_non_finite_loss_still_stops_the_run_within_read_every_steps(tiny_bert_dir, small_data_dir, tmp_path,
                                                                       monkeypatch, precision):
    import math
    import mtbert_lib.training as training
    from mtbert_lib.multitask import MultitaskBERT
    from mtbert_lib.training import NonFiniteLoss, train
    real, calls, steps = MultitaskBERT.loss, {"n": 0}, []

    def loss(self, task, outputs, labels):
        calls["n"] += 1
        value = real(self, task, outputs, labels)
        return value * math.nan if calls["n"] == 2 else value  # the second batch (step 1)

    real_step = training.train_step
    monkeypatch.setattr(MultitaskBERT, "loss", loss)
    monkeypatch.setattr(training, "train_step", lambda *a, **k: steps.append(1) or real_step(*a, **k))
    cfg = config(tiny_bert_dir, precision=precision, consistency="none", read_every=3, epochs=2)
    with data_env(small_data_dir), pytest.raises(NonFiniteLoss) as e:
        train(cfg, tmp_path / "runs", None, progress=False, log=quiet)
    assert "non-finite loss (nan) at step 1, epoch 0, task quora" in str(e.value)
    assert len(steps) == 3  # read after the 3rd step: the run stopped within read_every steps of the bad loss

"""The graph-ready whole step (mtbert_lib/graphs.py; compile='cuda-graph'), on the CPU.

* It is the training step: a run with compile='cuda-graph' (on the CPU the graph-ready step runs eagerly) records
  the same per-batch losses and dev metrics as the plain loop, within a float32 tolerance (its learning rates, λ
  and EMA weight are float32 device tensors where the loop passes Python floats).
* It is one graph: torch.compile(fullgraph=True) traces the whole of it — student and teacher forward, losses,
  backward, AdamW, EMA — without a graph break (fullgraph raises at the first one), and the traced step computes
  what the eager one does. The CUDA graph capture itself needs a GPU: benchmarks/gpu_check.sh.
"""
import copy
from dataclasses import replace

import pytest
import torch

import mtbert_lib.experiments  # noqa: F401  notebook 11's rows (pcgrad, SMART) join the loop's tables
from engine_helpers import data_env
from mtbert_lib.graphs import WholeStep, shape_key
from mtbert_lib.training import TrainConfig, UPDATES, set_lr, start_run, train

pytestmark = pytest.mark.usefixtures("one_thread")


def quiet(*_):
    pass


def config(tiny_bert_dir, **changes):
    base = dict(name="graph", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst", "quora", "sts"),
                schedule="balanced", batch_size=4, epochs=2, max_length=32, precision="fp32", pooling="mean",
                lr=2e-3, train_eval_limit=4, eval_batch_size=16, consistency="kl", device="cpu", warmup=0.2,
                lr_decay="linear")
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("update", ["per_task", "sum"])
def test_the_graph_ready_step_trains_as_the_loop_does(tiny_bert_dir, small_data_dir, tmp_path, update):
    cfg = config(tiny_bert_dir, update=update)
    with data_env(small_data_dir):
        plain = train(cfg, tmp_path / "a", None, progress=False, log=quiet)
        graph = train(replace(cfg, compile="cuda-graph"), tmp_path / "b", None, progress=False, log=quiet)
    for ea, eb in zip(plain["epochs"], graph["epochs"]):
        assert ea["step_tasks"] == eb["step_tasks"] and ea["step"] == eb["step"]
        for task in cfg.tasks:
            assert eb["step_losses"][task] == pytest.approx(ea["step_losses"][task], rel=1e-4, abs=1e-5)
            assert eb["dev"][task] == pytest.approx(ea["dev"][task], rel=1e-3, abs=1e-3)


def test_cuda_graph_mode_refuses_what_it_cannot_capture(tiny_bert_dir):
    for bad in (dict(update="pcgrad"), dict(precision="fp16"), dict(smart_weight=1.0), dict(optimizer_impl="foreach")):
        with pytest.raises(ValueError, match="cuda-graph"):
            config(tiny_bert_dir, compile="cuda-graph", **bad).validate()


@pytest.mark.slow
def test_the_whole_step_traces_as_one_graph(tiny_bert_dir, small_data_dir, tmp_path, monkeypatch):
    """fullgraph=True: a graph break anywhere in the step (a .item(), a branch on a tensor, an unsupported call)
    raises instead of splitting the step. backend='eager' checks the trace without compiling kernels (fast)."""
    import torch._dynamo
    monkeypatch.setattr(torch._dynamo.config, "trace_autograd_ops", True)  # Tensor.backward() inside the trace
    cfg = config(tiny_bert_dir, tasks=("sts",), eval_tasks=("sts",), schedule="single", compile="cuda-graph")
    with data_env(small_data_dir):
        R = start_run(cfg, tmp_path / "runs", False, quiet)
    group = cfg.sample_epoch(R.lengths, 0)[0]
    batches = [[(task, R.batch(task, idx)[0]) for task, idx in group]] * 2  # one shape: one trace, run twice
    start = copy.deepcopy({"model": R.model.state_dict(), "teacher": R.teacher.model.state_dict()})

    def two_steps(run):
        torch.manual_seed(7)
        R.model.load_state_dict(start["model"]); R.teacher.model.load_state_dict(start["teacher"])
        R.opt.state.clear()
        whole = WholeStep(R)
        out = []
        for step, b in enumerate(batches):
            set_lr(R.opt, cfg, step, R.total_steps)
            whole.set_scalars(step)
            R.model.zero_grad(set_to_none=True)
            out.append(run(whole, b))
        return torch.cat(out), [p.detach().clone() for p in R.teacher.model.parameters()]

    torch._dynamo.reset()
    compiled = torch.compile(lambda whole, b: whole.run(b), fullgraph=True, backend="eager")
    traced_losses, traced_teacher = two_steps(compiled)
    eager_losses, eager_teacher = two_steps(lambda whole, b: whole.run(b))
    torch._dynamo.reset()
    assert len(shape_key(batches[0])) == 1 and not torch.equal(traced_losses[0], traced_losses[1])  # it learned
    torch.testing.assert_close(traced_losses, eager_losses, rtol=1e-5, atol=1e-6)
    for a, b in zip(traced_teacher, eager_teacher):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

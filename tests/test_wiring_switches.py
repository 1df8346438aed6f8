"""Table 1's switches inside `train()`, on the first rows of the real task files and a tiny random BERT
(tests/wiring_helpers.py): `update` sum vs per_task, the frozen encoder, which parameters get weight decay, the
examples each schedule trains on per epoch, and the learning-rate knobs (head_lr, warm-up, linear decay) through
an interrupted-and-resumed run.
"""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import mtbert_lib.training as training
from engine_helpers import data_env, strip_timing
from mtbert_lib.model import BertModel
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.tasks import collate, encode_split
from mtbert_lib.tokenizer import load_tokenizer
from mtbert_lib.training import TrainConfig, run_name, train
from wiring_helpers import TrainProbe, load_pt, quiet

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {"sst": 12, "quora": 20, "sts": 8}  # training rows per task in the small data folder (SMALL_ROWS)
# Fused AdamW step vs torch.optim.AdamW(foreach=False) from the same parameters and gradients, one step: measured max
# abs difference 0 to 1.5e-8 on parameters of size ~0.05-1 (float32 rounding of the same arithmetic).
ADAMW_STEP_TOL = 1e-7
# The gradient of the round's summed losses vs the gradients of each task's loss computed one at a time and added:
# measured max abs difference ~1e-9 (the same operations, accumulated in another order).
GRAD_TOL = 1e-7


def config(tiny_bert_dir, **changes):
    base = dict(name="wiring", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst",),
                schedule="balanced", batch_size=4, epochs=1, max_length=32, precision="fp32", pooling="mean",
                dropout=0.0, lr=1e-3, weight_decay=0.1, train_eval_limit=4, eval_batch_size=16)
    return TrainConfig(**{**base, **changes})


def run(cfg, small_data_dir, base, params=True):
    with pytest.MonkeyPatch.context() as mp, data_env(small_data_dir):
        probe = TrainProbe(mp, params=params)
        result = train(cfg, base / "runs", base / "results", progress=False, log=quiet)
    return probe, result


def no_decay(name: str) -> bool:
    """BERT's convention, by name: biases and LayerNorm weights get no weight decay."""
    return name.endswith(".bias") or name.endswith(("LayerNorm.weight", "norm.norm.weight"))


def manual_gradients(cfg, small_data_dir, params: dict, batches) -> dict:
    """Σ over `batches` [(task, idx)] of the gradient of that batch's loss, each computed on its own (a fresh model
    with `params`, losses written out with torch.nn.functional), at the same parameters."""
    with data_env(small_data_dir):
        tok = load_tokenizer(cfg.model)
        sets = {t: encode_split(t, "train", tok, cfg.max_length, cfg.train_limit, report=None) for t in cfg.tasks}
    model = MultitaskBERT(BertModel.from_pretrained(cfg.model), cfg.pooling, cfg.pair_encoding, cfg.sts_head, 0.0)
    model.load_state_dict(params)
    model.train()
    total = {}
    for task, idx in batches:
        b = collate(sets[task], idx, tok)
        out, y = model(task, b), b["labels"]
        if task == "sst":
            loss = F.cross_entropy(out, y)
        elif task == "quora":
            loss = F.binary_cross_entropy_with_logits(out, y.float())
        else:  # the 6-class STS head of rr-balanced: classes 0..5 are the rounded similarities
            loss = F.cross_entropy(out, y.round().long()) if cfg.sts_head == "classification" else F.mse_loss(out, y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                total[n] = total.get(n, 0) + p.grad.detach().clone()
    return total


def reference_adamw_step(cfg, before: dict, grads: dict) -> dict:
    """One step of torch.optim.AdamW (non-fused, foreach=False) from `before` with `grads`, groups made by name."""
    params = {n: before[n].clone().requires_grad_(True) for n in grads}
    groups = [{"params": [p for n, p in params.items() if not no_decay(n)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in params.items() if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, foreach=False)
    for n, p in params.items():
        p.grad = grads[n].clone()
    opt.step()
    return {n: p.detach() for n, p in params.items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ------------------------------------------------------------------------------------------------ update sum / per_task

@pytest.fixture(scope="module")
def update_runs(tiny_bert_dir, small_data_dir, tmp_path_factory):
    """Table 1's rr-balanced (update='sum', 6-class STS head) and the same run with update='per_task'."""
    out = {}
    for update in ("sum", "per_task"):
        cfg = config(tiny_bert_dir, update=update, sts_head="classification", pooling="pooler")
        out[update] = (cfg, *run(cfg, small_data_dir, tmp_path_factory.mktemp(update)))
    return out


def test_update_sum_takes_one_step_per_round_with_the_summed_gradient(update_runs, small_data_dir, measure):
    cfg, probe, result = update_runs["sum"]
    rounds = probe.rounds[0]
    assert len(rounds) == 2 and all([t for t, _ in r] == ["sst", "quora", "sts"] for r in rounds)  # N = 8, batch 4
    assert len(probe.steps) == len(rounds) == result["epochs"][0]["step"]  # one optimizer step per round
    assert [(t, n) for t, _, n in probe.losses] == [(t, len(i)) for r in rounds for t, i in r]  # every batch trained
    first = probe.steps[0]
    assert first["before"].keys() == probe.initial.keys()
    assert max_diff(first["before"], probe.initial) == 0.0
    # the gradient at the step: every task's head and the encoder, = Σ of the three tasks' gradients
    assert {n.split(".")[1] for n in first["grads"] if n.startswith("heads.")} == {"sst", "quora", "sts"}
    expected = manual_gradients(cfg, small_data_dir, first["before"], rounds[0])
    d_grad = max_diff(first["grads"], expected)
    sst_only = manual_gradients(cfg, small_data_dir, first["before"], rounds[0][:1])
    gap = max((first["grads"][n] - sst_only[n]).abs().max().item() for n in sst_only)
    # the parameters after the round: one AdamW step with that gradient (weight decay on matrices only)
    after = reference_adamw_step(cfg, first["before"], first["grads"])
    d_param = max_diff({n: first["after"][n] for n in after}, after)
    untouched = [n for n in first["before"] if n not in first["grads"]]
    assert untouched == ["heads.cfimdb.weight", "heads.cfimdb.bias"]
    measure(f"update=sum, round 1: gradient vs Σ of per-task gradients {d_grad:.2e} (sst alone differs by {gap:.2e}); "
            f"parameters vs torch.optim.AdamW step {d_param:.2e}")
    assert gap > 1e3 * GRAD_TOL
    assert d_grad <= GRAD_TOL
    assert d_param <= ADAMW_STEP_TOL
    assert all(torch.equal(first["after"][n], first["before"][n]) for n in untouched)


def test_update_per_task_takes_one_step_per_batch(update_runs, small_data_dir):
    cfg, probe, result = update_runs["per_task"]
    batches = [b for r in probe.rounds[0] for b in r]
    assert len(batches) == 6
    assert len(probe.steps) == len(batches) == result["epochs"][0]["step"]
    for (task, _), step in zip(batches, probe.steps):  # each step: the encoder and that task's head only
        assert {n.split(".")[1] for n in step["grads"] if n.startswith("heads.")} == {task}
        assert all(n in step["grads"] for n in step["before"] if not n.startswith("heads."))
    expected = manual_gradients(cfg, small_data_dir, probe.initial, batches[:1])
    assert max_diff(probe.steps[0]["grads"], expected) <= GRAD_TOL
    # the second step starts where the first ended, with the second batch's gradient there
    second = manual_gradients(cfg, small_data_dir, probe.steps[0]["after"], batches[1:2])
    assert max_diff(probe.steps[1]["before"], probe.steps[0]["after"]) == 0.0
    assert max_diff(probe.steps[1]["grads"], second) <= GRAD_TOL


def test_weight_decay_only_on_matrices_as_train_uses_it(update_runs):
    cfg, probe, _ = update_runs["sum"]
    assert cfg.weight_decay == 0.1
    seen = []
    for g in probe.optimizer.param_groups:
        names = probe.names_of(g["params"])
        seen += names
        want = {0.0} if g["weight_decay"] == 0.0 else {cfg.weight_decay}
        assert {0.0 if no_decay(n) else cfg.weight_decay for n in names} == want, (g["weight_decay"], names)
        assert g["lr"] == cfg.lr
    assert sorted(seen) == sorted(n for n, _ in probe.model.named_parameters())  # each parameter once
    decayed = {n for g in probe.optimizer.param_groups if g["weight_decay"] > 0 for n in probe.names_of(g["params"])}
    assert "encoder.embeddings.word_embeddings.weight" in decayed and "heads.sst.weight" in decayed
    for n in ("encoder.embeddings.LayerNorm.weight", "encoder.encoder.layers.0.ffn_norm.norm.weight",
              "encoder.pooler.dense.bias", "heads.sts.bias"):
        assert n not in decayed


# ------------------------------------------------------------------------------------------------ frozen encoder

def test_frozen_encoder_stays_unchanged_and_heads_learn(tiny_bert_dir, small_data_dir, tmp_path):
    cfg = config(tiny_bert_dir, freeze_encoder=True, lr=1e-2)
    probe, result = run(cfg, small_data_dir, tmp_path, params=False)
    assert len(probe.steps) == 6
    trained = {n for g in probe.optimizer.param_groups for n in probe.names_of(g["params"])}
    assert trained == {f"heads.{t}.{w}" for t in ("sst", "cfimdb", "quora", "sts") for w in ("weight", "bias")}
    last = load_pt(tmp_path / "runs" / run_name(cfg) / "last.safetensors")["model"]
    pretrained = BertModel.from_pretrained(cfg.model).state_dict()
    for k, v in pretrained.items():
        assert torch.equal(last[f"encoder.{k}"], v), f"frozen encoder weight {k} changed"
    for t in ("sst", "quora", "sts"):
        assert not torch.equal(last[f"heads.{t}.weight"], probe.initial[f"heads.{t}.weight"]), f"head {t} did not learn"
    assert torch.equal(last["heads.cfimdb.weight"], probe.initial["heads.cfimdb.weight"])  # not trained on


# ------------------------------------------------------------------------------------------------ schedules

@pytest.mark.parametrize("schedule,changes,per_epoch", [
    ("single", dict(tasks=("sst",)), {"sst": 12}),
    ("uneven", dict(batch_sizes={"sst": 4, "quora": 6, "sts": 3}), SIZES),  # all of every set
    ("balanced", dict(), {"sst": 8, "quora": 8, "sts": 8}),  # N = the smallest set (STS, 8) from each
])
def test_examples_per_epoch_of_each_schedule(schedule, changes, per_epoch, tiny_bert_dir, small_data_dir, tmp_path):
    cfg = config(tiny_bert_dir, schedule=schedule, epochs=2, **changes)
    probe, result = run(cfg, small_data_dir, tmp_path, params=False)
    trained = [(t, n) for t, _, n in probe.losses]
    assert trained == [(t, len(i)) for e in (0, 1) for r in probe.rounds[e] for t, i in r], "the loop skipped batches"
    drawn = {}
    for e in (0, 1):
        seen = {t: [j for r in probe.rounds[e] for task, i in r if task == t for j in i] for t in cfg.tasks}
        assert {t: len(v) for t, v in seen.items()} == per_epoch, f"epoch {e}"
        for t, v in seen.items():
            assert len(set(v)) == len(v) and all(0 <= j < SIZES[t] for j in v), f"{t}: duplicates or out of range"
        drawn[e] = seen
    steps_per_epoch = sum(len(r) for r in probe.rounds[0])
    assert [e["step"] for e in result["epochs"]] == [steps_per_epoch, 2 * steps_per_epoch]
    if schedule == "uneven":  # tasks take turns until the largest set (Quora: 20 in batches of 6) is used up
        assert len(probe.rounds[0]) == 4 and [len(r) for r in probe.rounds[0]] == [3, 3, 3, 1]
    if schedule == "balanced":  # another draw of 8 of Quora's 20 in epoch 2; all of STS every epoch
        assert sorted(drawn[0]["sts"]) == sorted(drawn[1]["sts"]) == list(range(8))
        assert sorted(drawn[0]["quora"]) != sorted(drawn[1]["quora"])


# ------------------------------------------------------------------------------------------------ lr knobs + resume

# tasks sst + sts, balanced: N = 8, batch 4 -> 2 rounds x 2 tasks = 4 steps per epoch, 8 in 2 epochs;
# warmup 0.25 -> 2 warm-up steps, then linear decay to 0 at the end
LR_FACTORS = [1 / 2, 2 / 2, 6 / 6, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]


def test_head_lr_warmup_and_decay_reach_the_loop_and_resume(tiny_bert_dir, small_data_dir, tmp_path):
    cfg = config(tiny_bert_dir, tasks=("sst", "sts"), epochs=2, lr=1e-3, head_lr=5e-3, warmup=0.25,
                 lr_decay="linear", dropout=0.2)
    probe_a, result_a = run(cfg, small_data_dir, tmp_path / "A", params=False)
    assert len(probe_a.steps) == len(LR_FACTORS)
    heads = [all(n.startswith("heads.") for n in probe_a.names_of(g["params"])) for g in probe_a.optimizer.param_groups]
    assert sorted(heads) == [False, False, True, True]  # (decay, no decay) x (encoder, heads)
    for step, f in zip(probe_a.steps, LR_FACTORS):
        assert step["lrs"] == pytest.approx([(cfg.head_lr if h else cfg.lr) * f for h in heads], rel=1e-12)

    calls = {"n": 0}

    class Interrupting(training.AdamW):
        def step(self, closure=None):
            calls["n"] += 1
            if calls["n"] == 6:  # the middle of epoch 2
                raise KeyboardInterrupt
            return super().step(closure)

    B = tmp_path / "B"
    with pytest.MonkeyPatch.context() as mp, data_env(small_data_dir):
        mp.setattr(training, "AdamW", Interrupting)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, B / "runs", B / "results", progress=False, log=quiet)
    with pytest.MonkeyPatch.context() as mp, data_env(small_data_dir):
        probe_b = TrainProbe(mp, params=False)
        result_b = train(cfg, B / "runs", B / "results", resume=True, progress=False, log=quiet)
    assert [s["lrs"] for s in probe_b.steps] == [s["lrs"] for s in probe_a.steps[4:]]  # the schedule went on
    assert strip_timing(result_a["epochs"]) == strip_timing(result_b["epochs"])
    last_a, last_b = (load_pt(d / "runs" / run_name(cfg) / "last.safetensors") for d in (tmp_path / "A", B))
    for k, v in last_a["model"].items():
        assert torch.equal(v, last_b["model"][k]), k
    sa, sb = last_a["optimizer"], last_b["optimizer"]
    assert sa["param_groups"] == sb["param_groups"]
    for i, st in sa["state"].items():
        for key, v in st.items():
            assert torch.equal(v, sb["state"][i][key]), (i, key)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_eval_before_scores_the_untrained_model(precision, tiny_bert_dir, small_data_dir, tmp_path):
    """`eval_before` (make run prints it): dev scored before the first step, recorded as dev_before; the untrained
    model's dev score equals evaluate() on a fresh model built the same way."""
    from mtbert_lib.training import build_model, evaluate
    from mtbert_lib.tasks import encode_split
    from mtbert_lib.tokenizer import load_tokenizer
    cfg = config(tiny_bert_dir, eval_before=True, precision=precision, eval_tasks=("sst", "sts"))
    _, result = run(cfg, small_data_dir, tmp_path, params=False)
    assert set(result["dev_before"]) == {"sst", "sts"}
    if precision == "fp32":
        torch.manual_seed(cfg.seed)
        tok = load_tokenizer(cfg.model)
        with data_env(small_data_dir):
            dev = {t: encode_split(t, "dev", tok, cfg.max_length, report=None) for t in cfg.eval_tasks}
            ref = evaluate(build_model(cfg), dev, tok, cfg.eval_batch_size, "cpu", "fp32")
        assert result["dev_before"] == pytest.approx(ref, abs=1e-9)

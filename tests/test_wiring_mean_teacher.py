"""Mean Teacher inside `train()` (the functions themselves are tested in test_engine_mean_teacher.py): the teacher
after each step is the warm-up EMA of the student, `ema_warmup`, `consistency_weight` and `consistency_rampup` reach
the loop, and best.pt keeps the teacher's weights when `eval_teacher` is set, the student's when not.
A tiny random BERT on the first rows of the real task files (tests/wiring_helpers.py).
"""
import math

import pytest
import torch

from engine_helpers import data_env
from mtbert_lib.training import TrainConfig, run_name, train
from wiring_helpers import TrainProbe, load_pt, quiet

pytestmark = pytest.mark.usefixtures("one_thread")

# The teacher after update k vs the update recomputed in float64 from the recorded teacher before it and the student
# after step k: measured max abs difference 6.0e-8, half a float32 ulp in [1, 2) (the rounding of the float32 result;
# parameters reach ~1.2). The bound is one ulp there; a wrong decay is off by ~6e-4.
EMA_TOL = 1.2e-7

# ema_decay 0.8 with warm-up: decay_k = min(0.8, 1 - 1/(k+1)) at the k-th update (k = the optimizer steps so far,
# Tarvainen & Valpola's global_step), so 1/2, 2/3, 3/4, then capped at 0.8
WARMUP_DECAYS = [1 / 2, 2 / 3, 3 / 4, 0.8, 0.8, 0.8]
# consistency_weight 2, consistency_rampup 4: λ(step) = 2 · exp(−5 (1 − min(step / 4, 1))²) at steps 0..5
RAMPED_LAMBDAS = [2 * math.exp(-5.0), 2 * math.exp(-5 * 0.75 ** 2), 2 * math.exp(-5 * 0.5 ** 2),
                  2 * math.exp(-5 * 0.25 ** 2), 2.0, 2.0]


def config(tiny_bert_dir, **changes):
    base = dict(name="mt-wiring", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"), eval_tasks=("sst", "sts"),
                schedule="balanced", batch_size=4, epochs=1, max_length=32, precision="fp32", pooling="mean",
                dropout=0.3, lr=2e-3, train_eval_limit=4, eval_batch_size=16, consistency="kl")
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def mt_runs(tiny_bert_dir, small_data_dir, tmp_path_factory):
    """'ramped': warm-up EMA, λ ramped up, teacher evaluated and kept, one step per batch (6 steps);
    'plain': no EMA warm-up, no ramp-up, the student evaluated and kept, update='sum' (2 steps)."""
    cfgs = {"ramped": config(tiny_bert_dir, ema_decay=0.8, ema_warmup=True, consistency_weight=2.0,
                             consistency_rampup=4, eval_teacher=True, sts_head="classification"),
            "plain": config(tiny_bert_dir, ema_decay=0.8, ema_warmup=False, consistency_weight=0.5,
                            consistency_rampup=0, eval_teacher=False, update="sum", consistency="mse")}
    out = {}
    for name, cfg in cfgs.items():
        base = tmp_path_factory.mktemp(name)
        with pytest.MonkeyPatch.context() as mp, data_env(small_data_dir):
            probe = TrainProbe(mp)
            result = train(cfg, base / "runs", base / "results", progress=False, log=quiet)
        run = base / "runs" / run_name(cfg)
        out[name] = dict(cfg=cfg, probe=probe, result=result, best=load_pt(run / "best.safetensors"), last=load_pt(run / "last.safetensors"))
    return out


def expected_teachers(probe, decays):
    """T_k = d_k · T_{k−1} + (1 − d_k) · S_k in float64, from the recorded teacher T_{k−1} (T_0: the initial student)
    and S_k, the student after optimizer step k: one update at a time, so float32 rounding does not accumulate."""
    previous = [probe.initial] + [t for _, t, _ in probe.teacher[:-1]]
    return [{n: d * t[n].double() + (1 - d) * step["after"][n].double() for n in t}
            for d, t, step in zip(decays, previous, probe.steps)]


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


@pytest.mark.parametrize("name,decays", [("ramped", WARMUP_DECAYS), ("plain", [0.8, 0.8])])
def test_teacher_is_the_ema_of_the_student_after_every_step(mt_runs, name, decays, measure):
    probe = mt_runs[name]["probe"]
    assert len(probe.steps) == len(decays) == len(probe.teacher)
    assert [step for step, _, _ in probe.teacher] == list(range(1, len(decays) + 1))  # after optimizer step k
    diffs = [max_diff(teacher, want) for (_, teacher, _), want in zip(probe.teacher, expected_teachers(probe, decays))]
    # what a wrong decay would give (e.g. no warm-up in the 'ramped' run): far outside the tolerance
    other = [0.8] * len(decays) if name == "ramped" else WARMUP_DECAYS[:len(decays)]
    wrong = max_diff(probe.teacher[0][1], expected_teachers(probe, other)[0])
    measure(f"Mean Teacher in train() ({name}): teacher vs EMA of the student after steps 1..{len(decays)}: "
            f"max {max(diffs):.2e} (another decay schedule: {wrong:.2e})")
    assert max(diffs) <= EMA_TOL
    assert wrong > 100 * EMA_TOL  # the check tells the decay schedules apart
    moved = max_diff(probe.steps[-1]["after"], probe.teacher[-1][1])
    assert moved > 100 * EMA_TOL  # the teacher lags the student


def test_consistency_weight_follows_the_rampup(mt_runs):
    """Each batch's training loss = supervised + λ(step) · consistency, λ as configured; train_loss is their mean."""
    for name, lambdas in [("ramped", RAMPED_LAMBDAS), ("plain", [0.5, 0.5])]:
        r = mt_runs[name]
        probe, cfg = r["probe"], r["cfg"]
        rounds = probe.rounds[0]
        steps = [i for i, rnd in enumerate(rounds) for _ in rnd] if cfg.update == "sum" else list(range(6))
        assert len(probe.losses) == len(probe.consistency) == len(steps) == 6
        assert all(c > 1e-6 for c in probe.consistency), "a zero consistency loss would not show λ"
        totals = {}
        for (task, sup, _), c, s in zip(probe.losses, probe.consistency, steps):
            totals.setdefault(task, []).append(sup + lambdas[s] * c)
        want = {t: sum(v) / len(v) for t, v in totals.items()}
        got = r["result"]["epochs"][0]["train_loss"]
        assert got.keys() == want.keys()
        for t in want:  # float32 losses summed in float64: relative error ~1e-7
            assert got[t] == pytest.approx(want[t], rel=1e-6), (name, t)


def test_best_checkpoint_holds_the_evaluated_model(mt_runs):
    ramped, plain = mt_runs["ramped"], mt_runs["plain"]
    # eval_teacher=True: best.pt is the teacher (bit for bit the teacher after the last update), not the student
    best, last = ramped["best"], ramped["last"]
    assert best["model"].keys() == last["teacher"].keys() == last["model"].keys()
    assert all(torch.equal(best["model"][k], last["teacher"][k]) for k in best["model"])
    assert all(torch.equal(best["model"][k], ramped["probe"].teacher[-1][1][k]) for k in ramped["probe"].teacher[-1][1])
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    # eval_teacher=False: best.pt is the student
    best, last = plain["best"], plain["last"]
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    assert any(not torch.equal(best["model"][k], last["teacher"][k]) for k in best["model"])
    for r in (ramped, plain):
        assert r["best"]["dev"] == r["result"]["best_dev"] and r["best"]["epoch"] == r["result"]["best_epoch"] == 1

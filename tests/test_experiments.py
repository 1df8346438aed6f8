"""The named experiments: a row on top of an encoder's recipe keeps exactly what the paper varies, bert-base runs the
paper's own configuration, and the sweep variants that notebook 09 reads from a Table 1 row really are that row."""
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from mtbert_lib.experiments import EXPERIMENTS, KEEP_STS_HEAD, RECIPES, TABLE1, apply_recipe, get_experiment, recipe_of
from mtbert_lib.plots import ALIASES, SWEEPS
from mtbert_lib.training import run_name

PAPER_SWITCHES = ("tasks", "eval_tasks", "schedule", "batch_size", "batch_sizes", "update", "consistency",
                  "ema_decay", "weight_decay", "freeze_encoder", "max_length")


def test_bert_base_runs_the_papers_configuration():
    for name, row in EXPERIMENTS.items():
        cfg = get_experiment(name, "bert-base-uncased")
        assert asdict(cfg) == asdict(replace(row, model="bert-base-uncased")), name
        assert run_name(replace(cfg, seed=1)) == f"{name}-bert-base-uncased-seed1"
    assert recipe_of("bert-base-uncased") == "paper" and recipe_of("minilm") == "tuned"
    assert recipe_of("runs/mlm/minilm-mlm") == "tuned"  # an encoder pretrained further from MiniLM


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_tuned_recipe_keeps_what_the_paper_varies(name):
    row, cfg = EXPERIMENTS[name], get_experiment(name)  # MiniLM: the tuned recipe
    model = Path(row.model).name  # 'minilm', or the folder of an encoder pretrained further from it
    assert cfg.recipe == "tuned" and run_name(cfg) == f"{name}-{model}-tuned-seed0"
    for k in PAPER_SWITCHES:
        assert getattr(cfg, k) == getattr(row, k), (name, k)
    # the STS loss is a paper switch: 6-way cross-entropy rows keep their head, MSE rows take the recipe's
    if row.sts_head == "classification":
        assert cfg.sts_head == "classification" and cfg.pair_encoding.endswith("sts:separate")
    elif name in KEEP_STS_HEAD:  # a fresh linear regression head on the 6-way head's pair features (Fig. 4, one change)
        assert cfg.sts_head == "regression" and cfg.pair_encoding.endswith("sts:separate")
    else:
        assert cfg.sts_head == RECIPES["tuned"]["mse_sts_head"]
    if row.freeze_encoder:  # only the head learns: the row's learning rate stays
        assert (cfg.lr, cfg.head_lr, cfg.warmup) == (row.lr, row.head_lr, row.warmup)
    else:
        assert (cfg.lr, cfg.head_lr, cfg.pooling) == (RECIPES["tuned"]["lr"], RECIPES["tuned"]["head_lr"], "mean")
    cfg.validate()


def test_beyond_experiments_change_one_thing_each_on_the_best_row():
    """Notebook 11: each technique is the best multitask row with its own switch; beyond-best combines them."""
    from mtbert_lib.experiments import BEYOND
    best = EXPERIMENTS["rr-balanced-specialized"]
    changed = {n: {k: v for k, v in asdict(EXPERIMENTS[n]).items() if k != "name" and v != getattr(best, k)} for n in BEYOND}
    assert changed == {"pcgrad": {"update": "pcgrad"}, "pcgrad-sum": {"update": "sum"}, "smart": {"smart_weight": 1.0},
                       "mlm": {"model": "runs/mlm-minilm"},
                       "beyond-best": {"update": "pcgrad", "smart_weight": 1.0, "model": "runs/mlm-minilm"}}
    cfg = get_experiment("mlm")  # a path model keeps MiniLM's recipe and names the run after its folder
    assert cfg.recipe == "tuned" and cfg.model == "runs/mlm-minilm" and run_name(cfg) == "mlm-mlm-minilm-tuned-seed0"
    assert get_experiment("mlm", "minilm").model == "minilm"  # --model overrides the folder


def test_unknown_recipe_is_one_line():
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        get_experiment("only-sst", recipe="nope")


@pytest.mark.parametrize("alias,row", sorted(ALIASES.items()))
def test_sweep_aliases_are_exactly_their_table1_row(alias, row):
    assert row in TABLE1 and any(alias in names for names in SWEEPS.values())
    for recipe in RECIPES:
        a, b = apply_recipe(EXPERIMENTS[alias], recipe), apply_recipe(EXPERIMENTS[row], recipe)
        assert asdict(replace(a, name=row)) == asdict(b), (alias, recipe)


def test_other_sweep_variants_differ_from_every_table1_row():
    for names in SWEEPS.values():
        for n in names:
            if n in ALIASES:
                continue
            for row in TABLE1:  # under MiniLM's recipe (under the paper's, fig4-sts-mse-linear is the specialized row)
                a, b = apply_recipe(EXPERIMENTS[n], "tuned"), apply_recipe(EXPERIMENTS[row], "tuned")
                assert asdict(replace(a, name=row)) != asdict(b), (n, row)


def test_mean_teacher_rows_change_one_thing_each():
    """Issue 20: the faithful Mean Teacher is the older MT row plus Tarvainen & Valpola's λ ramp-up and early decay;
    ramp-up-only and decay-only each add one of the two; MSE differs from KL by the consistency only; Fig. 4's linear
    row differs from the CE row by its STS head only (after the recipe)."""
    from mtbert_lib.experiments import RAMPUP_SHARE
    mt = get_experiment("rr-balanced-specialized-mt")
    diff = lambda n, base=mt: {k: v for k, v in asdict(get_experiment(n)).items() if k != "name" and v != getattr(base, k)}
    ramp = {"consistency_rampup_share": RAMPUP_SHARE}
    early = {"ema_decay_rampup": 0.99, "ema_decay_rampup_share": RAMPUP_SHARE}
    assert diff("mt-rampup-only") == {**ramp, "eval_student_too": True}
    assert diff("mt-decay-only") == {**early, "eval_student_too": True}
    assert diff("mt-faithful-kl") == {**ramp, **early, "eval_student_too": True}
    assert diff("mt-faithful-mse", get_experiment("mt-faithful-kl")) == {"consistency": "mse"}
    assert diff("mt-faithful-mse-probs", get_experiment("mt-faithful-kl")) == {"consistency": "mse-probs"}
    assert diff("fig4-sts-mse-linear", get_experiment("fig4-sts-ce")) == {"sts_head": "regression"}
    assert RAMPUP_SHARE == pytest.approx(40_000 / 150_000)

"""Named experiments: the paper's §4.1 runs, every Table 1 row and each figure's sweep, as TrainConfig objects.

Hand-written (not generated from a notebook): it is a table of configurations, not code the course teaches.
`mtbert experiments` lists them; `mtbert train --experiment NAME` runs one; the notebooks use the same objects.
Paper settings everywhere unless a name says otherwise: 10 epochs, dropout 0.3 on the pooled output, lr 1e-5
(fine-tuning) or 1e-3 (frozen encoder), the pooler as sentence vector, sentences of a pair encoded separately.

A recipe per encoder: the rows vary only what the paper varies (tasks, data schedule, update mode, STS loss, Mean
Teacher, batch size, weight decay, frozen encoder). Everything else — sentence vector, learning rates and their
schedule, pair encoding, the regression STS head, epochs — comes from the recipe of the encoder in use
(`RECIPES`): the paper's own for bert-base-uncased, one found on dev for MiniLM (notebook 09, "The MiniLM recipe").
"""
from dataclasses import replace

from mtbert_lib.training import TrainConfig
import mtbert_lib.beyond  # noqa: F401,E402  notebook 11 adds its rows to the loop's tables (update 'pcgrad', SMART)

# Mean Teacher. The paper says only "symmetric KL" (and MSE in Fig. 5): no decay, no λ, no ramp-up. _MT is the
# setting of the runs before issue 20 (our choice, not the paper's): λ = 1 from the first step, EMA decay 0.999 with
# the warm-up min(0.999, 1 − 1/(t+1)) of Tarvainen & Valpola's PyTorch code, the teacher scored and kept.
_MT = dict(consistency="kl", ema_decay=0.999)
# Mean Teacher as its authors run it (Tarvainen & Valpola 2017; their TensorFlow code, CuriousAI/mean-teacher,
# tensorflow/mean_teacher/model.py): λ ramped up with exp(−5(1 − t)²) over the first rampup_length = 40,000 of
# training_length = 150,000 steps (4/15 of training), EMA decay 0.99 during that ramp-up and 0.999 after, and both
# models reported (here: the teacher kept, the student scored every epoch as dev_student). λ = 1 stays ours.
RAMPUP_SHARE = 40_000 / 150_000
_RAMP = dict(consistency_rampup_share=RAMPUP_SHARE)
_EARLY_DECAY = dict(ema_decay_rampup=0.99, ema_decay_rampup_share=RAMPUP_SHARE)
_FAITHFUL = dict(_MT, **_RAMP, **_EARLY_DECAY, eval_student_too=True)
_ALL = ("sst", "quora", "sts")


def _sentiment(task, mode):
    return TrainConfig(name=f"{task}-{mode}", tasks=(task,), eval_tasks=(task,), schedule="single",
                       freeze_encoder=mode == "pretrain", lr=1e-3 if mode == "pretrain" else 1e-5,
                       max_length=512 if task == "cfimdb" else 128)


_rr_balanced = TrainConfig(name="rr-balanced", schedule="balanced", batch_size=8, update="sum", sts_head="classification")
_specialized = replace(_rr_balanced, name="rr-balanced-specialized", update="per_task", sts_head="regression")
_MLM_FOLDER = "runs/mlm-minilm"  # MiniLM pretrained further with MLM on the training sentences (notebook 11)

EXPERIMENTS = {c.name: c for c in [
    # §4.1: the single-task sentiment classifier, frozen encoder ('pretrain') or fine-tuned
    _sentiment("sst", "pretrain"), _sentiment("sst", "finetune"),
    _sentiment("cfimdb", "pretrain"), _sentiment("cfimdb", "finetune"),
    # Table 1, rows 1-8
    TrainConfig(name="only-sst", tasks=("sst",), schedule="single"),
    TrainConfig(name="only-sst-mt", tasks=("sst",), schedule="single", **_MT),
    TrainConfig(name="only-para-mt", tasks=("quora",), schedule="single", **_MT),
    TrainConfig(name="only-sts-mse-mt", tasks=("sts",), schedule="single", sts_head="regression", **_MT),
    TrainConfig(name="rr-uneven", schedule="uneven", batch_sizes={"sst": 8, "quora": 32, "sts": 8}, update="sum",
                sts_head="classification"),
    _rr_balanced,
    _specialized,
    replace(_specialized, name="rr-balanced-specialized-mt", **_MT),
    # Fig. 3: batch size (balanced round-robin, specialized loss)
    *[replace(_specialized, name=f"fig3-batch{b}", batch_size=b) for b in (8, 32, 64)],
    # Fig. 4: STS loss, cross-entropy over 6 classes vs MSE regression. Under a recipe with a cosine STS head (MiniLM's)
    # fig4-sts-mse is the parameter-free 5·cos head; fig4-sts-mse-linear keeps a fresh linear regression head on the
    # same pair features as the 6-way head, so that CE vs MSE changes the loss (and output size) only.
    replace(_specialized, name="fig4-sts-ce", sts_head="classification"),
    replace(_specialized, name="fig4-sts-mse", sts_head="regression"),
    replace(_specialized, name="fig4-sts-mse-linear", sts_head="regression"),
    # Fig. 5: Mean Teacher none / MSE / KL
    replace(_specialized, name="fig5-mt-none"),
    replace(_specialized, name="fig5-mt-mse", consistency="mse"),
    replace(_specialized, name="fig5-mt-kl", consistency="kl"),
    # Mean Teacher as its authors run it (issue 20): KL and MSE, and each of its two changes alone on top of _MT
    replace(_specialized, name="mt-faithful-kl", **_FAITHFUL),
    replace(_specialized, name="mt-faithful-mse", **dict(_FAITHFUL, consistency="mse")),
    # ... with Tarvainen & Valpola's MSE: of the class probabilities, not of the logits as the paper describes it
    replace(_specialized, name="mt-faithful-mse-probs", **dict(_FAITHFUL, consistency="mse-probs")),
    replace(_specialized, name="mt-rampup-only", **_MT, **_RAMP, eval_student_too=True),
    replace(_specialized, name="mt-decay-only", **_MT, **_EARLY_DECAY, eval_student_too=True),
    # Appendix: weight decay
    *[replace(_specialized, name=f"wd-{wd:g}", weight_decay=wd, **_MT) for wd in (0.0, 0.01, 0.1)],
    # Beyond the paper (notebook 11): the best multitask row with one technique each, and all of them together.
    # PCGrad compares the tasks' gradients at the same weights, so it steps once per round: 'pcgrad-sum' is the
    # same row with a plain summed step, which separates the surgery from the change of update mode.
    replace(_specialized, name="pcgrad", update="pcgrad"),
    replace(_specialized, name="pcgrad-sum", update="sum"),
    replace(_specialized, name="smart", smart_weight=1.0),
    replace(_specialized, name="mlm", model=_MLM_FOLDER),  # written by `mtbert pretrain-mlm --out runs/mlm-minilm`
    replace(_specialized, name="beyond-best", model=_MLM_FOLDER, update="pcgrad", smart_weight=1.0),
]}
KEEP_STS_HEAD = {"fig4-sts-mse-linear"}  # rows whose STS head the recipe must not replace
MEAN_TEACHER = ["rr-balanced-specialized-mt", "mt-faithful-kl", "mt-faithful-mse", "mt-faithful-mse-probs", "mt-rampup-only",
                "mt-decay-only"]
BEYOND = ["pcgrad", "pcgrad-sum", "smart", "mlm", "beyond-best"]

TABLE1 = ["only-sst", "only-sst-mt", "only-para-mt", "only-sts-mse-mt", "rr-uneven", "rr-balanced",
          "rr-balanced-specialized", "rr-balanced-specialized-mt"]
#: The paper's Table 1 (bert-base-uncased, dev; original Quora split), for side-by-side display only.
PAPER_TABLE1 = {
    "only-sst": (0.516, 0.463, 0.248), "only-sst-mt": (0.515, 0.475, 0.245), "only-para-mt": (0.197, 0.823, 0.388),
    "only-sts-mse-mt": (0.203, 0.594, 0.722), "rr-uneven": (0.305, 0.455, 0.019), "rr-balanced": (0.490, 0.748, 0.613),
    "rr-balanced-specialized": (0.493, 0.748, 0.654), "rr-balanced-specialized-mt": (0.519, 0.746, 0.727),
}
PAPER_SENTIMENT = {"sst-pretrain": 0.392, "cfimdb-pretrain": 0.788, "sst-finetune": 0.511, "cfimdb-finetune": 0.976}


#: Per-encoder recipes. 'paper': the paper's hyper-parameters (bert-base-uncased). 'tuned': found on dev for MiniLM
#: by the search in results/search/ (notebook 09); its epochs are the CPU protocol (2 cores).
RECIPES = {
    "paper": {},
    "tuned": dict(pooling="mean", lr=5e-5, head_lr=1e-3, warmup=0.1, lr_decay="linear",
                  pair_encoding="quora:joint,sts:separate", mse_sts_head="cosine", epochs=2),
}
#: The same recipe over the paper's 10 epochs (warm-up and linear decay stretched over all of them): the curves of
#: Figs. 3-6. Its own name keeps its runs apart from the 2-epoch CPU protocol's (results/<row>-minilm-tuned10-seedS.json).
RECIPES["tuned10"] = dict(RECIPES["tuned"], epochs=10)
DEFAULT_RECIPE = {"bert-base-uncased": "paper", "minilm": "tuned"}


def recipe_of(model: str) -> str:
    """The default recipe of an encoder: MiniLM (and checkpoints further pretrained from it) use 'tuned'."""
    from pathlib import Path
    return DEFAULT_RECIPE.get(model, "tuned" if "minilm" in Path(model).name.lower() else "paper")


def apply_recipe(cfg: TrainConfig, recipe: str) -> TrainConfig:
    """The row `cfg` on top of an encoder's recipe: the row keeps what the paper varies (its STS loss: the 6-way
    cross-entropy head stays; the MSE rows take the recipe's regression head), the recipe sets everything else.
    Frozen-encoder rows keep their learning rate (only the head learns)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {sorted(RECIPES)}")
    r = dict(RECIPES[recipe])
    sts_head = r.pop("mse_sts_head", None)
    if sts_head and cfg.sts_head == "regression" and cfg.name not in KEEP_STS_HEAD:
        r["sts_head"] = sts_head
    if cfg.sts_head == "classification" and "pair_encoding" in r:  # the 6-way head reads [u, v, |u−v|, u·v]
        r["pair_encoding"] = r["pair_encoding"].replace("sts:joint", "sts:separate")
    if cfg.freeze_encoder:
        r = {k: v for k, v in r.items() if k not in ("lr", "head_lr", "warmup", "lr_decay")}
    return replace(cfg, recipe=recipe, **r)


def get_experiment(name: str, model: str | None = None, recipe: str | None = None) -> TrainConfig:
    """A named row with the recipe of `model` (default: the row's model), or the recipe named."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; run `mtbert experiments` to list them")
    cfg = EXPERIMENTS[name]
    if model:
        cfg = replace(cfg, model=model)
    return apply_recipe(cfg, recipe or recipe_of(cfg.model))


#: `make run` (`mtbert main-job`): the best Table 1 row on its encoder's recipe for a short budget: the first 300 of an
#: epoch's 755 balanced rounds (900 optimizer steps; each round's batches drawn, as always, from all the training
#: data), its learning rate decaying to 0 over them; scored on the full dev sets after (and before, with
#: `--score-untrained`: one more dev scoring, half a minute on 2 slow cores). Under 5 minutes on a slow 2-core CPU
#: (docs/guide.md), fewer on a fast one; the same numbers on every machine.
MAIN_JOB = dict(experiment="rr-balanced-specialized", epochs=1, rounds_limit=300, train_eval_limit=64)


def main_job(model: str | None = None, score_untrained: bool = False) -> TrainConfig:
    """The main job's configuration (`mtbert main-job`, `make run`, the playground's Train button)."""
    m = dict(MAIN_JOB, eval_before=score_untrained)
    return replace(get_experiment(m.pop("experiment"), model), **m)

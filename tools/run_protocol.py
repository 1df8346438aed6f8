"""The CPU protocol: every full run the course's tables and figures need, in priority order, one at a time.

    python tools/run_protocol.py --dry-run          # the plan: which runs are done, which are left
    python tools/run_protocol.py [--threads 2] [--commit] [--only REGEX] [--max-runs N]
    python tools/run_protocol.py --beyond ...       # notebook 11's techniques instead, seed by seed

A run whose results/<run>.json holds all its epochs is skipped; any other is (re)started with `--resume`, so a
killed protocol continues where it stopped (also in the next session). Runs go one at a time: two trainings on
2 cores slow each other far more than 2x. With --commit, each finished run's JSON is committed as it lands.
Priority: the comparisons the paper's claims rest on get their seeds first.
"""
import argparse, json, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mtbert_lib.experiments import BEYOND, EXPERIMENTS, get_experiment  # noqa: E402
from mtbert_lib.training import TrainConfig  # noqa: E402
from mtbert_lib.training import run_name  # noqa: E402

T1 = ["only-sst", "only-sst-mt", "only-para-mt", "only-sts-mse-mt", "rr-uneven", "rr-balanced",
      "rr-balanced-specialized", "rr-balanced-specialized-mt"]
CLAIM_ROWS = ["rr-balanced-specialized", "rr-balanced-specialized-mt", "fig5-mt-mse", "rr-balanced", "rr-uneven",
              "fig4-sts-ce", "fig3-batch32", "fig3-batch64"]  # Fig. 3: batch 8 > 32 / 64 is a claim too
SWEEP_EXTRA = ["fig5-mt-mse", "fig4-sts-ce", "fig3-batch32", "fig3-batch64", "wd-0.01", "wd-0.1"]
SECTION41 = ["sst-pretrain", "sst-finetune", "cfimdb-pretrain", "cfimdb-finetune"]


DEFAULT_MODEL = TrainConfig.model


def plan(model="minilm"):
    first = ["rr-balanced-specialized-mt", "rr-balanced-specialized", "rr-balanced", "rr-uneven"]  # the claims' rows
    runs = [(n, 0) for n in first + T1 + ["cfimdb-finetune", "sst-finetune", "fig5-mt-mse", "fig4-sts-ce"] +
            SECTION41 + SWEEP_EXTRA]
    for seed in (1, 2):
        runs += [(n, seed) for n in CLAIM_ROWS]
    for seed in (1, 2):
        runs += [(n, seed) for n in T1 if n not in CLAIM_ROWS]
    return unique(runs)


def beyond_plan():
    """Notebook 11's techniques on the best row: every technique's seed 0 first, then seeds 1 and 2."""
    return [(n, seed) for seed in (0, 1, 2) for n in BEYOND]


def unique(runs):
    seen, out = set(), []
    for n, s in runs:
        if (n, s) not in seen:
            seen.add((n, s)); out.append((n, s))
    return out


def status(name, seed, model, results):
    from dataclasses import replace
    cfg = replace(get_experiment(name, model), seed=seed)
    f = results / f"{run_name(cfg)}.json"
    if not f.is_file():
        return cfg, f, 0
    r = json.loads(f.read_text())
    return cfg, f, len(r["epochs"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=str(ROOT / "results"))
    ap.add_argument("--only", help="regex on the experiment name")
    ap.add_argument("--seeds", help="comma-separated seeds to run (default: all of the plan)")
    ap.add_argument("--max-runs", type=int, default=10**6)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--beyond", action="store_true", help="run notebook 11's techniques (pcgrad, smart, mlm, ...) instead")
    ap.add_argument("--commit", action="store_true", help="git-commit each finished run's results JSON")
    a = ap.parse_args()
    results, started = Path(a.results_dir), 0
    for name, seed in (beyond_plan() if a.beyond else plan(a.model)):
        if a.only and not re.search(a.only, name) or a.seeds and str(seed) not in a.seeds.split(","):
            continue
        # Notebook 11's rows keep their own model (mlm, beyond-best start from the MLM folder); --model only picks it
        # for the others, so a beyond row's model is overridden only when it is the default one.
        model = a.model if not a.beyond or EXPERIMENTS[name].model == DEFAULT_MODEL else None
        cfg, f, done = status(name, seed, model, results)
        print(f"{'done' if done >= cfg.epochs else f'{done}/{cfg.epochs} epochs'}: {name} seed {seed} -> {f.name}", flush=True)
        if done >= cfg.epochs or a.dry_run:
            continue
        if model is None and not (ROOT / cfg.model).is_dir():  # mlm, beyond-best: the MLM-pretrained folder
            print(f"  skipped: {cfg.model} does not exist yet (mtbert pretrain-mlm --model {a.model} --out {cfg.model})",
                  flush=True)
            continue
        if started >= a.max_runs:
            break
        started += 1
        cmd = [str(ROOT / ".venv/bin/mtbert"), "train", "--experiment", name, "--seed", str(seed), "--model", cfg.model,
               "--resume", "--no-progress", "--threads", str(a.threads), "--results-dir", str(results)]
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:  # e.g. the library being re-exported at the moment the run imported it: one retry
            print(f"  exit {rc}; retrying once with --resume in 30 s", flush=True)
            time.sleep(30)
            rc = subprocess.run(cmd, cwd=ROOT).returncode
        print(f"  exit {rc} after {time.time() - t0:.0f} s", flush=True)
        if rc == 0 and a.commit:
            subprocess.run(["git", "add", str(f)], cwd=ROOT, check=True)
            subprocess.run(["git", "commit", "-q", "-m", f"Result: {name} seed {seed} ({a.model}, {cfg.recipe} recipe, "
                            f"{cfg.epochs} epochs, CPU protocol)", "--", str(f)], cwd=ROOT)
        elif rc != 0:
            sys.exit(rc)


if __name__ == "__main__":
    main()

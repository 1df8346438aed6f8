"""The CPU protocol: every full run the course's tables and figures need, in priority order, one at a time.

    python tools/run_protocol.py --dry-run          # the plan: which runs are done, which are left
    python tools/run_protocol.py [--threads 2] [--commit] [--only REGEX] [--max-runs N]
    python tools/run_protocol.py --beyond ...       # notebook 11's techniques instead, seed by seed
    python tools/run_protocol.py --preset paper [--estimate-only] [--results-dir DRIVE/results --run-dir DRIVE/runs]
        # the paper's protocol: 10 epochs, every Table 1 row and figure variant, seeds 0-2; bert-base-uncased where a
        # GPU is (Colab), MiniLM ('tuned10' recipe) elsewhere; prints its estimated time on this device first

A run whose results/<run>.json holds all its epochs is skipped; any other is (re)started with `--resume`, so a
killed protocol continues where it stopped (also in the next session). Runs go one at a time: two trainings on
2 cores slow each other far more than 2x. With --commit, each finished run's JSON is committed as it lands.
Priority: the comparisons the paper's claims rest on get their seeds first.
"""
import argparse, json, os, re, subprocess, sys, time
from dataclasses import replace
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
# The paper's protocol (issue 21, part 4): Table 1's rows and the variants of Figs. 3-5, three seeds each, 10 epochs.
PAPER_FIGURES = ["fig3-batch8", "fig3-batch32", "fig3-batch64", "fig4-sts-ce", "fig4-sts-mse", "fig5-mt-none",
                 "fig5-mt-mse", "fig5-mt-kl"]
PAPER_ROWS = T1 + PAPER_FIGURES
PAPER_RECIPE = {"bert-base-uncased": "paper", "minilm": "tuned10"}  # 10 epochs either way


def paper_plan(seeds=(0, 1, 2)):
    """Every row's seed 0 first (a disconnect leaves a complete first pass behind), then seeds 1 and 2."""
    return [(n, s) for s in seeds for n in PAPER_ROWS]


def preset_model():
    """bert-base-uncased on a GPU (Colab: the paper's own setting), MiniLM elsewhere (offline, the CPU)."""
    import torch
    return "bert-base-uncased" if torch.cuda.is_available() else "minilm"


def epoch_examples(cfg, lengths) -> int:
    """Training examples one epoch of the row's sampler draws."""
    return sum(len(idx) for rnd in cfg.sample_epoch(lengths, 0) for _, idx in rnd)


def eval_examples(cfg, sizes) -> int:
    """Examples scored each epoch: dev (teacher, and the student too where asked) and the train-eval slice."""
    dev = sum(sizes[t] if cfg.dev_limit is None else min(cfg.dev_limit, sizes[t]) for t in cfg.eval_tasks)
    dev *= 2 if cfg.eval_student_too and cfg.consistency != "none" else 1
    return dev + sum(min(cfg.train_eval_limit, sizes[t]) for t in cfg.tasks)


def seconds_per_example(model, recipe, quick, steps=6):
    """Measured here: the best row's training step (Mean Teacher on, per-task steps) on this device, after 2 warm-up
    steps; returns (seconds per training example, the device's name). Evaluation is taken as a third of it
    (a forward pass without the backward pass and the optimizer)."""
    import tempfile, torch
    from dataclasses import replace
    from mtbert_lib.training import EpochRecord, UPDATES, start_run, train_step
    cfg = get_experiment("rr-balanced-specialized-mt", model, recipe)
    cfg = replace(cfg.quick() if quick else cfg, train_limit=(steps + 2) * cfg.batch_size, epochs=1)
    with tempfile.TemporaryDirectory() as d:
        R = start_run(cfg, d, False, lambda *a, **k: None)
        groups = [g for rnd in cfg.sample_epoch(R.lengths, 0) for g in UPDATES[cfg.update].steps(rnd)][:steps + 2]
        record, n, t0 = EpochRecord(cfg.tasks, 0, R.scaler, 10**6), 0, None
        R.model.train()
        for i, g in enumerate(groups):
            if i == 2:
                record.read(R.state)
                if R.device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.time()
            train_step(R, R.model, g, record, 0)
            n += sum(len(idx) for _, idx in g) if i >= 2 else 0
        record.read(R.state)
        if R.device.type == "cuda":
            torch.cuda.synchronize()
        name = torch.cuda.get_device_name(R.device) if R.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        return (time.time() - t0) / max(n, 1), name


def estimate(runs, model, recipe, quick, results, log=print) -> float:
    """Seconds the runs not done yet will take on this device (measured rate x examples of each row); printed."""
    from mtbert_lib.tasks import encode_split
    from mtbert_lib.tokenizer import load_tokenizer
    tok, lengths, sizes, examples, left = load_tokenizer(model), {}, {}, 0.0, 0
    for name, seed in runs:
        cfg = replace(get_experiment(name, model, recipe), seed=seed)
        cfg = cfg.quick() if quick else cfg
        _, _, done = status_of(cfg, results)
        epochs = max(cfg.epochs - done, 0)
        if not epochs:
            continue
        for t in set(cfg.tasks) | set(cfg.eval_tasks):
            key = (t, cfg.max_length, cfg.train_limit)
            if key not in lengths:
                lengths[key] = encode_split(t, "train", tok, cfg.max_length, cfg.train_limit, report=None).lengths()
                sizes[t] = len(encode_split(t, "dev", tok, cfg.max_length, report=None))
        left += 1
        per_epoch = epoch_examples(cfg, {t: lengths[(t, cfg.max_length, cfg.train_limit)] for t in cfg.tasks})
        examples += epochs * (per_epoch + eval_examples(cfg, sizes) / 3)
    if not left:
        log(f"estimate: all {len(runs)} runs are done: nothing to train", flush=True)
        return 0.0
    per_example, device = seconds_per_example(model, recipe, quick)
    total = examples * per_example
    log(f"estimate: {left} of {len(runs)} runs left, about {total / 3600:.1f} h on this device ({device}: "
        f"{1 / per_example:.1f} training examples/s measured on {model}, recipe {recipe})", flush=True)
    return total


def status_of(cfg, results):
    f = results / f"{run_name(cfg)}.json"
    return cfg, f, len(json.loads(f.read_text())["epochs"]) if f.is_file() else 0


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


def train_command(name, seed, model, recipe, a, results):
    """`mtbert train` for one run, through this Python (a virtual environment here, Colab's own Python there)."""
    cmd = [sys.executable, "-m", "mtbert_lib.cli", "train", "--experiment", name, "--seed", str(seed), "--model", model,
           "--resume", "--no-progress", "--threads", str(a.threads), "--results-dir", str(results), "--run-dir", a.run_dir]
    return cmd + (["--recipe", recipe] if recipe else []) + (["--quick"] if a.quick else [])


def run_preset(a, results, log=print):
    """The paper's protocol: the estimate first, then every run not yet complete, each resumed where it stopped."""
    model = a.model or preset_model()
    recipe = PAPER_RECIPE.get(model, "paper")
    runs = [(n, s) for n, s in paper_plan() if not a.only or re.search(a.only, n)
            if not a.seeds or str(s) in a.seeds.split(",")][:a.max_runs]
    quick = a.quick or os.environ.get("MTBERT_QUICK") == "1"
    here = lambda p: os.path.relpath(p) if not os.path.relpath(p).startswith("../..") else str(p)  # noqa: E731
    log(f"paper protocol: {len(runs)} runs ({len(set(n for n, _ in runs))} rows x seeds), model {model}, recipe {recipe}"
        f"{', quick mode' if quick else ''}; results -> {here(results)}, checkpoints -> {here(a.run_dir)}", flush=True)
    estimate(runs, model, recipe, quick, results, log)
    if a.estimate_only or a.dry_run:
        return 0
    for name, seed in runs:
        cfg = replace(get_experiment(name, model, recipe), seed=seed)
        cfg, f, done = status_of(cfg.quick() if quick else cfg, results)
        if done >= cfg.epochs:
            log(f"done: {name} seed {seed}", flush=True)
            continue
        log(f"{done}/{cfg.epochs} epochs: {name} seed {seed} -> {f.name}", flush=True)
        rc = run_logged(train_command(name, seed, model, recipe, a, results), log)
        if rc != 0:
            return rc
    return 0


def run_logged(cmd, log=print) -> int:
    """Run a command with its output (stdout and stderr, line by line) passed through `log`; its exit status. An
    interrupt (the notebook's stop button) kills the run, as subprocess.run does: it resumes from its last checkpoint."""
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        for line in p.stdout:
            log(line.rstrip("\n"), flush=True)
        return p.wait()
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        p.stdout.close()


def main(argv=None, log=print):
    """`log` receives every line the protocol prints, its runs' output included (notebook 13 passes one that keeps
    machine-dependent times out of a quick run's stored output)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: minilm (--preset paper: bert-base-uncased on a GPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results-dir", default=str(ROOT / "results"))
    ap.add_argument("--only", help="regex on the experiment name")
    ap.add_argument("--seeds", help="comma-separated seeds to run (default: all of the plan)")
    ap.add_argument("--max-runs", type=int, default=10**6)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--beyond", action="store_true", help="run notebook 11's techniques (pcgrad, smart, mlm, ...) instead")
    ap.add_argument("--commit", action="store_true", help="git-commit each finished run's results JSON")
    ap.add_argument("--preset", choices=["paper"], help="paper: the paper's protocol (10 epochs, Table 1 and Figs. 3-5, "
                    "seeds 0-2), bert-base-uncased on a GPU, MiniLM elsewhere (unless --model)")
    ap.add_argument("--run-dir", default="runs", help="checkpoints (e.g. on Google Drive, to resume after a disconnect)")
    ap.add_argument("--quick", action="store_true", help="quick mode (MTBERT_QUICK): a few dozen steps per run, for checks")
    ap.add_argument("--estimate-only", action="store_true", help="--preset: print the estimated time and stop")
    a = ap.parse_args(argv)
    results, started = Path(a.results_dir).resolve(), 0
    if a.preset:
        a.run_dir = str(Path(a.run_dir).resolve())
        return run_preset(a, results, log)
    a.model = a.model or "minilm"
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
    sys.exit(main())

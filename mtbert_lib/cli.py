"""The `mtbert` command line: data fetching, a zero-shot demo, training, prediction, the list of experiments and grading the exercises.

Hand-written (not generated from a notebook): it only parses arguments and calls the library the notebooks build.
Every error a user can cause ends in one line `mtbert: error: ...` and exit status 2.
"""
import argparse, os, sys
from pathlib import Path


def _default_source():
    """Offline mirror next to the project if there is one (course machines, CI), else the public starter repo."""
    from mtbert_lib.data import STARTER_URL, project_root
    if os.environ.get("MTBERT_DATA_SOURCE"):
        return os.environ["MTBERT_DATA_SOURCE"]
    root = project_root()
    if root and (root.parent / "shared" / "data" / "cs224n").is_dir():
        return str(root.parent / "shared" / "data" / "cs224n")
    return STARTER_URL


def cmd_data_fetch(a):
    from mtbert_lib.data import fetch_data
    src = a.source or _default_source()
    print(f"fetching CS224N task files from {src}")
    m = fetch_data(src, a.dest)
    print(f"data edition: {m['edition']}")


def cmd_demo(a):
    """The main job on the offline default: MiniLM zero-shot on real STS dev pairs, with the nearest pairs shown."""
    import torch
    from scipy.stats import pearsonr
    from mtbert_lib.data import load_task, data_edition
    from mtbert_lib.model import BertModel, mean_pool
    from mtbert_lib.tokenizer import load_tokenizer
    torch.manual_seed(0)
    tok, model = load_tokenizer(a.model), BertModel.from_pretrained(a.model).eval()
    pairs = load_task("sts", "dev")[: a.n]
    sims = []
    with torch.no_grad():
        for i in range(0, len(pairs), 64):
            chunk = pairs[i:i + 64]
            x, y = tok([p.text1 for p in chunk]), tok([p.text2 for p in chunk])
            ex, ey = mean_pool(model(**x).last_hidden_state, x["attention_mask"]), mean_pool(model(**y).last_hidden_state, y["attention_mask"])
            sims += torch.nn.functional.cosine_similarity(ex, ey).tolist()
    r = pearsonr(sims, [p.label for p in pairs])[0]
    print(f"model {a.model}, data {data_edition()}, STS dev first {len(pairs)} pairs, no training (zero-shot, mean pooling)")
    order = sorted(range(len(pairs)), key=lambda i: -sims[i])
    print(f"{'cosine':>7} {'gold/5':>6}  sentence pair")
    for i in order[:5] + order[-3:]:
        print(f"{sims[i]:7.3f} {pairs[i].label:6.1f}  {pairs[i].text1[:60]!r} | {pairs[i].text2[:60]!r}")
    print(f"Pearson r (cosine vs gold similarity) = {r:.3f}")


def _parse_value(name, default, text):
    """`--set FIELD=VALUE`: the value gets the type of the field's default (JSON for lists, dicts and None)."""
    import json
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            return type(default)(float(text)) if isinstance(default, int) and float(text).is_integer() else float(text)
        if isinstance(default, str):
            return text
        v = json.loads(text) if text[:1] in "[{" or text in ("null", "true", "false") or text[:1].isdigit() else text
        return tuple(v) if isinstance(v, list) else v
    except ValueError:
        raise ValueError(f"--set {name}={text}: not a valid {type(default).__name__}") from None


def cmd_train(a):
    from dataclasses import replace, fields
    from mtbert_lib.experiments import get_experiment
    from mtbert_lib.training import train
    cfg = get_experiment(a.experiment, a.model, a.recipe)
    names = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    changes = {"seed": a.seed}
    for kv in a.set or []:
        k, sep, v = kv.partition("=")
        if not sep or k not in names:
            raise ValueError(f"--set {kv!r}: expected FIELD=VALUE with FIELD one of {sorted(names)}")
        changes[k] = _parse_value(k, names[k], v)
    cfg = replace(cfg, **changes)
    if a.quick or os.environ.get("MTBERT_QUICK") == "1":
        cfg = cfg.quick()
    if a.epochs:
        cfg = replace(cfg, epochs=a.epochs)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    r = train(cfg, run_dir=a.run_dir, results_dir=a.results_dir, resume=a.resume, progress=not a.no_progress)
    from mtbert_lib import distributed
    if distributed.is_main():  # under torchrun (notebook 12) every process trains; rank 0 speaks
        best = ", ".join(f"{t} {v:.3f}" for t, v in r["best_dev"].items())
        print(f"best dev (epoch {r['best_epoch']}): {best}; checkpoint {r['checkpoint']}")


def cmd_main_job(a):
    """`make run`: the best recipe trained briefly on the full training data, scored beside the baselines."""
    import time
    from dataclasses import replace
    from mtbert_lib.baselines import beside_baselines, load_baselines
    from mtbert_lib.data import project_root
    from mtbert_lib.experiments import main_job
    from mtbert_lib.training import train
    root = project_root() or Path.cwd()
    if Path(a.out).resolve().is_relative_to((root / "results").resolve()):
        raise ValueError(f"--out {a.out}: results/ holds the committed protocol runs; the main job writes under runs/")
    cfg = main_job(a.model, score_untrained=a.score_untrained)
    if a.quick or os.environ.get("MTBERT_QUICK") == "1":
        cfg = replace(cfg.quick(), epochs=1, rounds_limit=None)  # the quick subset is smaller than the budget
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    limits = ("the full training data" if cfg.train_limit is None else f"QUICK MODE: the first {cfg.train_limit} "
              "training examples per task (a pipeline check, not the result)")
    budget = f"{cfg.epochs} epoch" if cfg.rounds_limit is None else f"{cfg.rounds_limit} rounds of {len(cfg.tasks)} batches"
    print(f"main job: {cfg.name} ({cfg.model}, recipe {cfg.recipe}), {budget} drawn from {limits}; dev scored "
          f"{'in full' if cfg.dev_limit is None else f'on the first {cfg.dev_limit} examples per task'}"
          + (" before and after" if cfg.eval_before else " after"))
    t0 = time.time()
    r = train(cfg, run_dir=a.out, results_dir=a.out, progress=not a.no_progress)
    base = load_baselines(cfg.model, root / "results")
    print(f"\ndev scores ({'full dev sets' if cfg.dev_limit is None else 'QUICK: a dev subset'}; "
          f"{time.time() - t0:.0f} s on this machine):\n")
    print(beside_baselines(r, base))
    print("\nbaselines: " + (f"results/baselines-{Path(cfg.model).name}.json (`mtbert baselines`: most frequent "
                               "training label; the encoder's mean-pooled cosine, no training)" if base else
                               f"none for {cfg.model} (run `mtbert baselines --model {cfg.model}`)"))
    if cfg.eval_before:
        print("'untrained': this model before its first step (random heads; STS: the zero-shot cosine).")
    print(f"result {Path(a.out) / (Path(r['checkpoint']).parent.name + '.json')}, checkpoint {r['checkpoint']} "
          "(`make playground` answers with it). Three seeds × 2 epochs of every Table 1 row: docs/results.md.")


def cmd_pretrain_mlm(a):
    from mtbert_lib.beyond import pretrain_mlm
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    r = pretrain_mlm(a.model, a.out, steps=a.steps, max_seconds=a.max_seconds, batch_size=a.batch_size, lr=a.lr,
                     max_length=a.max_length, heldout=a.heldout, seed=a.seed, device=a.device, precision=a.precision)
    if a.results_dir:  # the record (loss curve, masked-token accuracy, provenance) that notebook 11 draws from
        import json
        from types import SimpleNamespace
        from mtbert_lib.training import provenance
        # the device and precision the run resolved and used (pretrain_mlm's record), not the defaults
        r["provenance"] = provenance(SimpleNamespace(model=a.model, seed=a.seed), r["device"], r["precision"])
        out = Path(a.results_dir) / f"mlm-pretraining-{Path(a.out).name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=1))
        print(f"wrote {out}")
    print(f"wrote {r['folder']} ({r['steps']} steps, {r['wall_s']}s); masked-token accuracy on held-out training "
          f"sentences {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}; fine-tune with --model {r['folder']}")


def cmd_predict(a):
    from mtbert_lib.training import predict_checkpoint
    if not Path(a.checkpoint).is_file():
        raise FileNotFoundError(f"{a.checkpoint}: no such checkpoint file")
    for f in predict_checkpoint(a.checkpoint, a.out, tasks=a.tasks):
        print(f"wrote {f}")


def cmd_convert_checkpoint(a):
    from mtbert_lib.training import convert_checkpoint
    if not Path(a.checkpoint).is_file():
        raise FileNotFoundError(f"{a.checkpoint}: no such checkpoint file")
    print(f"wrote {convert_checkpoint(a.checkpoint, a.out, trust=a.trust)}")


def cmd_baselines(a):
    from mtbert_lib.baselines import write_baselines
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    print(f"wrote {write_baselines(a.model, a.results_dir)}")


def cmd_experiments(a):
    from dataclasses import fields
    from mtbert_lib.experiments import EXPERIMENTS
    from mtbert_lib.training import TrainConfig
    default = TrainConfig()
    for name, cfg in EXPERIMENTS.items():
        diff = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "name" and getattr(cfg, f.name) != getattr(default, f.name)}
        print(f"{name:28s} " + " ".join(f"{k}={v}" for k, v in diff.items()))


GRADER_CELL = r"^(check_\w+)\(.*\)\s*$"  # a line calling one of mtbert_lib.grading's checks
EXERCISE_LINE = r"^EXERCISE (\S+): (PASS|TODO|FAIL: .*)$"


def grade_notebook(path, timeout: int = 1800, echo=print, run_all: bool = False):
    """Execute a notebook (quick mode, in its own folder) with nbclient and collect its exercise lines.

    By default the cells run from the top down to the last grader cell: the cells after it are the notebook's demos
    (quick training runs, figures), which cannot change a grade and would make the learner wait minutes for it;
    `run_all=True` (`mtbert grade --all`) runs them too and reports their crashes like any other.

    Returns (results, crashes): results maps each exercise to PASS, TODO or FAIL: reason, in notebook order; crashes
    lists one line per cell that failed outside the exercises. Not crashes: an error in an exercise cell (its grader
    reports it as FAIL), a cell raising NotImplementedError (it uses an unfinished exercise, which its grader reports
    as TODO), a NameError after such a cell (a consequence of it), and an error in a cell that uses a function or
    class of an exercise that did not pass (printed as an `AFTER FAIL` line that names the exercise to fix first).
    Every grader cell runs, whatever failed before."""
    import re, subprocess
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as e:
        raise ValueError(f"mtbert grade runs notebooks with nbclient, nbformat and ipykernel ({e}); "
                         "install them: pip install -e '.[notebooks]'") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such notebook")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ValueError(f"{path}: not a notebook ({type(e).__name__})") from None
    graders = {i: re.search(GRADER_CELL, c.source, re.M) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    graders = {i: m.group(1).removeprefix("check_") for i, m in graders.items() if m}  # check_<name> grades <name>
    if not graders:
        raise ValueError(f"{path}: no exercise grader cell (check_...(...)) in this notebook")
    exercise_cells = {i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("nbgrader", {}).get("solution")
                      or "### BEGIN SOLUTION" in c.source}  # student edition: nbgrader's metadata; solutions: the markers
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent.resolve())}})
    results, crashes, unfinished, exercise_error = {}, [], False, None
    tainted = {}  # name -> the exercise that did not pass and that the name is (or is built from)

    def report(name, status):
        results[name] = status
        echo(f"EXERCISE {name}: {status}")

    def crash(line):
        crashes.append(line)
        echo(line)

    def uses(source):
        """(exercise, name) when the code uses a name of an exercise that did not pass, else None."""
        return next(((e, n) for n, e in tainted.items() if re.search(rf"\b{re.escape(n)}\b", source)), None)

    def one_line(text, n=300):
        return " ".join(str(text).split())[:n]

    try:  # quick mode; errors come back as cell outputs, the kernel's stderr is only its start-up chatter
        with client.setup_kernel(env=dict(os.environ, MTBERT_QUICK="1"), stderr=subprocess.DEVNULL):
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if i > max(graders) and not run_all:
                    break  # the demos after the last grader: they cannot change a grade (--all runs them)
                error = None
                try:
                    client.execute_cell(cell, i)
                except CellExecutionError as e:
                    error = (e.ename, e.evalue)
                printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
                for name, status in re.findall(EXERCISE_LINE, printed, re.M):
                    report(name, status)
                if i in graders:
                    if graders[i] not in results:
                        why = (f"the exercise cell raised {exercise_error[0]}: {exercise_error[1]}" if exercise_error
                               else f"the grader cell raised {error[0]}: {error[1]}" if error else "the grader printed no verdict")
                        report(graders[i], f"FAIL: {one_line(why)}")
                    exercise_error = None
                    call = re.search(r"^check_\w+\((.*)\)\s*$", cell.source, re.M)  # the names it grades
                    if results.get(graders[i]) != "PASS":
                        tainted.update({n: graders[i] for n in re.findall(r"\w+", call.group(1) if call else "")})
                elif i in exercise_cells:
                    exercise_error = error
                elif error:
                    if error[0] == "NotImplementedError" or (unfinished and error[0] == "NameError"):
                        unfinished = True
                        continue
                    first = next((ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
                    what = f"{error[0]}: {one_line(error[1])}" if one_line(error[1]) else f"{error[0]} (no message)"
                    cause = uses(cell.source)
                    if cause:  # the learner's unfinished or wrong exercise, used here: one problem, not two
                        echo(f"AFTER FAIL in cell {i} ({first.strip()[:60]!r}): {what}; it uses {cause[1]} "
                             f"(exercise {cause[0]} did not pass): fix that exercise first")
                        continue
                    crash(f"CRASH in cell {i} ({first.strip()[:60]!r}), outside the exercises: {what}")
                elif cause := uses(cell.source):  # what this cell defines is built on an exercise that did not pass
                    defined = re.findall(r"^(?:def|class)\s+(\w+)|^(\w+)\s*=", cell.source, re.M)  # (def, assignment)
                    tainted.update({n: cause[0] for pair in defined for n in pair if n})
    except Exception as e:  # the kernel did not start, died or a cell timed out: the cells after it cannot run
        crash(f"CRASH: {type(e).__name__}: {one_line(e)}; the notebook could not be run to the end")
    for i, name in graders.items():
        if name not in results:
            report(name, "FAIL: its grader cell was not run")
    return results, crashes


def cmd_grade(a):
    results, crashes = grade_notebook(a.notebook, a.timeout, run_all=a.all)
    a.status = 2 if crashes else (0 if all(s == "PASS" for s in results.values()) else 1)


def build_parser():
    p = argparse.ArgumentParser(prog="mtbert", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="fetch the CS224N task files").add_subparsers(dest="data_command", required=True)
    f = data.add_parser("fetch", help="copy or download the task files into data/ and check their sha256")
    f.add_argument("--source", help="URL or folder (default: ../shared/data/cs224n if present, else the starter repository)")
    f.add_argument("--dest", default=None, help="destination folder (default: <project>/data or $MTBERT_DATA)")
    f.set_defaults(func=cmd_data_fetch)
    d = sub.add_parser("demo", help="zero-shot sentence similarity on real STS dev pairs (no training)")
    d.add_argument("--model", default=os.environ.get("MTBERT_MODEL", "minilm"))
    d.add_argument("-n", type=int, default=200, help="number of STS dev pairs")
    d.set_defaults(func=cmd_demo)
    t = sub.add_parser("train", help="train a named experiment; writes results/NAME-MODEL-seedS.json and runs/.../best.safetensors "
                                     "(several processes: torchrun --nproc_per_node N -m mtbert_lib.cli train ...)")
    t.add_argument("--experiment", required=True, help="a name from `mtbert experiments`")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--model", default=os.environ.get("MTBERT_MODEL"), help="minilm | bert-base-uncased | checkpoint folder")
    t.add_argument("--recipe", help="paper | tuned (default: the model's own: tuned for MiniLM, paper for bert-base-uncased)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--quick", action="store_true", help="shrink data and epochs (also MTBERT_QUICK=1)")
    t.add_argument("--resume", action="store_true", help="continue from runs/<run>/last.safetensors")
    t.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a config field, e.g. --set pooling=mean")
    t.add_argument("--run-dir", default="runs")
    t.add_argument("--results-dir", default="results")
    t.add_argument("--threads", type=int)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)
    mj = sub.add_parser("main-job", help="`make run`: the best recipe (rr-balanced-specialized) for 300 rounds drawn from the "
                                          "full training data, dev scores beside the baselines; result and checkpoint in runs/main")
    mj.add_argument("--model", default=os.environ.get("MTBERT_MODEL"), help="minilm (default) | bert-base-uncased | checkpoint folder")
    mj.add_argument("--out", default="runs/main", help="folder for the run's checkpoint and result (never results/)")
    mj.add_argument("--quick", action="store_true", help="64 training examples per task, 64 dev examples (also MTBERT_QUICK=1)")
    mj.add_argument("--score-untrained", action="store_true",
                    help="also score the full dev sets before the first step (an 'untrained' column; one more dev scoring)")
    mj.add_argument("--threads", type=int)
    mj.add_argument("--no-progress", action="store_true")
    mj.set_defaults(func=cmd_main_job)
    m = sub.add_parser("pretrain-mlm", help="further MLM pretraining on the training sentences of SST, Quora and STS "
                                            "(notebook 11); writes a checkpoint folder for --model PATH")
    m.add_argument("--model", default=os.environ.get("MTBERT_MODEL", "minilm"), help="minilm | bert-base-uncased | checkpoint folder")
    m.add_argument("--out", required=True, help="checkpoint folder to write, e.g. runs/mlm-minilm")
    m.add_argument("--steps", type=int, default=2000)
    m.add_argument("--max-seconds", type=float, help="stop after this many seconds of training (CPU budget)")
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--lr", type=float, default=5e-5)
    m.add_argument("--max-length", type=int, default=64)
    m.add_argument("--heldout", type=int, default=512, help="training sentences held out to measure masked-token accuracy")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", help="cpu | cuda | cuda:N (default: the GPU when there is one)")
    m.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"],
                   help="fp32 (default; the README's CPU run), bf16, fp16 (with a gradient scaler), auto (the training's rule)")
    m.add_argument("--threads", type=int)
    m.add_argument("--results-dir", default="results", help="where to write the run's record (loss, accuracy, provenance); '' = nowhere")
    m.set_defaults(func=cmd_pretrain_mlm)
    pr = sub.add_parser("predict", help="write CS224N prediction files from a checkpoint")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--out", default="predictions")
    pr.add_argument("--tasks", nargs="*")
    pr.set_defaults(func=cmd_predict)
    cv = sub.add_parser("convert-checkpoint", help="an older pickle checkpoint (best.pt / last.pt) -> best/last.safetensors "
                                                   "beside it; unpickles the file in full, so only for a file you trust")
    cv.add_argument("checkpoint")
    cv.add_argument("--out", help="the file to write (default: best.safetensors / last.safetensors beside it)")
    cv.add_argument("--trust", action="store_true", help="say that you trust the file's source (required)")
    cv.set_defaults(func=cmd_convert_checkpoint)
    bl = sub.add_parser("baselines", help="majority class, zero-shot and frozen linear-probe dev scores -> results/baselines-MODEL.json")
    bl.add_argument("--model", default=os.environ.get("MTBERT_MODEL", "minilm"))
    bl.add_argument("--results-dir", default="results")
    bl.add_argument("--threads", type=int)
    bl.set_defaults(func=cmd_baselines)
    e = sub.add_parser("experiments", help="list the named experiments")
    e.set_defaults(func=cmd_experiments)
    g = sub.add_parser("grade", help="run a notebook's exercises (quick mode) down to its last grader cell: one line "
                                     "PASS / TODO / FAIL per exercise; exit 0 only when all pass, 1 otherwise, 2 when a "
                                     "cell outside the exercises crashes")
    g.add_argument("notebook", help="e.g. notebooks/exercises/01_attention.ipynb")
    g.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    g.add_argument("--all", action="store_true", help="run the whole notebook, the demos after the last grader cell too")
    g.set_defaults(func=cmd_grade)
    return p


def _user_errors():
    """The errors a user can cause (imported when one is raised, so that `mtbert grade` never loads torch itself)."""
    from mtbert_lib.data import DataError
    from mtbert_lib.model import CheckpointError
    from mtbert_lib.training import NonFiniteLoss
    return (DataError, CheckpointError, ValueError, FileNotFoundError, NonFiniteLoss)


def main(argv=None):
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        a.func(a)
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"mtbert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtbert: interrupted (a training run resumes with --resume)", file=sys.stderr)
        return 130
    return getattr(a, "status", 0)


if __name__ == "__main__":
    sys.exit(main())

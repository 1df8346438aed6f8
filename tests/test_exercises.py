"""The graded exercises: the student edition is exactly what tools/exercises.py generates, and `mtbert grade` runs
every notebook with exercises down to its last grader cell (quick mode) and reports each exercise.

* the student edition (notebooks/exercises/): every exercise TODO, nothing crashes, exit status 1;
* the solution notebooks (notebooks/NN_*.ipynb): every grader cell is checked by nbval (its stored output, PASS,
  is compared on each run); `mtbert grade` on two of them: every exercise PASS, exit status 0;
* a small notebook with a syntax error in an exercise, a wrong answer, an unfinished one, a later cell broken by the
  wrong answer and a crash: FAIL (with the reason), FAIL, TODO, one AFTER FAIL line that names the exercise to fix
  (not a crash) and one CRASH line, exit status 2, with `--all`; without it the cells after the last grader (the
  crash among them) do not run: exit status 1.

The `mtbert grade` runs are subprocesses started together by one fixture, two at a time (one torch thread each),
the longest first. nbval runs every notebook whole (the demos after the graders included).
"""
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "notebooks"
# The exercises of each notebook, read from its grader cells (`check_<name>(...)`, as `mtbert grade` finds them).
SOLUTIONS = {p.stem: re.findall(r"^check_(\w+)\(", p.read_text(), re.M) for p in sorted(NBS.glob("[0-9][0-9]_*.py"))}
SOLUTIONS = {name: found for name, found in SOLUTIONS.items() if found}
# The order the notebooks are graded in: the slowest first (the others are placed by number, later ones first).
SLOWEST = ["08_mean_teacher", "07_round_robin", "05_sentiment", "06_multitask", "03_bert", "04_adamw"]
LONGEST_FIRST = [n for n in SLOWEST if n in SOLUTIONS] + sorted(set(SOLUTIONS) - set(SLOWEST), reverse=True)
# `mtbert grade` on the solutions: two notebooks (exit status 0); nbval checks every grader cell of every solution.
GRADED_SOLUTIONS = ["01_attention", "04_adamw"]
LINE = re.compile(r"^EXERCISE (\S+): (PASS|TODO|FAIL: .*)$")


def test_student_edition_is_what_tools_exercises_generates():
    r = subprocess.run([sys.executable, "tools/exercises.py", "check"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the committed student edition is stale (run: make exercises):\n{r.stdout}{r.stderr}"


def test_student_edition_has_no_solutions_and_never_exports():
    assert sorted(p.stem for p in (NBS / "exercises").glob("*.ipynb")) == sorted(SOLUTIONS)
    for name in SOLUTIONS:
        nb = nbformat.read(NBS / "exercises" / f"{name}.ipynb", as_version=4)
        solution = nbformat.read(NBS / f"{name}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert not re.search(r"^#\|", text, re.M), f"{name}: an nbdev directive would export the learner's code"
        assert "/notebooks/exercises/" + name + ".ipynb" in nb.cells[0].source  # the Colab badge
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
        stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        regions = sum(c.source.count("### BEGIN SOLUTION") for c in solution.cells)
        assert sum(c.source.count('raise NotImplementedError("HINT: ') for c in stubs) == regions > 0
        graders = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("locked")]
        assert graders == [c.source for c in solution.cells if re.search(r"^check_\w+\(", c.source, re.M)]
        assert len(graders) == len(SOLUTIONS[name])


BROKEN = [
    "from mtbert_lib.grading import check_attention, check_heads, check_symmetric_kl",
    "def scaled_dot_product_attention(q, k, v, key_mask=None, dropout_p=0.0, training=False):\n"
    "    ### BEGIN SOLUTION\n    return q @ k.T +\n    ### END SOLUTION",
    "check_attention(scaled_dot_product_attention)",
    "def split_heads(x, num_heads):\n    B, T, H = x.shape\n    return x.reshape(B, num_heads, T, H // num_heads)  # wrong\n\n"
    "def merge_heads(x):\n    B, h, T, d = x.shape\n    return x.transpose(1, 2).reshape(B, T, h * d)",
    "check_heads(split_heads, merge_heads)",
    "import torch\nx = torch.arange(8.0).reshape(1, 2, 4)\n"
    "assert torch.equal(merge_heads(split_heads(x, 2)), x)  # broken by the wrong split_heads: not a second problem",
    "def symmetric_kl(student_logits, teacher_logits):\n    raise NotImplementedError('HINT: ...')",
    "check_symmetric_kl(symmetric_kl)",
    "symmetric_kl(None, None)  # uses the unfinished exercise: not a crash",
    "print(undefined_name)  # after an unfinished exercise: a consequence, not a crash",
    "1 / 0  # a crash outside the exercises",
]


def _grade(path: Path, *flags):
    env = dict(os.environ, MTBERT_QUICK="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MTBERT_DATA=os.environ.get("MTBERT_DATA", str(ROOT / "data")),  # the broken notebook is outside the project
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "mtbert_lib.cli", "grade", str(path), *flags], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    return r, time.time() - t0


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """(edition, name) -> (CompletedProcess, seconds) of `mtbert grade`, for every notebook with exercises."""
    broken = tmp_path_factory.mktemp("broken") / "broken.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in BROKEN])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, broken)
    jobs = [("student", name, NBS / "exercises" / f"{name}.ipynb") for name in LONGEST_FIRST]
    jobs += [("solution", name, NBS / f"{name}.ipynb") for name in GRADED_SOLUTIONS]
    jobs += [("broken", "broken", broken, "--all"), ("broken", "to-last-grader", broken)]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1))) as pool:
        done = dict(zip([job[:2] for job in jobs], pool.map(lambda job: _grade(*job[2:]), jobs)))
    print(f"\nmtbert grade on {len(jobs)} notebooks: {time.time() - t0:.0f} s wall; "
          + ", ".join(f"{e[:3]} {n[:2]} {s:.0f}s" for (e, n), (_, s) in done.items()))
    return done


def _lines(r):
    return [LINE.match(line).groups() for line in r.stdout.splitlines() if LINE.match(line)]


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_every_grader_cell_of_the_solutions_is_checked_by_nbval(name):
    """nbval (`make nbval`) runs every solution notebook whole and compares each grader cell's output with the stored
    one, `EXERCISE <name>: PASS`: that is where every solution is graded on each test run. `mtbert grade` itself
    grades two solution notebooks below (its exit status 0)."""
    nb = nbformat.read(NBS / f"{name}.ipynb", as_version=4)
    graders = [c for c in nb.cells if c.cell_type == "code" and re.search(r"^check_\w+\(", c.source, re.M)]
    assert [c.metadata.get("tags", []) for c in graders] == [["nbval-check-output"]] * len(graders), \
        f"{name}: tag each grader cell nbval-check-output (# %% tags=[\"nbval-check-output\"] in notebooks/{name}.py)"
    assert ["".join(o.get("text", "") for o in c.outputs) for c in graders] == \
        [f"EXERCISE {e}: PASS\n" for e in SOLUTIONS[name]]


@pytest.mark.parametrize("name", GRADED_SOLUTIONS)
def test_solution_notebook_passes_every_exercise(name, graded):
    r, _ = graded["solution", name]
    assert r.returncode == 0 and "CRASH" not in r.stdout, f"mtbert grade notebooks/{name}.ipynb:\n{r.stdout}{r.stderr[-2000:]}"
    assert _lines(r) == [(e, "PASS") for e in SOLUTIONS[name]], r.stdout


@pytest.mark.parametrize("name", LONGEST_FIRST)
def test_student_notebook_reports_todo_and_does_not_crash(name, graded):
    r, _ = graded["student", name]
    assert r.returncode == 1 and "CRASH" not in r.stdout, f"mtbert grade notebooks/exercises/{name}.ipynb:\n{r.stdout}{r.stderr[-2000:]}"
    assert _lines(r) == [(e, "TODO") for e in SOLUTIONS[name]], r.stdout


def test_grade_reports_fail_todo_and_crash(graded):
    r, _ = graded["broken", "broken"]
    assert r.returncode == 2, r.stdout + r.stderr[-2000:]
    lines = _lines(r)
    assert [n for n, _ in lines] == ["attention", "heads", "symmetric_kl"]
    assert lines[0][1].startswith("FAIL: the exercise cell raised SyntaxError"), lines[0]
    assert lines[1][1].startswith("FAIL: split_heads:") and "mixes tokens" in lines[1][1]
    assert lines[2][1] == "TODO"
    crashes = [line for line in r.stdout.splitlines() if line.startswith("CRASH")]
    assert len(crashes) == 1 and "ZeroDivisionError" in crashes[0], r.stdout
    after = [line for line in r.stdout.splitlines() if line.startswith("AFTER FAIL")]
    assert len(after) == 1 and "AssertionError (no message)" in after[0] and "exercise heads" in after[0], r.stdout


def test_grade_stops_after_the_last_grader_cell_unless_all(graded):
    """Without --all the demos after the last grader cell do not run: the broken notebook's `1 / 0` is not reached."""
    r, _ = graded["broken", "to-last-grader"]
    assert r.returncode == 1 and "CRASH" not in r.stdout, r.stdout + r.stderr[-2000:]
    assert [n for n, _ in _lines(r)] == ["attention", "heads", "symmetric_kl"]
    assert graded["broken", "broken"][0].returncode == 2  # with --all the same notebook crashes in its last cell


def test_grade_bad_input(tmp_path):
    from mtbert_lib.cli import main
    assert main(["grade", str(tmp_path / "missing.ipynb")]) == 2
    empty = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), empty)
    assert main(["grade", str(empty)]) == 2

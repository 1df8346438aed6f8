"""Generate the student edition of the course: notebooks/exercises/NN_name.ipynb, one per notebook with exercises.

    python tools/exercises.py          # (re)write notebooks/exercises/*.ipynb from the sources notebooks/NN_name.py
    python tools/exercises.py check    # exit 1 when the committed student edition is not what this script writes

An exercise is a solution region in a source notebook, marked with nbgrader's markers, whose first line is a hint:

        ### BEGIN SOLUTION
        # HINT: what to do, in one line
        ...the library's code...
        ### END SOLUTION

The student edition is made with nbgrader's own preprocessors, standalone (no course database, no server, so it works
on Colab): ClearSolutions replaces every region by its stub, configured as `raise NotImplementedError("HINT: ...")`
with the region's hint; LockCells makes the grader cells read-only; ClearOutput clears the outputs (the student
edition is committed unexecuted); CheckCellMetadata validates the cells' nbgrader metadata. Before that, the nbdev
directives (#| export, #| default_exp) are removed, so the learner's functions live in the notebook and never in
mtbert_lib, and the cells are given nbgrader's metadata (the exercise cells are "autograded answer" cells, the cells
that call a `check_*` grader are read-only). The Colab badge points to the student edition and its set-up cell moves
into notebooks/exercises/.

A cell that would show an exercise's answer elsewhere (notebook 04's multi-tensor AdamW path does the same arithmetic
as the exercise) carries a directive `#| student: CODE`: the student edition has CODE instead of the cell (an import
of the library's version), and nbdev ignores the directive.
"""
import json, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import notebooks as course  # tools/notebooks.py: the sources, the badge and the set-up cell

OUT = course.NBS / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT_RE = re.compile(r"^\s*# HINT: (.+?)\s*$")
GRADER_RE = re.compile(r"^(check_\w+)\(.*\)\s*$", re.M)
DIRECTIVE_RE = re.compile(r"^#\|.*(\n|$)", re.M)
STUDENT_RE = re.compile(r"^#\| student: (.+)$", re.M)
PLACEHOLDER = "__MTBERT_EXERCISE_HINT__"

INTRO = """**Student edition.** The cells ending in `raise NotImplementedError("HINT: ...")` are your exercises:
replace that line by your code (the hint says what to do, the docstring what comes in and what goes out). The cell
right after each exercise runs its grader on real data and prints `EXERCISE <name>: PASS`, `TODO` (not written yet)
or `FAIL: <what is wrong>`. Cells further down that use an unfinished exercise stop with `NotImplementedError`:
finish it, then run them again. What you write stays in this notebook: the later notebooks import the course
library's own version. `mtbert grade notebooks/exercises/{name}.ipynb` grades the whole notebook from a terminal;
the solution is `notebooks/{name}.ipynb`."""


def hints(source: str, where: str) -> list:
    """The hint of every solution region of a cell, in order; every region must start with a `# HINT:` line."""
    lines, out = source.split("\n"), []
    for i, line in enumerate(lines):
        if BEGIN in line:
            m = HINT_RE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if not m:
                raise SystemExit(f"{where}: the line after {BEGIN!r} must be '# HINT: ...'")
            out.append(m.group(1))
    return out


def student_edition(src: Path):
    """The student notebook of a source, or None when it has no exercise."""
    import nbformat
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, ClearSolutions, LockCells
    if BEGIN not in src.read_text():
        return None
    nb, name = course.read_source(src), src.stem
    cells, pending = [], []  # pending: exercise cells waiting for their grader cell (for the grade_id)
    for c in nb.cells:
        if c.cell_type == "code":
            if m := STUDENT_RE.search(c.source):  # the cell would show an answer: the student edition imports it
                c.source = m.group(1).strip()
            c.source = DIRECTIVE_RE.sub("", c.source).strip("\n")
            if not c.source.strip():
                continue  # the `#| default_exp` cell
            if BEGIN in c.source:
                c.metadata["nbgrader"] = {"grade": False, "grade_id": f"{name}-{c.id}", "locked": False,
                                          "schema_version": 3, "solution": True, "task": False}
                pending.append(c)
            elif m := GRADER_RE.search(c.source):
                c.metadata["nbgrader"] = {"grade": False, "grade_id": m.group(1), "locked": True,
                                          "schema_version": 3, "solution": False, "task": False}
                for e in pending:
                    e.metadata["nbgrader"]["grade_id"] = f"{m.group(1)}-answer"
                pending = []
            if c.source.startswith("# Colab set-up:"):
                c.source = c.source.replace('/notebooks")', '/notebooks/exercises")')
        cells.append(c)
    if pending:
        raise SystemExit(f"{src.name}: an exercise without a grader cell (check_...(...)) after it")
    first = cells[0]
    assert first.cell_type == "markdown" and course.badge(name) in first.source, f"{src.name}: no Colab badge"
    first.source = first.source.replace(course.badge(name), exercise_badge(name))
    intro = nbformat.v4.new_markdown_cell(INTRO.format(name=name))
    intro.id = "intro"
    nb.cells = [first, intro] + cells[1:]

    found = {c.id: hints(c.source, f"{src.name} cell {c.id}") for c in nb.cells if BEGIN in c.source}
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    stub = f"# YOUR CODE HERE\nraise NotImplementedError({PLACEHOLDER})"
    resources = {}
    nb, resources = ClearSolutions(code_stub={"python": stub}).preprocess(nb, resources)
    nb, resources = LockCells().preprocess(nb, resources)
    nb, resources = ClearOutput().preprocess(nb, resources)
    nb, resources = CheckCellMetadata().preprocess(nb, resources)  # nbgrader's schema for the cells' metadata
    for c in nb.cells:
        for h in found.get(c.id, []):
            assert PLACEHOLDER in c.source
            c.source = c.source.replace(PLACEHOLDER, json.dumps(f"HINT: {h}", ensure_ascii=False), 1)
        assert PLACEHOLDER not in c.source and BEGIN not in c.source and END not in c.source
    return nbformat.writes(nb) + "\n"


def exercise_badge(name: str) -> str:
    return course.badge(name).replace(f"/notebooks/{name}.ipynb", f"/notebooks/exercises/{name}.ipynb")


def generate() -> dict:
    """file name -> text of every student notebook."""
    out = {}
    for src in course.sources():
        text = student_edition(src)
        if text is not None:
            out[f"{src.stem}.ipynb"] = text
    return out


def main(argv):
    want = generate()
    have = {p.name: p.read_text() for p in sorted(OUT.glob("*.ipynb"))}
    if argv[:1] == ["check"]:
        bad = [f"{n}: differs from what tools/exercises.py generates" for n in want if n in have and have[n] != want[n]]
        bad += [f"{n}: missing" for n in want if n not in have] + [f"{n}: not generated (stale)" for n in have if n not in want]
        for b in bad:
            print(f"notebooks/exercises/{b} (run: make exercises)")
        return 1 if bad else 0
    if argv:
        sys.exit(__doc__)
    OUT.mkdir(exist_ok=True)
    for n in have:
        if n not in want:
            (OUT / n).unlink()
            print(f"removed notebooks/exercises/{n}")
    for n, text in want.items():
        if have.get(n) != text:
            (OUT / n).write_text(text)
        print(f"{'wrote    ' if have.get(n) != text else 'unchanged'} notebooks/exercises/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

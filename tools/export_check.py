"""Fail when exporting the notebooks (nbdev-export) would change mtbert_lib/: the library and its notebooks disagree.

Exports into a temporary copy of the project, so the working tree is never touched.
"""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

with tempfile.TemporaryDirectory() as d:
    tmp = Path(d)
    for name in ("notebooks", "mtbert_lib"):
        shutil.copytree(ROOT / name, tmp / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    subprocess.run([str(Path(sys.executable).parent / "nbdev-export")], cwd=tmp, check=True)
    diff = filecmp.dircmp(ROOT / "mtbert_lib", tmp / "mtbert_lib", ignore=["__pycache__"])
    changed = diff.diff_files + diff.left_only + diff.right_only
    if changed:
        sys.exit(f"exporting the notebooks changes mtbert_lib/: {', '.join(sorted(changed))} "
                 "(edit the notebook source, then: python tools/notebooks.py build NN)")
print("export check: mtbert_lib/ is exactly what the notebooks export")

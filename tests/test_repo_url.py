"""The course's published location is one setting, [tool.nbdev] user/repo/branch in pyproject.toml: every Colab
badge, set-up cell, README/docs link and pyproject URL follows it (tools/notebooks.py: repo_url_problems)."""
import shutil
import sys
import tomllib

import pytest

from conftest import REPO_ROOT as ROOT

sys.path.insert(0, str(ROOT / "tools"))
import notebooks as course  # noqa: E402


def test_every_link_follows_the_setting():
    assert course.repo_url_problems() == []


def test_the_links_are_really_there():
    """The check above is only as good as what it reads: the README's badges, a set-up cell per notebook, the URLs."""
    user, repo, branch = course.repo_setting()
    readme = (ROOT / "README.md").read_text()
    assert len(course.COLAB_RE.findall(readme)) >= 10  # one badge per notebook
    for src in course.sources():
        text = src.read_text()
        assert course.badge(src.stem) in text and f"git clone -q -b {branch} https://github.com/{user}/{repo}" in text
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == f"https://github.com/{user}/{repo}"


@pytest.fixture
def copy(tmp_path):
    """A small copy of the tree: pyproject, README, docs/, one notebook (source and generated) and nbdev's index."""
    for rel in ["pyproject.toml", "README.md", "mtbert_lib/_modidx.py", "notebooks/01_attention.py",
                "notebooks/01_attention.ipynb", "notebooks/exercises/01_attention.ipynb",
                *[str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")]]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    # the README links every notebook: give the copy the files its badges name
    for p in (ROOT / "notebooks").glob("**/*.ipynb"):
        q = tmp_path / p.relative_to(ROOT)
        q.parent.mkdir(parents=True, exist_ok=True)
        q.touch(exist_ok=True)
    assert course.repo_url_problems(tmp_path) == []
    return tmp_path


def test_a_new_setting_flags_every_place_that_still_names_the_old_one(copy):
    py = copy / "pyproject.toml"
    py.write_text(py.read_text().replace('user = "mtbert-course"', 'user = "someone-else"'))
    bad = course.repo_url_problems(copy)
    for where in ("README.md", "pyproject.toml", "notebooks/01_attention.py", "notebooks/01_attention.ipynb",
                  "notebooks/exercises/01_attention.ipynb", "mtbert_lib/_modidx.py"):
        assert any(line.startswith(where + ":") for line in bad), (where, bad)
    # render fixes README and pyproject (the notebooks are rendered by `tools/notebooks.py render`, nbdev's index by export)
    course.render_links(copy / "README.md", copy)
    course.render_links(py, copy)
    bad = course.repo_url_problems(copy)
    assert not any(line.startswith(("README.md:", "pyproject.toml:")) for line in bad), bad
    assert "someone-else/mtbert/blob/main/notebooks/01_attention.ipynb" in (copy / "README.md").read_text()


def test_one_stray_badge_a_foreign_link_or_a_wrong_branch_is_caught(copy):
    readme = copy / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace("github/mtbert-course/mtbert/blob/main/notebooks/03_bert.ipynb",
                                   "github/mtbert-course/mtbert/blob/dev/notebooks/03_bert.ipynb", 1))
    assert [line.split(",")[0] for line in course.repo_url_problems(copy)] == ["README.md: Colab link to mtbert-course/mtbert@dev"]
    readme.write_text(text + "\nSee https://github.com/old-org/mtbert and notebooks/99_nothing.ipynb\n"
                      "[x](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/99_nothing.ipynb)\n")
    bad = course.repo_url_problems(copy)
    assert any("github.com/old-org/mtbert" in b for b in bad) and any("99_nothing.ipynb, which does not exist" in b for b in bad)
    nb = copy / "notebooks/01_attention.py"
    nb.write_text(nb.read_text().replace("git clone -q -b main", "git clone -q -b master"))
    assert any(b.startswith("notebooks/01_attention.py: set-up cell clones branch master") for b in course.repo_url_problems(copy))

"""README.md is a front page: a picture on its first screen, the two commands, one Colab badge per notebook, about
150 lines; the detail lives in docs/, and every relative link of README.md and docs/ leads to a file that exists."""
import re

from conftest import REPO_ROOT as ROOT

LINK_RE = re.compile(r"\]\(([^)\s]+)\)")


def test_the_front_page_shows_a_picture_first_and_stays_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines: move detail into docs/"
    first_image = next(i for i, line in enumerate(lines) if re.search(r"!\[[^\]]*\]\((?!https?:)[^)]+\.png\)", line))
    assert first_image < 6, f"the first picture is on line {first_image + 1}: the first screen should show one"
    picture = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", lines[first_image])[1]
    assert (ROOT / picture).stat().st_size > 10_000
    commands = [i for i, line in enumerate(lines) if line.startswith(("make run ", "make test "))]
    assert len(commands) == 2 and max(commands) < 45, "the two commands, early"


def test_every_notebook_is_on_the_front_page_with_its_badge():
    text = (ROOT / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{nb.stem}` |")), None)
        assert row and f"/notebooks/{nb.stem}.ipynb)" in row, f"{nb.stem}: no row with its Colab badge in README.md"
        student = ROOT / "notebooks" / "exercises" / f"{nb.stem}.ipynb"
        assert (f"/notebooks/exercises/{nb.stem}.ipynb)" in row) == student.exists(), f"{nb.stem}: student badge"


def test_every_relative_link_resolves():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert {"results.md", "speed.md", "gpu.md", "maintaining.md", "guide.md"} <= {f.name for f in files}
    broken = []
    for f in files:
        for target in LINK_RE.findall(f.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (f.parent / target.split("#")[0]).exists():
                broken.append(f"{f.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_detail_moved_not_lost():
    """Sentences of the old README's sections, each in its new home."""
    docs = {p.name: p.read_text() for p in (ROOT / "docs").glob("*.md")}
    assert "**Against Hugging Face at its best.**" in docs["speed.md"]
    assert "`precision=\"auto\"` (the default)" in docs["gpu.md"] and "torchrun --standalone" in docs["gpu.md"]
    assert "**The recipe.**" in docs["results.md"] and "Why the techniques do not help here" in docs["results.md"]
    assert "[tool.nbdev]" in docs["maintaining.md"] and "change" in docs["maintaining.md"]
    assert "mtbert grade notebooks/exercises/" in docs["guide.md"] and "`mtbert train` keeps the best" in docs["guide.md"]

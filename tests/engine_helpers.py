"""Shared helpers for the training-engine tests (test_engine_*.py).

The engine's `train`/`encode_split`/`predict_checkpoint` read the task files from the default data folder
(`mtbert_lib.data.data_dir()`: $MTBERT_DATA, else <project root>/data). The fixtures here point $MTBERT_DATA at the
project's already-fetched data/ folder when it holds all 12 files, and otherwise at conftest's `data_path`
(a fresh, sha256-checked copy), so the tests do not depend on the working directory pytest runs from.
"""
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def one_line(err) -> str:
    """The message of an exception (or pytest ExceptionInfo), asserted to be a single non-empty line."""
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg and "\n" not in msg, f"message is not one line: {msg!r}"
    return msg


def resolve_data_dir(request) -> Path:
    from mtbert_lib.data import DATA_FILES
    local = REPO_ROOT / "data"
    if all((local / f).is_file() for f in DATA_FILES) and (local / "MANIFEST.json").is_file():
        return local
    return request.getfixturevalue("data_path")  # conftest: copies the real files (fails when there are none)


@contextmanager
def interrupt_at_step(n: int):
    """train() is killed (KeyboardInterrupt, as by Ctrl-C) when it calls the optimizer's step for the n-th time."""
    import mtbert_lib.training as training
    calls = {"step": 0}

    class InterruptingAdamW(training.AdamW):
        def step(self, closure=None):
            calls["step"] += 1
            if calls["step"] == n:
                raise KeyboardInterrupt
            return super().step(closure)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "AdamW", InterruptingAdamW)
        yield calls  # calls["step"]: how many steps were attempted


@contextmanager
def data_env(path: Path):
    """$MTBERT_DATA = path for the duration (usable from fixtures of any scope)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTBERT_DATA", str(path))
        yield path


def require_minilm(request):
    """Skip (through conftest's fixture) when the MiniLM weights package is not installed."""
    request.getfixturevalue("minilm_dir")


def strip_timing(epochs: list) -> list:
    """Per-epoch history without the wall-clock field (the only one that may differ between equal runs)."""
    return [{k: v for k, v in e.items() if k != "wall_s"} for e in epochs]


def write_tiny_checkpoint(folder, **kw) -> Path:
    """A random-weight 2-layer BERT of width 32 with a character-level vocabulary (tools/random_checkpoint.py):
    `train(TrainConfig(model=str(folder), ...))` runs on it in well under a second per epoch, no MiniLM needed."""
    import sys
    tools = str(REPO_ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from random_checkpoint import write_random_checkpoint
    return write_random_checkpoint(folder, "tiny", **kw)

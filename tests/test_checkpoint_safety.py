"""Checkpoints are data, never code (issue 19). Every loader of the course gets a hostile file whose pickle would
create a marker file when unpickled: the marker must not exist afterwards and the error must be one line. Also: the
safetensors format gives back exactly what was saved, older plain pickles still load through the weights-only path,
and `mtbert convert-checkpoint --trust` converts a file the user trusts."""
import json
import math
import os
from dataclasses import asdict

import numpy as np
import pytest
import torch

from engine_helpers import data_env, resolve_data_dir, write_tiny_checkpoint
from mtbert_lib.cli import main
from mtbert_lib.model import BertConfig, BertModel, CheckpointError
from mtbert_lib.playground import find_checkpoints, from_checkpoint
from mtbert_lib.training import (BEST, LAST, TrainConfig, build_model, convert_checkpoint, load_best_checkpoint,
                                 read_checkpoint, run_name, write_checkpoint)


class Evil:
    """Unpickling this calls os.system, which creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def evil_checkpoint(path, marker, **plain):
    """A file laid out like a course checkpoint whose pickle runs a command when loaded with weights_only=False."""
    torch.save({"config": asdict(TrainConfig()), "encoder_config": {}, "model": Evil(marker), **plain}, path)
    return path


def assert_one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mtbert: error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    return err


def test_the_evil_file_really_runs_code_when_unpickled(tmp_path):
    """The control: the hostile file used below does create its marker under a full unpickle."""
    marker = tmp_path / "pwned"
    torch.load(evil_checkpoint(tmp_path / "best.pt", marker), weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------------ every loader

def test_predict_refuses_a_hostile_best_pt(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "shared-run").mkdir()
    path = evil_checkpoint(tmp_path / "shared-run" / "best.pt", marker)
    assert main(["predict", "--checkpoint", str(path), "--out", str(tmp_path / "p")]) == 2
    err = assert_one_error_line(capsys)
    assert "refused" in err and "posix.system" in err and "convert-checkpoint" in err
    assert not marker.exists() and not (tmp_path / "p").exists()


def test_playground_model_list_refuses_a_hostile_best_pt(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "runs" / "classmate"
    run.mkdir(parents=True)
    path = evil_checkpoint(run / "best.pt", marker)
    assert find_checkpoints(tmp_path / "runs") == [path]  # it is offered (it may be a real older checkpoint) ...
    with pytest.raises(CheckpointError) as e:  # ... but loading it calls nothing
        from_checkpoint(path)
    assert "\n" not in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["last.pt", LAST])
def test_resume_refuses_a_hostile_last_checkpoint(tmp_path, capsys, request, name):
    """`mtbert train --resume` with a copied run folder whose last checkpoint is hostile (a pickle, or a safetensors
    file that is not the course's)."""
    marker = tmp_path / "pwned"
    tiny = write_tiny_checkpoint(tmp_path / "tiny")
    cfg = TrainConfig(name="rr-balanced-specialized", model=str(tiny), train_limit=96)
    run = tmp_path / "runs" / run_name(cfg)
    run.mkdir(parents=True)
    if name == "last.pt":
        evil_checkpoint(run / name, marker, optimizer={}, state={}, rng={})
    else:
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(2)}, str(run / name), metadata={"format": "pt"})
    with data_env(resolve_data_dir(request)):
        rc = main(["train", "--experiment", "rr-balanced-specialized", "--quick", "--resume", "--model", str(tiny),
                   "--run-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), "--no-progress"])
    assert rc == 2
    err = assert_one_error_line(capsys)
    assert str(run / name) in err
    assert not marker.exists() and not (tmp_path / "results").exists()
    assert (run / name).exists()  # bad input loses nothing


def test_from_pretrained_refuses_a_hostile_pytorch_model_bin(tmp_path):
    marker = tmp_path / "pwned"
    folder = write_tiny_checkpoint(tmp_path / "tiny")
    (folder / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Evil(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(folder))
    assert "\n" not in str(e.value) and "pytorch_model.bin" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"\x80\x04K.", b"PK\x03\x04 not a zip", b""],
                         ids=["text", "pickled-int", "broken-zip", "empty"])
def test_files_that_are_not_checkpoints_are_one_line_errors(tmp_path, content):
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_best_checkpoint(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_forged_header_is_refused(tmp_path):
    """A safetensors file in the course's format whose JSON tree asks for something the format does not have."""
    from safetensors.torch import save_file
    path = tmp_path / BEST
    tree = {"config": {"__import__": "os.system"}, "encoder_config": {}, "model": {}}
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "mtbert-checkpoint", "tree": json.dumps(tree)})
    with pytest.raises(CheckpointError, match="unknown entry '__import__'"):
        read_checkpoint(path)
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "mtbert-checkpoint", "tree": "{not json"})
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


# ------------------------------------------------------------------------------------------------ the format itself

def test_round_trip_keeps_types_and_values_exactly(tmp_path):
    w = torch.randn(4, 3)
    obj = {"config": {"tasks": ("sst", "quora"), "batch_sizes": None, "lr": 1e-5, "name": "x"},
           "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(3)}, 7: {}},
                         "param_groups": [{"params": [0, 7], "betas": (0.9, 0.999), "lr": 2e-5}]},
           "state": {"best_score": -math.inf, "history": [{"dev": {"sst": np.float64(0.5)}, "n": np.int64(3)}]},
           "model": {"a.weight": w, "a.view": w[:, :2], "b": torch.ones(2, dtype=torch.bfloat16)},
           "rng": {"torch": torch.get_rng_state()}, "__dunder_key__": 1}
    path = tmp_path / "x.safetensors"
    write_checkpoint(obj, path)
    back = read_checkpoint(path)
    assert back["config"] == obj["config"] and isinstance(back["config"]["tasks"], tuple)
    assert set(back["optimizer"]["state"]) == {0, 7}
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], obj["optimizer"]["state"][0]["exp_avg"])
    assert back["state"]["best_score"] == -math.inf and back["state"]["history"][0] == {"dev": {"sst": 0.5}, "n": 3}
    assert torch.equal(back["model"]["a.weight"], w) and torch.equal(back["model"]["a.view"], w[:, :2])
    assert back["model"]["b"].dtype == torch.bfloat16 and torch.equal(back["rng"]["torch"], obj["rng"]["torch"])
    assert back["__dunder_key__"] == 1
    with pytest.raises(TypeError, match="cannot store a Evil"):
        write_checkpoint({"x": Evil(tmp_path / "m")}, tmp_path / "y.safetensors")


def tiny_best(tmp_path):
    cfg = TrainConfig(name="tiny", tasks=("sst",), eval_tasks=("sst",), schedule="single", pooling="cls",
                      sts_head="classification", model="minilm", max_length=64)
    enc = asdict(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    torch.manual_seed(0)
    return cfg, enc, build_model(cfg, enc).eval()


def test_an_older_plain_best_pt_loads_through_the_safe_path_and_converts(tmp_path, capsys, minilm_dir):
    cfg, enc, model = tiny_best(tmp_path)
    old = tmp_path / "best.pt"
    torch.save({"config": asdict(cfg), "encoder_config": enc, "model": model.state_dict(), "epoch": 1}, old)
    loaded, _, cfg_back = load_best_checkpoint(old)  # plain tensors and containers: torch's weights-only unpickler
    assert cfg_back.tasks == ("sst",)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # a pickle with a numpy scalar needs more than the weights-only unpickler: refused, then converted on --trust
    torch.save({"config": asdict(cfg), "encoder_config": enc, "model": model.state_dict(), "dev": {"sst": np.float64(.4)}}, old)
    with pytest.raises(CheckpointError, match="convert-checkpoint"):
        load_best_checkpoint(old)
    assert main(["convert-checkpoint", str(old)]) == 2 and "--trust" in assert_one_error_line(capsys)
    assert main(["convert-checkpoint", str(old), "--trust"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / BEST}"
    pg = from_checkpoint(tmp_path / BEST)
    assert all(torch.equal(a, b) for a, b in zip(pg.model.state_dict().values(), model.state_dict().values()))
    assert read_checkpoint(tmp_path / BEST)["dev"] == {"sst": 0.4}
    assert convert_checkpoint(old, tmp_path / "other.safetensors", trust=True).exists()

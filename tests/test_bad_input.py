"""Bad input ends in one line that names the file (and row) and the reason; the real data's flaws are handled.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from mtbert_lib.cli import main
from mtbert_lib.data import DATA_FILES, KNOWN_SHA256, DataError, fetch_data, load_task
from mtbert_lib.model import BertModel, CheckpointError, resolve_checkpoint

SST_HEADER = "\tid\tsentence\tsentiment\n"


def one_line(err) -> str:
    msg = str(err.value if hasattr(err, "value") else err)
    assert msg and "\n" not in msg, f"message is not one line: {msg!r}"
    assert "Traceback" not in msg
    return msg


def write(folder: Path, name: str, content, encoding="utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return p


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ load_task

def test_missing_data_file(tmp_path):
    with pytest.raises(DataError) as e:
        load_task("sts", "dev", tmp_path)
    msg = one_line(e)
    assert str(tmp_path / "sts-dev.csv") in msg and "missing data file" in msg


def test_missing_column(tmp_path):
    f = write(tmp_path, "ids-sst-dev.csv", "\tid\tsentence\n0\tabc\tA fine film .\n")
    with pytest.raises(DataError) as e:
        load_task("sst", "dev", tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "missing column 'sentiment'" in msg


def test_missing_text_column_in_pairs(tmp_path):
    f = write(tmp_path, "sts-train.csv", "\tid\tsentence1\tsimilarity\n0\tabc\tA man sings.\t3.2\n")
    with pytest.raises(DataError) as e:
        load_task("sts", "train", tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "missing column 'sentence2'" in msg


@pytest.mark.parametrize("task,split,name,row,bad", [
    ("sst", "dev", "ids-sst-dev.csv", "\tid\tsentence\tsentiment\n0\ta1\tGood .\t3\n1\tb2\tBad .\t7\n", "'7'"),
    ("sst", "train", "ids-sst-train.csv", "\tid\tsentence\tsentiment\n0\ta1\tGood .\t3\n1\tb2\tOdd .\t2.5\n", "'2.5'"),
    ("cfimdb", "dev", "ids-cfimdb-dev.csv", "\tid\tsentence\tsentiment\n0\ta1\tGood .\t1\n1\tb2\tBad .\t-1\n", "'-1'"),
    ("sts", "dev", "sts-dev.csv", "\tid\tsentence1\tsentence2\tsimilarity\n0\ta1\tx\ty\t4.2\n1\tb2\tx\ty\t5.5\n", "'5.5'"),
    ("quora", "dev", "quora-dev.csv", "\tid\tsentence1\tsentence2\tis_duplicate\n0\ta1\tx\ty\t1.0\n1\tb2\tx\ty\t2.0\n", "'2.0'"),
])
def test_label_out_of_range(tmp_path, task, split, name, row, bad):
    f = write(tmp_path, name, row)
    with pytest.raises(DataError) as e:
        load_task(task, split, tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "row 3" in msg and "id b2" in msg and bad in msg and "out of range" in msg


def test_label_not_a_number(tmp_path):
    f = write(tmp_path, "ids-sst-dev.csv", SST_HEADER + "0\ta1\tGood .\t3\n1\tb2\tBad .\tpositive\n")
    with pytest.raises(DataError) as e:
        load_task("sst", "dev", tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "row 3" in msg and "id b2" in msg and "not a number" in msg


def test_empty_label_outside_the_known_bad_rows_is_an_error(tmp_path):
    f = write(tmp_path, "quora-train.csv", "\tid\tsentence1\tsentence2\tis_duplicate\n0\tzz9\tx\ty\t\n")
    with pytest.raises(DataError) as e:
        load_task("quora", "train", tmp_path, report=None)
    msg = one_line(e)
    assert str(f) in msg and "row 2" in msg and "id zz9" in msg


@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["zero-bytes", "blank-lines"])
def test_empty_file(tmp_path, content):
    f = write(tmp_path, "sts-test-student.csv", content)
    with pytest.raises(DataError) as e:
        load_task("sts", "test-student", tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "empty file" in msg


def test_non_utf8_file(tmp_path):
    f = write(tmp_path, "ids-sst-dev.csv", (SST_HEADER + "0\ta1\tGood .\t3\n").encode() + b"1\tb2\tCaf\xe9 .\t2\n")
    with pytest.raises(DataError) as e:
        load_task("sst", "dev", tmp_path)
    msg = one_line(e)
    assert str(f) in msg and "not UTF-8" in msg


@pytest.mark.parametrize("task,split,word", [("mnli", "dev", "unknown task"), ("sst", "validation", "unknown split"),
                                             ("sst", "test", "unknown split")])
def test_unknown_task_or_split(tmp_path, task, split, word):
    with pytest.raises(DataError) as e:
        load_task(task, split, tmp_path)
    msg = one_line(e)
    assert word in msg and repr(task if "task" in word else split) in msg


def test_unicode_line_separator_inside_a_sentence(tmp_path):
    write(tmp_path, "ids-sst-dev.csv", SST_HEADER + "0\ta1\tGood\u2028film .\t3\n1\tb2\tBad\x85film .\t1\n")
    records = load_task("sst", "dev", tmp_path)
    assert [(r.id, r.label) for r in records] == [("a1", 3), ("b2", 1)]


# --------------------------------------------------------------------------------------- the real data's flaws

def test_quora_train_malformed_rows_are_skipped_and_reported(data_path):
    reports = []
    records = load_task("quora", "train", data_path, report=reports.append)
    assert len(records) == 14149  # 14,151 rows in the file, 2 of them malformed
    ids = {r.id for r in records}
    assert "ad118c967d683c93883bf072d" not in ids and "9054345d02cd6c5642a4904dc" not in ids
    assert len(reports) == 1 and "\n" not in reports[0]
    assert "quora-train.csv" in reports[0] and "skipped 2" in reports[0]
    assert "ad118c967d683c93883bf072d" in reports[0] and "9054345d02cd6c5642a4904dc" in reports[0]
    assert all(r.label in (0.0, 1.0) for r in records)


@pytest.mark.parametrize("task,split,n", [("sst", "train", 8544), ("sst", "dev", 1101), ("sst", "test-student", 2210),
                                          ("cfimdb", "train", 1707), ("cfimdb", "dev", 245),
                                          ("cfimdb", "test-student", 488), ("sts", "train", 6040),
                                          ("sts", "dev", 863), ("sts", "test-student", 1725),
                                          ("quora", "dev", 2021), ("quora", "test-student", 4042)])
def test_real_splits_load_completely_and_silently(data_path, task, split, n):
    reports = []
    records = load_task(task, split, data_path, report=reports.append)
    assert len(records) == n and not reports
    assert len({r.id for r in records}) == n
    if split == "test-student":
        assert all(r.label is None for r in records)
    else:
        assert all(r.label is not None for r in records)
    texts = [t for r in records for t in ((r.text,) if hasattr(r, "text") else (r.text1, r.text2))]
    assert all(t and t == t.strip() for t in texts)


# ---------------------------------------------------------------------------------------------- fetch_data

@pytest.fixture
def source_copy(data_source, tmp_path):
    """A writable copy of the data source folder."""
    src = tmp_path / "source"
    src.mkdir()
    for name in DATA_FILES:
        shutil.copyfile(data_source / name, src / name)
    return src


def known(name):
    return set(KNOWN_SHA256[name].values())


def test_checksum_mismatch(source_copy, tmp_path):
    bad = source_copy / "sts-dev.csv"
    bad.write_bytes(bad.read_bytes().replace(b"4.6", b"4.7", 1))
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as e:
        fetch_data(source_copy, dest, verbose=False)
    msg = one_line(e)
    assert str(bad) in msg and "sha256 mismatch" in msg
    assert not list(dest.glob("*.part")), "a failed fetch must not leave partial files"
    assert not (dest / "sts-dev.csv").exists(), "the mismatching file must not be installed"
    assert not (dest / "MANIFEST.json").exists()
    before = DATA_FILES[: DATA_FILES.index("sts-dev.csv")]
    for name in before:  # the files before the bad one were copied and verified
        assert sha(dest / name) in known(name)


def test_mismatch_keeps_existing_good_files(source_copy, data_path, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    for name in ("ids-sst-dev.csv", "sts-train.csv"):
        shutil.copyfile(data_path / name, dest / name)
    bad = source_copy / "sts-train.csv"  # the last file fetched
    bad.write_bytes(bad.read_bytes() + b"\n")
    good = source_copy / "ids-sst-dev.csv"
    good.write_bytes(good.read_bytes() + b"tampered\n")  # would not verify, but the good copy in dest is kept
    manifest = fetch_data(source_copy, dest, verbose=False)
    assert sha(dest / "ids-sst-dev.csv") in known("ids-sst-dev.csv")
    assert sha(dest / "sts-train.csv") in known("sts-train.csv")
    assert manifest["files"]["sts-train.csv"] in known("sts-train.csv")
    assert json.loads((dest / "MANIFEST.json").read_text())["edition"] == "cs224n-starter+quora-offline"
    assert not list(dest.glob("*.part"))


def test_mismatch_after_good_files_leaves_them_and_no_part_files(source_copy, data_path, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    shutil.copyfile(data_path / "quora-dev.csv", dest / "quora-dev.csv")
    before = sha(dest / "quora-dev.csv")
    bad = source_copy / "sts-test-student.csv"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(DataError) as e:
        fetch_data(source_copy, dest, verbose=False)
    msg = one_line(e)
    assert str(bad) in msg and "sha256 mismatch" in msg
    assert sha(dest / "quora-dev.csv") == before
    assert not list(dest.glob("*.part"))
    assert not (dest / "sts-test-student.csv").exists()


def test_corrupt_file_in_dest_is_replaced(data_source, data_path, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sts-dev.csv").write_text("corrupt")
    fetch_data(data_source, dest, verbose=False)
    assert sha(dest / "sts-dev.csv") == sha(data_path / "sts-dev.csv")
    assert not list(dest.glob("*.part"))


def test_source_missing_a_file(source_copy, tmp_path):
    (source_copy / "quora-dev.csv").unlink()
    with pytest.raises(DataError) as e:
        fetch_data(source_copy, tmp_path / "dest", verbose=False)
    msg = one_line(e)
    assert str(source_copy / "quora-dev.csv") in msg and "missing data file" in msg
    assert not list((tmp_path / "dest").glob("*.part"))


def test_source_folder_absent(tmp_path):
    with pytest.raises(DataError) as e:
        fetch_data(tmp_path / "nowhere", tmp_path / "dest", verbose=False)
    msg = one_line(e)
    assert str(tmp_path / "nowhere") in msg and "neither a URL nor an existing folder" in msg


# ------------------------------------------------------------------------------------------------------ CLI

def test_cli_fetch_from_nonexistent_source(tmp_path, capsys):
    rc = main(["data", "fetch", "--source", "/nonexistent", "--dest", str(tmp_path / "dest")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtbert: error: ") and "/nonexistent" in lines[0]


def test_cli_fetch_checksum_mismatch(source_copy, tmp_path, capsys):
    bad = source_copy / "ids-cfimdb-dev.csv"
    bad.write_bytes(b"x" + bad.read_bytes())
    rc = main(["data", "fetch", "--source", str(source_copy), "--dest", str(tmp_path / "dest")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("mtbert: error: ") and str(bad) in err and "sha256 mismatch" in err


def test_cli_fetch_ok(data_source, tmp_path, capsys):
    rc = main(["data", "fetch", "--source", str(data_source), "--dest", str(tmp_path / "dest")])
    out = capsys.readouterr()
    assert rc == 0 and out.err == ""
    assert "data edition: cs224n-starter+quora-offline" in out.out
    assert len(list((tmp_path / "dest").glob("*.csv"))) == 12


def test_cli_console_script_has_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "mtbert"
    if not exe.exists():
        pytest.skip(f"console script {exe} not installed")
    r = subprocess.run([str(exe), "data", "fetch", "--source", "/nonexistent", "--dest", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("mtbert: error: ")
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------------------------- checkpoints

def test_checkpoint_without_config(tmp_path, minilm_dir):
    shutil.copyfile(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(tmp_path))
    msg = one_line(e)
    assert str(tmp_path) in msg and "no config.json" in msg


def test_not_a_checkpoint_name(tmp_path):
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(tmp_path / "no-such-model"))
    msg = one_line(e)
    assert "no-such-model" in msg and "minilm" in msg


SMALL = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=32)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """(config.json text, HF-layout state dict) of a small random BERT saved by HF's save_pretrained."""
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("small")
    transformers.BertModel(transformers.BertConfig(**SMALL)).save_pretrained(folder)
    return (folder / "config.json").read_text(), load_file(folder / "model.safetensors")


def make_checkpoint(folder: Path, small_checkpoint, change=None) -> Path:
    from safetensors.torch import save_file
    config, sd = small_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config)
    sd = {k: v.clone() for k, v in sd.items()}
    if change:
        change(sd)
    save_file(sd, folder / "model.safetensors")
    return folder


def test_good_small_checkpoint_loads(tmp_path, small_checkpoint):
    folder = make_checkpoint(tmp_path / "ok", small_checkpoint)
    model = BertModel.from_pretrained(str(folder))
    assert model.config.hidden_size == 32 and len(model.encoder.layers) == 2


@pytest.mark.parametrize("fused_qkv", [True, False], ids=["fused", "separate"])
@pytest.mark.parametrize("key,shape,ours", [
    ("encoder.layer.1.intermediate.dense.weight", (63, 32), "encoder.layers.1.ffn.up.weight"),
    ("embeddings.word_embeddings.weight", (121, 32), "embeddings.word_embeddings.weight"),
    ("pooler.dense.bias", (31,), "pooler.dense.bias"),
])
def test_weight_of_wrong_shape(tmp_path, small_checkpoint, key, shape, ours, fused_qkv):
    def alter(sd):
        sd[key] = torch.zeros(shape)
    folder = make_checkpoint(tmp_path / "bad", small_checkpoint, alter)
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(folder), fused_qkv=fused_qkv)
    msg = one_line(e)
    assert str(folder) in msg and ours in msg and str(tuple(shape)) in msg and "expects" in msg


@pytest.mark.parametrize("fused_qkv", [
    True,
    False,
], ids=["fused", "separate"])
def test_attention_weight_of_wrong_shape(tmp_path, small_checkpoint, fused_qkv):
    def alter(sd):
        sd["encoder.layer.0.attention.self.key.weight"] = torch.zeros(32, 31)
    folder = make_checkpoint(tmp_path / "bad", small_checkpoint, alter)
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(folder), fused_qkv=fused_qkv)
    msg = one_line(e)
    assert str(folder) in msg and "(32, 31)" in msg


def test_missing_weight(tmp_path, small_checkpoint):
    folder = make_checkpoint(tmp_path / "bad", small_checkpoint, lambda sd: sd.pop("pooler.dense.bias"))
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(folder))
    msg = one_line(e)
    assert str(folder) in msg and "missing" in msg and "pooler.dense.bias" in msg


def test_checkpoint_without_weights(tmp_path, small_checkpoint):
    config, _ = small_checkpoint
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(tmp_path))
    msg = one_line(e)
    assert str(tmp_path) in msg and "no model.safetensors or pytorch_model.bin" in msg


def test_checkpoint_without_weights_names_folder_once(tmp_path, small_checkpoint):
    (tmp_path / "config.json").write_text(small_checkpoint[0])
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(tmp_path))
    assert str(e.value).count(str(tmp_path)) == 1, str(e.value)


def test_truncated_weight_file(tmp_path, small_checkpoint):
    folder = make_checkpoint(tmp_path / "bad", small_checkpoint)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        BertModel.from_pretrained(str(folder))
    msg = one_line(e)
    assert "model.safetensors" in msg


def test_invalid_config_json_names_the_file(tmp_path, small_checkpoint):
    folder = make_checkpoint(tmp_path / "bad", small_checkpoint)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError) as e:
        BertModel.from_pretrained(str(folder))
    assert "config.json" in one_line(e)


def test_hub_checkpoint_offline(tmp_path):
    """bert-base-uncased needs the Hugging Face hub: offline (and with an empty cache) it is one clear line."""
    code = (
        "import json\n"
        "from mtbert_lib.model import CheckpointError, resolve_checkpoint\n"
        "try:\n"
        "    resolve_checkpoint('bert-base-uncased')\n"
        "    print(json.dumps({'raised': None}))\n"
        "except CheckpointError as e:\n"
        "    print(json.dumps({'raised': type(e).__name__, 'msg': str(e)}))\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_HUB_CACHE", None)
    env.pop("HUGGINGFACE_HUB_CACHE", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["raised"] == "CheckpointError"
    msg = result["msg"]
    assert "\n" not in msg
    assert "bert-base-uncased" in msg and "internet" in msg and "minilm" in msg

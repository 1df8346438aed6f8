"""Prediction files: every value belongs to its id, the dev metric recomputed from the dev files is the run's recorded
best dev score, and the default six-file CS224N layout (`mtbert predict` without --tasks) matches a golden text.

`predict_checkpoint` sorts each split by length and scatters the batch predictions back; here each value is checked
against the model's prediction for that example alone (batch of one, no padding). A tiny random BERT trained with
Mean Teacher on the first rows of the real task files (tests/wiring_helpers.py); the predicted splits are those
rows' dev and test-student files.
"""
import numpy as np
import pytest
import torch

from engine_helpers import data_env
from mtbert_lib.cli import main
from mtbert_lib.model import BertConfig, BertModel
from mtbert_lib.multitask import MultitaskBERT
from mtbert_lib.tasks import collate, encode_split
from mtbert_lib.tokenizer import load_tokenizer
from mtbert_lib.training import TrainConfig, predict_checkpoint, predict_split, run_name, train
from wiring_helpers import FILES, SMALL_ROWS, load_pt, quiet, read_ids_and_labels

pytestmark = pytest.mark.usefixtures("one_thread")

SIX_FILES = ["para-dev-output.csv", "para-test-output.csv", "sst-dev-output.csv", "sst-test-output.csv",
             "sts-dev-output.csv", "sts-test-output.csv"]
OUTPUTS = {("sst", "dev"): "sst-dev-output.csv", ("sst", "test-student"): "sst-test-output.csv",
           ("quora", "dev"): "para-dev-output.csv", ("quora", "test-student"): "para-test-output.csv",
           ("sts", "dev"): "sts-dev-output.csv", ("sts", "test-student"): "sts-test-output.csv"}
HEADERS = {"sst": "id \t Predicted_Sentiment ", "quora": "id \t Predicted_Is_Paraphrase ", "sts": "id \t Predicted_Similiary "}
LABEL_COLUMNS = {"sst": "sentiment", "quora": "is_duplicate", "sts": "similarity"}
# An STS value in the file (batched, rounded to 4 decimals) vs the same example predicted alone: at most the rounding
# (5e-5) plus the batched-vs-alone difference of the unrounded values, measured 4.8e-7 = 2 float32 ulps at ~2
# (padding and batch size change the float32 summation order), bounded at 1e-6.
STS_TOL = 5e-5 + 1e-6


@pytest.fixture(scope="module")
def predicted(tiny_bert_dir, small_data_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    cfg = TrainConfig(name="pred-wiring", model=str(tiny_bert_dir), tasks=("sst", "quora", "sts"),
                      eval_tasks=("sst", "quora", "sts"), schedule="balanced", batch_size=4, epochs=2, max_length=32,
                      precision="fp32", pooling="mean", lr=3e-3, head_lr=3e-2, dropout=0.1, consistency="kl",
                      ema_decay=0.5, eval_teacher=True, train_eval_limit=4, eval_batch_size=4)
    with data_env(small_data_dir):
        result = train(cfg, base / "runs", base / "results", progress=False, log=quiet)
        best = base / "runs" / run_name(cfg) / "best.safetensors"
        written = predict_checkpoint(best, base / "out", log=quiet)
    return dict(cfg=cfg, result=result, best=best, written=written, out=base / "out")


def read_prediction_file(path):
    lines = path.read_text().split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    rows = [line.split(" , ") for line in lines[1:-1]]
    assert all(len(r) == 2 and r[1].endswith(" ") for r in rows), rows
    return lines[0], [r[0] for r in rows], [r[1][:-1] for r in rows]


def alone(model, tok, split, i, task):
    """The model's prediction and (for classification) the top-2 margin for example i on its own."""
    with torch.no_grad():
        out = model(task, collate(split, [i], tok))
        pred = model.predict(task, out).item()
    if task == "sst":
        top = out[0].topk(2).values
        return pred, (top[0] - top[1]).item()
    return pred, (abs(out.item()) if task == "quora" else None)


def spread_heads(model, splits, tok):
    """The tiny model predicts one SST class and one Quora label for every example, which would hide a misplaced
    value: give its SST and Quora heads random weights, centred (bias) on the examples to predict."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for task in ("sst", "quora"):
            head = model.heads[task]
            head.weight.copy_(3 * torch.randn(head.weight.shape, generator=g))
            head.bias.zero_()
            logits = torch.cat([model(task, collate(s, [i], tok)).reshape(1, -1)
                                for (t, _), s in splits.items() if t == task for i in range(len(s))])
            head.bias.copy_(-logits.mean(0))


def test_each_value_belongs_to_its_id(predicted, small_data_dir, tmp_path, measure):
    assert sorted(p.name for p in predicted["written"]) == sorted(p.name for p in predicted["out"].iterdir()) == SIX_FILES
    ck = load_pt(predicted["best"])
    cfg = ck["config"]
    model = MultitaskBERT(BertModel(BertConfig(**ck["encoder_config"])), cfg["pooling"], cfg["pair_encoding"],
                          cfg["sts_head"], cfg["dropout"])
    model.load_state_dict(ck["model"])
    model.eval()
    tok = load_tokenizer(cfg["model"])
    with data_env(small_data_dir):
        splits = {key: encode_split(*key, tok, cfg["max_length"], report=None) for key in OUTPUTS}
    spread_heads(model, splits, tok)
    ck["model"] = model.state_dict()
    torch.save(ck, tmp_path / "best.pt")
    with data_env(small_data_dir):
        written = predict_checkpoint(tmp_path / "best.pt", tmp_path / "out", log=quiet)
    assert sorted(p.name for p in written) == SIX_FILES
    worst, batched, near_ties = 0.0, 0.0, 0
    for (task, split), name in OUTPUTS.items():
        header, ids, values = read_prediction_file(tmp_path / "out" / name)
        assert header == HEADERS[task]
        file_ids, _ = read_ids_and_labels(small_data_dir / FILES[task].format(split=split), None)
        assert ids == file_ids and len(ids) == SMALL_ROWS[task, split]  # one row per example, in the split's order
        s = splits[task, split]
        assert s.ids == ids
        assert list(np.argsort(s.lengths(), kind="stable")) != list(range(len(ids))), f"{name}: already sorted by length"
        for i, v in enumerate(values):
            pred, margin = alone(model, tok, s, i, task)
            if task == "sts":
                worst = max(worst, abs(float(v) - pred))
                assert abs(float(v) - pred) <= STS_TOL, (name, ids[i], v, pred)
                assert len(v.partition(".")[2]) <= 4
            else:
                assert v in (("0", "1", "2", "3", "4") if task == "sst" else ("0", "1")), (name, v)  # integers
                if margin < 1e-5:
                    near_ties += 1
                    continue
                assert int(v) == pred, (name, ids[i], v, pred)
        assert len(set(values)) >= 2, f"{name}: constant predictions would not show a misplaced value"
        if task == "sts":  # the part of STS_TOL that is not rounding: the batched, unrounded predictions vs alone
            raw = predict_split(model, s, tok, cfg["eval_batch_size"])
            batched = max([batched] + [abs(raw[i] - alone(model, tok, s, i, task)[0]) for i in range(len(s))])
            assert batched <= STS_TOL - 5e-5
    measure(f"predict_checkpoint: STS file values vs one-example predictions max {worst:.2e} (4-decimal rounding "
            f"included; batched unrounded vs alone {batched:.2e}); {near_ties} classification near-ties skipped")
    assert near_ties <= 1


def test_dev_metric_from_the_files_is_the_recorded_best(predicted, small_data_dir, measure):
    best_dev = predicted["result"]["best_dev"]
    assert load_pt(predicted["best"])["dev"] == best_dev
    for task in ("sst", "quora", "sts"):
        _, ids, values = read_prediction_file(predicted["out"] / OUTPUTS[task, "dev"])
        file_ids, labels = read_ids_and_labels(small_data_dir / FILES[task].format(split="dev"), LABEL_COLUMNS[task])
        assert ids == file_ids
        p, y = np.array([float(v) for v in values]), np.array(labels)
        if task == "sts":  # Pearson r with numpy. The file's values are rounded to 4 decimals (|δ| ≤ 5e-5 each), which
            # moves r by at most |δ|·sqrt(1 − r²)/std(p) to first order (Cauchy-Schwarz); 10% slack for the second order
            r = np.sum((p - p.mean()) * (y - y.mean())) / np.sqrt(np.sum((p - p.mean()) ** 2) * np.sum((y - y.mean()) ** 2))
            bound = 1.1 * 5e-5 * np.sqrt(1 - r ** 2) / p.std()
            measure(f"STS dev Pearson r from the rounded prediction file vs the recorded best: {abs(r - best_dev[task]):.2e} "
                    f"(bound {bound:.1e})")
            assert abs(r - best_dev[task]) <= bound
        else:
            assert np.mean(p == y) == pytest.approx(best_dev[task], abs=1e-12)


# ------------------------------------------------------------------------------------------------ golden file

HAND_DATA = {  # a few hand-made examples per split, in the CS224N files' columns
    "ids-sst-dev.csv": "\tid\tsentence\tsentiment\n0\tsd-1\tA lovely film .\t4\n1\tsd-2\tDull and long .\t0\n",
    "ids-sst-test-student.csv": "\tid\tsentence\n0\tst-1\tGreat fun .\n1\tst-2\tNot good at all .\n2\tst-3\tFine .\n",
    "quora-dev.csv": "\tid\tsentence1\tsentence2\tis_duplicate\n"
                     "0\tqd-1\tHow do I cook rice?\tWhat is the best way to cook rice?\t1\n",
    "quora-test-student.csv": "\tid\tsentence1\tsentence2\n0\tqt-1\tWhy is the sky blue?\tWhat colour is grass?\n"
                              "1\tqt-2\tHow old is the moon?\tWhat is the age of the moon?\n",
    "sts-dev.csv": "\tid\tsentence1\tsentence2\tsimilarity\n0\txd-1\tA man plays a flute.\tA man plays a bamboo flute.\t3.8\n"
                   "1\txd-2\tA cat sleeps.\tThe market fell.\t0.0\n",
    "sts-test-student.csv": "\tid\tsentence1\tsentence2\n0\txt-1\tTwo dogs run.\tTwo dogs are running.\n",
}
# What `mtbert predict` must write for them when the heads predict SST class 3, paraphrase 1 and similarity e
# (rounded to 4 decimals): written out by hand in the CS224N layout (header 'id \t column \n', rows 'id , value \n').
GOLDEN = {
    "sst-dev-output.csv": "id \t Predicted_Sentiment \nsd-1 , 3 \nsd-2 , 3 \n",
    "sst-test-output.csv": "id \t Predicted_Sentiment \nst-1 , 3 \nst-2 , 3 \nst-3 , 3 \n",
    "para-dev-output.csv": "id \t Predicted_Is_Paraphrase \nqd-1 , 1 \n",
    "para-test-output.csv": "id \t Predicted_Is_Paraphrase \nqt-1 , 1 \nqt-2 , 1 \n",
    "sts-dev-output.csv": "id \t Predicted_Similiary \nxd-1 , 2.7183 \nxd-2 , 2.7183 \n",
    "sts-test-output.csv": "id \t Predicted_Similiary \nxt-1 , 2.7183 \n",
}


def test_default_layout_matches_golden_files(predicted, tmp_path, capsys):
    data = tmp_path / "hand-data"
    data.mkdir()
    for name, text in HAND_DATA.items():
        (data / name).write_text(text)
    ck = load_pt(predicted["best"])  # the trained run's checkpoint, with heads that output known constants
    sd = ck["model"]
    for head, bias in [("sst", [0.0, 0.0, 0.0, 4.0, 0.0]), ("quora", [3.0]), ("sts", [2.718281828])]:
        sd[f"heads.{head}.weight"].zero_()
        sd[f"heads.{head}.bias"].copy_(torch.tensor(bias))
    path = tmp_path / "best.pt"
    torch.save(ck, path)
    out = tmp_path / "predictions"
    with data_env(data):
        assert main(["predict", "--checkpoint", str(path), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("wrote ") == 6
    assert sorted(p.name for p in out.iterdir()) == SIX_FILES
    for name, text in GOLDEN.items():
        assert (out / name).read_text() == text, name

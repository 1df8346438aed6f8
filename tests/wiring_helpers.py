"""Helpers for the wiring tests (test_wiring_*.py): a tiny random BERT checkpoint, a small slice of the real task files,
and a probe that watches one `train()` call from outside.

The wiring tests check how the library's parts are connected inside `train()` and `predict_checkpoint()` (which
switch reaches the loop, which weights end up where), not what a pretrained model learns, so they use

* a tiny random-weight BERT (2 layers, hidden 32) written as a Hugging Face-layout checkpoint folder with MiniLM's
  vocab.txt: `train()` loads it through `--model <folder>` like any checkpoint, at ~1/700 of MiniLM's compute. Its
  config has no dropout inside the encoder, so a forward pass can be recomputed exactly outside the loop; every
  weight (LayerNorm and biases too) is perturbed away from its initial value so that weight decay on a bias or a
  LayerNorm weight would show.
* the first rows of the real CS224N files, with train sets of different sizes per task (12 SST, 20 Quora, 8 STS)
  so that the single / uneven / balanced schedules give different numbers of examples.
"""
import csv
import json
import shutil
from pathlib import Path

import torch

import mtbert_lib.training as training
from mtbert_lib.mean_teacher import MeanTeacher
from mtbert_lib.multitask import MultitaskBERT

TINY_SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

#: rows kept per (task, split) in the small data folder
SMALL_ROWS = {("sst", "train"): 12, ("quora", "train"): 20, ("sts", "train"): 8, ("cfimdb", "train"): 4,
              ("sst", "dev"): 10, ("quora", "dev"): 10, ("sts", "dev"): 10, ("cfimdb", "dev"): 4,
              ("sst", "test-student"): 7, ("quora", "test-student"): 7, ("sts", "test-student"): 7,
              ("cfimdb", "test-student"): 4}
FILES = {"sst": "ids-sst-{split}.csv", "cfimdb": "ids-cfimdb-{split}.csv", "quora": "quora-{split}.csv",
         "sts": "sts-{split}.csv"}

# Hugging Face's names of our layer's sub-modules (the inverse of mtbert_lib.model._LAYER_MAP, written out here).
_HF_NAMES = {"attention.out": "attention.output.dense", "attention_norm.norm": "attention.output.LayerNorm",
             "ffn.up": "intermediate.dense", "ffn.down": "output.dense", "ffn_norm.norm": "output.LayerNorm"}


def to_hf_layout(sd: dict) -> dict:
    """Our BertModel state dict -> the Hugging Face layout (bert checkpoints' names, q/k/v as three tensors)."""
    out = {}
    for k, v in sd.items():
        if not k.startswith("encoder.layers."):
            out[k] = v.clone().contiguous()  # embeddings.* and pooler.* have the same names
            continue
        _, _, i, rest = k.split(".", 3)
        sub, param = rest.rsplit(".", 1)
        if sub == "attention.qkv":
            for name, part in zip(("query", "key", "value"), v.chunk(3, 0)):
                out[f"encoder.layer.{i}.attention.self.{name}.{param}"] = part.clone().contiguous()
        else:
            out[f"encoder.layer.{i}.{_HF_NAMES[sub]}.{param}"] = v.clone().contiguous()
    return out


def write_tiny_checkpoint(folder: Path, vocab_file: Path, seed: int = 0) -> Path:
    """A random-weight BERT with MiniLM's vocabulary, saved as config.json + model.safetensors + vocab.txt."""
    from safetensors.torch import save_file
    from mtbert_lib.model import BertConfig, BertModel
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = sum(1 for _ in open(vocab_file, encoding="utf-8"))
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=vocab_size, **TINY_SIZES))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    sd = model.state_dict()
    save_file(to_hf_layout(sd), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu",
                                                    "vocab_size": vocab_size, **TINY_SIZES}))
    shutil.copyfile(vocab_file, folder / "vocab.txt")
    loaded = BertModel.from_pretrained(str(folder)).state_dict()  # the checkpoint reads back exactly
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    return folder


def write_small_data(source: Path, dest: Path, rows: dict = SMALL_ROWS) -> Path:
    """The header and the first rows of each real task file (parsed and re-written as tab-separated CSV), and the
    source's MANIFEST.json (the edition of the files the rows come from)."""
    dest.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    for (task, split), n in rows.items():
        name = FILES[task].format(split=split)
        with open(source / name, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t")
            kept = [next(reader)] + [row for _, row in zip(range(n), reader)]
        with open(dest / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)
    if (source / "MANIFEST.json").is_file():
        shutil.copyfile(source / "MANIFEST.json", dest / "MANIFEST.json")
    return dest


def read_ids_and_labels(path: Path, label_column: str | None):
    """(ids, labels) of a task file, read with the csv module (independently of mtbert_lib.data)."""
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header = rows[0]
    i = header.index("id")
    ids = [r[i] for r in rows[1:]]
    labels = [float(r[header.index(label_column)]) for r in rows[1:]] if label_column else None
    return ids, labels


def snapshot(module) -> dict:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


class TrainProbe:
    """Watches one `train()` call from outside (through monkeypatch; nothing in the loop changes):

    model      the MultitaskBERT train() built; `initial`: its parameters before any step
    optimizer  the AdamW it built (param_groups as used); `steps`: one dict per optimizer step with the
               parameters before and after, the gradients and each group's lr at the step
    teacher    one (step argument, teacher parameters after the update, the MeanTeacher) per EMA update
    losses     one (task, supervised loss, batch size) per training batch, in order
    consistency  the consistency loss of each training batch, in order
    rounds     {epoch: rounds} as the sampler returned them to the loop
    """

    def __init__(self, mp, params: bool = True):
        """params=False: record no parameter copies (steps keep only the gradients' names and the lrs)."""
        self.model, self.initial, self.optimizer = None, None, None
        self.steps, self.teacher, self.losses, self.consistency, self.rounds = [], [], [], [], {}
        probe = self
        real_build = training.build_model

        def build_model(cfg, encoder_config=None):
            model = real_build(cfg, encoder_config)
            if probe.model is None:
                probe.model, probe.initial = model, snapshot(model)
            return model

        class ProbedAdamW(training.AdamW):
            def __init__(self, params, **kw):
                super().__init__(params, **kw)
                probe.optimizer = self

            def step(self, closure=None):
                named = list(probe.model.named_parameters())
                record = {"grads": {n: p.grad.detach().clone() if params else None
                                    for n, p in named if p.grad is not None},
                          "lrs": [g["lr"] for g in self.param_groups]}
                if params:
                    record["before"] = {n: p.detach().clone() for n, p in named}
                out = super().step(closure)
                if params:
                    record["after"] = snapshot(probe.model)
                probe.steps.append(record)
                return out

        real_update, real_consistency, real_loss = MeanTeacher.update, MeanTeacher.consistency, MultitaskBERT.loss
        real_sample = training.TrainConfig.sample_epoch

        def update(self, student, step, stepped=True):
            real_update(self, student, step, stepped)
            probe.teacher.append((step, snapshot(self.model) if params else None, self))

        def consistency(self, task, student_out, batch):
            value = real_consistency(self, task, student_out, batch)
            probe.consistency.append(value.item())
            return value

        def loss(self, task, outputs, labels):
            value = real_loss(self, task, outputs, labels)
            if self.training:
                probe.losses.append((task, value.item(), len(labels)))
            return value

        def sample_epoch(self, lengths, epoch):
            rounds = real_sample(self, lengths, epoch)
            probe.rounds[epoch] = rounds  # the loop's own call for an epoch comes after the step count's
            return rounds

        mp.setattr(training, "build_model", build_model)
        mp.setattr(training, "AdamW", ProbedAdamW)
        mp.setattr(MeanTeacher, "update", update)
        mp.setattr(MeanTeacher, "consistency", consistency)
        mp.setattr(MultitaskBERT, "loss", loss)
        mp.setattr(training.TrainConfig, "sample_epoch", sample_epoch)

    def names_of(self, params) -> list:
        by_id = {id(p): n for n, p in self.model.named_parameters()}
        return [by_id[id(p)] for p in params]


def load_pt(path):
    return training.read_checkpoint(path)


def quiet(*_):
    pass

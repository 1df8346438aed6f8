"""Notebook 11 (mtbert_lib/beyond.py): MLM masking against transformers' DataCollatorForLanguageModeling, the tied MLM
head and the saved checkpoint folder against transformers' BertForMaskedLM, further pretraining on training text
only, PCGrad against a hand-computed toy and a transcription of the paper's Algorithm 1, the `update="pcgrad"` mode
in the training loop, and SMART (zero on a constant model, gradient flows, the hook is removed, config validation)."""
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine_helpers import data_env, one_line, resolve_data_dir
from mtbert_lib import beyond
from mtbert_lib.beyond import (BertForMLM, mask_tokens, pcgrad, pcgrad_step, pretrain_mlm, save_checkpoint_folder,
                               smart_loss, special_ids, take_grads)
from mtbert_lib.model import BertModel
from mtbert_lib.training import TrainConfig, build_model, train

pytestmark = pytest.mark.usefixtures("one_thread")
quiet = lambda *a: None


# ------------------------------------------------------------------------------------------------ MLM masking

def _rates(ids, inputs, labels, specials, MASK):
    real = ~torch.isin(ids, torch.tensor(specials))
    picked = labels != -100
    return {"picked": (picked.sum() / real.sum()).item(),
            "mask": (inputs[picked] == MASK).float().mean().item(),
            "unchanged": (inputs[picked] == ids[picked]).float().mean().item(),
            "random": ((inputs[picked] != MASK) & (inputs[picked] != ids[picked])).float().mean().item(),
            "special_picked": int((picked & ~real).sum()), "labels_ok": bool((labels[picked] == ids[picked]).all()),
            "untouched_outside": bool((inputs[~picked] == ids[~picked]).all())}


def test_masking_matches_hf_collator_statistics(request, minilm_dir, minilm_tokenizer, measure):
    """The same real tokenised SST/STS training sentences through ours and HF's collator: the rates agree with
    15% / 80-10-10 and with each other within a few binomial standard deviations; special tokens are never picked."""
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling
    tok = minilm_tokenizer
    with data_env(resolve_data_dir(request)):
        texts = beyond.training_sentences(("sst", "sts"), limit=1500)[:3000]
    enc = tok.encode(texts, max_length=64)
    batch = tok.pad(enc)
    ids = batch["input_ids"]  # padded: [PAD] must never be picked either
    specials = special_ids(tok)
    ours_inputs, ours_labels = mask_tokens(ids, specials, tok.vocab_size, tok.mask_id, generator=torch.Generator().manual_seed(0))
    ours = _rates(ids, ours_inputs, ours_labels, specials, tok.mask_id)
    hf_tok = AutoTokenizer.from_pretrained(str(minilm_dir))  # the same vocabulary and special tokens
    collator = DataCollatorForLanguageModeling(hf_tok, mlm=True, mlm_probability=0.15, seed=0)
    torch.manual_seed(0)
    out = collator([{"input_ids": e[0]} for e in enc])
    assert out["input_ids"].shape == ids.shape
    hf = _rates(ids, out["input_ids"], out["labels"], specials, tok.mask_id)
    n_real = int((~torch.isin(ids, torch.tensor(specials))).sum())
    measure(f"MLM masking on {n_real} real tokens: ours {json.dumps({k: round(v, 4) for k, v in ours.items() if isinstance(v, float)})}"
            f" | HF {json.dumps({k: round(v, 4) for k, v in hf.items() if isinstance(v, float)})}")
    n_picked = 0.15 * n_real
    for r in (ours, hf):
        assert r["special_picked"] == 0 and r["labels_ok"] and r["untouched_outside"]
        assert abs(r["picked"] - 0.15) < 5 * (0.15 * 0.85 / n_real) ** 0.5
        assert abs(r["mask"] - 0.8) < 5 * (0.8 * 0.2 / n_picked) ** 0.5
        # 'unchanged' also holds the random draws that hit the original token (1 in 30,522)
        assert abs(r["unchanged"] - 0.1) < 5 * (0.09 / n_picked) ** 0.5
        assert abs(r["random"] - 0.1) < 5 * (0.09 / n_picked) ** 0.5
    for k in ("picked", "mask", "unchanged", "random"):
        assert abs(ours[k] - hf[k]) < 0.03, k
    # more than statistics: with the same seed HF's collator (transformers 5) draws the same Bernoulli and randint
    # numbers in the same order, so the masked batches are identical
    assert torch.equal(out["labels"], ours_labels) and torch.equal(out["input_ids"], ours_inputs)


# ------------------------------------------------------------------------------------------------ tied MLM head

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def test_tied_head_and_saved_folder_match_hf_bert_for_masked_lm(tmp_path, measure):
    """A random HF BertForMaskedLM (its head randomised too) -> our BertForMLM: same logits. Ours saved as a
    folder -> HF loads it with the same logits, and BertModel.from_pretrained / load_tokenizer read it."""
    import transformers
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(transformers.BertConfig(**SMALL)).eval()
    with torch.no_grad():
        for n, p in hf.named_parameters():
            if n.startswith("cls."):
                p.add_(0.1 * torch.randn_like(p))  # a head that is not at its initial values
    hf.save_pretrained(tmp_path / "hf")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(SMALL["vocab_size"] - 5))]
    (tmp_path / "hf" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    ours = BertForMLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert "head.decoder.weight" not in dict(ours.named_parameters())  # tied: the decoder IS the word embeddings
    ids = torch.randint(5, SMALL["vocab_size"], (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask)
    diff = (got - ref)[mask.bool()].abs().max().item()
    measure(f"BertForMLM vs transformers.BertForMaskedLM logits: max abs diff {diff:.2e}")
    assert diff < 1e-4
    # gradients of the logits reach the word embeddings through the decoder too
    ours.zero_grad()
    ours(ids, mask).sum().backward()
    assert ours.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0

    folder = save_checkpoint_folder(ours, tmp_path / "ours", vocab_from=str(tmp_path / "hf"))
    hf2 = transformers.BertForMaskedLM.from_pretrained(folder).eval()
    with torch.no_grad():
        diff2 = (hf2(input_ids=ids, attention_mask=mask).logits - got)[mask.bool()].abs().max().item()
        enc = BertModel.from_pretrained(str(folder)).eval()
        diff3 = (enc(ids, mask).last_hidden_state - ours.bert(ids, mask).last_hidden_state)[mask.bool()].abs().max().item()
    measure(f"saved MLM folder read by transformers: max abs logit diff {diff2:.2e}; by BertModel: {diff3:.2e}")
    assert diff2 < 1e-4 and diff3 == 0.0
    from mtbert_lib.tokenizer import load_tokenizer
    assert load_tokenizer(str(folder)).vocab_size == len(vocab)


def test_minilm_gets_a_fresh_head_with_berts_init(minilm_dir):
    m = BertForMLM.from_pretrained("minilm")
    assert m.head.dense.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.head.bias.abs().sum() == 0 and torch.equal(m.head.LayerNorm.weight, torch.ones(384))


# ------------------------------------------------------------------------------------------------ further pretraining

def test_pretrain_mlm_reads_training_text_only_and_writes_a_loadable_folder(tiny_bert_dir, small_data_dir, tmp_path,
                                                                             monkeypatch):
    splits = []
    real_load = beyond.load_task
    monkeypatch.setattr(beyond, "load_task", lambda task, split, *a, **k: splits.append(split) or real_load(task, split, *a, **k))
    with data_env(small_data_dir):
        r = pretrain_mlm(str(tiny_bert_dir), tmp_path / "mlm", steps=3, batch_size=4, heldout=6, warmup=1, log=quiet)
    assert set(splits) == {"train"}
    assert r["steps"] == len(r["loss"]) == 3 and all(np.isfinite(r["loss"]))
    assert 0 <= r["accuracy_before"] <= 1 and 0 <= r["accuracy_after"] <= 1
    folder = tmp_path / "mlm"
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "vocab.txt", "mlm_pretraining.json"}
    enc = BertModel.from_pretrained(str(folder))  # what --model PATH does
    assert enc.config.hidden_size == 32
    before = BertModel.from_pretrained(str(tiny_bert_dir)).state_dict()
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items())  # it learned something
    again = BertForMLM.from_pretrained(str(folder))  # continuing: the saved head comes back
    assert torch.equal(again.head.dense.weight, BertForMLM.from_pretrained(str(folder)).head.dense.weight)
    assert not torch.equal(again.head.dense.weight, BertForMLM.from_pretrained(str(tiny_bert_dir)).head.dense.weight)


def test_pretrain_mlm_stops_at_its_time_budget_and_rejects_bad_input(tiny_bert_dir, small_data_dir):
    with data_env(small_data_dir):
        r = pretrain_mlm(str(tiny_bert_dir), None, steps=10**6, max_seconds=0.5, batch_size=4, heldout=4, log=quiet)
        assert 0 < r["steps"] < 10**6 and "folder" not in r
        with pytest.raises(ValueError) as e:
            pretrain_mlm(str(tiny_bert_dir), None, steps=0, log=quiet)
    assert "steps" in one_line(e)


def test_pretrain_mlm_in_bf16_matches_fp32_closely_and_records_device_and_precision(tiny_bert_dir, small_data_dir):
    """The same seed in bf16 autocast starts from the same masks and weights: its first loss is fp32's within bf16
    rounding (a few u = 2**-8 relative), and the record says where and how it ran."""
    with data_env(small_data_dir):
        r32 = pretrain_mlm(str(tiny_bert_dir), None, steps=2, batch_size=4, heldout=4, warmup=1, device="cpu", log=quiet)
        r16 = pretrain_mlm(str(tiny_bert_dir), None, steps=2, batch_size=4, heldout=4, warmup=1, device="cpu",
                           precision="bf16", log=quiet)
    assert (r32["device"], r32["precision"], r16["precision"]) == ("cpu", "fp32", "bf16")
    assert r16["loss"][0] != r32["loss"][0]  # autocast really was on
    assert abs(r16["loss"][0] - r32["loss"][0]) < 0.05 * r32["loss"][0]


def test_cli_pretrain_mlm(tiny_bert_dir, small_data_dir, tmp_path, capsys):
    from mtbert_lib.cli import main
    with data_env(small_data_dir):
        assert main(["pretrain-mlm", "--model", str(tiny_bert_dir), "--steps", "2", "--batch-size", "4",
                     "--heldout", "4", "--out", str(tmp_path / "m"), "--results-dir", str(tmp_path / "res")]) == 0
        assert (tmp_path / "m" / "model.safetensors").is_file()
        rec = json.loads((tmp_path / "res" / "mlm-pretraining-m.json").read_text())  # what notebook 11 draws
        assert rec["steps"] == 2 and len(rec["loss"]) == 2 and rec["provenance"]["git_revision"]
        assert rec["provenance"]["model"] == str(tiny_bert_dir) and "threads" in rec["provenance"]["hardware"]
        assert main(["pretrain-mlm", "--model", str(tmp_path / "nowhere"), "--steps", "2", "--out", str(tmp_path / "x")]) == 2
    assert "mtbert: error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ PCGrad

def test_pcgrad_toy_problem_by_hand():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    combined, conflicts, pairs = pcgrad([g1, g2])
    # g1' = g1 - (g1·g2)/|g2|² g2 = (1/2, 1/2); g2' = g2 - (g2·g1)/|g1|² g1 = (0, 1)
    assert torch.allclose(combined, torch.tensor([0.5, 1.5])) and (conflicts, pairs) == (1, 1)
    # three tasks: only (g1, g3) conflict; g2 is orthogonal to g1 and agrees with g3, so it passes unchanged
    g1, g2, g3 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([-1.0, 1.0, 1.0])
    combined, conflicts, pairs = pcgrad([g1, g2, g3])
    # g1' = g1 + (1/3) g3 = (2/3, 1/3, 1/3); g3' = g3 + g1 = (0, 1, 1)
    assert torch.allclose(combined, torch.tensor([2 / 3, 2 + 1 / 3, 1 + 1 / 3])) and (conflicts, pairs) == (1, 3)
    # no conflict at all: the plain sum
    combined, conflicts, _ = pcgrad([g1, g2])
    assert torch.equal(combined, g1 + g2) and conflicts == 0


def _reference_pcgrad(grads, rng):
    """Yu et al. 2020, Algorithm 1, transcribed with numpy (float64): per task i, the other tasks in a random order."""
    G = [np.asarray(g, dtype=np.float64) for g in grads]
    out = []
    for i in range(len(G)):
        g, order = G[i].copy(), list(range(len(G)))
        rng.shuffle(order)
        for j in order:
            if j != i and g @ G[j] < 0:
                g = g - (g @ G[j]) / (G[j] @ G[j]) * G[j]
        out.append(g)
    return np.sum(out, 0)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_matches_the_papers_algorithm(seed):
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(4)]
    got, conflicts, pairs = pcgrad(grads, random.Random(seed))
    ref = _reference_pcgrad([g.numpy() for g in grads], random.Random(seed))
    assert np.allclose(got.numpy(), ref, atol=1e-10)
    dots = [float(grads[i] @ grads[j]) for i in range(4) for j in range(i + 1, 4)]
    assert (conflicts, pairs) == (sum(d < 0 for d in dots), 6)
    # after the surgery no task's projected gradient conflicts with the task it was last projected on; the step
    # itself need not agree with every task, but it never has a larger norm than the sum of the norms
    assert got.norm() <= sum(g.norm() for g in grads) + 1e-9


def test_pcgrad_step_writes_the_combined_gradient_into_the_parameters():
    lin = torch.nn.Linear(2, 1, bias=False)
    unused = torch.nn.Linear(1, 1)  # no task reaches it: its gradient stays None (AdamW then leaves it alone)
    model = torch.nn.ModuleDict({"lin": lin, "unused": unused})
    task_grads = []
    for target in (torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])):
        lin.weight.grad = target[None].clone()
        task_grads.append(take_grads(model))
        assert lin.weight.grad is None
    share = pcgrad_step(model, task_grads, seed=(0, 0))
    assert share == 1.0 and torch.allclose(lin.weight.grad, torch.tensor([[0.5, 1.5]]))
    assert unused.weight.grad is None and unused.bias.grad is None


def test_update_pcgrad_in_the_training_loop(tiny_bert_dir, small_data_dir, tmp_path):
    cfg = TrainConfig(name="pc", model=str(tiny_bert_dir), update="pcgrad", epochs=2, batch_size=4, pooling="mean",
                      train_eval_limit=4, eval_batch_size=16, device="cpu", precision="fp32", lr=1e-3)
    with data_env(small_data_dir):
        r = train(cfg, tmp_path / "runs", None, progress=False, log=quiet)
        plain = train(replace(cfg, update="sum"), tmp_path / "runs2", None, progress=False, log=quiet)
    steps = [len(e["pcgrad_conflict_share"]) for e in r["epochs"]]
    assert steps == [2, 2] and r["epochs"][-1]["step"] == 4  # one step per round: 8 examples / 4 per batch
    shares = [s for e in r["epochs"] for s in e["pcgrad_conflict_share"]]
    assert all(s in (0.0, 1 / 3, 2 / 3, 1.0) for s in [round(x * 3) / 3 for x in shares])
    assert "pcgrad_conflict_share" not in plain["epochs"][0] and plain["epochs"][-1]["step"] == 4
    if any(s > 0 for s in shares):  # a conflict changed the step, so the weights differ from the plain sum's
        assert r["epochs"][-1]["train_loss"] != plain["epochs"][-1]["train_loss"]


# ------------------------------------------------------------------------------------------------ SMART

def _tiny_model(tiny_bert_dir, **kw):
    cfg = TrainConfig(model=str(tiny_bert_dir), pooling="mean", dropout=0.0, **kw)
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def _batch(small_data_dir, task, tiny_bert_dir):
    from mtbert_lib.tasks import collate, encode_split
    from mtbert_lib.tokenizer import load_tokenizer
    tok = load_tokenizer(str(tiny_bert_dir))
    with data_env(small_data_dir):
        s = encode_split(task, "train", tok, 32, 6, report=None)
    return collate(s, list(range(6)), tok)


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_smart_is_zero_on_a_constant_model_and_its_hook_is_removed(tiny_bert_dir, small_data_dir, task):
    model, cfg = _tiny_model(tiny_bert_dir, smart_weight=1.0, smart_eps=1e-2)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.zero_()  # the output is the head's bias: constant in the input
    batch = _batch(small_data_dir, task, tiny_bert_dir)
    out = model(task, batch)
    loss = smart_loss(model, task, batch, out, cfg)
    assert loss.item() == 0.0
    assert not model.encoder.embeddings._forward_hooks


@pytest.mark.parametrize("task", ["sst", "quora", "sts"])
def test_smart_gradient_flows_into_the_encoder(tiny_bert_dir, small_data_dir, task):
    model, cfg = _tiny_model(tiny_bert_dir, smart_weight=1.0, smart_eps=1e-1, smart_step_size=1e-1, smart_steps=2)
    batch = _batch(small_data_dir, task, tiny_bert_dir)
    out = model(task, batch)
    loss = smart_loss(model, task, batch, out, cfg)
    assert loss.item() > 0
    loss.backward()
    g = model.encoder.encoder.layers[0].ffn.up.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert not model.encoder.embeddings._forward_hooks
    # the ascent makes the divergence larger than the first random noise alone (steps = 0 would be plain noise)
    torch.manual_seed(1)
    noise_only = smart_loss(model, task, batch, out, replace(cfg, smart_step_size=1e-12, smart_steps=1)).item()
    assert loss.item() > noise_only


def test_smart_hook_is_removed_after_an_error(tiny_bert_dir, small_data_dir):
    model, cfg = _tiny_model(tiny_bert_dir, smart_weight=1.0)
    batch = _batch(small_data_dir, "sst", tiny_bert_dir)
    with pytest.raises(KeyError):
        smart_loss(model, "sst", {"nothing": batch["single"]}, torch.zeros(6, 5), cfg)
    assert not model.encoder.embeddings._forward_hooks


def test_smart_in_the_training_loop_changes_the_result_and_the_default_is_off(tiny_bert_dir, small_data_dir, tmp_path):
    assert TrainConfig().smart_weight == 0.0 and TrainConfig().update == "per_task"
    cfg = TrainConfig(name="sm", model=str(tiny_bert_dir), epochs=1, batch_size=4, pooling="mean", train_eval_limit=4,
                      eval_batch_size=16, device="cpu", precision="fp32", lr=1e-3, smart_eps=1e-1, smart_step_size=1e-1)
    with data_env(small_data_dir):
        plain = train(cfg, tmp_path / "a", None, progress=False, log=quiet)
        smart = train(replace(cfg, smart_weight=1.0), tmp_path / "b", None, progress=False, log=quiet)
    assert smart["epochs"][0]["train_loss"] != plain["epochs"][0]["train_loss"]
    assert all(np.isfinite(v) for v in smart["epochs"][0]["train_loss"].values())


@pytest.mark.parametrize("change,words", [
    (dict(update="nope"), "'pcgrad'"), (dict(smart_steps=0), "smart_steps"), (dict(smart_steps=1.5), "smart_steps"),
    (dict(smart_weight=-1.0), "smart_weight"), (dict(smart_eps=0.0), "smart_eps"),
    (dict(smart_weight=1.0, compile="default"), "compile='none'"),
])
def test_bad_beyond_options_are_one_line_errors(change, words):
    with pytest.raises(ValueError) as e:
        replace(TrainConfig(), **change).validate()
    assert words in one_line(e)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pcgrad_step_equals_pcgrad_on_the_concatenated_gradients(seed):
    """The training path (Gram matrix, no concatenation) against the teaching version on the flattened vectors:
    the same combined gradient up to rounding and the same share of conflicting pairs — with three tasks, a
    parameter only some tasks reach (None elsewhere), and gradients built to conflict."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 4), (7,), (3, 3), (6,)]
    params = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(s)) for s in shapes])
    base = [torch.randn(s, generator=g) for s in shapes]
    task_grads = []
    for t in range(3):
        sign = -1.0 if t == 1 else 1.0  # task 1 pulls against the others
        grads = [sign * b + 0.7 * torch.randn(b.shape, generator=g) for b in base]
        if t == 2:
            grads[3] = None  # task 2 does not reach the last parameter
        task_grads.append(grads)
    flat = [torch.cat([(x if x is not None else torch.zeros(s)).reshape(-1) for x, s in zip(gs, shapes)]) for gs in task_grads]
    ref, conflicts, pairs = pcgrad([f.clone() for f in flat], random.Random(seed * 1_000_003 + 5))
    share = pcgrad_step(params, [[None if x is None else x.clone() for x in gs] for gs in task_grads], seed=(seed, 5))
    got = torch.cat([p.grad.reshape(-1) for p in params])
    assert share == conflicts / pairs and conflicts >= 1
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), (got - ref).abs().max()
    assert not torch.allclose(got, sum(flat), atol=1e-3)  # the surgery did something

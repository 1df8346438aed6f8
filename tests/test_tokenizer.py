"""Our tokenizer (load_tokenizer("minilm")) gives exactly what HF's BertTokenizerFast gives for the same vocabulary.

Every SST dev sentence and every STS dev pair; CFIMDB dev reviews (long: truncation at 128 really happens);
pairs truncated hard (max_length=32, longest-first); single strings and single pairs.
"""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from mtbert_lib.data import load_task

KEYS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def hf_tok(minilm_dir):
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))


def _hf(hf_tok, texts, pairs=None, max_length=128):
    args = (texts,) if pairs is None else (texts, pairs)
    return hf_tok(*args, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def _assert_same(ours, ref, what):
    for k in KEYS:
        assert ours[k].dtype == torch.long, f"{what}: {k} is {ours[k].dtype}"
        assert ours[k].shape == ref[k].shape, f"{what}: {k} shape {tuple(ours[k].shape)} vs HF {tuple(ref[k].shape)}"
        if not torch.equal(ours[k], ref[k]):
            rows = (ours[k] != ref[k]).any(1).nonzero().flatten().tolist()
            pytest.fail(f"{what}: {k} differs from HF in {len(rows)} rows, first rows {rows[:5]}")


def test_every_sst_dev_sentence(data_path, minilm_tokenizer, hf_tok):
    texts = [e.text for e in load_task("sst", "dev", data_path, report=None)]
    assert len(texts) == 1101
    _assert_same(minilm_tokenizer(texts), _hf(hf_tok, texts), "SST dev")


def test_every_sts_dev_pair(data_path, minilm_tokenizer, hf_tok):
    pairs = load_task("sts", "dev", data_path, report=None)
    assert len(pairs) == 863
    a, b = [p.text1 for p in pairs], [p.text2 for p in pairs]
    ours = minilm_tokenizer(a, b)
    _assert_same(ours, _hf(hf_tok, a, b), "STS dev pairs")
    assert (ours["token_type_ids"] == 1).any(dim=1).all(), "every pair has a second segment"


def test_sts_dev_pairs_truncated(data_path, minilm_tokenizer, hf_tok):
    pairs = load_task("sts", "dev", data_path, report=None)
    a, b = [p.text1 for p in pairs], [p.text2 for p in pairs]
    ours = minilm_tokenizer(a, b, max_length=32)
    assert ours["input_ids"].shape[1] == 32
    _assert_same(ours, _hf(hf_tok, a, b, max_length=32), "STS dev pairs, max_length=32")


def test_cfimdb_dev_reviews_truncated_at_128(data_path, minilm_tokenizer, hf_tok):
    texts = [e.text for e in load_task("cfimdb", "dev", data_path, report=None)]
    ours = minilm_tokenizer(texts)
    assert ours["input_ids"].shape[1] == 128, "CFIMDB reviews are long: truncation must happen"
    assert (ours["input_ids"][:, -1] == minilm_tokenizer.sep_id).any(), "a truncated row still ends with [SEP]"
    _assert_same(ours, _hf(hf_tok, texts), "CFIMDB dev")


def test_single_string(minilm_tokenizer, hf_tok):
    s = "It 's a lovely film with lovely performances by Buy and Accorsi ."
    ours = minilm_tokenizer(s)
    assert ours["input_ids"].shape[0] == 1
    _assert_same(ours, _hf(hf_tok, [s]), "single string")
    assert minilm_tokenizer.convert_ids_to_tokens(ours["input_ids"][0])[:3] == ["[CLS]", "it", "'"]
    assert ours["input_ids"][0, 0].item() == minilm_tokenizer.cls_id
    assert ours["input_ids"][0, -1].item() == minilm_tokenizer.sep_id


def test_single_pair(minilm_tokenizer, hf_tok):
    a, b = "A man is playing a flute.", "A man is playing a bamboo flute."
    ours = minilm_tokenizer(a, b)
    assert ours["input_ids"].shape[0] == 1
    _assert_same(ours, _hf(hf_tok, [a], [b]), "single pair")


def test_encode_is_unpadded(data_path, minilm_tokenizer, hf_tok):
    texts = [e.text for e in load_task("sst", "dev", data_path, report=None)[:50]]
    ref = hf_tok(texts, truncation=True, max_length=128)
    enc = minilm_tokenizer.encode(texts)
    assert [ids for ids, _ in enc] == ref["input_ids"]
    assert [types for _, types in enc] == ref["token_type_ids"]
    assert len({len(ids) for ids, _ in enc}) > 1

"""Our BertModel reproduces Hugging Face's BertModel (the reference) in eval mode, fp32.

MiniLM (the real pretrained checkpoint) on real SST and STS dev text, for every attention implementation
(sdpa / manual) and both q/k/v layouts (fused / separate); and random-weight models whose sizes differ from
MiniLM's (bert-base sized, and an odd small one), saved as model.safetensors and as a legacy pytorch_model.bin.

Padded positions: both models mask padded *keys* only, so a padded query position still attends to the real
tokens and gets a (meaningless) hidden state. Those states agree with HF's only to ~1e-4: they are numerically
noisier (HF's own sdpa and eager paths differ there by ~3e-5 on MiniLM), so real positions are held to 1e-5 and
all positions to a loose bound that still catches any semantic difference (e.g. zeroed or unmasked padding).
"""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from mtbert_lib.data import load_task
from mtbert_lib.model import BertModel

TOL = 1e-5  # real positions and the pooler
TOL_PADDED = 1e-3  # every position, padded ones included (see the module docstring)
N = 32


@pytest.fixture(scope="module")
def batches(data_path, minilm_tokenizer):
    """Three real padded batches from the dev splits, tokenized by our tokenizer."""
    sst = load_task("sst", "dev", data_path, report=None)[:N]
    sts = load_task("sts", "dev", data_path, report=None)
    sts_sentences = [t for p in sts[: N // 2] for t in (p.text1, p.text2)]
    pairs = sts[:N]
    out = {
        "sst-dev-sentences": minilm_tokenizer([e.text for e in sst]),
        "sts-dev-sentences": minilm_tokenizer(sts_sentences),
        "sts-dev-pairs": minilm_tokenizer([p.text1 for p in pairs], [p.text2 for p in pairs]),
    }
    for name, b in out.items():
        assert b["input_ids"].shape[0] == N
        assert (b["attention_mask"] == 0).any(), f"{name}: the batch should contain padding"
    assert (out["sts-dev-pairs"]["token_type_ids"] == 1).any()
    assert not (out["sst-dev-sentences"]["token_type_ids"] == 1).any()
    return out


@pytest.fixture(scope="module")
def hf_reference(minilm_dir, batches):
    """HF outputs for every batch, with HF's sdpa and eager attention."""
    ref = {}
    for hf_impl in ("sdpa", "eager"):
        hf = transformers.BertModel.from_pretrained(str(minilm_dir), attn_implementation=hf_impl).eval()
        with torch.no_grad():
            for name, b in batches.items():
                o = hf(**b)
                ref[name, hf_impl] = (o.last_hidden_state, o.pooler_output)
    return ref


@pytest.fixture(scope="module")
def minilm_variants():
    """(attn_impl, fused_qkv) -> our MiniLM, loaded once per module."""
    cache = {}

    def get(attn_impl, fused_qkv):
        if (attn_impl, fused_qkv) not in cache:
            cache[attn_impl, fused_qkv] = BertModel.from_pretrained("minilm", attn_impl=attn_impl,
                                                                    fused_qkv=fused_qkv).eval()
        return cache[attn_impl, fused_qkv]
    return get


def _diffs(ours, theirs_h, theirs_p, mask):
    dh = (ours.last_hidden_state - theirs_h).abs()
    real = dh[mask.bool()].max().item()
    every = dh.max().item()
    pool = (ours.pooler_output - theirs_p).abs().max().item()
    return real, every, pool


@pytest.mark.parametrize("fused_qkv", [True, False], ids=["fused", "separate"])
@pytest.mark.parametrize("attn_impl", ["sdpa", "manual"])
@pytest.mark.parametrize("batch", ["sst-dev-sentences", "sts-dev-sentences", "sts-dev-pairs"])
def test_minilm_matches_hf(batch, attn_impl, fused_qkv, batches, hf_reference, minilm_variants, measure):
    model = minilm_variants(attn_impl, fused_qkv)
    assert model.config.attn_impl == attn_impl and model.config.fused_qkv == fused_qkv
    assert hasattr(model.encoder.layers[0].attention, "qkv") == fused_qkv
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6  # from MiniLM's config.json
    b = batches[batch]
    with torch.no_grad():
        out = model(**b)
    B, T = b["input_ids"].shape
    assert out.last_hidden_state.shape == (B, T, 384) and out.pooler_output.shape == (B, 384)
    for hf_impl in ("sdpa", "eager"):
        h, p = hf_reference[batch, hf_impl]
        real, every, pool = _diffs(out, h, p, b["attention_mask"])
        measure(f"parity MiniLM {batch:18s} ours attn={attn_impl:6s} fused_qkv={fused_qkv!s:5s} vs HF {hf_impl:5s}: "
                f"last_hidden real={real:.2e} all={every:.2e} pooler={pool:.2e}")
        assert real <= TOL, f"last_hidden_state at real positions differs from HF ({hf_impl}) by {real}"
        assert pool <= TOL, f"pooler_output differs from HF ({hf_impl}) by {pool}"
        assert every <= TOL_PADDED, f"last_hidden_state at padded positions differs from HF ({hf_impl}) by {every}"


def test_mask_is_needed(batches, minilm_model):
    """Sanity check that the batches exercise masking: dropping the attention mask changes real positions."""
    b = batches["sst-dev-sentences"]
    with torch.no_grad():
        masked = minilm_model(**b).last_hidden_state
        unmasked = minilm_model(b["input_ids"], None, b["token_type_ids"]).last_hidden_state
    m = b["attention_mask"].bool()
    assert (masked - unmasked).abs()[m].max().item() > 1e-2


# ---------------------------------------------------------------------------------------------------------
# Random-weight models: sizes must come from config.json, and both weight formats must load.

SPECS = {
    # bert-base-uncased's sizes (12 x 768, 12 heads, 3072, vocab 30522), random weights, HF's save_pretrained
    "bert-base-random/safetensors": (dict(), "safetensors"),
    # odd sizes nobody would hard-code; saved as a legacy pytorch_model.bin (bert. prefix, LayerNorm gamma/beta,
    # pretraining heads and the position_ids buffer, as in the original Google/HF checkpoints)
    "odd-small-random/pytorch_model.bin": (dict(vocab_size=1000, hidden_size=96, num_hidden_layers=3,
                                                num_attention_heads=4, intermediate_size=200,
                                                max_position_embeddings=64, type_vocab_size=3,
                                                layer_norm_eps=1e-7), "bin"),
    "odd-small-random/safetensors": (dict(vocab_size=1000, hidden_size=96, num_hidden_layers=3,
                                          num_attention_heads=4, intermediate_size=200,
                                          max_position_embeddings=64, type_vocab_size=3,
                                          layer_norm_eps=1e-7), "safetensors"),
}


def _legacy_state_dict(hf):
    sd = {}
    for k, v in hf.state_dict().items():
        k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        sd["bert." + k] = v.clone()
    c = hf.config
    sd["bert.embeddings.position_ids"] = torch.arange(c.max_position_embeddings)[None]
    sd["cls.predictions.bias"] = torch.randn(c.vocab_size)
    sd["cls.predictions.transform.dense.weight"] = torch.randn(c.hidden_size, c.hidden_size)
    sd["cls.seq_relationship.weight"] = torch.randn(2, c.hidden_size)
    return sd


@pytest.fixture(scope="module")
def random_checkpoints(tmp_path_factory):
    """spec name -> (folder, HF reference model in eval mode)."""
    out = {}
    for i, (name, (sizes, fmt)) in enumerate(SPECS.items()):
        torch.manual_seed(1234 + i)
        cfg = transformers.BertConfig(**sizes, attn_implementation="eager")
        hf = transformers.BertModel(cfg).eval()
        with torch.no_grad():  # perturb everything (biases, LayerNorm too) so a mis-mapped tensor shows
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        folder = tmp_path_factory.mktemp(name.replace("/", "-"))
        if fmt == "safetensors":
            hf.save_pretrained(folder)
            assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
        else:
            hf.config.to_json_file(folder / "config.json")
            torch.save(_legacy_state_dict(hf), folder / "pytorch_model.bin")
        assert (folder / "config.json").is_file()
        out[name] = (folder, hf)
    return out


def _random_batch(cfg, B=4, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = min(T, cfg.max_position_embeddings)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    types = torch.randint(0, cfg.type_vocab_size, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, n in enumerate([T, T - 5, 7, 1][:B]):
        mask[i, :n] = 1
    ids, types = ids * mask, types * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


CASES = [("bert-base-random/safetensors", "sdpa", True)] + [
    (name, impl, fused) for name in ("odd-small-random/pytorch_model.bin", "odd-small-random/safetensors")
    for impl in ("sdpa", "manual") for fused in (True, False)]


@pytest.mark.parametrize("spec,attn_impl,fused_qkv", CASES,
                         ids=[f"{s}-{i}-{'fused' if f else 'separate'}" for s, i, f in CASES])
def test_random_checkpoint_matches_hf(spec, attn_impl, fused_qkv, random_checkpoints, measure):
    folder, hf = random_checkpoints[spec]
    model = BertModel.from_pretrained(str(folder), attn_impl=attn_impl, fused_qkv=fused_qkv).eval()
    c, ours = hf.config, model.config
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "layer_norm_eps"):
        assert getattr(ours, field) == getattr(c, field), field
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hf.parameters())
    b = _random_batch(c)
    with torch.no_grad():
        out, ref = model(**b), hf(**b)
    real, every, pool = _diffs(out, ref.last_hidden_state, ref.pooler_output, b["attention_mask"])
    measure(f"parity {spec:35s} ours attn={attn_impl:6s} fused_qkv={fused_qkv!s:5s} vs HF eager: "
            f"last_hidden real={real:.2e} all={every:.2e} pooler={pool:.2e}")
    assert real <= TOL and pool <= TOL
    assert every <= TOL_PADDED

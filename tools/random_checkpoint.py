"""Write a random-weight BERT checkpoint folder in the Hugging Face layout (config.json, model.safetensors, vocab.txt)
that `BertModel.from_pretrained(PATH)`, `load_tokenizer(PATH)` and `mtbert train --model PATH` read like any other.

    python tools/random_checkpoint.py OUT [--size tiny|minilm|bert-base] [--vocab vocab.txt] [--no-dropout] [--seed 0]

Without --vocab the vocabulary is a character-level WordPiece one (the special tokens, then every printable ASCII
character alone and as a '##' continuation): any lower-cased English text tokenizes, one piece per character, and
nothing needs downloading. Used by the tests (a tiny model that trains in milliseconds) and by
benchmarks/gpu_check.sh (a bert-base-sized model on a machine without internet).
"""
import argparse, json, string, sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtbert_lib.model import _LAYER_MAP, BertConfig, BertModel  # noqa: E402

SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
_OURS_TO_HF = {ours: hf for hf, ours in _LAYER_MAP.items()}


def char_vocab() -> list:
    chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]


def hf_state_dict(model: BertModel) -> dict:
    """Our state dict (separate q/k/v) under Hugging Face BertModel's names: the inverse of model.hf_to_mtbert."""
    assert not model.config.fused_qkv
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("encoder.layers."):
            _, _, i, rest = k.split(".", 3)
            sub, param = rest.rsplit(".", 1)
            k = f"encoder.layer.{i}.{_OURS_TO_HF[sub]}.{param}"
        out[k] = v.detach().clone().contiguous()
    return out


def write_random_checkpoint(folder, size: str = "tiny", vocab_file=None, seed: int = 0, dropout: bool = True,
                            **overrides) -> Path:
    from safetensors.torch import save_file
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = Path(vocab_file).read_text().splitlines() if vocab_file else char_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    sizes = {**SIZES[size], **overrides, "vocab_size": len(vocab)}
    if not dropout:
        sizes.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**sizes, fused_qkv=False))
    save_file(hf_state_dict(model), str(folder / "model.safetensors"))
    cfg = BertConfig(**sizes)
    config = {k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "intermediate_size", "max_position_embeddings", "type_vocab_size",
                                           "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps",
                                           "pad_token_id")}
    config.update(model_type="bert", architectures=["BertModel"], hidden_act="gelu", position_embedding_type="absolute",
                  initializer_range=0.02)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return folder


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--size", default="tiny", choices=sorted(SIZES))
    p.add_argument("--vocab", help="a vocab.txt to use (default: a character-level vocabulary)")
    p.add_argument("--no-dropout", action="store_true", help="hidden and attention dropout 0 in config.json")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    folder = write_random_checkpoint(a.out, a.size, a.vocab, a.seed, dropout=not a.no_dropout)
    n = sum(t.numel() for t in BertModel.from_pretrained(str(folder)).parameters())
    print(f"wrote {folder} ({a.size}, {n / 1e6:.2f}M parameters, vocab {'from ' + a.vocab if a.vocab else 'character-level'})")


if __name__ == "__main__":
    main()

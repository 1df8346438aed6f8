"""The reference numbers every table and figure shows beside a fine-tuned score.

Hand-written (not generated from a notebook): it is the measuring stick, not something the course teaches.

* majority class: the most frequent training label, predicted for every dev example (Quora, SST, CFIMDB);
* zero-shot: the encoder as shipped, no training — mean-pooled cosine similarity for STS (Pearson r on all dev
  pairs) and for Quora (accuracy at the threshold that is best on the *training* pairs);
* linear probe: logistic regression (scikit-learn) on frozen mean-pooled sentence vectors, fitted on train,
  scored on dev — the §4.1 'frozen encoder' question asked with the strongest cheap classifier.

`mtbert baselines` writes `results/baselines-<model>.json`.
"""
import json, time
from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def encode_sentences(model, tok, texts, max_length=128, batch_size=64, bf16=False):
    """Mean-pooled, fp32 sentence vectors (N, H), computed in length-sorted batches."""
    from mtbert_lib.model import mean_pool
    from mtbert_lib.precision import autocast
    enc = tok.encode(texts, max_length=max_length)
    order = np.argsort([len(e[0]) for e in enc], kind="stable")
    out = torch.zeros(len(texts), model.config.hidden_size)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size].tolist()
        b = tok.pad([enc[j] for j in idx])
        with autocast("cpu", bf16):
            h = model(**b).last_hidden_state
        out[idx] = mean_pool(h.float(), b["attention_mask"])
    return out


def best_threshold(scores, labels):
    """The threshold t maximising accuracy of (score > t) on these (training) pairs."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    order = np.argsort(s)
    s, y = s[order], y[order]
    # predicting 1 for everything above position i: correct = negatives at or below i + positives above i
    neg_below = np.concatenate([[0], np.cumsum(1 - y)])
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    acc = (neg_below + pos_above) / len(y)
    i = int(np.argmax(acc))
    t = -np.inf if i == 0 else (s[i - 1] + s[i]) / 2 if i < len(s) else np.inf
    return float(t), float(acc[i])


def compute_baselines(model_name="minilm", bf16=None, log=print) -> dict:
    from scipy.stats import pearsonr
    from sklearn.linear_model import LogisticRegression
    from mtbert_lib.data import load_task, data_edition
    from mtbert_lib.model import BertModel
    from mtbert_lib.tokenizer import load_tokenizer
    from mtbert_lib.precision import use_bf16
    from mtbert_lib.training import provenance, TrainConfig
    t0 = time.time()
    bf16 = use_bf16("auto", "cpu") if bf16 is None else bf16
    tok, model = load_tokenizer(model_name), BertModel.from_pretrained(model_name).eval()
    data = {(t, s): load_task(t, s, report=None) for t in ("sst", "quora", "sts", "cfimdb") for s in ("train", "dev")}
    res = {"majority": {}, "zero_shot": {}, "linear_probe": {}}
    for t in ("sst", "quora", "cfimdb"):
        ytr = np.array([r.label for r in data[t, "train"]], int)
        ydev = np.array([r.label for r in data[t, "dev"]], int)
        major = np.bincount(ytr).argmax()
        res["majority"][t] = float((ydev == major).mean())
    res["majority"]["sts"] = 0.0  # a constant prediction has no correlation (Pearson r undefined, reported as 0)

    def pair_cos(split, task):
        rows = data[task, split]
        u = encode_sentences(model, tok, [r.text1 for r in rows], bf16=bf16)
        v = encode_sentences(model, tok, [r.text2 for r in rows], bf16=bf16)
        return torch.nn.functional.cosine_similarity(u, v).numpy(), np.array([r.label for r in rows], float)

    cos, gold = pair_cos("dev", "sts")
    res["zero_shot"]["sts"] = float(pearsonr(cos, gold)[0])
    log(f"zero-shot STS dev Pearson r {res['zero_shot']['sts']:.3f} ({len(gold)} pairs)")
    cos_tr, y_tr = pair_cos("train", "quora")
    thr, acc_tr = best_threshold(cos_tr, y_tr)
    cos_dev, y_dev = pair_cos("dev", "quora")
    res["zero_shot"]["quora"] = float(((cos_dev > thr) == (y_dev > 0.5)).mean())
    res["zero_shot"]["quora_threshold"] = thr
    log(f"zero-shot Quora dev accuracy {res['zero_shot']['quora']:.3f} (cosine > {thr:.3f}, chosen on train: {acc_tr:.3f})")
    for t, max_len in (("sst", 128), ("cfimdb", 512)):
        X = {s: encode_sentences(model, tok, [r.text for r in data[t, s]], max_length=max_len, bf16=bf16).numpy()
             for s in ("train", "dev")}
        y = {s: np.array([r.label for r in data[t, s]], int) for s in ("train", "dev")}
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(X["train"], y["train"])
        res["linear_probe"][t] = float((clf.predict(X["dev"]) == y["dev"]).mean())
        log(f"linear probe {t} dev accuracy {res['linear_probe'][t]:.3f}")
    prov = provenance(TrainConfig(model=model_name), "cpu")
    prov["precision"] = "bf16" if bf16 else "fp32"
    return {"model": model_name, "data_edition": data_edition(), "provenance": prov,
            "method": {"zero_shot": "mean-pooled cosine; Quora threshold chosen on train",
                       "linear_probe": "sklearn LogisticRegression(C=1) on frozen mean-pooled vectors",
                       "majority": "most frequent train label"},
            **res, "wall_s": round(time.time() - t0, 1)}


def write_baselines(model_name="minilm", results_dir="results", log=print) -> Path:
    r = compute_baselines(model_name, log=log)
    out = Path(results_dir) / f"baselines-{Path(model_name).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1))
    return out


def load_baselines(model_name="minilm", results_dir="results") -> dict | None:
    p = Path(results_dir) / f"baselines-{Path(model_name).name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


TASK_NAMES = {"sst": ("SST-5 sentiment", "accuracy"), "quora": ("Quora paraphrase", "accuracy"),
              "sts": ("STS similarity", "Pearson r")}


def beside_baselines(result: dict, baselines: dict | None) -> str:
    """A training result's dev scores (untrained and trained) beside the majority-class and zero-shot baselines, one row
    per task, with the baselines it beats: what `make run` prints at the end. (A constant prediction has no Pearson r:
    STS has no majority baseline.)"""
    after, before = result["best_dev"], result.get("dev_before", {})
    refs = {"majority": {t: v for t, v in (baselines or {}).get("majority", {}).items() if t != "sts"},
            "zero-shot": {t: v for t, v in (baselines or {}).get("zero_shot", {}).items() if t in TASK_NAMES}}
    fmt = lambda d, t: f"{d[t]:.3f}" if t in d else "–"
    rounds = (result.get("config") or {}).get("rounds_limit")  # the main job's short budget: part of an epoch
    trained = (f"after {rounds} rounds" if rounds and result["best_epoch"] == 1 else
               f"after {result['best_epoch']} epoch" + "s" * (result["best_epoch"] > 1))
    untrained = lambda cell: f" {cell:>9}" if before else ""  # the column only when the run scored dev before training
    lines = [f"{'task':<17} {'metric':<10} {'majority':>8} {'zero-shot':>9}{untrained('untrained')} {trained:>13}  beats",
             "-" * (80 if before else 70)]
    for t in [t for t in TASK_NAMES if t in after]:
        beats = [k for k, ref in refs.items() if t in ref and after[t] > ref[t]]
        missed = [k for k, ref in refs.items() if t in ref and after[t] <= ref[t]]
        verdict = (", ".join(beats) or "–") + (f" (NOT {', '.join(missed)})" if missed else "")
        lines.append(f"{TASK_NAMES[t][0]:<17} {TASK_NAMES[t][1]:<10} {fmt(refs['majority'], t):>8} "
                     f"{fmt(refs['zero-shot'], t):>9}{untrained(fmt(before, t))} {after[t]:>13.3f}  {verdict}")
    return "\n".join(lines)

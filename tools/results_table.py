"""Render results/*.json as a markdown table (what the README and closing notes quote).

    python tools/results_table.py [results] [--quick-only | --full-only]

Each row names its model, data edition, seed, device, git revision and whether it was a quick-mode run, next to
the paper's dev numbers for the same row (bert-base-uncased, original Quora split: not the same model or data).
"""
import json, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mtbert_lib.experiments import PAPER_TABLE1, PAPER_SENTIMENT  # noqa: E402


def rows(folder):
    for f in sorted(Path(folder).glob("*.json")):
        r = json.loads(f.read_text())
        if "best_dev" in r:
            yield f, r


def main(argv):
    folder = next((a for a in argv if not a.startswith("--")), "results")
    out = ["| experiment | mode | dev SST | dev Para | dev STS | dev avg | paper (SST/Para/STS) | best epoch | wall | model · data · seed · device · rev |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for f, r in rows(folder):
        if ("--quick-only" in argv and not r["quick"]) or ("--full-only" in argv and r["quick"]):
            continue
        d, p = r["best_dev"], r["provenance"]
        cell = lambda t: f"{d[t]:.3f}" if t in d else "–"
        avg = f"{(d['sst'] + d['quora'] + d['sts']) / 3:.3f}" if {"sst", "quora", "sts"} <= set(d) else "–"
        if "cfimdb" in d:
            cell_sst = f"CFIMDB {d['cfimdb']:.3f}"
        else:
            cell_sst = cell("sst")
        paper = PAPER_TABLE1.get(r["experiment"])
        paper = "/".join(f"{v:.3f}" for v in paper) if paper else (f"{PAPER_SENTIMENT[r['experiment']]:.3f}" if r["experiment"] in PAPER_SENTIMENT else "–")
        mode = f"quick ({r['config']['train_limit']}/task, {r['config']['epochs']} ep)" if r["quick"] else f"full ({r['config']['epochs']} ep)"
        out.append(f"| {r['experiment']} | {mode} | {cell_sst} | {cell('quora')} | {cell('sts')} | {avg} | {paper} | "
                   f"{r['best_epoch']} | {r['wall_s']:.0f}s | {p['model']} · {p['data_edition']} · seed {p['seed']} · "
                   f"{p['hardware']} · {p['git_revision']}{'+dirty' if p.get('git_dirty') else ''} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1:])

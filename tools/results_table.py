"""Render results/ as markdown: what the README's headline results and docs/results.md show.

    python tools/results_table.py [results]            # print the whole section (docs/results.md)
    python tools/results_table.py [results] --headline # print the README's headline (Table 1, the claims)
    python tools/results_table.py [results] --readme   # rewrite both between their markers
    python tools/results_table.py [results] --quick-only | --full-only   # one row per run (the old flat table)

Every table is computed by mtbert_lib.plots, the same functions notebook 09 draws its figures with.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtbert_lib.experiments import PAPER_TABLE1, PAPER_SENTIMENT  # noqa: E402
from mtbert_lib import plots  # noqa: E402

START, END = "<!-- results:start (python tools/results_table.py --readme) -->", "<!-- results:end -->"
HEAD_START, HEAD_END = "<!-- headline:start (python tools/results_table.py --readme) -->", "<!-- headline:end -->"
#: where --readme writes: file -> (start marker, end marker, the function that renders what goes between them)
TARGETS = {"README.md": (HEAD_START, HEAD_END, lambda folder: headline(folder)),
           "docs/results.md": (START, END, lambda folder: section(folder))}


def provenance_line(d) -> str:
    def join(col):
        return ", ".join(sorted(str(v) for v in d[col].dropna().unique()))
    return (f"model {join('model')} · recipe {join('recipe')} · data {join('edition')} · {join('hardware')} · "
            f"seeds {join('seed')} · git {join('rev')}")


GOALS = {"sst": 0.50, "quora": 0.84, "sts": 0.88}  # issue 20: best MiniLM configuration, dev, mean of 3 seeds


def best_configuration(t: pd.DataFrame) -> str:
    """The multitask Table 1 row with the highest mean (over seeds) of the three dev metrics, the runner-up, and the
    goals against the best row."""
    multi = t[np.array([n.startswith("rr-") for n in t.index]) & (t.runs > 0).to_numpy()].copy()
    if not len(multi):
        return ""
    multi["avg"] = multi[plots.TASKS3].mean(axis=1)
    multi = multi.sort_values("avg", ascending=False)
    best = multi.iloc[0]
    text = f"**Best configuration on dev** (highest mean of the three dev metrics over seeds): {best.name} {best.avg:.4f} ({int(best.runs)} runs)"
    if len(multi) > 1:
        text += f"; next {multi.index[1]} {multi.avg.iloc[1]:.4f} ({int(multi.runs.iloc[1])} runs)"
    goals = [f"{k} {best[k]:.3f} ≥ {g:.2f} " + ("met" if best[k] >= g else f"missed by {g - best[k]:.3f}") for k, g in GOALS.items()]
    return text + ". Goals: " + "; ".join(goals) + "."


def section(folder: Path) -> str:
    df, search = plots.load_results(folder), plots.load_results(folder / "search", recursive=True)
    base = plots.load_baselines(folder)
    everything = df[~df.quick & (df.recipe == "tuned")] if len(df) else df  # the 2-epoch CPU protocol, any encoder
    full = plots.protocol(df, "tuned")  # ... with MiniLM itself: Table 1, the figures, the claims
    long = plots.protocol(df, "tuned10")  # the same recipe over the paper's 10 epochs
    out = []
    if base:
        p = base["provenance"]
        out += ["**Baselines** (`mtbert baselines`; " + f"{base['model']}, {base['data_edition']}, {p['hardware']}, "
                f"git {p['git_revision']}): majority class SST {base['majority']['sst']:.3f} / Quora "
                f"{base['majority']['quora']:.3f} / CFIMDB {base['majority']['cfimdb']:.3f}; zero-shot (mean-pooled "
                f"cosine; Quora threshold chosen on train) Quora {base['zero_shot']['quora']:.3f} / STS "
                f"{base['zero_shot']['sts']:.3f} (all {863} dev pairs); linear probe on frozen mean-pooled vectors SST "
                f"{base['linear_probe']['sst']:.3f} / CFIMDB {base['linear_probe']['cfimdb']:.3f}.", ""]
    if len(search):
        t = plots.search_table(search)
        out += ["**The MiniLM recipe search** (dev, seed 0; `results/search/<tag>/`; " + provenance_line(search) + "):", "",
                "| setting | pooling | lr | head lr | warm-up / decay | pair encoding | STS head | MT | epochs (best) | dev SST | dev Para | dev STS | wall |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for tag, r in t.iterrows():
            hl = "–" if r.head_lr is None or (isinstance(r.head_lr, float) and np.isnan(r.head_lr)) else f"{r.head_lr:g}"
            out.append(f"| {tag} | {r.pooling} | {r.lr:g} | {hl} | {0 if pd.isna(r.warmup) else r.warmup:g} / {'constant' if pd.isna(r.lr_decay) else r.lr_decay} | "
                       f"{r.pair_encoding} | {r.sts_head} | {r.consistency} | {r.epochs} ({r.best_epoch}) | "
                       f"{r.dev_sst:.3f} | {r.dev_quora:.3f} | {r.dev_sts:.3f} | {r.wall_s:.0f} s |")
        out.append("")
    if len(full):
        t = plots.table1(full)
        if t.runs.sum():
            d = full[full.experiment.isin(t.index)]
            out += ["**Table 1, full runs** (dev, best epoch; mean ± std over seeds; " + provenance_line(d) + "):", "",
                    plots.table1_markdown(t, base), ""]
            out += [best_configuration(t), ""]
        fa = plots.with_aliases(full)
        rows = []
        for fig, names in plots.SWEEPS.items():
            s = plots.summarize(fa, names)
            for n, r in s.iterrows():
                if r.runs:
                    alias = f" (= {plots.ALIASES[n]})" if n in plots.ALIASES else ""
                    rows.append(f"| {fig} | {n}{alias} | {int(r.runs)} | " + " | ".join(plots.pm(r[k], r[f'{k} std']) for k in plots.TASKS3) + " |")
        if rows:
            out += ["**Figures 3–5 and the weight-decay appendix** (dev, best epoch, mean ± std (runs)):", "",
                    "| figure | variant | runs | dev SST | dev Para | dev STS |", "|---|---|---|---|---|---|", *rows, ""]
        s41 = plots.summarize(full, list(PAPER_SENTIMENT), ["sst", "cfimdb"])
        if s41.runs.sum():
            out += ["**§4.1, single-task sentiment** (dev accuracy, mean ± std (runs); paper = bert-base-uncased):", "",
                    "| run | runs | ours | paper |", "|---|---|---|---|"]
            for n, r in s41[s41.runs > 0].iterrows():
                task = n.split("-")[0]
                out.append(f"| {n} | {int(r.runs)} | {plots.pm(r[task], r[f'{task} std'])} | {PAPER_SENTIMENT[n]:.3f} |")
            out.append("")
        out += ["**The paper's claims** (`plots.claim_sentences`, 2-epoch CPU protocol; *rule*: a difference of the means "
                "counts only beyond twice the larger std over ≥ 2 seeds; *paired*: the mean of the same-seed differences "
                "a − b with its 95% t-interval, and the verdict the conclusions use — notebook 09, section 6):", "",
                *plots.claim_sentences(fa), ""]
        if len(long):
            la = plots.with_aliases(long)
            out += [f"**Over the paper's 10 epochs** (recipe `tuned10`, {long.file.nunique()} runs; " + provenance_line(long) + "):",
                    "", *plots.claim_sentences(la, "10 epochs"), "", "Between 2 and 10 epochs:", "",
                    *plots.verdict_changes(fa, la), ""]
        proto = full[~full.experiment.isin(plots.BEYOND_LABELS)]
        out += [f"Wall time of the protocol's {proto.file.nunique()} full runs: "
                f"{proto.groupby('file').wall_s.max().sum() / 3600:.1f} h (sum of each run's training + evaluation time).", ""]
        bt = plots.beyond_table(everything)
        if bt.runs.drop(plots.BASE_ROW).sum():
            d = everything[everything.experiment.isin(bt.index)]
            out += ["**Beyond the paper** (notebook 11; each technique on `rr-balanced-specialized`; dev, best epoch, mean ± "
                    "std (runs), Δ = difference of the means from that row; baselines as in Table 1; " + provenance_line(d) + "):", "",
                    "| experiment | runs | dev SST | dev Para | dev STS | Δ SST / Para / STS | Δ average |",
                    "|---|---|---|---|---|---|---|"]
            for n, r in bt[bt.runs > 0].iterrows():
                delta = "–" if n == plots.BASE_ROW else " / ".join(f"{r[f'Δ {k}']:+.3f}" for k in plots.TASKS3)
                out.append(f"| {n} | {int(r.runs)} | " + " | ".join(plots.pm(r[k], r[f'{k} std']) for k in plots.TASKS3)
                           + f" | {delta} | {'–' if n == plots.BASE_ROW else format(r['Δ avg'], '+.3f')} |")
            out += ["", *plots.beyond_sentences(everything), ""]
    return "\n".join(out).rstrip() + "\n"


def claims_table(full) -> list:
    """One row per paper claim (ours marked): the paired same-seed difference a − b with its 95% t-interval and the
    verdict the conclusions use (plots.paired, plots.paired_verdict; the rule and the per-task detail: docs/results.md)."""
    d = plots.with_avg(plots.with_students(plots.with_aliases(full)))  # as section(): the claims read the sweep aliases
    rows = ["| claim | a − b | paired difference, 95% interval | verdict |", "|---|---|---|---|"]
    for text, a, b, task, sign, _ in plots.CLAIMS:
        p = plots.paired(d, a, b, task)
        claim = text.strip().replace("|", "/")
        verdict = plots.paired_verdict(p, sign) if p["n"] else "no runs yet"
        rows.append(f"| {claim} | `{a}` − `{b}` ({task}) | {plots.fmt_paired(p)} | **{verdict}** |")
    return rows


def headline(folder: Path) -> str:
    """The front page's results: Table 1 with its baselines, the best configuration, one row per paper claim."""
    df, base = plots.load_results(folder), plots.load_baselines(folder)
    full = plots.protocol(df, "tuned")  # as section(): the 2-epoch CPU protocol with MiniLM, never pooled with others
    t = plots.table1(full) if len(full) else None
    if t is None or not t.runs.sum():
        return "No full runs in results/ yet.\n"
    d = full[full.experiment.isin(t.index)]
    return "\n".join([
        f"Dev scores, best epoch, mean ± std over seeds ({provenance_line(d).split(' · git')[0]}; the paper's "
        "bert-base-uncased numbers beside them):", "", plots.table1_markdown(t, base), "", best_configuration(t), "",
        "The paper's claims, tested on the same seeds (a − b per seed, averaged, with its 95% t-interval):", "",
        *claims_table(full)]).rstrip() + "\n"


def rewrite(folder: Path, root: Path = ROOT) -> list:
    """Rewrite every target file between its markers; the files rewritten."""
    done = []
    for rel, (start, end, render) in TARGETS.items():
        path = root / rel
        src = path.read_text() if path.is_file() else ""
        if start not in src or end not in src:
            sys.exit(f"{rel} has no generated-results markers ({start} ... {end})")
        text = render(folder)
        path.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: f"{start}\n{text}{end}", src, flags=re.S))
        done.append(rel)
    return done


def flat(folder, argv):
    out = ["| experiment | mode | dev SST | dev Para | dev STS | best epoch | wall | model · recipe · data · seed · device · rev |",
           "|---|---|---|---|---|---|---|---|"]
    for f in sorted(Path(folder).glob("*.json")):
        r = json.loads(f.read_text())
        if "best_dev" not in r or ("--quick-only" in argv and not r["quick"]) or ("--full-only" in argv and r["quick"]):
            continue
        d, p = r["best_dev"], r["provenance"]
        cell = lambda t: f"{d[t]:.3f}" if t in d else "–"
        mode = f"quick ({r['config']['train_limit']}/task, {r['config']['epochs']} ep)" if r["quick"] else f"full ({r['config']['epochs']} ep)"
        out.append(f"| {r['experiment']} | {mode} | {cell('sst') if 'cfimdb' not in d else 'CFIMDB ' + cell('cfimdb')} | "
                   f"{cell('quora')} | {cell('sts')} | {r['best_epoch']} | {r['wall_s']:.0f}s | {p['model']} · "
                   f"{r['config'].get('recipe', 'paper')} · {p['data_edition']} · seed {p['seed']} · {p['hardware']} · "
                   f"{p['git_revision']}{'+dirty' if p.get('git_dirty') else ''} |")
    return "\n".join(out)


def main(argv):
    folder = Path(next((a for a in argv if not a.startswith("--")), ROOT / "results"))
    if "--quick-only" in argv or "--full-only" in argv:
        print(flat(folder, argv))
        return
    if "--readme" in argv:
        for rel in rewrite(folder):
            print(f"{rel}: results rewritten from {folder}")
    else:
        print(headline(folder) if "--headline" in argv else section(folder))


if __name__ == "__main__":
    main(sys.argv[1:])

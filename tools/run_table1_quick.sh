#!/usr/bin/env bash
# Table 1's eight rows in quick mode (64 training examples per task, 2 epochs, 64 dev examples per task) on the
# offline default model; one JSON each in results/. Usage: tools/run_table1_quick.sh [SEED] [extra mtbert train args]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-0}; shift || true
for e in only-sst only-sst-mt only-para-mt only-sts-mse-mt rr-uneven rr-balanced rr-balanced-specialized rr-balanced-specialized-mt; do
  .venv/bin/mtbert train --experiment "$e" --seed "$seed" --quick --no-progress "$@"
done
.venv/bin/python tools/results_table.py results --quick-only

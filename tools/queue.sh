#!/usr/bin/env bash
# Run training commands one at a time from a queue file (one command a line; lines are consumed as they start).
# Two trainings at once on 2 cores slow each other far more than 2x, so everything long goes through here.
#   tools/queue.sh QUEUE_FILE LOG_DIR
set -u
Q=${1:?queue file}; LOGS=${2:-runs/queue-logs}
mkdir -p "$LOGS"
# glibc keeps freed memory instead of returning it to the kernel and faulting it back in at the next step
# (benchmarks/NOTES.md): a 1 GiB top pad, no trimming, and the largest mmap threshold glibc allows.
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-1073741824} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-17179869184} \
       MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-33554432}
# Helpers, tests and notebook builds may share the 2 cores: the trainings get the larger share. Linux schedules
# by session group (autogroup) first, so the group's nice value matters, not only the process's.
echo -10 > /proc/$$/autogroup 2>/dev/null || true
while true; do
  line=$(head -n 1 "$Q" 2>/dev/null)
  if [ -z "$line" ]; then sleep 20; continue; fi
  sed -i '1d' "$Q"
  n=$(date +%s)
  echo "[$(date +%T)] start: $line" >> "$LOGS/queue.log"
  nice -n -10 bash -c "$line" > "$LOGS/$n.log" 2>&1; rc=$?
  echo "[$(date +%T)] exit $rc ($(( $(date +%s) - n ))s): $line" >> "$LOGS/queue.log"
done

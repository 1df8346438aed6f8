#!/usr/bin/env bash
# Run training commands one at a time from a queue file (one command a line; lines are consumed as they start).
# Two trainings at once on 2 cores slow each other far more than 2x, so everything long goes through here.
#   tools/queue.sh QUEUE_FILE LOG_DIR
set -u
Q=${1:?queue file}; LOGS=${2:-runs/queue-logs}
mkdir -p "$LOGS"
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-1073741824}
while true; do
  line=$(head -n 1 "$Q" 2>/dev/null)
  if [ -z "$line" ]; then sleep 20; continue; fi
  sed -i '1d' "$Q"
  n=$(date +%s)
  echo "[$(date +%T)] start: $line" >> "$LOGS/queue.log"
  bash -c "$line" > "$LOGS/$n.log" 2>&1
  echo "[$(date +%T)] exit $? ($(( $(date +%s) - n ))s): $line" >> "$LOGS/queue.log"
done

#!/usr/bin/env bash
# Measured runs at given rates on a fresh cluster, appended to summary.tsv like
# throughput.sh's (for re-running the 50% and 90% points):
#
#   load-tests/bench/point.sh rust|sio 1|2 calls|relay LABEL RATE...
source "$(dirname "$0")/lib.sh"

IMPL=$1 NODES=$2 SCENARIO=$3 LABEL=$4
shift 4
build
[ "$IMPL" = sio ] && install_baseline
start_cluster "$IMPL" "$NODES"
for rate in "$@"; do
  run_one "$IMPL" "$NODES" "$SCENARIO" "$rate" "$LABEL" >/dev/null
  sleep 2
done

#!/usr/bin/env bash
# Guards the relay hot path against regressions: counts the instructions one node
# spends per relayed message (callgrind, through profile.sh on a fixed short relay
# workload) and compares the figure with the one committed in
# load-tests/baselines/instructions-per-relay.txt. Fails when it grew by more than
# the tolerance (10%). Instruction counts do not depend on how busy the machine is,
# so this is a deterministic check where a timed one would be noise.
#
#   load-tests/bench/instruction-guard.sh            check against the committed figure
#   load-tests/bench/instruction-guard.sh --update   write the measured figure instead
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COMMITTED_FILE=$ROOT/load-tests/baselines/instructions-per-relay.txt
TOLERANCE_PCT=${GUARD_TOLERANCE_PCT:-10}
OUT_DIR=${BENCH_OUT:-$ROOT/target/bench/guard}

result=$(BENCH_OUT=$OUT_DIR PROFILE_PAIRS=10 PROFILE_RATE=200 PROFILE_WARMUP=6 SECONDS_SENT=5 \
  bash "$ROOT/load-tests/bench/profile.sh" 1)
echo "$result"
measured=$(sed -n 's/.*instructions per frame: \([0-9][0-9]*\).*/\1/p' <<<"$result")
[ -n "$measured" ] || { echo "no instruction count measured (see $OUT_DIR)" >&2; exit 1; }

if [ "${1:-}" = --update ]; then
  echo "$measured" >"$COMMITTED_FILE"
  echo "wrote $measured to $COMMITTED_FILE"
  exit 0
fi

committed=$(tr -dc '0-9' <"$COMMITTED_FILE")
limit=$((committed * (100 + TOLERANCE_PCT) / 100))
ratio=$(awk -v m="$measured" -v c="$committed" 'BEGIN { printf "%.3f", m / c }')
echo "instructions per relayed message: $measured, committed $committed (ratio $ratio, limit $limit)"
if [ "$measured" -gt "$limit" ]; then
  echo "the relay hot path grew by more than ${TOLERANCE_PCT}%: find the cause in $OUT_DIR/callgrind-1n-inclusive.txt," >&2
  echo "or, if the growth is intended, run load-tests/bench/instruction-guard.sh --update and say why in the commit" >&2
  exit 1
fi
if [ "$measured" -lt $((committed * (100 - TOLERANCE_PCT) / 100)) ]; then
  echo "cheaper than the committed figure by more than ${TOLERANCE_PCT}%: lower it with --update so the guard keeps the gain"
fi

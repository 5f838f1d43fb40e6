#!/usr/bin/env bash
# Memory after a burst: does a node give back to the system what a burst of
# sessions took, once they are gone? For each allocator asked for, RUNS times, on
# a fresh release node (no Redis) built with that allocator:
#
#   1. warm-up: WARMUP_SESSIONS sessions joined and closed, then SETTLE seconds;
#      baseline = the node's VmRSS (/proc/<pid>/status);
#   2. burst: `vc-load idle` opens BURST WebSocket sessions and joins them (rooms
#      of two), holds them HOLD, then closes them all; peak = VmHWM, the
#      highest RSS the process ever had;
#   3. once /healthz counts no session, VmRSS every second for SETTLE seconds;
#      after = the last reading.
#
#   load-tests/bench/burst-rss.sh [default|system|jemalloc|mimalloc ...]   (default: default)
#
# Environment: RUNS (3), BURST (2000), WARMUP_SESSIONS (20), HOLD (3s),
# SETTLE (10), BENCH_NO_BUILD (1: run the binaries built before, see lib.sh).
# Prints one line per run and writes target/bench/burst-rss.tsv (one row per
# run, appended), burst-rss-<allocator>-<run>.json (the vc-load
# report) and burst-rss-<allocator>-<run>-series.tsv (RSS each second after the
# burst). Every step is bounded: vc-load gives up on a session after its
# --timeout, each wait below has a deadline, and the node is stopped on exit.
source "$(dirname "$0")/lib.sh"

ALLOCATORS=${*:-default}
RUNS=${RUNS:-3}
BURST=${BURST:-2000}
WARMUP_SESSIONS=${WARMUP_SESSIONS:-20}
HOLD=${HOLD:-3s}
SETTLE=${SETTLE:-10}
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ $((BURST + 500)) -gt "$HARD" ]; then
  echo "BURST=$BURST needs an open-file limit above $((BURST + 500)); the hard limit here is $HARD" >&2
  exit 1
fi
[ -n "${BENCH_NO_BUILD:-}" ] && [ -x "$LOAD" ] || (cd "$ROOT" && cargo build --release -q -p vc-load)

TSV=$OUT/burst-rss.tsv
[ -f "$TSV" ] || printf 'allocator\trun\tburst\tbaseline_kib\tpeak_kib\theld_kib\tafter_kib\tafter_over_baseline\tpeak_over_baseline\tsettle_s\n' >"$TSV"

status_kib() { # pid field
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# Waits until the node's /healthz counts no session (the closes have been
# processed), at most 30 s.
wait_no_sessions() { # port
  local i
  for i in $(seq 300); do
    [ "$(curl -sf "http://127.0.0.1:$1/healthz" | jq -r '.sessions' 2>/dev/null)" = 0 ] && return 0
    sleep 0.1
  done
  echo "sessions still open on port $1 after 30 s" >&2
  return 1
}

# RSS once a second for SETTLE seconds, into a series file; prints the last.
settle() { # pid series-file
  local s rss=0
  : >"$2"
  for s in $(seq "$SETTLE"); do
    sleep 1
    rss=$(status_kib "$1" VmRSS)
    printf '%s\t%s\n' "$s" "$rss" >>"$2"
  done
  echo "$rss"
}

for alloc in $ALLOCATORS; do
  NODE=$(build_node "$alloc")
  for run in $(seq "$RUNS"); do
    bench_cleanup
    start_cluster rust 1
    pid=${NODE_PIDS[0]}
    port=${URLS[1]#ws://127.0.0.1:}
    port=${port%/ws}
    reported=$(node_allocator "$port")
    [ -n "$reported" ] || { echo "the node on port $port reports no allocator" >&2; exit 1; }
    if [ "$alloc" != default ] && [ "$reported" != "$alloc" ]; then
      echo "asked for $alloc, the node reports $reported" >&2
      exit 1
    fi
    "$LOAD" --quiet idle "${URLS[@]}" --sessions "$WARMUP_SESSIONS" --room-size 2 \
      --concurrency 100 --hold 1s >/dev/null 2>"$OUT/burst-rss-warmup.err" ||
      { echo "warm-up failed: $OUT/burst-rss-warmup.err" >&2; exit 1; }
    wait_no_sessions "$port"
    settle "$pid" "$OUT/burst-rss-$alloc-$run-baseline.tsv" >/dev/null
    baseline=$(status_kib "$pid" VmRSS)

    file=$OUT/burst-rss-$alloc-$run.json
    "$LOAD" --quiet --json "$file" idle "${URLS[@]}" --sessions "$BURST" --room-size 2 \
      --concurrency 200 --hold "$HOLD" --node-pid "$pid" >/dev/null 2>"$file.err" ||
      { echo "burst failed: $file.err" >&2; exit 1; }
    joined=$(jq -r '.sessions_joined' "$file")
    [ "$joined" = "$BURST" ] || { echo "only $joined of $BURST sessions joined (see $file.err)" >&2; exit 1; }
    held=$(jq -r '.node_rss_after_kib' "$file")
    wait_no_sessions "$port"
    peak=$(status_kib "$pid" VmHWM)
    after=$(settle "$pid" "$OUT/burst-rss-$alloc-$run-series.tsv")

    ratio=$(awk -v a="$after" -v b="$baseline" 'BEGIN { printf "%.2f", a / b }')
    peak_ratio=$(awk -v a="$peak" -v b="$baseline" 'BEGIN { printf "%.2f", a / b }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$reported" "$run" "$BURST" "$baseline" "$peak" \
      "$held" "$after" "$ratio" "$peak_ratio" "$SETTLE" >>"$TSV"
    printf '%-8s run %s: baseline %6.1f MiB  peak %6.1f MiB  after %6.1f MiB  after/baseline %sx\n' \
      "$reported" "$run" "$(awk -v k="$baseline" 'BEGIN{print k/1024}')" \
      "$(awk -v k="$peak" 'BEGIN{print k/1024}')" "$(awk -v k="$after" 'BEGIN{print k/1024}')" "$ratio"
  done
done
bench_cleanup
echo "results: $TSV"

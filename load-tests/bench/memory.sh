#!/usr/bin/env bash
# Memory per idle session on one node: for each count, a fresh node (no Redis),
# vc-load `idle` opens and joins that many sessions (rooms of two), holds them,
# and reports the node's RSS growth divided by the sessions.
#
#   load-tests/bench/memory.sh [counts...]  (default: 5000 10000 15000 19000 50000 100000)
#
# Each session is one socket in the node and one in vc-load, so a count needs an
# open-file limit above it in both processes. A count above this shell's hard
# limit (`ulimit -Hn`, which only a process with CAP_SYS_RESOURCE can raise) is
# skipped with a message. actix-web accepts at most 25,000 connections per worker
# by default, so the node runs with VC_SERVER__WORKERS=ceil(count / 20000) + 1
# (at least 2). Results: target/bench/memory-<count>.json and memory.tsv.
source "$(dirname "$0")/lib.sh"

COUNTS=${*:-"5000 10000 15000 19000 50000 100000"}
HARD=$(ulimit -Hn)
HOLD=${HOLD:-20s}
build
TSV=$OUT/memory.tsv
[ -f "$TSV" ] || printf 'sessions\tworkers\trss_before_kib\trss_after_kib\tbytes_per_session\tjoined\tfailed\tsetup_s\n' >"$TSV"
for count in $COUNTS; do
  if [ "$HARD" != unlimited ] && [ $((count + 500)) -gt "$HARD" ]; then
    printf '%s\tskipped: open-file hard limit is %s here, and raising it needs CAP_SYS_RESOURCE\n' "$count" "$HARD" | tee -a "$TSV"
    continue
  fi
  bench_cleanup
  workers=$(( (count + 19999) / 20000 + 1 ))
  [ "$workers" -lt 2 ] && workers=2
  BENCH_WORKERS=$workers start_cluster rust 1
  sleep 2
  file=$OUT/memory-$count.json
  "$LOAD" --quiet --json "$file" idle "${URLS[@]}" --sessions "$count" --room-size 2 \
    --concurrency 500 --hold "$HOLD" --node-pid "${NODE_PIDS[0]}" >/dev/null 2>"$file.err" || true
  jq -r --arg w "$workers" '[.sessions_joined + .sessions_failed, $w, .node_rss_before_kib, .node_rss_after_kib,
      (.node_rss_per_session_bytes // 0 | floor), .sessions_joined, .sessions_failed, (.setup_seconds * 10 | floor / 10)] | @tsv' \
    "$file" | tee -a "$TSV"
done
bench_cleanup

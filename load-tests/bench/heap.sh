#!/usr/bin/env bash
# Where an idle session's memory goes: one node under heaptrack (Debian's
# heaptrack package) holding N idle joined sessions (rooms of two), then the peak
# heap consumers by allocation site.
#
#   load-tests/bench/heap.sh [sessions]   (default 10000)
# Results: target/bench/heaptrack.*.zst and target/bench/heap-peaks.txt.
source "$(dirname "$0")/lib.sh"

SESSIONS=${1:-10000}
command -v heaptrack >/dev/null || { echo "heaptrack is missing (apt-get install heaptrack)" >&2; exit 1; }
build
port=$(free_port)
rm -f "$OUT"/heaptrack.vc-signaling.*
env "${RUST_ENV[@]}" VC_SERVER__PORT="$port" VC_NODE__ID=heap VC_SERVER__WORKERS=2 \
  heaptrack -o "$OUT/heaptrack.vc-signaling" "$NODE" >"$OUT/heap-node.log" 2>&1 &
HT=$!
BENCH_PIDS+=($HT)
wait_ready "http://127.0.0.1:$port/readyz" 60
node_pid=$(pgrep -P "$HT" -f vc-signaling | head -1 || true)
"$LOAD" --quiet --json "$OUT/heap-idle.json" idle --url "ws://127.0.0.1:$port/ws" --sessions "$SESSIONS" \
  --room-size 2 --concurrency 200 --hold 5s ${node_pid:+--node-pid "$node_pid"} >/dev/null
# Stop the node while the sessions are gone; heaptrack writes its file on exit.
if [ -n "$node_pid" ]; then kill -INT "$node_pid"; else kill -INT "$HT"; fi
wait "$HT" 2>/dev/null || true
file=$(ls -t "$OUT"/heaptrack.vc-signaling.* | head -1)
heaptrack_print --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --peak-limit 25 --sub-peak-limit 4 "$file" >"$OUT/heap-peaks.txt" 2>/dev/null || true
grep -E "^(peak heap memory consumption|total memory leaked|calls to allocation)" "$OUT/heap-peaks.txt" || true
head -c 200 "$OUT/heap-idle.json" >/dev/null
echo "peaks: $OUT/heap-peaks.txt"

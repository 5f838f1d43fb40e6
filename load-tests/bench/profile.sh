#!/usr/bin/env bash
# Where a node's CPU goes per relayed message. `perf stat -e instructions` is not
# supported on this machine (a VM without hardware counters), so the node runs
# under valgrind's callgrind: instrumentation is switched on only while vc-load sends
# a steady relay, and the instruction count is divided by the messages relayed.
#
#   load-tests/bench/profile.sh [1|2]   (1: one node; 2: two nodes and Redis, the
#                                        profiled node sending and receiving half)
# Results: target/bench/callgrind.<nodes>n.out and callgrind-<nodes>n.txt.
source "$(dirname "$0")/lib.sh"

NODES=${1:-1}
PAIRS=${PROFILE_PAIRS:-20}
RATE=${PROFILE_RATE:-400}
SECONDS_SENT=${SECONDS_SENT:-10}
# Seconds of relay before collection starts; the rooms are set up within the first 3.
WARMUP_SECONDS=${PROFILE_WARMUP:-15}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
build
[ "$NODES" -gt 1 ] && start_redis
port=$(free_port)
env_list=("${RUST_ENV[@]}" VC_SERVER__PORT="$port" VC_NODE__ID=profiled VC_SERVER__WORKERS=1)
[ "$NODES" -gt 1 ] && env_list+=(VC_REDIS__URL="redis://127.0.0.1:$REDIS_PORT")
OUTFILE=$OUT/callgrind.${NODES}n.out
rm -f "$OUTFILE" "$OUTFILE".*
env "${env_list[@]}" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUTFILE" \
  "$NODE" >"$OUT/profiled-node.log" 2>&1 &
VG=$!
BENCH_PIDS+=($VG)
wait_ready "http://127.0.0.1:$port/readyz" 120
URLS=(--url "ws://127.0.0.1:$port/ws")
if [ "$NODES" -gt 1 ]; then
  start_rust_node other redis
fi
# Rooms are set up before collection starts (warm-up covers the set-up).
"$LOAD" --quiet --json "$OUT/profile-${NODES}n.json" relay "${URLS[@]}" --pairs "$PAIRS" \
  --rate "$RATE" --warmup "${WARMUP_SECONDS}s" --duration "${SECONDS_SENT}s" --drain 5s --timeout 60s >/dev/null &
LOADPID=$!
sleep $((WARMUP_SECONDS - 3))
callgrind_control -i on "$VG" >/dev/null
start=$(date +%s.%N)
sleep "$SECONDS_SENT"
callgrind_control -i off "$VG" >/dev/null
end=$(date +%s.%N)
wait "$LOADPID" || true
callgrind_control -d "$VG" >/dev/null
sleep 1
kill -INT "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
# The dump made with -d (part 1) holds the instrumented window.
dump=$OUTFILE.1
[ -s "$dump" ] || dump=$OUTFILE
callgrind_annotate --inclusive=yes "$dump" >"$OUT/callgrind-${NODES}n-inclusive.txt" 2>/dev/null || true
callgrind_annotate --inclusive=yes --tree=caller "$dump" >"$OUT/callgrind-${NODES}n-tree.txt" 2>/dev/null || true
callgrind_annotate "$dump" >"$OUT/callgrind-${NODES}n.txt" 2>/dev/null || true
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$OUT/callgrind-${NODES}n.txt")
relayed=$(grep -E "=> .*parse_client_frame \(" "$OUT/callgrind-${NODES}n-tree.txt" | head -1 | grep -oE "\(([0-9,]+)x\)" | tr -d '(),x' || true)
echo "instructions collected: $total over $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b - a}') s; messages at $RATE/s"
echo "client frames parsed in the window: ${relayed:-?}; instructions per frame: $(awk -v t="$total" -v n="${relayed:-0}" 'BEGIN { if (n > 0) printf "%.0f", t / n; else print "?" }')"
echo "relay report: $OUT/profile-${NODES}n.json; annotations: $OUT/callgrind-${NODES}n*.txt"

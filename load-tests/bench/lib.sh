# Shared by the benchmark scripts: free ports, starting Redis and vc-signaling
# nodes (through vc-fleet, services/fleet) and Socket.IO baseline nodes, CPU
# accounting, and teardown on exit. Source it; it sets `set -euo pipefail` and a trap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${BENCH_OUT:-$ROOT/target/bench}
mkdir -p "$OUT"
LOAD=$ROOT/target/release/vc-load
# NODE_BIN=PATH runs that vc-signaling binary instead of this checkout's release
# build (another commit's node, to compare two), with this checkout's vc-load and
# vc-fleet; the node is then not built. Not together with BENCH_ALLOCATOR.
NODE=${NODE_BIN:-$ROOT/target/release/vc-signaling}
FLEET_PROFILE=release
source "$ROOT/services/fleet/fleet.bash"
BASELINE=$ROOT/load-tests/baselines/socketio
BENCH_PIDS=()
URLS=()
NODE_PIDS=()
REDIS_PIDS=()

# Enough descriptors for 100k sockets on each side (root may raise the hard limit).
ulimit -n 400000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  BENCH_PIDS=()
}
trap bench_cleanup EXIT

# BENCH_ALLOCATOR=system|jemalloc|mimalloc builds the node with that global
# allocator (vc-signaling's cargo features, src/allocator.rs) instead of the
# default one, and runs that binary, kept as $OUT/bin/vc-signaling-<allocator>.
# BENCH_NO_BUILD=1 runs the release binaries already built, when there are.
build() {
  if [ -n "${NODE_BIN:-}" ]; then
    [ -z "${BENCH_ALLOCATOR:-}" ] || { echo "NODE_BIN and BENCH_ALLOCATOR exclude each other" >&2; exit 1; }
    [ -x "$NODE_BIN" ] || { echo "NODE_BIN: no executable at $NODE_BIN" >&2; exit 1; }
    [ -n "${BENCH_NO_BUILD:-}" ] && [ -x "$LOAD" ] && [ -x "$FLEET_BIN" ] ||
      (cd "$ROOT" && cargo build --release -q -p vc-load -p vc-fleet)
  elif [ -n "${BENCH_ALLOCATOR:-}" ]; then
    [ -n "${BENCH_NO_BUILD:-}" ] && [ -x "$LOAD" ] && [ -x "$FLEET_BIN" ] ||
      (cd "$ROOT" && cargo build --release -q -p vc-load -p vc-fleet)
    NODE=$(build_node "$BENCH_ALLOCATOR")
  else
    [ -n "${BENCH_NO_BUILD:-}" ] && [ -x "$NODE" ] && [ -x "$LOAD" ] && [ -x "$FLEET_BIN" ] ||
      fleet_build -p vc-load
  fi
}

# build_node default|system|jemalloc|mimalloc: builds the release node with that
# allocator, copies it to $OUT/bin/vc-signaling-<allocator> and prints the path.
# BENCH_NO_BUILD=1 takes that copy as it is when there is one.
build_node() {
  if [ -n "${BENCH_NO_BUILD:-}" ] && [ -x "$OUT/bin/vc-signaling-$1" ]; then
    echo "$OUT/bin/vc-signaling-$1"
    return
  fi
  local features=()
  case $1 in
    default) ;;
    system) features=(--no-default-features) ;;
    jemalloc | mimalloc) features=(--no-default-features --features "$1") ;;
    *) echo "unknown allocator $1 (default, system, jemalloc, mimalloc)" >&2; return 1 ;;
  esac
  (cd "$ROOT" && cargo build --release -q -p vc-signaling "${features[@]}") >&2
  mkdir -p "$OUT/bin"
  cp "$ROOT/target/release/vc-signaling" "$OUT/bin/vc-signaling-$1"
  echo "$OUT/bin/vc-signaling-$1"
}

# The allocator a running node reports (vc_node_info's label), from its /metrics.
node_allocator() { # port
  curl -sf "http://127.0.0.1:$1/metrics" | sed -n 's/^vc_node_info{.*allocator="\([a-z]*\)".*/\1/p' | head -1
}

install_baseline() {
  command -v node >/dev/null || { echo "node is missing (apt-get install nodejs npm)" >&2; exit 1; }
  if [ ! -d "$BASELINE/node_modules" ] || [ "$BASELINE/package-lock.json" -nt "$BASELINE/node_modules" ]; then
    (cd "$BASELINE" && npm ci --no-audit --no-fund --silent)
  fi
}

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

wait_ready() { # url seconds
  local i
  for i in $(seq $(($2 * 10))); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "not ready: $1" >&2
  return 1
}

# Throughput benchmarks raise the per-session rate limit: a relay pair sends far
# more than a browser's 50 messages a second.
RUST_ENV=(VC_SERVER__HOST=127.0.0.1 VC_TELEMETRY__LOG_LEVEL=warn
  VC_LIMITS__MESSAGES_PER_SECOND=1000000 VC_LIMITS__MESSAGE_BURST=1000000
  VC_ROOMS__CAPACITY=16)

# fleet ARGS...: a vc-fleet in the background, stopped by bench_cleanup;
# logs in $OUT (<node id>.log, redis-<port>.log).
fleet() {
  local settings=() setting
  for setting in "${RUST_ENV[@]}"; do settings+=(--set "$setting"); done
  [ -n "${BENCH_WORKERS:-}" ] && settings+=(--set VC_SERVER__WORKERS="$BENCH_WORKERS")
  fleet_start "$OUT/fleet-$BASHPID-${#BENCH_PIDS[@]}.json" --node-bin "$NODE" --log-dir "$OUT" "${settings[@]}" "$@"
  BENCH_PIDS+=("$FLEET_PID")
}

# Adds the fleet's nodes to URLS and NODE_PIDS, its Redis servers to REDIS_PIDS.
add_fleet_nodes() {
  local line
  while read -r line; do URLS+=(--url "$line"); done < <(fleet_get '.nodes[].ws')
  while read -r line; do NODE_PIDS+=("$line"); done < <(fleet_get '.nodes[].pid')
  while read -r line; do REDIS_PIDS+=("$line"); done < <(fleet_get '.redis.pids // [] | .[]')
}

REDIS_PORT=""
REDIS_URL=""
start_redis() {
  fleet --nodes 0 --redis standalone
  REDIS_PIDS+=("$(fleet_get '.redis.pids[0]')")
  REDIS_PORT=$(fleet_get '.redis.ports[0]')
  REDIS_URL=$(fleet_get '.redis.url')
}

start_rust_node() { # id [redis]
  local redis=(--redis none)
  [ -n "${2:-}" ] && redis=(--redis-url "$REDIS_URL")
  fleet --ids "$1" "${redis[@]}"
  add_fleet_nodes
}

start_sio_node() { # id [redis]
  local id=$1 port
  port=$(free_port)
  local env=(PORT="$port" NODE_ID="$id" ROOM_CAPACITY=16)
  [ -n "${2:-}" ] && env+=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
  env "${env[@]}" node "$BASELINE/server.js" >"$OUT/sio-$id.log" 2>&1 &
  BENCH_PIDS+=($!)
  NODE_PIDS+=($!)
  wait_ready "http://127.0.0.1:$port/readyz" 30
  URLS+=(--url "ws://127.0.0.1:$port/ws")
}

# Starts a topology: impl (rust|sio) and nodes (1: no Redis, 2: two nodes and Redis).
start_cluster() {
  URLS=()
  NODE_PIDS=()
  REDIS_PIDS=()
  local impl=$1 nodes=$2 n
  if [ "$impl" = rust ]; then
    # One fleet: Redis (with more than one node) and the nodes.
    local redis=none
    [ "$nodes" -gt 1 ] && redis=standalone
    fleet --nodes "$nodes" --id-prefix rust- --redis "$redis"
    add_fleet_nodes
  else
    if [ "$nodes" -gt 1 ]; then start_redis; fi
    for n in $(seq "$nodes"); do
      if [ "$nodes" -gt 1 ]; then start_sio_node "sio-$n" redis; else start_sio_node "sio-$n"; fi
    done
  fi
  MODE=plain
  [ "$impl" = sio ] && MODE=socketio
  return 0
}

# CPU seconds (user + system) used so far by the given pids, added up.
cpu_seconds() {
  local total=0 pid ticks
  local hz
  hz=$(getconf CLK_TCK)
  for pid in "$@"; do
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'
}

# Machine-wide CPU counters (all processes, including other users of the cores):
# `cpu_mark` then `cpu_busy_since MARK` gives the busy percentage of all cores.
cpu_mark() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
cpu_busy_since() { # "busy idle" from cpu_mark
  local now
  now=$(cpu_mark)
  awk -v a="$1" -v n="$now" 'BEGIN { split(a, x, " "); split(n, y, " ");
    b = y[1] - x[1]; i = y[2] - x[2]; printf "%.0f", (b + i > 0) ? 100 * b / (b + i) : 0 }'
}

# One measured run, as throughput.sh and point.sh make them.
WARMUP=${WARMUP:-2s}
DURATION=${DURATION:-8s}
PAIRS=${PAIRS:-100}
SUMMARY=$OUT/summary.tsv
[ -f "$SUMMARY" ] || printf 'impl\tnodes\tscenario\ttarget\tachieved\tp50_ms\tp99_ms\tsustained\tnode_cpu_s\tload_cpu_s\tmachine_busy_pct\tfile\tload1\tredis_cpu_s\n' >"$SUMMARY"

PASS_calls='.calls_failed == 0 and .calls_skipped == 0 and .achieved_fraction >= 0.98 and .latency_ms["call-setup"].p99_ms < 1000'
PASS_relay='.lost == 0 and .error_total == 0 and .achieved_fraction >= 0.98 and .latency_ms.relay.p99_ms < 200'
PHASE_calls=call-setup
PHASE_relay=relay

# run impl nodes scenario rate label -> prints "pass" or "fail"
run_one() {
  local impl=$1 nodes=$2 scenario=$3 rate=$4 label=$5
  local file="$OUT/$impl-${nodes}n-$scenario-$label-$rate.json"
  local extra=()
  [ "$scenario" = relay ] && extra=(--pairs "$PAIRS" --drain 3s)
  local before after load_cpu mark redis_before redis_after
  before=$(cpu_seconds "${NODE_PIDS[@]}")
  redis_before=$(cpu_seconds "${REDIS_PIDS[@]}")
  mark=$(cpu_mark)
  local TIMEFORMAT='%U %S'
  load_cpu=$( { time "$LOAD" --quiet --json "$file" "$scenario" "${URLS[@]}" --mode "$MODE" \
      --rate "$rate" --warmup "$WARMUP" --duration "$DURATION" "${extra[@]}" >/dev/null 2>"$file.err"; } 2>&1 | tail -1 | awk '{print $1 + $2}') || true
  after=$(cpu_seconds "${NODE_PIDS[@]}")
  redis_after=$(cpu_seconds "${REDIS_PIDS[@]}")
  local busy
  busy=$(cpu_busy_since "$mark")
  [ -s "$file" ] || echo '{"achieved_fraction":0,"latency_ms":{}}' >"$file"
  local pass_filter="PASS_$scenario" phase_var="PHASE_$scenario"
  local verdict=fail
  jq -e "${!pass_filter}" "$file" >/dev/null 2>&1 && verdict=pass
  local phase=${!phase_var}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$impl" "$nodes" "$scenario" "$rate" \
    "$(jq -r '.achieved_rate_per_s // .throughput_per_s // 0 | floor' "$file")" \
    "$(jq -r --arg p "$phase" '.latency_ms[$p].p50_ms // "-"' "$file")" \
    "$(jq -r --arg p "$phase" '.latency_ms[$p].p99_ms // "-"' "$file")" \
    "$verdict" "$(awk -v a="$before" -v b="$after" 'BEGIN{printf "%.2f", b - a}')" "${load_cpu:-0}" \
    "$busy" "$(basename "$file")" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(awk -v a="$redis_before" -v b="$redis_after" 'BEGIN{printf "%.2f", b - a}')" | tee -a "$SUMMARY" >&2
  echo "$verdict"
}


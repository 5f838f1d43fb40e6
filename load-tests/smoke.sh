#!/usr/bin/env bash
# Smoke run of the load generator against a real two-node cluster: its own
# redis-server and two vc-signaling nodes on free loopback ports, a few seconds of
# `calls`, `relay` and `mixed` across both nodes, and checks of the JSON reports.
# Prints "N passed, M failed"; exits non-zero when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 1; }

echo "building vc-load and vc-signaling (debug)"
cargo build -q -p vc-load -p vc-signaling
LOAD=target/debug/vc-load
NODE=target/debug/vc-signaling

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A port nothing listens on, from a range away from the ephemeral ports.
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

wait_for() { # what, seconds, command...
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2
  return 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_for "redis" 10 redis-cli -p "$REDIS_PORT" ping

URLS=()
for id in smoke-a smoke-b; do
  port=$(free_port)
  VC_SERVER__HOST=127.0.0.1 VC_SERVER__PORT=$port VC_SERVER__WORKERS=1 VC_NODE__ID=$id \
    VC_REDIS__URL="redis://127.0.0.1:$REDIS_PORT" VC_TELEMETRY__LOG_LEVEL=warn \
    "$NODE" >"$WORK/$id.log" 2>&1 &
  PIDS+=($!)
  wait_for "node $id" 30 curl -sf "http://127.0.0.1:$port/readyz"
  URLS+=(--url "ws://127.0.0.1:$port/ws")
done

passed=0
failed=0
check() { # description, jq filter that must be true, report file
  if jq -e "$2" "$3" >/dev/null; then
    echo "ok - $1"
    passed=$((passed + 1))
  else
    echo "not ok - $1 ($2)"
    jq -c '{errors, failures, first_error, counts}' "$3" 2>/dev/null || true
    failed=$((failed + 1))
  fi
}
run() { # name, args...
  local name=$1
  shift
  if "$LOAD" --quiet --json "$WORK/$name.json" "$@" >/dev/null 2>"$WORK/$name.err"; then
    echo "ok - vc-load $name exits 0"
    passed=$((passed + 1))
  else
    echo "not ok - vc-load $name exits 0"
    tail -5 "$WORK/$name.err"
    failed=$((failed + 1))
  fi
  [ -s "$WORK/$name.json" ] || echo '{}' >"$WORK/$name.json"
}

# Calls: 20 set-ups a second for 3 s after 1 s of warm-up; peer A on one node,
# peer B on the other.
run calls calls "${URLS[@]}" --rate 20 --warmup 1s --duration 3s
R=$WORK/calls.json
check "calls: none failed or skipped" '.calls_failed == 0 and .calls_skipped == 0' "$R"
check "calls: every scheduled call ran (60 in the window)" '.calls_started == 60 and .calls_ok == 60' "$R"
check "calls: no error frames" '.error_total == 0' "$R"
check "calls: both nodes were used" '(.urls | length) == 2' "$R"
check "calls: every phase measured" \
  '[.latency_ms | has("connect", "join", "peer-joined", "first-message", "candidate", "negotiation", "call-setup", "leave")] | all' "$R"
check "calls: 10 candidates each way per call" '.latency_ms.candidate.count == 60 * 20' "$R"

# Relay: 50 rooms of two across the nodes, 500 messages a second for 3 s.
run relay relay "${URLS[@]}" --pairs 50 --rate 500 --warmup 1s --duration 3s --drain 10s
R=$WORK/relay.json
check "relay: all rooms set up" '.pairs_failed == 0' "$R"
check "relay: about 1500 sent in the window" '.sent >= 1498 and .sent <= 1502' "$R"
check "relay: every message delivered" '.received == .sent and .lost == 0' "$R"
check "relay: no error frames" '.error_total == 0' "$R"
check "relay: one latency per delivered message" '.latency_ms.relay.count == .received' "$R"
check "relay: a series point per second" '(.series | length) >= 3' "$R"

# Mixed: the exercises behind the observability test, expected errors included.
run mixed mixed "${URLS[@]}" --duration 3s --rate 4 --period 5s
R=$WORK/mixed.json
check "mixed: nothing failed" '(.failed | length) == 0' "$R"
check "mixed: provoked the expected error codes" \
  '[.errors | has("bad-json", "unknown-type", "not-joined", "invalid-room", "invalid-message", "binary-not-supported", "unknown-peer", "rate-limited")] | all' "$R"
check "mixed: resumed on the other node" '.succeeded.resume >= 1 and .latency_ms.resume.count >= 1' "$R"
check "mixed: calls with reports" '.succeeded.call >= 4' "$R"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Smoke run of the load generator against a real two-node cluster: its own
# redis-server and two vc-signaling nodes on free loopback ports, a few seconds of
# `calls`, `relay` and `mixed` across both nodes, and checks of the JSON reports.
# Prints "N passed, M failed"; exits non-zero when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
source services/fleet/fleet.bash

echo "building vc-load, vc-signaling and vc-fleet (debug)"
fleet_build -p vc-load
LOAD=target/debug/vc-load

WORK=$(mktemp -d)
FLEET_PID=""
cleanup() {
  [ -n "$FLEET_PID" ] && fleet_stop "$FLEET_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT

# Redis and two nodes on free loopback ports, up and ready.
fleet_start "$WORK/fleet.json" --ids smoke-a,smoke-b --log-dir "$WORK" \
  --set VC_SERVER__WORKERS=1 --set VC_TELEMETRY__LOG_LEVEL=warn
mapfile -t URLS < <(fleet_get '.nodes[] | "--url", .ws')

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

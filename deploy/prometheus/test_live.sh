#!/usr/bin/env bash
# Tests the dashboards and alert rules against real metrics:
#
#   1. promtool checks the rules, the scrape config and the rules' unit tests;
#      the dashboards' structure is checked (check_dashboards.py static);
#   2. three nodes on one Redis (a vc-fleet, services/fleet, debug build) and a
#      Prometheus scraping them every second start on free loopback ports;
#   3. vc-load mixed and traffic.py drive calls, errors, rate limiting, resumes
#      and client reports for about 20 s; meanwhile every query of every
#      dashboard panel must return data and every alert rule must be loaded,
#      healthy and evaluate (check_dashboards.py live);
#   4. faults, with calls held across the nodes: Redis is killed and returns
#      empty, then a node is killed (both through the fleet's stdin); the bus panels' series move (disconnection, refusals,
#      resubscriptions, swept seats) and Prometheus raises VcBusDisconnected,
#      VcNodeDown and VcNodeLost from the real rules;
#   5. everything is stopped again, also on failure.
#
# Needs prometheus and promtool (Debian's `prometheus` package, installed when
# missing), redis-server, curl, cargo, jq and python3. Takes about a minute;
# ends with `N passed, M failed`. TRAFFIC_SECONDS (20) sets the traffic phase,
# DASHBOARDS another folder of dashboards to check.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/deploy/prometheus
DASHBOARDS=${DASHBOARDS:-$ROOT/deploy/grafana/dashboards}
RULES=$HERE/rules/video-caller.yml
TRAFFIC_SECONDS=${TRAFFIC_SECONDS:-20}
started=$SECONDS

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); echo "not ok - $*"; }
# run NAME COMMAND...: one check, its output shown only on failure.
run() {
  local name=$1 out; shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}
# count_lines OUTPUT: adds the ok / not ok lines of a helper's output to the totals.
count_lines() {
  printf '%s\n' "$1"
  passed=$((passed + $(grep -c '^ok - ' <<<"$1")))
  failed=$((failed + $(grep -c '^not ok - ' <<<"$1")))
}
finish() {
  echo "# $((SECONDS - started)) s"
  echo "$passed passed, $failed failed"
  if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then exit 0; else exit 1; fi
}

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "# installing Debian's prometheus package (prometheus, promtool)"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# -- 1. static checks -------------------------------------------------------------
run "promtool check rules $(basename "$RULES")" promtool check rules "$RULES"
run "promtool check config deploy/prometheus/prometheus.yml" promtool check config "$HERE/prometheus.yml"
run "promtool test rules (alert unit tests)" promtool test rules "$HERE/tests/video-caller.test.yml"
count_lines "$(python3 "$HERE/check_dashboards.py" static "$DASHBOARDS")"

# -- 2. fleet and Prometheus -------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vc-prometheus-test.XXXXXX")
PROM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
source "$ROOT/services/fleet/fleet.bash"
PROM_PID=""
TRAFFIC_PID=""
LOAD_PID=""
cleanup() {
  [ -n "$TRAFFIC_PID" ] && kill "$TRAFFIC_PID" 2>/dev/null
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
    kill -TERM "$PROM_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PROM_PID" 2>/dev/null
  fi
  [ -n "${FLEET_PID:-}" ] && fleet_stop "$FLEET_PID"
  rm -rf "$WORK"
}
trap 'cleanup; finish' EXIT
trap 'exit 130' INT TERM

# Pings every second, so that ping RTTs and timed-out sessions show within the
# test; liveness and reconnection fast enough for the fault phase.
if out=$(fleet_build 2>&1) && fleet_coproc --ids local-1,local-2,local-3 --log-dir "$WORK/fleet" \
  --set VC_HEARTBEAT__INTERVAL=1s --set VC_HEARTBEAT__TIMEOUT=4s \
  --set VC_REDIS__HEARTBEAT_INTERVAL=1s --set VC_REDIS__NODE_TTL=5s --set VC_REDIS__MAX_BACKOFF=1s; then
  read -r N1 N2 N3 < <(fleet_get '[.nodes[].port] | map(tostring) | join(" ")')
  NODE_PORTS="$N1 $N2 $N3"
  pass "three nodes and Redis up (nodes $NODE_PORTS)"
else
  fail "three nodes and Redis up"; printf '%s\n' "$out" | tail -20 | sed 's/^/    /'
  for log in "$WORK"/fleet/*.log; do [ -f "$log" ] && tail -5 "$log" | sed "s|^|    $(basename "$log"): |"; done
  exit 1
fi

metrics_ok=true
for port in $NODE_PORTS; do
  body=$(curl -fsS "http://127.0.0.1:$port/metrics") || body=""
  grep -q '^vc_node_info{' <<<"$body" || metrics_ok=false
done
if $metrics_ok; then pass "every node serves vc_ metrics on /metrics"; else fail "a node serves no vc_ metrics on /metrics"; fi

mkdir -p "$WORK/prometheus"
cat >"$WORK/prometheus/prometheus.yml" <<YAML
# deploy/prometheus/prometheus.yml with the test's ports and a 1 s interval.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: video-caller
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$N1", "127.0.0.1:$N2", "127.0.0.1:$N3"]
YAML
run "promtool check config (test config)" promtool check config "$WORK/prometheus/prometheus.yml"
prometheus --config.file="$WORK/prometheus/prometheus.yml" \
  --storage.tsdb.path="$WORK/prometheus/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn >"$WORK/prometheus/log" 2>&1 &
PROM_PID=$!
PROM=http://127.0.0.1:$PROM_PORT

up_targets() {
  curl -fsS "$PROM/api/v1/query" --data-urlencode 'query=count(up{job="video-caller"} == 1)' 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null
}
deadline=$((SECONDS + 30))
until [ "$(up_targets)" = 3 ]; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$PROM_PID" 2>/dev/null; then
    fail "Prometheus scrapes the three nodes"; tail -20 "$WORK/prometheus/log" | sed 's/^/    /'
    exit 1
  fi
  sleep 0.5
done
pass "Prometheus (127.0.0.1:$PROM_PORT) scrapes the three nodes"

# -- 3. traffic, and the queries while it runs --------------------------------------
# The project's load generator (vc-load mixed) when it builds, and traffic.py,
# which covers on its own every series the dashboards show (and a few cases
# vc-load leaves out: full rooms, oversized frames, sockets that stop answering).
LOAD_PID=""
if out=$(cargo build -q -p vc-load 2>&1) && [ -x target/debug/vc-load ]; then
  target/debug/vc-load mixed --url "ws://127.0.0.1:$N1/ws" --url "ws://127.0.0.1:$N2/ws" \
    --url "ws://127.0.0.1:$N3/ws" --duration "${TRAFFIC_SECONDS}s" --quiet \
    --json "$WORK/vc-load.json" >/dev/null 2>"$WORK/vc-load.err" &
  LOAD_PID=$!
else
  echo "# vc-load did not build, traffic.py alone drives the nodes:"; printf '%s\n' "$out" | tail -5 | sed 's/^/#   /'
fi
python3 "$HERE/traffic.py" --port "$N1" --port "$N2" --port "$N3" --duration "$TRAFFIC_SECONDS" \
  >"$WORK/traffic.json" 2>"$WORK/traffic.err" &
TRAFFIC_PID=$!
# Query near the end of the traffic, so that every kind of event lies inside
# the 1-minute windows and has been scraped a few times.
sleep $((TRAFFIC_SECONDS > 6 ? TRAFFIC_SECONDS - 3 : 3))
count_lines "$(python3 "$HERE/check_dashboards.py" live "$DASHBOARDS" "$PROM" "$RULES")"

if wait "$TRAFFIC_PID"; then
  pass "traffic ran: $(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["counts"]; print(", ".join(f"{k} {c[k]}" for k in ("joins","negotiations","final_reports","resumes","rate_limited_errors") if k in c))' "$WORK/traffic.json")"
else
  fail "traffic"; sed 's/^/    /' "$WORK/traffic.json" "$WORK/traffic.err"
fi
TRAFFIC_PID=""
if [ -n "$LOAD_PID" ]; then
  if wait "$LOAD_PID"; then
    pass "vc-load mixed ran: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(", ".join(f"{k} {v}" for k, v in r.get("succeeded", {}).items()))' "$WORK/vc-load.json")"
  else
    fail "vc-load mixed"; cat "$WORK/vc-load.json" "$WORK/vc-load.err" 2>/dev/null | tail -30 | sed 's/^/    /'
  fi
  LOAD_PID=""
fi

# -- 4. faults ------------------------------------------------------------------------
await_() { count_lines "$(python3 "$HERE/check_dashboards.py" await "$PROM" "$@")"; }
python3 "$HERE/traffic.py" --port "$N1" --port "$N2" --port "$N3" --hold 40 \
  >"$WORK/hold.json" 2>"$WORK/hold.err" &
TRAFFIC_PID=$!
await_ 10 "calls held on every node" 'count(vc_rooms{job="video-caller"} >= 2) == 3'

# Redis goes away and comes back with nothing in it, as after a crash.
fleet_do kill redis >/dev/null || fail "vc-fleet: kill redis"
await_ 10 "Redis down: VcBusDisconnected raised for all three nodes" \
  'count(ALERTS{alertname="VcBusDisconnected"}) == 3'
await_ 10 "Redis down: relays for other nodes kept in the outage queues" \
  'sum(vc_outage_queued) > 0'
await_ 5 "Redis down: bus errors counted" 'sum(increase(vc_bus_errors_total[1m])) > 0'
fleet_do restart redis --empty >/dev/null || fail "vc-fleet: restart redis --empty"
await_ 15 "Redis back: every node connected and resubscribed" \
  'count((vc_bus_connected == 1) and (increase(vc_bus_resubscriptions_total[1m]) > 0)) == 3'
await_ 10 "Redis back: VcBusDisconnected cleared" \
  'absent(ALERTS{alertname="VcBusDisconnected"})'
await_ 10 "Redis back: the outage queues published and emptied" \
  'sum(increase(vc_outage_flushed_total[1m])) > 0 and sum(vc_outage_queued) == 0'

# A node dies without draining: Prometheus misses it, the others sweep its seats.
fleet_do kill local-3 >/dev/null || fail "vc-fleet: kill local-3"
await_ 10 "node killed: VcNodeDown raised for it" \
  "count(ALERTS{alertname=\"VcNodeDown\", instance=\"127.0.0.1:$N3\"}) == 1"
await_ 15 "node killed: its seats swept, VcNodeLost firing" \
  'sum(increase(vc_peers_swept_total[1m])) > 0 and on() count(ALERTS{alertname="VcNodeLost", alertstate="firing"}) == 1'

kill "$TRAFFIC_PID" 2>/dev/null
wait "$TRAFFIC_PID" 2>/dev/null
TRAFFIC_PID=""

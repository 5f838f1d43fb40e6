#!/usr/bin/env bash
# Brings the local cluster up on free loopback ports, checks that the load
# balancer spreads requests over all three nodes, that its pages pass the
# nodes' Origin check, and that every node is ready,
# then takes it down again (also on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export LB_PORT=$(free_port) REDIS_PORT=$(free_port)
export NODE_PORTS="$(free_port) $(free_port) $(free_port)"
export PROFILE=debug STATE="$PWD/target/local-cluster-test"
trap 'deploy/local/cluster.sh down >/dev/null' EXIT

deploy/local/cluster.sh up
seen=""
for _ in $(seq 1 12); do
  node=$(curl -fsS "http://127.0.0.1:$LB_PORT/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"])')
  case " $seen " in *" $node "*) ;; *) seen="$seen $node" ;; esac
done
count=$(wc -w <<<"$seen")
echo "nodes reached through the load balancer:$seen"
[ "$count" -eq 3 ] || { echo "expected 3 nodes behind the load balancer, saw $count"; exit 1; }
# The Origin check behind nginx: a page served through the load balancer (its
# Origin matches the Host nginx forwards, port included) may open a WebSocket,
# a foreign page may not.
upgrade() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $1" -H "Origin: $2" \
    -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
    -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "http://127.0.0.1:$LB_PORT/ws" || true
}
own=$(upgrade "call.test:$LB_PORT" "http://call.test:$LB_PORT")
foreign=$(upgrade "call.test:$LB_PORT" "http://elsewhere.test")
echo "WebSocket upgrade through the load balancer: own origin $own, foreign origin $foreign"
[ "$own" != 403 ] && [ "$own" != 000 ] || { echo "the load balancer's own pages were refused"; exit 1; }
[ "$foreign" = 403 ] || { echo "a foreign origin was not refused"; exit 1; }
deploy/local/cluster.sh status
echo "2 passed, 0 failed"

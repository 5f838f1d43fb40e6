#!/usr/bin/env bash
# Brings the local cluster up on free loopback ports, checks that the load
# balancer spreads requests over all three nodes and that every node is ready,
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
deploy/local/cluster.sh status
echo "1 passed, 0 failed"

#!/usr/bin/env bash
# A local fleet on loopback: Redis, three signaling nodes and nginx in front.
#   deploy/local/cluster.sh up       build, start everything, wait until ready
#   deploy/local/cluster.sh down     stop everything
#   deploy/local/cluster.sh status   show what runs where
# Ports (override with the environment): LB_PORT=8080 for the load balancer,
# NODE_PORTS="8081 8082 8083", REDIS_PORT=6380. PROFILE=debug skips the release
# build. VC_* variables set here reach every node as settings. Redis and the
# nodes are one vc-fleet (services/fleet) left running in the background; its
# JSON, logs and pid files live in target/local-cluster/.
set -euo pipefail
cd "$(dirname "$0")/../.."

LB_PORT=${LB_PORT:-8080}
NODE_PORTS=${NODE_PORTS:-"8081 8082 8083"}
REDIS_PORT=${REDIS_PORT:-6380}
PROFILE=${PROFILE:-release}
STATE=${STATE:-$PWD/target/local-cluster}
NGINX=${NGINX:-/usr/sbin/nginx}

FLEET_PROFILE=$PROFILE
source services/fleet/fleet.bash

# Redis and one node per port, named local-1, local-2, …, outliving this script.
start_fleet() {
  local ids="" ports="" sets=() index=1 port var
  for port in $NODE_PORTS; do ids+=${ids:+,}local-$index; ports+=${ports:+,}$port; index=$((index + 1)); done
  for var in $(compgen -e); do [[ $var == VC_* ]] && sets+=(--set "$var=${!var}"); done
  # As nohup would: the fleet stays up when the terminal goes.
  trap '' HUP
  fleet_start "$STATE/fleet.json" --ids "$ids" --node-ports "$ports" --redis-port "$REDIS_PORT" \
    --log-dir "$STATE" --grace 10 "${sets[@]}" </dev/null
  echo "$FLEET_PID" >"$STATE/fleet.pid"
}

write_nginx_conf() {
  local servers=""
  for port in $NODE_PORTS; do servers+="    server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'; done
  mkdir -p "$STATE/nginx/logs" "$STATE/nginx/tmp"
  cat >"$STATE/nginx/nginx.conf" <<CONF
daemon on;
pid $STATE/nginx/nginx.pid;
error_log $STATE/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log $STATE/nginx/logs/access.log;
  client_body_temp_path $STATE/nginx/tmp/body;
  proxy_temp_path $STATE/nginx/tmp/proxy;
  fastcgi_temp_path $STATE/nginx/tmp/fastcgi;
  uwsgi_temp_path $STATE/nginx/tmp/uwsgi;
  scgi_temp_path $STATE/nginx/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream signaling {
$servers  }
  server {
    listen 127.0.0.1:$LB_PORT;
    location / {
      proxy_pass http://signaling;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      # Host with its port, so the Origin of the pages served here matches it.
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      # Signaling sockets idle for minutes between negotiations; nodes ping
      # every 10 s, so an hour is only a backstop.
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      # A draining node answers 503: try the next one.
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
CONF
}

wait_http() {
  local url=$1 deadline=$((SECONDS + 30))
  until curl -fsS -o /dev/null "$url"; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $url" >&2; return 1; }
    sleep 0.2
  done
}

stop_pidfile() { # file [tenths of a second before SIGKILL]
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${2:-100}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

up() {
  mkdir -p "$STATE"
  fleet_build
  # The fleet is up (every node ready) once it has printed its addresses.
  start_fleet
  write_nginx_conf
  "$NGINX" -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf"
  wait_http "http://127.0.0.1:$LB_PORT/readyz"
  echo "cluster up: open http://127.0.0.1:$LB_PORT  (nodes: $NODE_PORTS, redis: $REDIS_PORT)"
}

down() {
  stop_pidfile "$STATE/nginx/nginx.pid"
  # The fleet stops its nodes (SIGTERM, 10 s to drain) and Redis.
  stop_pidfile "$STATE/fleet.pid" 150
  echo "cluster down"
}

status() {
  for port in $NODE_PORTS; do
    printf 'node  :%s  ' "$port"; curl -s "http://127.0.0.1:$port/readyz" || printf 'down'; echo
  done
  printf 'lb    :%s  ' "$LB_PORT"; curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$LB_PORT/healthz" || echo down
  printf 'redis :%s  ' "$REDIS_PORT"; redis-cli -p "$REDIS_PORT" ping 2>/dev/null || echo down
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac

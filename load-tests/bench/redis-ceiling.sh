#!/usr/bin/env bash
# The ceiling under the bus: Redis PUBLISH throughput on this machine
# (redis-benchmark from Debian's redis-tools), with a payload the size of one
# relay envelope, without and with two subscribed readers (as two nodes would
# be), unpipelined (one command per round trip per client, like a node's
# publish) and pipelined.
#
#   load-tests/bench/redis-ceiling.sh        Results: target/bench/redis-ceiling.tsv
source "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-500000}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-420}
PAYLOAD=$(head -c "$PAYLOAD_BYTES" /dev/zero | tr '\0' 'x')
CHANNEL='vc:{bench}:bus'
TSV=$OUT/redis-ceiling.tsv
printf 'subscribers\tclients\tpipeline\tpublish_per_s\n' >"$TSV"
start_redis
bench() { # subscribers clients pipeline
  local rps
  rps=$(redis-benchmark -p "$REDIS_PORT" -n "$REQUESTS" -c "$2" -P "$3" --csv \
    PUBLISH "$CHANNEL" "$PAYLOAD" | tail -1 | cut -d, -f2 | tr -d '"')
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" | tee -a "$TSV"
}
bench 0 50 1
bench 0 50 16
for _ in 1 2; do
  redis-cli -p "$REDIS_PORT" SUBSCRIBE "$CHANNEL" >/dev/null &
  BENCH_PIDS+=($!)
done
sleep 0.5
bench 2 50 1
bench 2 50 16
bench 2 4 1
bench_cleanup

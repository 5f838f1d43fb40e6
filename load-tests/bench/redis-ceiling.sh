#!/usr/bin/env bash
# The ceiling under the bus: Redis PUBLISH throughput on this machine
# (redis-benchmark from Debian's redis-tools), with a payload the size of one
# relay envelope, without and with two subscribed readers (as two nodes would
# be), unpipelined (one command per round trip per client, like a node's
# publish) and pipelined.
#
# Redis cuts off a pub/sub client whose output buffer passes its limit (32 MiB
# hard by default), and `redis-cli` subscribers printing to /dev/null fall that
# far behind a pipelined PUBLISH: once cut off, every PUBLISH goes to no one and
# the rate measured is the zero-subscriber rate. So the limit is lifted for the
# run, and after each row the subscribers still attached are counted; a row
# that lost one is marked invalid rather than reported.
#
#   load-tests/bench/redis-ceiling.sh        Results: target/bench/redis-ceiling.tsv
source "$(dirname "$0")/lib.sh"

REQUESTS=${REQUESTS:-500000}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-420}
PAYLOAD=$(head -c "$PAYLOAD_BYTES" /dev/zero | tr '\0' 'x')
CHANNEL='vc:{bench}:bus'
TSV=$OUT/redis-ceiling.tsv
printf 'subscribers\tclients\tpipeline\tpublish_per_s\tvalid\n' >"$TSV"
start_redis
redis-cli -p "$REDIS_PORT" CONFIG SET client-output-buffer-limit 'pubsub 0 0 0' >/dev/null
subscribers() { redis-cli -p "$REDIS_PORT" PUBSUB NUMSUB "$CHANNEL" | tail -1; }
bench() { # subscribers clients pipeline
  local rps valid=yes
  rps=$(redis-benchmark -p "$REDIS_PORT" -n "$REQUESTS" -c "$2" -P "$3" --csv \
    PUBLISH "$CHANNEL" "$PAYLOAD" | tail -1 | cut -d, -f2 | tr -d '"')
  [ "$(subscribers)" -eq "$1" ] || valid="no: $(subscribers) of $1 subscribers left"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$valid" | tee -a "$TSV"
}
bench 0 50 1
bench 0 50 16
for _ in 1 2; do
  redis-cli -p "$REDIS_PORT" SUBSCRIBE "$CHANNEL" >/dev/null &
  BENCH_PIDS+=($!)
done
for _ in $(seq 50); do [ "$(subscribers)" -eq 2 ] && break; sleep 0.1; done
bench 2 50 1
bench 2 50 16
bench 2 4 1
bench_cleanup

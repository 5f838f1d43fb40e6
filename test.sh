#!/usr/bin/env bash
# Runs every test of Video Caller, installing what the tests need when it is
# missing: Debian packages (redis-server, chromium, firefox-esr, nginx, coturn, prometheus, valgrind,
# make, iptables, libnetfilter-queue-dev and ping for the link shaper, docker-compose for
# parsing the compose file), the Rust lint components, and the npm and pip packages of the
# web client, the link shaper and the chart checks.
set -euo pipefail
cd "$(dirname "$0")"

# Each section header says how long the run has taken so far, so that a slow
# section shows in CI's log without a timer of its own.
section() { printf '\n==== %s (at %ds)\n' "$*" "$SECONDS"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing_packages() {
  local wanted=()
  command -v redis-server >/dev/null || wanted+=(redis-server)
  command -v redis-cli >/dev/null || wanted+=(redis-tools)
  command -v chromium >/dev/null || wanted+=(chromium)
  [ -x /usr/bin/firefox-esr ] || wanted+=(firefox-esr)
  [ -x /usr/sbin/nginx ] || wanted+=(nginx-light)
  command -v turnserver >/dev/null || wanted+=(coturn)
  command -v promtool >/dev/null || wanted+=(prometheus)
  command -v curl >/dev/null || wanted+=(curl)
  # The scripts read the fleet launcher's JSON (services/fleet/fleet.bash) with it.
  command -v jq >/dev/null || wanted+=(jq)
  command -v valgrind >/dev/null || wanted+=(valgrind)
  # make: the node's default allocator, jemalloc (tikv-jemalloc-sys), is built with it.
  command -v make >/dev/null || wanted+=(make)
  # certutil: the HTTPS browser test gives Firefox a profile that trusts the node's certificate.
  command -v certutil >/dev/null || wanted+=(libnss3-tools)
  # The NAT matrix builds its networks from namespaces, veths and NAT rules, and a TLS certificate for coturn.
  command -v ip >/dev/null || wanted+=(iproute2)
  command -v iptables >/dev/null || wanted+=(iptables)
  command -v openssl >/dev/null || wanted+=(openssl)
  # The bad-link shaper of the browser tests (web-client/test/e2e/link-shaper.py): ping to
  # check it, and what pip needs to build NetfilterQueue against libnetfilter_queue.
  command -v ping >/dev/null || wanted+=(iputils-ping)
  [ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || wanted+=(libnetfilter-queue-dev)
  command -v gcc >/dev/null || wanted+=(gcc)
  [ -e "/usr/include/python3.$(/usr/bin/python3 -c 'import sys; print(sys.version_info.minor)' 2>/dev/null || echo 0)/Python.h" ] || wanted+=(python3-dev)
  /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || wanted+=(python3-venv)
  if [ ${#wanted[@]} -gt 0 ]; then
    section "installing ${wanted[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${wanted[@]}"
  fi
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
}

install_missing_packages

# NetfilterQueue for the link shaper, in a venv of its own under target/.
shaper_venv=target/netlab-venv
if ! "$shaper_venv/bin/python" -c 'import netfilterqueue' 2>/dev/null; then
  section "installing the link shaper's pip packages into $shaper_venv"
  /usr/bin/python3 -m venv "$shaper_venv"
  "$shaper_venv/bin/pip" install --quiet -r web-client/test/e2e/link-shaper.requirements.txt
fi

# A fresh clone builds everything from nothing; incremental compilation only pays
# on the next build, so it is left off for this one.
[ -d target/debug ] || export CARGO_INCREMENTAL=0

section "format"
cargo fmt --all --check

section "lint"
cargo clippy --workspace --all-targets -- -D warnings

section "docs build (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet

section "rust tests (unit, single node, multi-node with real redis-server processes)"
cargo test --workspace

if [ -f web-client/package.json ]; then
  section "web client (unit tests, then Chromium and Firefox ESR against real nodes)"
  (
    cd web-client
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
      npm ci --no-audit --no-fund
    fi
    npm run --silent test:unit
    npm run --silent test:e2e
  )
fi

# The instruction guard needs release binaries; they build in the background
# while the chart, cluster and smoke checks below (which mostly wait on processes)
# run, and the guard waits for them. Cargo locks each profile's directory on its
# own, so the debug builds of those checks do not queue behind it.
release_log=target/release-build.log
mkdir -p target
cargo build -q --release -p vc-fleet -p vc-signaling -p vc-load >"$release_log" 2>&1 &
release_build=$!
trap 'kill "$release_build" 2>/dev/null || true' EXIT

if [ -f helm/tests/run.sh ]; then
  section "container image, compose stack and Helm chart"
  bash helm/tests/run.sh
fi

if [ -f deploy/local/test-cluster.sh ]; then
  section "local cluster"
  bash deploy/local/test-cluster.sh
fi

if [ -f deploy/prometheus/test_live.sh ]; then
  section "alert rules, and every dashboard query against a live three-node cluster"
  bash deploy/prometheus/test_live.sh
fi

if [ -f load-tests/smoke.sh ]; then
  section "load generator smoke run against a two-node cluster"
  bash load-tests/smoke.sh
fi

section "relay hot path: instructions per message (callgrind) against the committed figure"
wait "$release_build" || { cat "$release_log"; echo "the release build failed" >&2; exit 1; }
bash load-tests/bench/instruction-guard.sh

section "all tests passed"

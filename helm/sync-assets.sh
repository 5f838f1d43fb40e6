#!/usr/bin/env bash
# Copies the Grafana dashboards and Prometheus alert rules from deploy/ into the
# chart, which ships them as ConfigMaps and a PrometheusRule (Helm cannot read
# files outside the chart directory).
#
#   helm/sync-assets.sh           make the chart's copies match deploy/
#   helm/sync-assets.sh --check   exit 1, listing the differences, if they do not
#
# deploy/grafana/dashboards/*.json -> helm/video-caller/dashboards/
# deploy/prometheus/rules/*.y{a,}ml -> helm/video-caller/rules/
# Copies whose source is gone are removed. Run it after editing either source
# and commit the result; helm/tests/run.sh fails while the copies are stale.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart="$root/helm/video-caller"
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

stale=0
# sync SOURCE_DIR DEST_DIR PATTERN...
sync() {
  local src=$1 dest=$2; shift 2
  local pattern file name
  mkdir -p "$dest"
  shopt -s nullglob
  for pattern in "$@"; do
    for file in "$src"/$pattern; do
      name=$(basename "$file")
      if ! cmp -s "$file" "$dest/$name"; then
        stale=1
        if $check; then echo "stale: ${dest#"$root"/}/$name (differs from ${file#"$root"/})"
        else cp "$file" "$dest/$name"; echo "copied ${file#"$root"/} -> ${dest#"$root"/}/$name"; fi
      fi
    done
    for file in "$dest"/$pattern; do
      name=$(basename "$file")
      if [ ! -e "$src/$name" ]; then
        stale=1
        if $check; then echo "stale: ${dest#"$root"/}/$name (no ${src#"$root"/}/$name)"
        else rm -f "$file"; echo "removed ${dest#"$root"/}/$name"; fi
      fi
    done
  done
  shopt -u nullglob
}

sync "$root/deploy/grafana/dashboards" "$chart/dashboards" '*.json'
sync "$root/deploy/prometheus/rules" "$chart/rules" '*.yml' '*.yaml'

if $check && [ "$stale" -ne 0 ]; then
  echo "run helm/sync-assets.sh and commit the copies" >&2
  exit 1
fi
$check || [ "$stale" -ne 0 ] || echo "chart copies already match deploy/"

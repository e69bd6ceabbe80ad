#!/usr/bin/env bash
# Opens the HTML scenario report in headless Chromium and saves a screenshot, to check that the
# self-contained file renders with no network. Installs Debian's chromium if it is missing.
# Usage: scripts/screenshot-report.sh [REPORT.html] [OUT.png]
# Without REPORT.html it runs the demo into target/report-demo and uses its report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
html="${1:-}"
out="${2:-target/report.png}"
if [ -z "$html" ]; then
  mkdir -p target/report-demo
  cargo run --release --quiet -- demo --dir target/report-demo > /dev/null
  html=target/report-demo/report.html
fi
if ! command -v chromium > /dev/null; then
  # Chromium, and a Japanese font: shop and scenario names are often Japanese.
  apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk > /dev/null
fi
profile=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=900,1400 --hide-scrollbars \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$html")" 2> /dev/null
rm -rf "$profile"
test -s "$out"
echo "screenshot: $out"

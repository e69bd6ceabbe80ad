#!/usr/bin/env bash
# The kill loop: SIGKILL the rebuy daemon at random moments while it sends MESSAGES mails to a
# real SMTP server on loopback, restart it each time, then account for every message.
# Fails on any duplicate or unaccounted message. Usage: scripts/kill-loop.sh [MESSAGES] [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export REBUY_BIN="${CARGO_TARGET_DIR:-target}/release/rebuy"
cargo run --release --quiet --example kill_loop -- "${1:-10000}" "${2:-50}"

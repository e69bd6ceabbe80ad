#!/usr/bin/env bash
# The kill loop: SIGKILL the rebuy daemon at random moments while it sends MESSAGES mails to a
# real SMTP server on loopback, restart it each time, then account for every message.
# Fails on any duplicate or unaccounted message. Usage: scripts/kill-loop.sh [MESSAGES] [KILLS]
# KILL_LOOP_PROFILE=dev reuses the test build instead of building a release one (CI does, to
# spare disk and time); the default is release, as BENCHMARKS.md measures.
# KILL_LOOP_POSTGRES=postgres://… (a server whose role may create databases; scripts/postgres.sh
# prints one) runs it on a fresh PostgreSQL database with KILL_LOOP_WORKERS workers (default 3),
# one of them killed each time, every third time the leader.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${KILL_LOOP_PROFILE:-release}"
dir="$profile"
[ "$profile" = dev ] && dir=debug
cargo build --profile "$profile" --quiet --bin rebuy --example kill_loop
export REBUY_BIN="${CARGO_TARGET_DIR:-target}/$dir/rebuy"
"${CARGO_TARGET_DIR:-target}/$dir/examples/kill_loop" "${1:-10000}" "${2:-50}"

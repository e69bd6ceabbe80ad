#!/usr/bin/env bash
# SMTP throughput into Postfix's smtp-sink on loopback, beside smtp-source (Postfix's own load
# generator) at the same parallelism, in one run. Installs Postfix if smtp-sink is missing
# (Debian). Usage: scripts/bench-smtp.sh [MESSAGES] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-2000}
conns=${2:-1}
port=2525
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postfix >/dev/null
fi
PATH="$PATH:/usr/sbin"
user=$([ "$(id -u)" = 0 ] && echo "-u nobody" || true)
smtp-sink $user 127.0.0.1:$port 1000 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
sleep 0.5
echo "== smtp-source: $messages messages over $conns connection(s), connections reused"
start=$(date +%s.%N)
smtp-source -d -s "$conns" -m "$messages" -l 2000 127.0.0.1:$port >/dev/null
end=$(date +%s.%N)
echo "smtp-source: $(echo "$messages / ($end - $start)" | bc -l | xargs printf '%.0f') messages/s"
echo "== rebuy (outbox claim, checks, MIME build, SMTP over $conns of rebuy's own pipelined connections, outcomes recorded)"
cargo bench --quiet --bench smtp -- $port "$messages" "$conns"

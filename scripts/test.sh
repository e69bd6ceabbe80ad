#!/usr/bin/env bash
# The README's test command: every test, including those that need a real browser or a real
# PostgreSQL. It installs what they need when it is missing (Debian's chromium and
# chromium-driver, and postgresql, as root through apt-get), then runs `cargo test` with
# REBUY_REQUIRE_BROWSER=1, so that the browser tests fail rather than skip when no browser can
# be had, and the integration tests a second time on PostgreSQL. Arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromedriver >/dev/null 2>&1; then
  echo "test.sh: installing Chromium and its driver for the browser tests (apt-get)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

export REBUY_REQUIRE_BROWSER=1
cargo test "$@"

# The integration tests once more with every shop on a PostgreSQL database of its own (the
# store's conformance on the second backend). scripts/postgres.sh starts Debian's cluster and
# prints a URL unless REBUY_TEST_POSTGRES names a server already.
# Arguments that pick another target than the integration tests leave it out.
for arg in "$@"; do
  case "$arg" in
    --lib | --doc | --bins | --examples | --benches | --test | --test=* | --bench | --bench=* | --example | --example=*)
      echo "test.sh: $arg given: not running the integration tests on PostgreSQL" >&2
      exit 0
      ;;
  esac
done
if [ -z "${REBUY_TEST_POSTGRES:-}" ]; then
  REBUY_TEST_POSTGRES="$(scripts/postgres.sh)"
fi
case "$REBUY_TEST_POSTGRES" in
  postgres://* | postgresql://*) ;;
  *)
    echo "test.sh: REBUY_TEST_POSTGRES is not a postgres:// URL: '$REBUY_TEST_POSTGRES'" >&2
    exit 1
    ;;
esac
echo "test.sh: the integration tests on PostgreSQL at …@${REBUY_TEST_POSTGRES#*@} (user and password hidden)" >&2
export REBUY_TEST_POSTGRES
REBUY_TEST_BACKEND=postgres cargo test --test it "$@"

#!/usr/bin/env bash
# The README's test command: every test, including those that need a real browser.
# It installs what they need when it is missing (Debian's chromium and chromium-driver, as
# root through apt-get), then runs `cargo test` with REBUY_REQUIRE_BROWSER=1, so that the
# browser tests fail rather than skip when no browser can be had. Arguments go to cargo test.
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
exec cargo test "$@"

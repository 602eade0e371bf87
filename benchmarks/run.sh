#!/usr/bin/env bash
# The benchmark command: installs redis-server (Debian) and motion into .venv if
# missing, then runs every workload against motion, the raw baselines and Motion
# 0.1.132 (installed into benchmarks/.motion-python-venv on first use).
# Arguments go to `python -m benchmarks`, e.g. `bash benchmarks/run.sh --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    service redis-server stop >/dev/null 2>&1 || true
  else
    echo "redis-server not found: install it (apt-get install redis-server)" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import motion, celery" 2>/dev/null; then
  bash .ci/setup.sh dev
fi
exec .venv/bin/python -m benchmarks "$@"

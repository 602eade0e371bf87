#!/usr/bin/env bash
# Shared set-up for the README's commands: a virtualenv in .venv with motion and the
# extras named in $1 (e.g. "embedded" or "dev"). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian's Python needs python3-venv for `-m venv`.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PY" -m venv .venv
    else
      echo "cannot create a virtualenv: install python3-venv" >&2
      exit 1
    fi
  fi
fi
# pip's and setuptools' chatter goes to a log, shown only if the install fails
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --upgrade pip \
      && .venv/bin/python -m pip install -q -e ".[${1:-embedded}]"; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"

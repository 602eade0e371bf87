#!/usr/bin/env bash
# The main job: install motion (with its embedded server) into .venv and run the
# self-updating shopping-assistant prompt. No Redis, no worker to start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh embedded
exec .venv/bin/python examples/shopping_assistant.py

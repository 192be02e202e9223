#!/usr/bin/env bash
# bash scripts/test.sh
# Set up, lint, and run the default test suite (slow tests are deselected; add -m slow for them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# bash scripts/quickstart.sh
# Set up, then fine-tune MiniLM-L6 on BBC News (recipes/quickstart.yaml) and print the test metrics.
# Re-running is safe: --overwrite moves the previous runs/quickstart aside to a .bak folder.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
.venv/bin/tailor train recipes/quickstart.yaml --overwrite "$@"

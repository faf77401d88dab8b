#!/usr/bin/env bash
# Set up, then run the whole test suite on 2 processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
python -m pytest -n 2 "$@"

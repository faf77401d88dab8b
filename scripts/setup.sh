#!/usr/bin/env bash
# Creates .venv (once) and installs lossc with its test tools and triton (the triton kernels are
# tested on the CPU under TRITON_INTERPRET=1). The CPU torch wheel (torch==2.13.0) is installed
# first so that nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
quiet() { grep -v "^WARNING: Location 'file:///opt/" || true; }  # this machine's local-index notices
python -m pip install -q "torch==2.13.0" 2>&1 | quiet
python -m pip install -q -e ".[test,triton]" 2>&1 | quiet

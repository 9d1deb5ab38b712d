#!/usr/bin/env bash
# The test suite (the README's test command runs setup first, then this).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec .venv/bin/python -m pytest tests "$@"

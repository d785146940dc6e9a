#!/usr/bin/env bash
# Run the whole test suite. Exits non-zero on any failure, and also when pytest
# collected nothing (exit 5), so a silent run never passes.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Install what the project needs on this machine, idempotently:
# uv (from PyPI), the locked Python environment (which installs the rce command), a
# Docker engine, the sandbox image (rce image build, with progress).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv" >&2
  python3 -m pip install --quiet uv || pip install --quiet uv
fi
echo "==> uv sync (locked)" >&2
uv sync --frozen --quiet
scripts/ensure-docker.sh
# The venv (and so the rce command) exists from here on.
uv run --frozen rce image build

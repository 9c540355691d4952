#!/bin/sh
# Installs sfn-otel-exporter and its pinned runtime dependencies into a new virtual environment
# at $1. The Dockerfile runs it; tests/test_deploy.py runs it too, into a temporary directory.
set -eu
prefix="$1"
src="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv "$prefix"
"$prefix/bin/pip" install --no-cache-dir --disable-pip-version-check --quiet \
  --constraint "$src/constraints.txt" "$src"
"$prefix/bin/sfn-exporter" --version

#!/bin/sh
# Installs sfn-otel-exporter into a new virtual environment at $1: its runtime dependencies
# exactly as requirements.lock pins them (hashes checked), then the package itself. The
# environment gets no pip of its own: the installer's pip installs into it from outside.
# The Dockerfile runs it; tests/test_deploy.py runs it too, into a temporary directory.
set -eu
prefix="$1"
src="$(cd "$(dirname "$0")/.." && pwd)"
python3 -m venv --without-pip "$prefix"
pip_into() {
  python3 -m pip --python "$prefix/bin/python" install --no-cache-dir --disable-pip-version-check --quiet "$@"
}
pip_into --require-hashes --no-deps --requirement "$src/requirements.lock"
pip_into --no-deps "$src"
"$prefix/bin/sfn-exporter" --version

#!/usr/bin/env bash
# Style and type checks (configuration in pyproject.toml): ruff on the whole tree (pyflakes,
# pycodestyle, import order, naming, docstrings; complexity 15 in core/ and models/) and mypy on core/.
# Exits non-zero on any finding. Usage: bash scripts/lint.sh [--statistics]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
cd "$ROOT"
status=0
echo "lint: ruff $("$BIN/ruff" --version | cut -d' ' -f2)"
"$BIN/ruff" check "$@" . || status=1
echo "lint: mypy core/ ($("$BIN/mypy" --version | cut -d' ' -f2))"
"$BIN/mypy" || status=1
exit $status

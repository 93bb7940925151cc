#!/usr/bin/env bash
# Run unidl's whole test suite:   bash scripts/test.sh [pytest arguments...]
#
# Creates .venv when missing, installs unidl editable with the [all,test]
# extras under constraints.txt (torch==2.13.0, the CPU wheel), then runs
# `python -m pytest` from the repository root. The second run skips the
# install unless pyproject.toml or constraints.txt changed (see scripts/_venv.sh).
# Exit status is pytest's: 0 all passed, 1 failures, 5 no tests collected, ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
unidl_ensure_venv all,test
echo ">>> $UNIDL_PY -m pytest $*"
exec "$UNIDL_PY" -m pytest "$@"

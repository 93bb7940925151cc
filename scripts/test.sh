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
# The example third-party backend (examples/plugins/unidl-jax, with jax on the CPU), so the
# suite also runs the conformance kit on a plugin (tests/test_plugin_hooks.py). Skipped when
# it is already installed; jax is pinned so CI runs the version the plugin was checked with.
if ! "$UNIDL_PY" -c "import importlib.util as u, sys; sys.exit(not (u.find_spec('unidl_jax') and u.find_spec('jax')))"; then
  echo ">>> installing the example JAX plugin (editable) into the venv"
  "$UNIDL_PY" -m pip install ${CI:+--progress-bar off} -e examples/plugins/unidl-jax "jax==0.10.2" \
    || { echo "ERROR: pip install -e examples/plugins/unidl-jax failed (see pip's message above)" >&2; exit 1; }
fi
echo ">>> $UNIDL_PY -m pytest $*"
exec "$UNIDL_PY" -m pytest "$@"

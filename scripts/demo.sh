#!/usr/bin/env bash
# The main demo:   bash scripts/demo.sh [BACKEND...]
#
# Creates .venv when missing, installs unidl editable with the [all] extras
# under constraints.txt (torch==2.13.0, the CPU wheel), lists the backends,
# then trains examples/regression_mlp.py once on every installed backend
# (or only on the BACKENDs named). Fails if any run fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
unidl_ensure_venv all

example=examples/regression_mlp.py
[[ -f $example ]] || _unidl_die "$example is missing"

"$UNIDL_PY" -m unidl backends
if (($# > 0)); then
  backends=("$@")
else
  # Every registered backend whose framework is installed (imports no framework).
  read -ra backends <<<"$("$UNIDL_PY" -c 'import unidl; print(" ".join(b["name"] for b in unidl.list_backends() if b["installed"]))')"
fi
((${#backends[@]} > 0)) || _unidl_die "no backend is installed (see the table above)"

failed=()
for backend in "${backends[@]}"; do
  echo ""
  echo ">>> python $example --backend $backend"
  if ! "$UNIDL_PY" "$example" --backend "$backend"; then
    echo ">>> FAILED on backend $backend" >&2
    failed+=("$backend")
  fi
done
echo ""
if ((${#failed[@]} > 0)); then
  _unidl_die "the demo failed on: ${failed[*]}"
fi
echo ">>> demo ran on: ${backends[*]}"

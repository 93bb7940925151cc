# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/demo.sh (not run on its own).
#
# unidl_ensure_venv EXTRAS   e.g. unidl_ensure_venv all,test
#
# Makes sure $UNIDL_VENV (default .venv, in the repository root) exists and
# holds an editable install of unidl with EXTRAS, installed under
# constraints.txt (which pins torch to the CPU wheel these machines carry).
# A stamp file in the venv records what was installed, keyed on a hash of
# pyproject.toml, constraints.txt, the repository path and the Python version:
# when nothing changed, the second run installs nothing and takes a second.
# Sets UNIDL_PY to the venv's python.
#
# Environment: PYTHON picks the interpreter that creates the venv (default
# python3, then python); UNIDL_VENV moves the venv; UNIDL_FORCE_INSTALL=1
# reinstalls even when the stamp says nothing changed.

_unidl_die() {
  echo "" >&2
  echo "ERROR: $*" >&2
  exit 1
}

_unidl_pick_python() {
  if [[ -n ${PYTHON:-} ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || _unidl_die "PYTHON=$PYTHON is not an executable"
    echo "$PYTHON"
    return
  fi
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  _unidl_die "no python3 on PATH; install Python >= 3.10 (or set PYTHON=/path/to/python)"
}

# The stamp key: whatever, when changed, means pip must run again.
_unidl_stamp_key() {
  "$1" - <<'PY'
import hashlib, os, sys
h = hashlib.sha256()
h.update(os.getcwd().encode())
h.update(sys.version.encode())
for name in ("pyproject.toml", "constraints.txt"):
    with open(name, "rb") as f:
        h.update(name.encode() + b"\0" + f.read())
print(h.hexdigest())
PY
}

# Succeeds when every extra in $1 (comma-separated) is listed in $2.
_unidl_extras_covered() {
  local want have="," e
  IFS=, read -ra want <<<"$1"
  have=",$2,"
  for e in "${want[@]}"; do
    [[ -z $e || $have == *",$e,"* ]] || return 1
  done
}

unidl_ensure_venv() {
  local extras="$1"
  local venv="${UNIDL_VENV:-.venv}"
  local py
  [[ -f pyproject.toml && -f constraints.txt ]] \
    || _unidl_die "run from the unidl repository root (pyproject.toml and constraints.txt not found in $PWD)"

  # 1. The venv: create it when missing or broken (e.g. its Python was removed).
  if ! "$venv/bin/python" -c "" >/dev/null 2>&1; then
    py="$(_unidl_pick_python)"
    "$py" - <<'PY' || _unidl_die "unidl needs Python >= 3.10; $py is $("$py" --version 2>&1). Set PYTHON=/path/to/python3.1x"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
    echo ">>> creating $venv with $("$py" --version 2>&1) ($(command -v "$py"))"
    "$py" -m venv --clear "$venv" \
      || _unidl_die "'$py -m venv' failed; on Debian/Ubuntu install the venv module: apt-get install python3-venv"
  fi
  UNIDL_PY="$PWD/$venv/bin/python"
  [[ $venv == /* ]] && UNIDL_PY="$venv/bin/python"
  export UNIDL_PY

  # 2. The install: skip it when the stamp says the same inputs were installed.
  local stamp="$venv/.unidl-install-stamp" key stamped_key="" stamped_extras=""
  key="$(_unidl_stamp_key "$UNIDL_PY")"
  if [[ -f $stamp ]]; then
    { read -r stamped_key || true; read -r stamped_extras || true; } <"$stamp"
  fi
  if [[ ${UNIDL_FORCE_INSTALL:-0} != 1 && $key == "$stamped_key" ]] \
    && _unidl_extras_covered "$extras" "$stamped_extras" \
    && "$UNIDL_PY" -c "import unidl" >/dev/null 2>&1; then
    echo ">>> $venv is up to date (unidl[$stamped_extras]; UNIDL_FORCE_INSTALL=1 reinstalls)"
    return 0
  fi
  # Keep extras installed earlier (demo.sh then test.sh must not ping-pong).
  if [[ $key == "$stamped_key" && -n $stamped_extras ]]; then
    extras="$stamped_extras,$extras"
  fi
  extras="$(tr ',' '\n' <<<"$extras" | sed '/^$/d' | sort -u | paste -sd, -)"

  local -a pip_opts=()
  [[ ${CI:-} == true ]] && pip_opts+=(--progress-bar off)
  echo ">>> installing unidl[$extras] (editable) into $venv, constraints.txt applied"
  rm -f "$stamp"
  "$UNIDL_PY" -m pip install ${pip_opts[@]+"${pip_opts[@]}"} -c constraints.txt -e ".[$extras]" \
    || _unidl_die "pip install -c constraints.txt -e '.[$extras]' failed (see pip's message above)"
  printf '%s\n%s\n' "$key" "$extras" >"$stamp"
  if [[ ${CI:-} == true ]]; then
    "$UNIDL_PY" -m pip list
  fi
}

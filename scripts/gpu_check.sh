#!/usr/bin/env bash
# The GPU checks, in one run:   bash scripts/gpu_check.sh [LOG_DIR]      (default: $OUT or ./gpu_logs)
#
# For a machine with a CUDA GPU and torch (and optionally jax) already installed, no network:
# installs unidl (and the example JAX plugin) editable without dependencies, then runs, each step
# with its own time limit and its own log in LOG_DIR:
#   env          nvidia-smi, python, torch/jax versions
#   kit-f32/f64  the conformance kit on torch, --unidl-device=cuda, float32 and float64
#   kit-jax      the kit on the example JAX plugin on its GPU (when jax sees one)
#   tests-cuda   the test files that exercise CUDA (capture, devices, memory)
#   bench-*      `unidl bench --device cuda` for mlp, cnn, lstm and wide: float32, then mixed_bfloat16
# A step that fails or times out is recorded and the next one runs; summary.txt lists every step's
# status and wall time. Exit status: 0 when every step passed, else 1.
# Environment: PYTHON (default python3), BENCH_MODELS (default mlp,cnn,lstm,wide), BENCH_ROUNDS (3),
# GPU_CHECK_ARCHIVE (a .tgz path: every log archived there after each step).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_DIR="${1:-${OUT:-gpu_logs}}"
mkdir -p "$LOG_DIR"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
SUMMARY="$LOG_DIR/summary.txt"
: >"$SUMMARY"
failed=0

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo ">>> [$name] $* (limit ${limit}s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
  local rc=$?
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="TIMEOUT"; elif [ $rc -ne 0 ]; then status="FAILED rc=$rc"; fi
  [ "$status" = ok ] || failed=1
  printf '%-12s %-14s %4ds  %s\n' "$name" "$status" $((SECONDS - start)) "$*" | tee -a "$SUMMARY"
  tail -n 4 "$LOG_DIR/$name.log"
  # one archive of every log so far, kept current (for machines that return a few files only)
  if [ -n "${GPU_CHECK_ARCHIVE:-}" ]; then tar czf "$GPU_CHECK_ARCHIVE" -C "$LOG_DIR" . 2>/dev/null; fi
}

step env 60 bash -c "nvidia-smi; $PY -c 'import sys, numpy, torch; print(sys.version); print(\"numpy\", numpy.__version__, \"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'; $PY -c 'import jax; print(\"jax\", jax.__version__, jax.devices())' || true"
step install 180 bash -c "$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . && \
  { $PY -c 'import jax' 2>/dev/null && $PY -m pip install -q --no-deps --no-build-isolation --no-index -e examples/plugins/unidl-jax || true; }"

KIT=("$PY" -m pytest -q -p no:cacheprovider --pyargs unidl.testing --unidl-backend=torch --unidl-device=cuda)
step kit-f32 240 "${KIT[@]}" --unidl-dtype=float32
step kit-f64 240 "${KIT[@]}" --unidl-dtype=float64
if $PY -c "import jax, sys; sys.exit(not any(d.platform == 'gpu' for d in jax.devices()))" 2>/dev/null; then
  step kit-jax 200 "$PY" -m pytest -q -p no:cacheprovider --pyargs unidl.testing --unidl-backend=jax \
    --unidl-device=cuda --unidl-dtype=float32
fi
tests=()
for f in tests/test_torch_backend.py tests/test_torch_capture.py tests/test_native_layers.py; do
  [ -f "$f" ] && tests+=("$f")
done
step tests-cuda 240 "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}"
for policy in float32 mixed_bfloat16; do
  extra=()
  [ "$policy" = float32 ] || extra=(--dtype-policy "$policy")
  step "bench-$policy" 300 "$PY" -m unidl bench --device cuda --models "${BENCH_MODELS:-mlp,cnn,lstm,wide}" \
    --rounds "${BENCH_ROUNDS:-3}" \
    "${extra[@]}" --json "$LOG_DIR/bench-$policy.json"
done
echo "=== summary ($LOG_DIR/summary.txt)"
cat "$SUMMARY"
exit $failed

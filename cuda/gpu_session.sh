#!/usr/bin/env bash
# The GPU checks of issues 5, 6 and 7 in a few steps, each well under ten
# minutes, so that a short GPU lease covers all of them:
#
#   bash cuda/gpu_session.sh build      # pip install . (CUDA kernels for this GPU only)
#   bash cuda/gpu_session.sh test       # CUDA tests (PAU, RPAU, PWLU), then the rest
#   bash cuda/gpu_session.sh sanitize   # compute-sanitizer memcheck, racecheck, initcheck, synccheck
#   bash cuda/gpu_session.sh bench      # pau.bench --device cuda, JSON per operator family
#                                       # (BENCH_ONLY="pau,rpau pwlu" by default)
#   bash cuda/gpu_session.sh all        # everything above, in order
#
# Logs and results go to $OUT (the GPU tool's result folder) or ./gpu-results.
# Every step exits non-zero on the first failure and says which.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

step_build() {
  "$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
  nvcc --version | tail -n 1
  local arch
  arch=$("$python" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  # Only this GPU's architecture: a third of the default build's compile time.
  TORCH_CUDA_ARCH_LIST=$arch "$python" -m pip install --no-build-isolation --no-deps -v . \
    >"$out/build.log" 2>&1 || { tail -n 60 "$out/build.log"; echo "gpu_session: build FAILED"; return 1; }
  grep "pau:" "$out/build.log" || true
  "$python" -c "import pau; assert pau._C.has_cuda_kernels(), 'built without CUDA kernels'; print('CUDA kernels built')"
}

step_test() {
  # From outside the source tree, so the installed package (with its CUDA
  # kernels) is imported, not ./python.
  local tests
  tests=$(pwd)/tests
  (cd /tmp && "$python" -m pytest -q -x -p no:cacheprovider "$tests/test_pau_cuda.py" \
     "$tests/test_pwlu_cuda.py" 2>&1 | tee "$out/test_cuda.log" | tail -n 30)
  (cd /tmp && "$python" -m pytest -q -p no:cacheprovider "$tests" 2>&1 | tee "$out/test_all.log" |
     tail -n 30)
}

step_sanitize() {
  local log="$out/sanitizer.log"
  : >"$log"
  run_tool() {
    echo "::: compute-sanitizer $*" | tee -a "$log"
    compute-sanitizer --error-exitcode 1 "$@" 2>&1 | tail -n 40 | tee -a "$log"
    return "${PIPESTATUS[0]}"
  }
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 run_tool --tool memcheck "$python" cuda/sanitizer_check.py
  run_tool --tool racecheck "$python" cuda/sanitizer_check.py --backward-only --quick
  run_tool --tool initcheck "$python" cuda/sanitizer_check.py --quick
  run_tool --tool synccheck "$python" cuda/sanitizer_check.py --quick
}

step_bench() {
  # One process per operator family: each stays well inside ten minutes.
  local only
  for only in ${BENCH_ONLY:-pau,rpau pwlu}; do
    (cd /tmp && "$python" -m pau.bench --device cuda --only "$only" --out "$out" 2>&1 |
       tee "$out/bench-${only//,/-}.log" | tail -n 60)
  done
}

case "${1:-all}" in
  build) step_build ;;
  test) step_test ;;
  sanitize) step_sanitize ;;
  bench) step_bench ;;
  all) step_build && step_test && step_sanitize && step_bench ;;
  *) echo "usage: $0 build|test|sanitize|bench|all" >&2; exit 2 ;;
esac

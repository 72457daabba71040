#!/usr/bin/env bash
# The GPU checks in ONE device call of at most 9 minutes, on the GPU machine's
# own python3 (a CUDA torch, 16 cores, no network):
#
#   run(command="bash .ci/gpu_check.sh", timeout_s=540)
#
# Steps, each with a budget in seconds (PAU_BUDGET_<STEP> overrides it):
#   env        GPU, driver, torch, nvcc, compute-sanitizer                      10
#   build      pip install --no-build-isolation --no-deps, PAU_CUDA=ON, for    120
#              this GPU's architecture only, in build/gpu
#   tests      the CUDA tests (test_pau_cuda, test_pwlu_cuda, test_cuda_build), 125
#              in parallel workers where pytest-xdist is installed
#   memcheck   compute-sanitizer memcheck on tests/cuda_sanitizer_workload.py   55
#              --quick
#   racecheck  compute-sanitizer racecheck, --backward-only --quick             40
#   bench      pau.bench --device cuda: float32 and bfloat16, 2^24 and 2^28,   160
#              one group, forward and forward+backward, against relu, x.clone()
#              and the compiled reference
# Time a step leaves unused passes to the later ones; a step never runs past
# the point where the later steps' budgets would no longer fit in
# PAU_GPU_CHECK_SECONDS (default 510, their sum; 1500 for a dry run on a slow
# machine). A step that fails or runs out of time is
# marked so and the later ones still run (each needs only the build). The tests
# stop starting new tests at their deadline (PAU_TEST_DEADLINE, see
# tests/conftest.py), so their report is written. Last comes a short table
# (scripts/gpu_check_summary.py), also in summary.txt.
#
# Output in $OUT (the device tool's result folder) or ./gpu-results:
# summary.txt, tests.xml, the benchmark JSON (rewritten after every
# configuration) and logs.tar.gz (steps.tsv and each step's log). Exits
# non-zero if any step did not pass.
#
# --dry-run, for a machine without a GPU (.ci/cuda_build.sh runs it in CI):
# env and build run for real (PAU_GPU_ARCH, default 9.0, stands in for the
# device's architecture); tests runs only tests/test_cuda_build.py and bench
# runs pau.bench on the CPU at 2^16 elements without the compiled reference, so
# that the reports the summary reads are real; the sanitizers are skipped.
set -uo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$self")/.."

case "${1:-}" in
  "") dry_run=${PAU_GPU_CHECK_DRY_RUN:-0} ;;
  --dry-run) dry_run=1 ;;
  --step) dry_run=${PAU_GPU_CHECK_DRY_RUN:-0} ;;  # internal: one step, see the loop below
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
out=${OUT:-gpu-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PAU_EXPECT_CUDA_KERNELS=1 PAU_GPU_CHECK_DRY_RUN=$dry_run OUT=$out PYTHON=$python

steps=(env build tests memcheck racecheck bench)
declare -A budget=([env]=10 [build]=120 [tests]=125 [memcheck]=55 [racecheck]=40 [bench]=160)
gpu_only=" memcheck racecheck "
for step in "${steps[@]}"; do
  override="PAU_BUDGET_${step^^}"
  budget[$step]=${!override:-${budget[$step]}}
done

step_env() {
  "$python" - <<'EOF'
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU available:", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
          f"compute capability {p.major}.{p.minor}")
EOF
  nvcc --version | tail -n 2
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | tail -n 1
  return 0
}

step_build() {
  local arch
  if [ "$dry_run" = 1 ]; then
    arch=${PAU_GPU_ARCH:-9.0}
  else
    arch=$("$python" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())") || return 1
  fi
  echo "building for compute capability $arch"
  TORCH_CUDA_ARCH_LIST=$arch "$python" -m pip install --no-build-isolation --no-deps -v \
    -C cmake.define.PAU_CUDA=ON -C build-dir=build/gpu . || return 1
  "$python" -c "import pau; assert pau._C.has_cuda_kernels(), 'built without CUDA kernels'; print('CUDA kernels built')"
}

step_tests() {
  local files=(tests/test_pau_cuda.py tests/test_pwlu_cuda.py tests/test_cuda_build.py)
  local parallel=()
  if [ "$dry_run" = 1 ]; then
    files=(tests/test_cuda_build.py)
  elif "$python" -c "import xdist" 2>/dev/null; then
    parallel=(-n 8)
  fi
  # Stop starting tests 15 s before the step's limit, so pytest writes its report.
  PAU_TEST_DEADLINE=$(( $1 - 15 )) "$python" -m pytest -q -p no:cacheprovider -rfE \
    "${parallel[@]}" --junitxml="$out/tests.xml" "${files[@]}"
}

sanitize() {
  compute-sanitizer --tool "$1" --error-exitcode 1 "$python" tests/cuda_sanitizer_workload.py "${@:2}"
}
step_memcheck() { PYTORCH_NO_CUDA_MEMORY_CACHING=1 sanitize memcheck --quick; }
step_racecheck() { sanitize racecheck --backward-only --quick; }

step_bench() {
  local args=(--device cuda --dtypes float32,bfloat16 --sizes 24,28 --min-run-time 0.3)
  [ "$dry_run" = 1 ] && args=(--device cpu --dtypes float32 --sizes 16 --min-run-time 0.01 --no-compile)
  "$python" -m pau.bench "${args[@]}" --groups 1 --out "$out"
}

if [ "${1:-}" = --step ]; then
  "step_$2" "$3"
  exit
fi

total=${PAU_GPU_CHECK_SECONDS:-$([ "$dry_run" = 1 ] && echo 1500 || echo 510)}
deadline=$(( $(date +%s) + total ))
printf 'step\tstatus\tseconds\n' >"$out/steps.tsv"
failed=0
for i in "${!steps[@]}"; do
  step=${steps[$i]}
  later=0
  for next in "${steps[@]:$((i + 1))}"; do later=$(( later + budget[$next] )); done
  now=$(date +%s)
  limit=$(( deadline - later - now ))
  echo "::: $step (up to $limit s)"
  if [ "$dry_run" = 1 ] && [[ $gpu_only == *" $step "* ]]; then
    status="dry run"
    echo "skipped: dry run" | tee "$out/$step.log"
  elif [ "$limit" -lt 5 ]; then
    status="no time"
  else
    # The step runs as its own process under timeout's clock; it gets its end time.
    timeout --kill-after=10 "$limit" bash "$self" --step "$step" $(( now + limit )) \
      >"$out/$step.log" 2>&1
    rc=$?
    case $rc in
      0) status=ok ;;
      124|137) status=timeout ;;
      *) status="failed ($rc)" ;;
    esac
    tail -n 6 "$out/$step.log"
  fi
  [ "$status" = ok ] || [ "$status" = "dry run" ] || failed=1
  printf '%s\t%s\t%s\n' "$step" "$status" "$(( $(date +%s) - now ))" >>"$out/steps.tsv"
done

"$python" scripts/gpu_check_summary.py "$out" | tee "$out/summary.txt"
# The device tool brings back at most 8 files: the logs travel as one archive.
(cd "$out" && tar -czf logs.tar.gz steps.tsv ./*.log && rm -f steps.tsv ./*.log)
exit "$failed"

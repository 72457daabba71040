#!/usr/bin/env bash
# The CUDA build on a machine without a GPU; .ci/run calls it when nvcc exists.
#  1. A virtual environment with a CUDA build of torch (PAU_CUDA_TORCH, default
#     2.14.1, the CUDA 13.0 wheel these machines keep on local disk: about
#     5.5 GB installed, no download) and the build and test requirements.
#  2. pip install --no-build-isolation with PAU_CUDA=ON (an error if the CUDA
#     kernels cannot be built) for the default architectures (sm_80, and sm_90
#     with PTX), warnings as errors, in its own build directory build/cuda, so a
#     rerun with PAU_CUDA_VENV recompiles only what changed.
#  3. The pau::* operators and the backends with a kernel for each (a
#     dispatcher query: no GPU needed).
#  4. The test suite against that build with PAU_EXPECT_CUDA_KERNELS=1:
#     tests/test_cuda_build.py fails if an operator lacks its CUDA kernel; the
#     CUDA tests skip without a GPU, everything else runs as in the CPU build.
#  5. .ci/gpu_check.sh --dry-run: the GPU session's script with its GPU steps
#     replaced, so that it cannot rot unseen (its build step compiles again,
#     for sm_90 only, as the GPU machine will).
# PAU_CUDA_VENV: use (and keep) this virtual environment instead of a fresh one
# in a temporary directory. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda_build: nvcc not found" >&2
  exit 1
fi
torch_version=${PAU_CUDA_TORCH:-2.14.1}
if [ -n "${PAU_CUDA_VENV:-}" ]; then
  venv=$PAU_CUDA_VENV
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  venv=$work/venv
fi
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

start=$(date +%s)
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q "torch==$torch_version" scikit-build-core pybind11 ninja cmake
python - <<'EOF'
import torch
assert torch.version.cuda, f"torch {torch.__version__} is not a CUDA build"
print(f"::: torch {torch.__version__} (CUDA {torch.version.cuda}), GPU available: "
      f"{torch.cuda.is_available()}")
EOF
echo "::: CUDA torch environment ready in $(elapsed "$start")"

start=$(date +%s)
python -m pip install -q --no-build-isolation \
  -C cmake.define.PAU_CUDA=ON -C cmake.define.PAU_WARNINGS_AS_ERRORS=ON \
  -C build-dir=build/cuda ".[test]"
echo "::: pau built with CUDA kernels in $(elapsed "$start")"

python - <<'EOF'
import pau
from pau.deploy import operator_backends

assert pau._C.has_cuda_kernels(), "pau was built without CUDA kernels"
print("::: operators and the backends with a kernel:")
for name, backends in operator_backends().items():
    print(f"    {name:20s} {' '.join(backends)}")
EOF

start=$(date +%s)
PAU_EXPECT_CUDA_KERNELS=1 python -m pytest -q tests
echo "::: test suite against the CUDA build done in $(elapsed "$start")"

start=$(date +%s)
OUT=$(mktemp -d) bash .ci/gpu_check.sh --dry-run
echo "::: dry run of .ci/gpu_check.sh done in $(elapsed "$start")"

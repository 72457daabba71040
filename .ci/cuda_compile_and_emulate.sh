#!/usr/bin/env bash
# CUDA checks that need no GPU; .ci/run calls this when nvcc exists.
#  1. nvcc compiles the torch-free kernel sources (every cuda/*.cu that
#     includes no torch header, and the per-dtype instantiations that
#     cmake/cuda_instantiations.cmake writes) for each architecture in
#     PAU_CUDA_ARCHITECTURES (default "80;90"), with the flags of
#     cmake/cuda.cmake and warnings as errors.
#  2. The torch glue (cuda/*.cu that includes torch headers) is syntax-checked
#     by the host compiler against the headers of the torch that `python3`
#     imports, if any. A CPU wheel lacks the generated
#     c10/cuda/impl/cuda_cmake_macros.h; C10_CUDA_NO_CMAKE_CONFIGURE_FILE skips
#     it. Nothing is linked: only a CUDA torch can do that (see cuda/README.md).
#  3. tests/cuda_emulation/pau_kernels_check.cpp (PAU, RPAU) and
#     tests/cuda_emulation/pwlu_kernels_check.cpp run the kernels on the CPU
#     (tests/cuda_emulation/emulator.h) against host references
#     (geometry, both tile kinds, all dtypes, variants and degree paths, RPAU's
#     counter-hash noise, PWLU's warp-aggregated histograms, bitwise
#     determinism across grid sizes and alignments).
# Exits non-zero on the first failure. PAU_CI_JOBS: parallel compiles
# (default: number of CPUs). CMAKE: the cmake that writes the instantiations
# (default: cmake on PATH). PAU_CI_SKIP_NVCC=1 skips step 1,
# PAU_CI_SKIP_GLUE=1 step 2, PAU_CI_SKIP_EMULATION=1 step 3 (.ci/run skips
# 1 and 2 after .ci/cuda_build.sh has compiled everything for real).
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc_bin=${NVCC:-nvcc}
if ! command -v "$nvcc_bin" >/dev/null 2>&1; then
  echo "cuda_compile_and_emulate: $nvcc_bin not found" >&2
  exit 1
fi
archs=${PAU_CUDA_ARCHITECTURES:-80;90}
jobs=${PAU_CI_JOBS:-$(nproc 2>/dev/null || echo 2)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The toolkit's include directory, for host-compiler runs.
cuda_top=$("$nvcc_bin" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 |
           sed -n 's/^#\$ TOP=\(.*\)$/\1/p' | head -n 1)
cuda_include="${cuda_top%/}/include"
if [ ! -f "$cuda_include/cuda_runtime_api.h" ]; then
  echo "cuda_compile_and_emulate: cannot find the CUDA headers (looked in $cuda_include)" >&2
  exit 1
fi

kernel_sources=()
glue_sources=()
for f in cuda/*.cu; do
  if grep -qE '^#include <(torch|ATen|c10)/' "$f"; then
    glue_sources+=("$f")
  else
    kernel_sources+=("$f")
  fi
done

# Keep in step with cmake/cuda.cmake.
export PAU_NVCC="$nvcc_bin" PAU_OUT="$out"
export PAU_NVCC_FLAGS="-std=c++17 -O3 -lineinfo --expt-relaxed-constexpr \
-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
-D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ \
--Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror ${PAU_CI_NVCC_FLAGS:-}"

if [ "${PAU_CI_SKIP_NVCC:-0}" = "1" ]; then
  echo "::: PAU_CI_SKIP_NVCC=1: skipping the nvcc compiles"
  archs=""
else
  # The same instantiation files as the CMake build, from the same script.
  "${CMAKE:-cmake}" -DPAU_INSTANTIATIONS_DIR="$out/instantiations" -P cmake/cuda_instantiations.cmake
  kernel_sources+=("$out"/instantiations/*.cu)
  echo "::: nvcc: ${#kernel_sources[@]} kernel sources for sm_${archs//;/, sm_} ($jobs jobs)"
fi
start=$(date +%s)
for arch in ${archs//;/ }; do
  for f in "${kernel_sources[@]}"; do
    printf '%s %s\n' "$arch" "$f"
  done
done | xargs -r -P "$jobs" -n 2 bash -c '
  arch=$0 source=$1
  object="$PAU_OUT/$(basename "$source" .cu).sm_$arch.o"
  # shellcheck disable=SC2086
  if ! "$PAU_NVCC" $PAU_NVCC_FLAGS -arch="sm_$arch" -c "$source" -o "$object" \
       >"$object.log" 2>&1; then
    echo "::: FAILED: nvcc -arch=sm_$arch $source" >&2
    cat "$object.log" >&2
    exit 255  # stops xargs
  fi
  echo "    sm_$arch $source"
'
[ -n "$archs" ] && echo "::: nvcc done in $(( $(date +%s) - start )) s"

if [ "${PAU_CI_SKIP_GLUE:-0}" = "1" ]; then
  echo "::: PAU_CI_SKIP_GLUE=1: skipping the syntax check of the torch glue"
elif [ ${#glue_sources[@]} -gt 0 ]; then
  torch_include=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' 2>/dev/null || true)
  if [ -n "$torch_include" ] && [ -f "$torch_include/torch/library.h" ]; then
    for f in "${glue_sources[@]}"; do
      echo "::: syntax check of the torch glue: $f"
      "${CXX:-g++}" -std=c++17 -fsyntax-only -x c++ -Wall -Wextra -Werror \
        -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -isystem "$cuda_include" \
        -isystem "$torch_include" -isystem "$torch_include/torch/csrc/api/include" \
        -Icpp "$f"
    done
  else
    echo "::: torch not importable by python3: skipping the syntax check of ${glue_sources[*]}"
  fi
fi

if [ "${PAU_CI_SKIP_EMULATION:-0}" != "1" ]; then
  # Three programs (PAU's kernels, RPAU's, PWLU's), compiled and run in parallel.
  echo "::: CPU emulation of the CUDA kernels (PAU, RPAU and PWLU)"
  start=$(date +%s)
  emulation_flags=(-std=c++17 -O2 -Wall -Wextra -Werror -Wno-unknown-pragmas -isystem "$cuda_include")
  programs=(pau rpau pwlu)
  pids=()
  for program in "${programs[@]}"; do
    case $program in
      pau) command=("${CXX:-g++}" "${emulation_flags[@]}" -DPAU_EMULATION_RPAU=0 tests/cuda_emulation/pau_kernels_check.cpp) ;;
      rpau) command=("${CXX:-g++}" "${emulation_flags[@]}" -DPAU_EMULATION_RPAU=1 tests/cuda_emulation/pau_kernels_check.cpp) ;;
      pwlu) command=("${CXX:-g++}" "${emulation_flags[@]}" tests/cuda_emulation/pwlu_kernels_check.cpp) ;;
    esac
    (
      "${command[@]}" -o "$out/emulation_$program" && "$out/emulation_$program"
    ) >"$out/emulation_$program.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for i in "${!programs[@]}"; do
    if ! wait "${pids[$i]}"; then status=1; fi
    cat "$out/emulation_${programs[$i]}.log"
  done
  echo "::: emulation (compile and run) done in $(( $(date +%s) - start )) s"
  if [ "$status" -ne 0 ]; then
    echo "::: FAILED: CPU emulation of the CUDA kernels" >&2
    exit 1
  fi
fi
echo "::: CUDA checks passed"

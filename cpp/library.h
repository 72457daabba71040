// The few plain functions of the operator library that need no torch
// headers: the Python module calls them, which also makes the linker keep the
// library whose operators register themselves in static initialisers.
#pragma once

namespace pau {

// Instruction set of the CPU kernels in use: "AVX512", "AVX2" or "DEFAULT".
const char* cpu_capability();

// Whether this build contains the CUDA kernels.
bool has_cuda_kernels();

// The parallel backend the CPU operators' at::parallel_for was compiled with:
// "OpenMP", or "none" (one thread).
const char* parallel_backend();

}  // namespace pau

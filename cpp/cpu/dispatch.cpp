// Picks the kernel table for the running CPU. Follows ATen's own choice
// (at::get_cpu_capability, which honours the ATEN_CPU_CAPABILITY environment
// variable), so the tests can force each instruction set.
#include <ATen/Version.h>

#include <string>

#include "cpu/kernels.h"
#include "cpu/pwlu_kernels.h"

namespace pau {
namespace cpu {
namespace {

enum class Isa { DEFAULT, AVX2, AVX512 };

Isa choose() {
  const std::string aten = at::get_cpu_capability();
#if defined(PAU_HAVE_AVX512)
  if (aten == "AVX512") return Isa::AVX512;
#endif
#if defined(PAU_HAVE_AVX2)
  if (aten == "AVX512" || aten == "AVX2") return Isa::AVX2;
#endif
  return Isa::DEFAULT;
}

Isa isa() {
  static const Isa chosen = choose();
  return chosen;
}

}  // namespace

// One table per operator family and ISA namespace; only the ISAs this build
// compiled are named, so a non-x86 build links without the AVX tables.
#if defined(PAU_HAVE_AVX512)
#define PAU_CASE_AVX512(call) case Isa::AVX512: return AVX512::call();
#else
#define PAU_CASE_AVX512(call)
#endif
#if defined(PAU_HAVE_AVX2)
#define PAU_CASE_AVX2(call) case Isa::AVX2: return AVX2::call();
#else
#define PAU_CASE_AVX2(call)
#endif

const KernelTable& kernel_table() {
  switch (isa()) {
    PAU_CASE_AVX512(kernels)
    PAU_CASE_AVX2(kernels)
    default: return DEFAULT::kernels();
  }
}

const PwluKernelTable& pwlu_kernel_table() {
  switch (isa()) {
    PAU_CASE_AVX512(pwlu_kernels)
    PAU_CASE_AVX2(pwlu_kernels)
    default: return DEFAULT::pwlu_kernels();
  }
}

const char* capability_name() {
  switch (isa()) {
    case Isa::AVX512: return "AVX512";
    case Isa::AVX2: return "AVX2";
    default: return "DEFAULT";
  }
}

}  // namespace cpu
}  // namespace pau

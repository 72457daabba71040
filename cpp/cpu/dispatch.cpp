// Picks the kernel table for the running CPU. Follows ATen's own choice
// (at::get_cpu_capability, which honours the ATEN_CPU_CAPABILITY environment
// variable), so the tests can force each instruction set.
#include <ATen/Version.h>

#include <string>

#include "cpu/kernels.h"

namespace pau {
namespace cpu {
namespace {

struct Choice {
  const KernelTable* table;
  const char* name;
};

Choice choose() {
  const std::string aten = at::get_cpu_capability();
#if defined(PAU_HAVE_AVX512)
  if (aten == "AVX512") return {&AVX512::kernels(), "AVX512"};
#endif
#if defined(PAU_HAVE_AVX2)
  if (aten == "AVX512" || aten == "AVX2") return {&AVX2::kernels(), "AVX2"};
#endif
  return {&DEFAULT::kernels(), "DEFAULT"};
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

}  // namespace

const KernelTable& kernel_table() { return *choice().table; }
const char* capability_name() { return choice().name; }

}  // namespace cpu
}  // namespace pau

// The dtypes of x the kernels are compiled for. One numbering for the CPU
// kernel tables (indexed by it) and the CUDA launchers (switching on it), so
// the glue maps a torch dtype once and both backends agree on what it means.
#pragma once

namespace pau {

enum class DType : int { float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3 };
constexpr int kDTypes = 4;

inline int element_size(DType t) {
  switch (t) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    default: return 2;
  }
}

// Half and bfloat16 compute in float, float64 in double.
inline int compute_size(DType t) { return t == DType::float64 ? 8 : 4; }

}  // namespace pau

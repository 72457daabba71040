// Launch API of the CUDA kernels of pau::pwlu_forward / pau::pwlu_backward:
// raw pointers and a stream, no torch. pwlu_cuda.cu (the torch glue) calls
// these; pwlu_kernels.cu implements them and CI compiles it with plain nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../cpp/math/pwlu_math.h"
#include "pau_kernels.h"  // DType, element_size, compute_size
#include "tiling.h"

namespace pau {
namespace cuda {

// Shared memory a backward block may use for its copies of the point-gradient
// histogram (2 (N + 1) compute-type values per group of the tile, see
// pwlu_kernels.cuh): with the per-lane sums (8 KiB at most) and block_sum's
// buffer, within the 48 KiB every GPU gives without opting in.
constexpr int64_t kPwluHistogramBytes = 36 * 1024;

// One PWLU call. x, out, grad, grad_x are dense in the same memory order
// (tiling.h). The group tables are in the compute type (float for float32,
// float16 and bfloat16 x, double for float64 x), on the device, laid out as
// the CPU backend builds them (ops/pwlu.h: pwlu_group_tables):
//   points (G, N + 1)   Y_0..Y_N
//   steps  (G, N + 1)   Y_{k+1} - Y_k, last column unused
//   params (G, pwlu::kParams)
struct PwluProblem {
  DType dtype = DType::float32;
  int intervals = 0;  // N
  const void* points = nullptr;
  const void* steps = nullptr;
  const void* params = nullptr;
  Plan plan;
  // Upper bound for the grid (blocks loop over tiles); 0: one block per tile.
  // The results do not depend on it.
  int64_t max_blocks = 0;
};

// Gradient entries per group: the N + 1 points, then pwlu::kExtras
// (B_L, B_R, K_L, K_R).
PAU_HOST_DEVICE int pwlu_gradient_entries(int intervals) {
  return intervals + 1 + pwlu::kExtras;
}

// Threads of a PWLU block: the plan's, rounded up to whole warps, because
// the backward's warp-wide operations use full masks.
PAU_HOST_DEVICE int pwlu_threads(const Plan& plan) { return (plan.threads + 31) / 32 * 32; }

// Entries of one copy of a backward block's point-gradient histogram: per
// group of the tile, the N + 1 "lower" sums (dL/dY_k from interval k) and the
// N + 1 "upper" sums (dL/dY_{k+1} from interval k).
PAU_HOST_DEVICE int64_t pwlu_histogram_entries(const Plan& plan, int intervals) {
  return plan.groups_per_tile * 2 * static_cast<int64_t>(intervals + 1);
}

// Histogram copies of a backward block: one per warp when they fit in
// kPwluHistogramBytes (no synchronisation between warps), fewer otherwise
// (warps sharing a copy take turns); 0 if not even one fits.
PAU_HOST_DEVICE int pwlu_histogram_copies(const Plan& plan, int intervals, int compute_size) {
  const int64_t copy = pwlu_histogram_entries(plan, intervals) * compute_size;
  const int64_t fit = kPwluHistogramBytes / copy;
  const int warps = pwlu_threads(plan) / 32;
  return static_cast<int>(fit < warps ? fit : warps);
}

// Dynamic shared memory of a backward block: the histogram copies, then for
// per-lane tiles one double per thread and lane for the per-group sums.
PAU_HOST_DEVICE int64_t pwlu_histogram_bytes(const Plan& plan, int intervals, int compute_size) {
  const int64_t bytes = pwlu_histogram_copies(plan, intervals, compute_size) *
                        pwlu_histogram_entries(plan, intervals) * compute_size;
  return (bytes + 15) / 16 * 16;
}
PAU_HOST_DEVICE int64_t pwlu_backward_shared_bytes(const Plan& plan, int intervals,
                                                   int compute_size) {
  const int64_t sums = plan.per_lane ? static_cast<int64_t>(pwlu_threads(plan)) * plan.lanes *
                                           static_cast<int64_t>(sizeof(double))
                                     : 0;
  return pwlu_histogram_bytes(plan, intervals, compute_size) + sums;
}

// The plan of a PWLU problem (numel > 0): tiling.h's, with K = N + 5 gradient
// entries per group, and the per-lane groups per tile limited as if each
// group had two K-long tables, so that a histogram copy stays within 16 KiB.
// Where the smallest per-lane tile's histogram does not fit anyway (large N
// with runs that force several groups per tile), broadcast tiles, which are
// correct for any run.
inline Plan make_pwlu_plan(int64_t numel, int64_t groups, int64_t run, int intervals,
                           DType dtype) {
  const int K = pwlu_gradient_entries(intervals);
  const Plan plan = make_plan(numel, groups, run, K, element_size(dtype), compute_size(dtype), 2);
  if (plan.per_lane && pwlu_histogram_copies(plan, intervals, compute_size(dtype)) < 1) {
    return make_plan(numel, groups, run, K, element_size(dtype), compute_size(dtype), 2,
                     /*allow_per_lane=*/false);
  }
  return plan;
}

// The most intervals the CUDA backward supports for this dtype: one group's
// histogram (2 (N + 1) values) must fit in kPwluHistogramBytes, i.e. N <= 2303
// for float64 x; float32, float16 and bfloat16 take every N up to
// pwlu::kMaxIntervals.
inline int pwlu_max_intervals(DType dtype) {
  const int64_t fit = kPwluHistogramBytes / (2 * static_cast<int64_t>(compute_size(dtype))) - 1;
  return static_cast<int>(fit < pwlu::kMaxIntervals ? fit : pwlu::kMaxIntervals);
}

inline bool pwlu_intervals_supported(int intervals, DType dtype) {
  return intervals >= 1 && intervals <= pwlu_max_intervals(dtype);
}

// Elements of the group tables of G groups of N intervals (in the compute
// type of the dtype: float, or double for float64).
inline int64_t pwlu_table_elements(int64_t groups, int intervals) {
  return groups * (2 * static_cast<int64_t>(intervals + 1) + pwlu::kParams);
}

// Builds the group tables (the layout above, pwlu_table_elements of them, in
// the compute type of `dtype`) on the device from the parameters: points
// (G, N + 1), bounds (G, 2), slopes (G, 2), contiguous, float
// (parameters_double false) or double. A group with unusable bounds (not
// finite with B_L < B_R, or too close for N intervals) gets NaN parameters,
// which make its outputs and gradients NaN; nothing is read back to the host.
cudaError_t launch_pwlu_tables(DType dtype, bool parameters_double, int64_t groups,
                               int intervals, const void* points, const void* bounds,
                               const void* slopes, void* tables, cudaStream_t stream);

// Bytes of the double workspace launch_pwlu_backward needs.
inline int64_t pwlu_backward_workspace_bytes(const PwluProblem& p) {
  return p.plan.workspace_elements() * static_cast<int64_t>(sizeof(double));
}

// out = F(x), element-wise. Returns the launch's error (cudaSuccess if none).
cudaError_t launch_pwlu_forward(const PwluProblem& p, const void* x, void* out,
                                cudaStream_t stream);

// grad_x = dL/dx and the parameter gradients as one (G, N + 1 + kExtras)
// table of doubles, `gradients`: dL/dY_0..dL/dY_N, then dL/dB_L, dL/dB_R,
// dL/dK_L, dL/dK_R. workspace: pwlu_backward_workspace_bytes(p), 8-byte
// aligned, no initialisation needed. Bitwise deterministic: no floating-point
// atomics, fixed summation orders.
cudaError_t launch_pwlu_backward(const PwluProblem& p, const void* grad, const void* x,
                                 void* grad_x, double* workspace, double* gradients,
                                 cudaStream_t stream);

}  // namespace cuda
}  // namespace pau

// pau::pwlu_forward and pau::pwlu_backward: schemas, argument checks, the
// group tables every backend's kernels read, meta (fake) kernels and the
// autograd kernel. The CPU entry points are in cpu/pwlu_cpu.cpp, the CUDA
// ones in cuda/pwlu_cuda.cu; the math in math/pwlu_math.h.
#include "ops/pwlu.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <tuple>

#include "math/pwlu_math.h"
#include "ops/autograd.h"
#include "ops/common.h"
#include "ops/composite.h"

namespace pau {

using at::Tensor;

PwluArgs check_pwlu_args(const Tensor& x, const Tensor& points, const Tensor& bounds,
                         const Tensor& slopes, int64_t dim) {
  TORCH_CHECK(x.defined() && points.defined() && bounds.defined() && slopes.defined(),
              "pwlu: x, points, bounds and slopes must be defined tensors");
  TORCH_CHECK_TYPE(is_input_dtype(x.scalar_type()),
                   "pwlu: x must be float32, float64, float16 or bfloat16, got ",
                   x.scalar_type());
  // Half and bfloat16 parameters (a model.half()'d PWLU) are used in float.
  TORCH_CHECK_TYPE(is_input_dtype(points.scalar_type()),
                   "pwlu: points must be float32, float64, float16 or bfloat16, got ",
                   points.scalar_type());
  TORCH_CHECK_TYPE(bounds.scalar_type() == points.scalar_type() &&
                       slopes.scalar_type() == points.scalar_type(),
                   "pwlu: bounds (", bounds.scalar_type(), ") and slopes (",
                   slopes.scalar_type(), ") must have the dtype of points (",
                   points.scalar_type(), ")");
  TORCH_CHECK(points.device() == x.device() && bounds.device() == x.device() &&
                  slopes.device() == x.device(),
              "pwlu: x, points, bounds and slopes must be on the same device, got x on ",
              x.device(), ", points on ", points.device(), ", bounds on ", bounds.device(),
              ", slopes on ", slopes.device());
  TORCH_CHECK_VALUE(points.dim() == 2 && points.sym_size(0) >= 1,
                    "pwlu: points must have shape (G, N+1) with G >= 1 groups, got shape ",
                    points.sym_sizes());
  TORCH_CHECK_VALUE(points.sym_size(1) >= 2 && points.sym_size(1) <= pwlu::kMaxIntervals + 1,
                    "pwlu: the number of intervals N must be in [1, ", pwlu::kMaxIntervals,
                    "], got points of shape ", points.sym_sizes(), " (N + 1 = ",
                    points.sym_size(1), " points)");
  const c10::SymInt groups = points.sym_size(0);
  TORCH_CHECK_VALUE(bounds.dim() == 2 && bounds.sym_size(0) == groups && bounds.sym_size(1) == 2,
                    "pwlu: bounds must have shape (G, 2) = (", groups,
                    ", 2) holding (B_L, B_R) per group, got shape ", bounds.sym_sizes());
  TORCH_CHECK_VALUE(slopes.dim() == 2 && slopes.sym_size(0) == groups && slopes.sym_size(1) == 2,
                    "pwlu: slopes must have shape (G, 2) = (", groups,
                    ", 2) holding (K_L, K_R) per group, got shape ", slopes.sym_sizes());
  PwluArgs args{};
  args.groups = groups.guard_int(__FILE__, __LINE__);
  args.intervals = static_cast<int>(points.sym_size(1).guard_int(__FILE__, __LINE__)) - 1;
  args.dim = check_channel_dim(x, dim, args.groups, "pwlu");
  return args;
}

PwluArgs check_pwlu_backward_args(const Tensor& grad_output, const Tensor& x,
                                  const Tensor& points, const Tensor& bounds,
                                  const Tensor& slopes, int64_t dim) {
  PwluArgs args = check_pwlu_args(x, points, bounds, slopes, dim);
  check_grad_output(grad_output, x, "pwlu");
  return args;
}

namespace {

template <class P>
void check_bounds_values(const P* b, int64_t groups) {
  for (int64_t g = 0; g < groups; ++g) {
    const double left = static_cast<double>(b[2 * g]);
    const double right = static_cast<double>(b[2 * g + 1]);
    TORCH_CHECK_VALUE(pwlu::bounds_valid(left, right),
                      "pwlu: bounds must be finite with B_L < B_R in every group; group ", g,
                      " has (B_L, B_R) = (", left, ", ", right, ")");
  }
}

// A parameter on the host, contiguous, float16/bfloat16 widened to float32
// (the kernels' tables are float or double).
Tensor host_parameter(const Tensor& t) {
  return t.detach().to(at::kCPU, compute_type(t.scalar_type())).contiguous();
}

}  // namespace

void check_pwlu_bounds(const Tensor& bounds) {
  // Reading the values needs them on the host (a device sync on GPUs).
  const Tensor host = host_parameter(bounds);
  if (host.scalar_type() == at::kDouble) {
    check_bounds_values(host.const_data_ptr<double>(), host.size(0));
  } else {
    check_bounds_values(host.const_data_ptr<float>(), host.size(0));
  }
}

namespace {

// The input dtypes that compute in a type of this size.
const char* x_type_name(size_t compute_size) {
  return compute_size == sizeof(float) ? "float32, float16 or bfloat16" : "float64";
}

// Fills the group tables of the kernels (see cpu::PwluProblem) from the
// parameters (dtype P, contiguous, on the host): steps and derived values in
// double, rounded once to the compute type T.
template <class P, class T>
void fill_tables(const P* y, const P* b, const P* k, int64_t groups, int n, T* points, T* steps,
                 T* params) {
  const char* type_name = sizeof(T) == sizeof(float) ? "float32" : "float64";
  for (int64_t g = 0; g < groups; ++g) {
    for (int j = 0; j <= n; ++j) pwlu::table_entry(y, b, k, g, n, j, points, steps, params);
    // float64 bounds used for float32 (or float16/bfloat16) x must survive
    // the rounding to float32, or every output of the group is inf or NaN.
    TORCH_CHECK_VALUE(pwlu::bounds_representable(params + g * pwlu::kParams),
                      "pwlu: the bounds of group ", g, " (", b[2 * g], ", ", b[2 * g + 1],
                      ") are not finite with B_L < B_R once rounded to ", type_name,
                      ", the compute type of ", x_type_name(sizeof(T)),
                      " x; use float64 x, or bounds within float32's range and apart");
    TORCH_CHECK_VALUE(pwlu::width_representable(params + g * pwlu::kParams),
                      "pwlu: the bounds of group ", g, " (", b[2 * g], ", ", b[2 * g + 1],
                      ") are too close for ", n, " intervals in ", type_name);
  }
}

}  // namespace

Tensor pwlu_group_tables(const Tensor& points, const Tensor& bounds, const Tensor& slopes,
                         const PwluArgs& args, at::ScalarType compute_type) {
  TORCH_CHECK(compute_type == at::kFloat || compute_type == at::kDouble,
              "pwlu: internal error: the group tables are float or double, got ", compute_type);
  const int n = args.intervals;
  const int64_t g = args.groups;
  const Tensor y = host_parameter(points);
  const Tensor b = host_parameter(bounds);
  const Tensor k = host_parameter(slopes);
  Tensor storage =
      at::empty({g * (2 * (n + 1) + pwlu::kParams)}, y.options().dtype(compute_type));
  auto fill = [&](auto p_tag, auto t_tag) {
    using P = decltype(p_tag);
    using T = decltype(t_tag);
    T* out = storage.mutable_data_ptr<T>();
    fill_tables(y.const_data_ptr<P>(), b.const_data_ptr<P>(), k.const_data_ptr<P>(), g, n, out,
                out + g * (n + 1), out + 2 * g * (n + 1));
  };
  // host_parameter has made the parameters float or double.
  const bool params_double = y.scalar_type() == at::kDouble;
  if (compute_type == at::kDouble) {
    params_double ? fill(double(), double()) : fill(float(), double());
  } else {
    params_double ? fill(double(), float()) : fill(float(), float());
  }
  return storage;
}

PwluTablePointers pwlu_table_pointers(const Tensor& tables, const PwluArgs& args) {
  const int64_t row = args.intervals + 1;
  TORCH_CHECK(tables.dim() == 1 && tables.is_contiguous() &&
                  tables.numel() == args.groups * (2 * row + pwlu::kParams),
              "pwlu: internal error: group tables of shape ", tables.sizes(), " for ",
              args.groups, " groups of ", args.intervals, " intervals");
  const char* base = static_cast<const char*>(tables.const_data_ptr());
  const int64_t item = tables.element_size();
  return {base, base + item * args.groups * row, base + item * 2 * args.groups * row};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pwlu_empty_input_gradients(const Tensor& dense_x,
                                                                      const Tensor& points,
                                                                      const Tensor& bounds,
                                                                      const Tensor& slopes) {
  return {at::empty_like(dense_x), at::zeros_like(points, at::MemoryFormat::Contiguous),
          at::zeros_like(bounds, at::MemoryFormat::Contiguous),
          at::zeros_like(slopes, at::MemoryFormat::Contiguous)};
}

std::tuple<Tensor, Tensor, Tensor> split_pwlu_gradients(const Tensor& sums, const PwluArgs& args,
                                                        at::ScalarType type) {
  const int64_t n = args.intervals;
  TORCH_CHECK(sums.dim() == 2 && sums.size(0) == args.groups &&
                  sums.size(1) == n + 1 + pwlu::kExtras && sums.scalar_type() == at::kDouble,
              "pwlu: internal error: gradient sums of shape ", sums.sizes(), " and dtype ",
              sums.scalar_type(), " for ", args.groups, " groups of ", n, " intervals");
  return {sums.narrow(1, 0, n + 1).to(type).contiguous(),
          sums.narrow(1, n + 1 + pwlu::kGradLeft, 2).to(type).contiguous(),
          sums.narrow(1, n + 1 + pwlu::kGradSlopeLeft, 2).to(type).contiguous()};
}

namespace {

Tensor pwlu_forward_meta(const Tensor& x, const Tensor& points, const Tensor& bounds,
                         const Tensor& slopes, int64_t dim) {
  check_pwlu_args(x, points, bounds, slopes, dim);
  return at::empty_like(x);
}

PwluGrads pwlu_backward_meta(const Tensor& grad_output, const Tensor& x, const Tensor& points,
                         const Tensor& bounds, const Tensor& slopes, int64_t dim) {
  check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  return {at::empty_like(x), at::empty_like(points, at::MemoryFormat::Contiguous),
          at::empty_like(bounds, at::MemoryFormat::Contiguous),
          at::empty_like(slopes, at::MemoryFormat::Contiguous)};
}

class PwluFunction;

struct PwluOp : autograd::OpDefaults {
  using Forward = PwluForward;
  using Backward = PwluBackward;
  using Function = PwluFunction;
  static constexpr const char* kForward = "pau::pwlu_forward";
  static constexpr const char* kBackward = "pau::pwlu_backward";
  static constexpr const char* kUndefined =
      "pwlu: x, points, bounds and slopes must be defined tensors, not None";
  static constexpr auto composite_forward = &composite::pwlu_forward;
  static constexpr auto composite_backward = &composite::pwlu_backward;
};

// A class of its own: its name is the autograd node's (the output's grad_fn).
class PwluFunction : public autograd::FusedFunction<PwluOp, PwluFunction> {};

}  // namespace

// The pau library itself is defined in ops/pau.cpp; these add to it.
TORCH_LIBRARY_FRAGMENT(pau, m) {
  m.def(
      "pwlu_forward(Tensor x, Tensor points, Tensor bounds, Tensor slopes, int dim=1) "
      "-> Tensor");
  m.def(
      "pwlu_backward(Tensor grad_output, Tensor x, Tensor points, Tensor bounds, "
      "Tensor slopes, int dim=1) -> (Tensor grad_x, Tensor grad_points, Tensor grad_bounds, "
      "Tensor grad_slopes)");
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("pwlu_forward", &pwlu_forward_meta);
  m.impl("pwlu_backward", &pwlu_backward_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("pwlu_forward", &autograd::Kernels<PwluOp>::forward);
  m.impl("pwlu_backward", &autograd::Kernels<PwluOp>::backward);
}

}  // namespace pau

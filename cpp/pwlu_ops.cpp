// pau::pwlu_forward and pau::pwlu_backward: schemas, argument checks, CPU
// entry points, meta (fake) kernels and the autograd kernel. The CPU math
// lives in cpu/pwlu_kernel.cpp and pwlu_math.h; this file is glue and follows
// pau_ops.cpp.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

#include "composite.h"
#include "cpu/launch.h"
#include "cpu/pwlu_kernels.h"
#include "pau_ops.h"
#include "pwlu_math.h"
#include "pwlu_ops.h"

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
  TORCH_CHECK(grad_output.defined(), "pwlu: grad_output must be a defined tensor");
  TORCH_CHECK_VALUE(grad_output.sym_sizes() == x.sym_sizes(), "pwlu: grad_output shape ",
                    grad_output.sym_sizes(), " must match x shape ", x.sym_sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "pwlu: grad_output dtype (",
                   grad_output.scalar_type(), ") must match x dtype (", x.scalar_type(), ")");
  TORCH_CHECK(grad_output.device() == x.device(), "pwlu: grad_output is on ",
              grad_output.device(), " but x is on ", x.device());
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

// The group tables in the compute type on the host, in one allocation that
// lives for the duration of a kernel launch.
struct HostTables {
  Tensor storage;

  HostTables(const Tensor& points, const Tensor& bounds, const Tensor& slopes,
             const PwluArgs& args, at::ScalarType ctype)
      : storage(pwlu_group_tables(points, bounds, slopes, args, ctype)) {}

  cpu::PwluProblem problem(const Tensor& dense_x, const PwluArgs& args) const {
    const int64_t run = group_run(dense_x, args.dim, args.groups);
    const bool per_lane = run < cpu::kMinRun && args.groups > 1;
    // Per-tile gradient state is N + 1 + 4 doubles per lane (broadcast tiles,
    // at most 16 lanes) or per group of a per-lane tile: keep tiles at least
    // 8 times that large so zeroing and reducing it stays cheap.
    const int64_t tables =
        per_lane ? std::min(args.groups, cpu::ceil_div(cpu::kPerLaneColumns, run)) : 16;
    const int64_t tile_elements =
        std::max(cpu::kTileElements, 8 * tables * (args.intervals + 1 + pwlu::kExtras));
    const PwluTablePointers pointers = pwlu_table_pointers(storage, args);
    cpu::PwluProblem p;
    p.layout = cpu::make_layout(dense_x.numel(), args.groups, run, tile_elements);
    p.intervals = args.intervals;
    p.points = pointers.points;
    p.steps = pointers.steps;
    p.params = pointers.params;
    return p;
  }
};

using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor>;

// The backward's per-tile partial gradients are (tiles, groups per tile, N + 5)
// doubles; for all tiles at once that is at least G (N + 5) doubles and grows
// with the tiles per group (G = 65536, N = 1000 needed 0.5 GB on top of as much
// again for the sums). Run the tiles in waves of whole column tiles instead,
// each reduced into the outputs before the next, with at most this many bytes
// of partials (or one column tile's, if larger).
constexpr int64_t kWavePartialBytes = int64_t{32} << 20;

// Doubles of partials one column tile (every row tile of it) writes.
int64_t column_tile_partials(const cpu::PwluProblem& p) {
  return p.layout.row_tiles * p.layout.groups_per_tile * p.coefficients();
}

// Column tiles per wave: as many as fit kWavePartialBytes, whole groups
// (broadcast tiles split a group's run over tiles_per_group column tiles).
int64_t wave_column_tiles(const cpu::PwluProblem& p) {
  const cpu::Layout& l = p.layout;
  const int64_t unit = l.per_lane() ? 1 : l.tiles_per_group;
  const int64_t fit = kWavePartialBytes / static_cast<int64_t>(sizeof(double)) /
                      std::max<int64_t>(1, unit * column_tile_partials(p));
  return std::min(l.column_tiles, unit * std::max<int64_t>(1, fit));
}

int64_t partial_elements(const cpu::PwluProblem& p, int64_t wave_columns) {
  return wave_columns * column_tile_partials(p);
}

// Runs the tiles of launch's wave, in parallel.
void run_wave(void (*kernel)(const cpu::PwluBackwardArgs&, int64_t),
              const cpu::PwluBackwardArgs& launch) {
  const cpu::Layout& l = launch.problem.layout;
  const int64_t columns = launch.wave_columns;
  at::parallel_for(0, l.row_tiles * columns, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      kernel(launch, (i / columns) * l.column_tiles + launch.first_column_tile + i % columns);
    }
  });
}

// Sums the wave's partials of each of its groups in tile order (row tile, then
// column tile: the same order for every wave size and thread count, so
// bitwise reproducible) and writes them, rounded to the parameters' dtype,
// into that group's rows of the gradients in `result`.
void reduce_wave(const cpu::PwluBackwardArgs& launch, const PwluArgs& args, Grads& result) {
  const cpu::Layout& l = launch.problem.layout;
  const int64_t count = launch.problem.coefficients();
  const int64_t columns = launch.wave_columns;
  const int64_t first_group = l.per_lane() ? launch.first_column_tile * l.groups_per_tile
                                           : launch.first_column_tile / l.tiles_per_group;
  const int64_t last_group =
      l.per_lane()
          ? std::min(l.groups, (launch.first_column_tile + columns) * l.groups_per_tile)
          : (launch.first_column_tile + columns) / l.tiles_per_group;
  const int64_t groups = last_group - first_group;
  Tensor sums = at::empty({groups, count}, std::get<0>(result).options().dtype(at::kDouble));
  double* out = sums.mutable_data_ptr<double>();
  const double* in = launch.partials;
  // Below about this many additions a thread team costs more than it saves.
  constexpr int64_t kParallelWork = 1 << 15;
  const int64_t per_group = count * l.row_tiles * (l.per_lane() ? 1 : l.tiles_per_group);
  const int64_t grain = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_group));
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t local = begin; local < end; ++local) {
      const int64_t g = first_group + local;
      for (int64_t k = 0; k < count; ++k) {
        double total = 0.0;
        for (int64_t rt = 0; rt < l.row_tiles; ++rt) {
          if (l.per_lane()) {
            const int64_t slot = rt * columns + g / l.groups_per_tile - launch.first_column_tile;
            total += in[(slot * l.groups_per_tile + g % l.groups_per_tile) * count + k];
          } else {
            for (int64_t ct = g * l.tiles_per_group; ct < (g + 1) * l.tiles_per_group; ++ct) {
              total += in[(rt * columns + ct - launch.first_column_tile) * count + k];
            }
          }
        }
        out[local * count + k] = total;
      }
    }
  });
  // copy_ rounds as split_pwlu_gradients' .to(type) does.
  const int64_t n = args.intervals;
  std::get<1>(result).narrow(0, first_group, groups).copy_(sums.narrow(1, 0, n + 1));
  std::get<2>(result)
      .narrow(0, first_group, groups)
      .copy_(sums.narrow(1, n + 1 + pwlu::kGradLeft, 2));
  std::get<3>(result)
      .narrow(0, first_group, groups)
      .copy_(sums.narrow(1, n + 1 + pwlu::kGradSlopeLeft, 2));
}

Tensor pwlu_forward_cpu(const Tensor& x, const Tensor& points, const Tensor& bounds,
                        const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_args(x, points, bounds, slopes, dim);
  check_pwlu_bounds(bounds);
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const HostTables tables(points, bounds, slopes, args, compute_type(x.scalar_type()));
  const cpu::PwluForwardArgs launch{tables.problem(xd, args), xd.const_data_ptr(),
                                    out.mutable_data_ptr()};
  run_tiles(cpu::pwlu_kernel_table().forward[static_cast<int>(dtype_of(x))], launch);
  return out;
}

Grads pwlu_backward_cpu(const Tensor& grad_output, const Tensor& x, const Tensor& points,
                        const Tensor& bounds, const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  check_pwlu_bounds(bounds);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  if (xd.numel() == 0) return pwlu_empty_input_gradients(xd, points, bounds, slopes);
  Tensor grad_x = at::empty_like(xd);
  const HostTables tables(points, bounds, slopes, args, compute_type(x.scalar_type()));
  const cpu::PwluProblem problem = tables.problem(xd, args);
  const auto contiguous = at::MemoryFormat::Contiguous;
  Grads result{grad_x, at::empty_like(points, contiguous), at::empty_like(bounds, contiguous),
               at::empty_like(slopes, contiguous)};
  const auto kernel = cpu::pwlu_kernel_table().backward[static_cast<int>(dtype_of(x))];
  cpu::PwluBackwardArgs launch{problem,  grad.const_data_ptr(), xd.const_data_ptr(),
                               grad_x.mutable_data_ptr(), nullptr, 0, 0};
  const int64_t wave = wave_column_tiles(problem);
  std::vector<double> partials(static_cast<size_t>(partial_elements(problem, wave)));
  launch.partials = partials.data();
  for (int64_t first = 0; first < problem.layout.column_tiles; first += wave) {
    launch.first_column_tile = first;
    launch.wave_columns = std::min(wave, problem.layout.column_tiles - first);
    run_wave(kernel, launch);
    reduce_wave(launch, args, result);
  }
  return result;
}

Tensor pwlu_forward_meta(const Tensor& x, const Tensor& points, const Tensor& bounds,
                         const Tensor& slopes, int64_t dim) {
  check_pwlu_args(x, points, bounds, slopes, dim);
  return at::empty_like(x);
}

Grads pwlu_backward_meta(const Tensor& grad_output, const Tensor& x, const Tensor& points,
                         const Tensor& bounds, const Tensor& slopes, int64_t dim) {
  check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  return {at::empty_like(x), at::empty_like(points, at::MemoryFormat::Contiguous),
          at::empty_like(bounds, at::MemoryFormat::Contiguous),
          at::empty_like(slopes, at::MemoryFormat::Contiguous)};
}

using ForwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                int64_t);
using BackwardSignature = Grads(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, int64_t);

// Autograd in C++ so that it also works in TorchScript and LibTorch programs.
class PwluFunction : public torch::autograd::Function<PwluFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const Tensor& points, const Tensor& bounds, const Tensor& slopes,
                        int64_t dim) {
    ctx->save_for_backward({x, points, bounds, slopes});
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::pwlu_forward", "")
                               .typed<ForwardSignature>();
    return op.call(x, points, bounds, slopes, dim);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::pwlu_backward", "")
                               .typed<BackwardSignature>();
    auto [grad_x, grad_points, grad_bounds, grad_slopes] =
        op.call(grads[0], saved[0], saved[1], saved[2], saved[3], ctx->saved_data["dim"].toInt());
    return {grad_x, grad_points, grad_bounds, grad_slopes, Tensor()};
  }
};

Tensor pwlu_forward_autograd(const Tensor& x, const Tensor& points, const Tensor& bounds,
                             const Tensor& slopes, int64_t dim) {
  // Before apply(), which reads every input's device and fails on an
  // undefined tensor (None from Python) with "tensor does not have a device".
  TORCH_CHECK(x.defined() && points.defined() && bounds.defined() && slopes.defined(),
              "pwlu: x, points, bounds and slopes must be defined tensors, not None");
  // torch.func transforms and forward-mode AD cannot run a C++ autograd
  // Function: there, the differentiable composite (pwlu_composite.cpp).
  if (composite::needed_for({x, points, bounds, slopes})) {
    return composite::pwlu_forward(x, points, bounds, slopes, dim);
  }
  return PwluFunction::apply(x, points, bounds, slopes, dim);
}

Grads pwlu_backward_autograd(const Tensor& grad_output, const Tensor& x, const Tensor& points,
                             const Tensor& bounds, const Tensor& slopes, int64_t dim) {
  const bool needs_graph =
      at::GradMode::is_enabled() &&
      (grad_output.requires_grad() || x.requires_grad() || points.requires_grad() ||
       bounds.requires_grad() || slopes.requires_grad());
  // Double backward (create_graph=True) and torch.func: the gradient of the
  // composite, which autograd differentiates further. Otherwise the kernel.
  if (needs_graph || composite::needed_for({grad_output, x, points, bounds, slopes})) {
    return composite::pwlu_backward(grad_output, x, points, bounds, slopes, dim);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("pau::pwlu_backward", "")
                             .typed<BackwardSignature>();
  return op.call(grad_output, x, points, bounds, slopes, dim);
}

}  // namespace

// The pau library itself is defined in pau_ops.cpp; these add to it.
TORCH_LIBRARY_FRAGMENT(pau, m) {
  m.def(
      "pwlu_forward(Tensor x, Tensor points, Tensor bounds, Tensor slopes, int dim=1) "
      "-> Tensor");
  m.def(
      "pwlu_backward(Tensor grad_output, Tensor x, Tensor points, Tensor bounds, "
      "Tensor slopes, int dim=1) -> (Tensor grad_x, Tensor grad_points, Tensor grad_bounds, "
      "Tensor grad_slopes)");
}

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("pwlu_forward", &pwlu_forward_cpu);
  m.impl("pwlu_backward", &pwlu_backward_cpu);
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("pwlu_forward", &pwlu_forward_meta);
  m.impl("pwlu_backward", &pwlu_backward_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("pwlu_forward", &pwlu_forward_autograd);
  m.impl("pwlu_backward", &pwlu_backward_autograd);
}

}  // namespace pau

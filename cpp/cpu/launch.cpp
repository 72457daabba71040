// The definitions of cpu/launch.h.
#include "cpu/launch.h"

#include <ATen/ops/empty.h>

#include <cmath>
#include <type_traits>

namespace pau {

using at::Tensor;

std::vector<double> partials_buffer(const cpu::Layout& l, int64_t count) {
  return std::vector<double>(static_cast<size_t>(l.tiles() * l.groups_per_tile * count));
}

void reduce_partials(const cpu::Layout& l, int64_t count, const double* in, double* out) {
  // Below about this many additions per chunk a thread team costs more than it
  // saves: small inputs reduce on the calling thread.
  constexpr int64_t kParallelWork = 1 << 15;
  const int64_t per_group = count * l.row_tiles * (l.per_lane() ? 1 : l.tiles_per_group);
  const int64_t grain = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_group));
  at::parallel_for(0, l.groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      for (int64_t k = 0; k < count; ++k) {
        double total = 0.0;
        for (int64_t rt = 0; rt < l.row_tiles; ++rt) {
          if (l.per_lane()) {
            const int64_t tile = rt * l.column_tiles + g / l.groups_per_tile;
            total += in[(tile * l.groups_per_tile + g % l.groups_per_tile) * count + k];
          } else {
            for (int64_t ct = g * l.tiles_per_group; ct < (g + 1) * l.tiles_per_group; ++ct) {
              total += in[(rt * l.column_tiles + ct) * count + k];
            }
          }
        }
        out[g * count + k] = total;
      }
    }
  });
}

namespace {

// v rounded to float as a conversion of the tensor would: to nearest, inf
// beyond float's range (where a C++ cast of the double is undefined).
float to_float(double v) {
  constexpr double kOverflow = 0x1.ffffffp127;  // FLT_MAX + half an ulp
  if (std::fabs(v) >= kOverflow) return static_cast<float>(std::copysign(HUGE_VAL, v));
  return static_cast<float>(v);
}

template <class S>
void read_values(const Tensor& t, bool round_to_float, double* out) {
  const S* data = t.const_data_ptr<S>();
  const int64_t rows = t.size(0);
  const int64_t cols = t.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double v = static_cast<double>(data[r * t.stride(0) + c * t.stride(1)]);
      *out++ = round_to_float ? static_cast<double>(to_float(v)) : v;
    }
  }
}

template <class S>
void write_values(const double* values, int64_t rows, int64_t width, int64_t first,
                  int64_t count, S* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < count; ++c) {
      const double v = values[r * width + first + c];
      if constexpr (std::is_same_v<S, double>) {
        *out++ = v;
      } else {
        *out++ = static_cast<S>(to_float(v));
      }
    }
  }
}

}  // namespace

std::vector<double> host_values(const Tensor& t, at::ScalarType compute) {
  TORCH_CHECK(t.dim() == 2 && t.device().is_cpu(),
              "pau: internal error: host_values needs a 2-D CPU tensor, got ", t.sizes(), " on ",
              t.device());
  std::vector<double> values(static_cast<size_t>(t.numel()));
  const bool round_to_float = compute != at::kDouble;
  switch (t.scalar_type()) {
    case at::kFloat: read_values<float>(t, round_to_float, values.data()); break;
    case at::kDouble: read_values<double>(t, round_to_float, values.data()); break;
    case at::kHalf: read_values<c10::Half>(t, round_to_float, values.data()); break;
    case at::kBFloat16: read_values<c10::BFloat16>(t, round_to_float, values.data()); break;
    default:  // other floating types (e.g. RPAU's alpha): through torch's own conversion
      read_values<double>(t.to(compute).to(at::kDouble), false, values.data());
  }
  return values;
}

Tensor columns_as(const double* values, int64_t rows, int64_t width, int64_t first,
                  int64_t count, const at::TensorOptions& type) {
  Tensor out = at::empty({rows, count}, type);
  switch (out.scalar_type()) {
    case at::kFloat:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<float>());
      break;
    case at::kDouble:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<double>());
      break;
    case at::kHalf:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<c10::Half>());
      break;
    case at::kBFloat16:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<c10::BFloat16>());
      break;
    default:
      TORCH_CHECK(false, "pau: internal error: gradients of dtype ", out.scalar_type());
  }
  return out;
}

std::tuple<Tensor, Tensor> coefficient_gradients(const cpu::Problem& p,
                                                 const std::vector<double>& partials,
                                                 const Tensor& numerator) {
  const int64_t count = p.coefficients();
  std::vector<double> sums(static_cast<size_t>(p.layout.groups * count));
  reduce_partials(p.layout, count, partials.data(), sums.data());
  const auto type = numerator.options().memory_format(at::MemoryFormat::Contiguous);
  return {columns_as(sums.data(), p.layout.groups, count, 0, p.m + 1, type),
          columns_as(sums.data(), p.layout.groups, count, p.m + 1, p.n, type)};
}

}  // namespace pau

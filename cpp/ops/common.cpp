#include "ops/common.h"

#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

namespace pau {

using at::Tensor;

bool is_input_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

int64_t check_channel_dim(const Tensor& x, int64_t dim, int64_t groups, const char* op) {
  const int64_t rank = x.dim();
  TORCH_CHECK_INDEX(rank == 0 ? (dim == 0 || dim == -1) : (dim >= -rank && dim < rank), op,
                    ": dim ", dim, " is out of range for x with ", rank, " dimensions");
  const int64_t wrapped = rank == 0 ? 0 : (dim < 0 ? dim + rank : dim);
  const c10::SymInt channels = rank == 0 ? c10::SymInt(1) : x.sym_size(wrapped);
  TORCH_CHECK_VALUE(channels % groups == 0, op, ": the size of dimension ", wrapped, " of x (",
                    channels, ") is not divisible by the number of groups (", groups, ")");
  return wrapped;
}

void check_like_x(const Tensor& t, const char* name, const Tensor& x, const char* op) {
  TORCH_CHECK(t.defined(), op, ": ", name, " must be a defined tensor");
  TORCH_CHECK_VALUE(t.sym_sizes() == x.sym_sizes(), op, ": ", name, " shape ", t.sym_sizes(),
                    " must match x shape ", x.sym_sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), op, ": ", name, " dtype (",
                   t.scalar_type(), ") must match x dtype (", x.scalar_type(), ")");
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " is on ", t.device(), " but x is on ",
              x.device());
}

void check_grad_output(const Tensor& grad_output, const Tensor& x, const char* op) {
  check_like_x(grad_output, "grad_output", x, op);
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

DType dtype_of(at::ScalarType type, const char* op) {
  switch (type) {
    case at::kFloat: return DType::float32;
    case at::kDouble: return DType::float64;
    case at::kHalf: return DType::float16;
    case at::kBFloat16: return DType::bfloat16;
    default: break;
  }
  TORCH_CHECK_TYPE(false, op, ": x must be float32, float64, float16 or bfloat16, got ", type);
}

Tensor dense(const Tensor& x) {
  return x.is_non_overlapping_and_dense() ? x : x.contiguous();
}

Tensor in_memory_order_of(const Tensor& grad_output, const Tensor& dense_x) {
  return grad_output.strides() == dense_x.strides() ? grad_output
                                                    : at::empty_like(dense_x).copy_(grad_output);
}

Tensor like_x(const Tensor& x, const Tensor& computed) {
  Tensor out = at::empty_like(x);
  return out.is_contiguous() ? computed : out.copy_(computed);
}

int64_t group_run(const Tensor& dense_x, int64_t dim, int64_t groups) {
  if (groups == 1) return dense_x.numel();
  return dense_x.size(dim) / groups * dense_x.stride(dim);
}

}  // namespace pau

// The autograd kernels of the operator families, written once. Each family
// (ops/pau.cpp, ops/rpau.cpp, ops/pwlu.cpp) describes itself in a struct Op:
//
//   using Forward  = at::Tensor(inputs...);        the forward operator's signature
//   using Backward = std::tuple<grads...>(const at::Tensor& grad_output, inputs...);
//   static constexpr const char* kForward, kBackward;   the operators' names
//   static constexpr const char* kUndefined;   message for an undefined tensor input
//   static constexpr auto composite_forward, composite_backward;   (ops/composite.h)
//   static void check_inputs(inputs...);       optional, before anything else runs
//   using Function = ...;   the family's class deriving from FusedFunction<Op, itself>
//
// The inputs are tensors followed by attributes (str as c10::string_view,
// int64_t); the first sizeof...(grads) tensors are the differentiable ones,
// in the order the backward returns their gradients. Autograd is registered
// in C++ so that it also works in TorchScript and in LibTorch programs that
// never load Python.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/string_view.h>
#include <torch/autograd.h>

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "ops/composite.h"

namespace pau {
namespace autograd {

// Whether Op has its own backward for a graph to build (graph_backward, with
// the backward operator's signature): PAU's fused double backward. Without
// it, the composite.
template <class Op, class = void>
struct has_graph_backward : std::false_type {};
template <class Op>
struct has_graph_backward<Op, std::void_t<decltype(&Op::graph_backward)>> : std::true_type {};

// Base of every Op: no checks beyond the ones the template makes.
struct OpDefaults {
  template <class... Inputs>
  static void check_inputs(const Inputs&...) {}
};

template <class Op, class Forward = typename Op::Forward, class Backward = typename Op::Backward>
class Signature;

template <class Op, class... Inputs, class Grads, class... BackwardInputs>
class Signature<Op, at::Tensor(Inputs...), Grads(BackwardInputs...)> {
 public:
  static constexpr std::size_t kInputs = sizeof...(Inputs);
  static constexpr std::size_t kGrads = std::tuple_size_v<Grads>;
  using GradsType = Grads;
  using InputTypes = std::tuple<std::decay_t<Inputs>...>;
  static constexpr std::array<bool, kInputs> kIsTensor{
      std::is_same_v<std::decay_t<Inputs>, at::Tensor>...};

  static_assert(sizeof...(BackwardInputs) == kInputs + 1,
                "the backward takes grad_output and the forward's inputs");

  // Position of input i among the tensor inputs (the saved variables).
  static constexpr std::size_t tensor_index(std::size_t i) {
    std::size_t index = 0;
    for (std::size_t j = 0; j < i; ++j) index += kIsTensor[j] ? 1 : 0;
    return index;
  }

  static constexpr bool differentiable_first() {
    for (std::size_t j = 0; j < kGrads; ++j) {
      if (!kIsTensor[j]) return false;
    }
    return kGrads <= kInputs;
  }

  static at::IValue attribute(c10::string_view v) { return std::string(v); }
  static at::IValue attribute(int64_t v) { return v; }

  template <class T>
  static T attribute_as(const at::IValue& v) {
    if constexpr (std::is_same_v<T, c10::string_view>) {
      return v.toStringRef();
    } else {
      static_assert(std::is_same_v<T, int64_t>, "attributes are str or int");
      return v.toInt();
    }
  }

  static std::string key(std::size_t i) { return std::to_string(i); }

  static const c10::TypedOperatorHandle<at::Tensor(Inputs...)>& forward_op() {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow(Op::kForward, "")
                               .template typed<at::Tensor(Inputs...)>();
    return op;
  }

  static const c10::TypedOperatorHandle<Grads(BackwardInputs...)>& backward_op() {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow(Op::kBackward, "")
                               .template typed<Grads(BackwardInputs...)>();
    return op;
  }
};

// The fused kernels under autograd, as the family's own class (its name is
// the autograd node's: grad_fn of the output). Saves the tensor inputs and the
// attributes, never intermediates (RPAU's noise is regenerated).
template <class Op, class Self>
class FusedFunction : public torch::autograd::Function<Self> {
  using S = Signature<Op>;

 public:
  template <class... Inputs>
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, Inputs&&... inputs) {
    save(ctx, std::make_index_sequence<S::kInputs>(), inputs...);
    at::AutoDispatchBelowADInplaceOrView guard;
    return S::forward_op().call(std::forward<Inputs>(inputs)...);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const typename S::GradsType result =
        call_backward(ctx, grads[0], saved, std::make_index_sequence<S::kInputs>());
    torch::autograd::variable_list out(S::kInputs);
    std::apply(
        [&out](const auto&... g) {
          std::size_t i = 0;
          ((out[i++] = g), ...);
        },
        result);
    return out;
  }

 private:
  template <std::size_t... I, class... Inputs>
  static void save(torch::autograd::AutogradContext* ctx, std::index_sequence<I...>,
                   const Inputs&... inputs) {
    std::vector<at::Tensor> tensors;
    tensors.reserve(S::tensor_index(S::kInputs));
    auto keep = [&](auto index, const auto& input) {
      if constexpr (S::kIsTensor[decltype(index)::value]) {
        tensors.push_back(input);
      } else {
        ctx->saved_data[S::key(decltype(index)::value)] = S::attribute(input);
      }
    };
    (keep(std::integral_constant<std::size_t, I>(), inputs), ...);
    ctx->save_for_backward(tensors);
  }

  template <std::size_t I>
  static decltype(auto) saved_input(torch::autograd::AutogradContext* ctx,
                                    const torch::autograd::variable_list& saved) {
    using T = std::tuple_element_t<I, typename S::InputTypes>;
    if constexpr (S::kIsTensor[I]) {
      return saved[S::tensor_index(I)];
    } else {
      return S::template attribute_as<T>(ctx->saved_data[S::key(I)]);
    }
  }

  template <std::size_t... I>
  static typename S::GradsType call_backward(torch::autograd::AutogradContext* ctx,
                                             const at::Tensor& grad,
                                             const torch::autograd::variable_list& saved,
                                             std::index_sequence<I...>) {
    return S::backward_op().call(grad, saved_input<I>(ctx, saved)...);
  }
};

template <class Op, class Forward = typename Op::Forward, class Backward = typename Op::Backward>
class Kernels;

template <class Op, class... Inputs, class Grads, class... BackwardInputs>
class Kernels<Op, at::Tensor(Inputs...), Grads(BackwardInputs...)> {
  using S = Signature<Op>;
  static constexpr std::size_t kGrads = S::kGrads;

  // The first sizeof...(I) of `inputs`, all tensors.
  template <std::size_t... I, class Tuple>
  static std::array<at::Tensor, sizeof...(I)> first_tensors(std::index_sequence<I...>,
                                                            const Tuple& inputs) {
    return {std::get<I>(inputs)...};
  }

  template <class... T>
  static bool all_tensors_defined(const T&... inputs) {
    auto defined = [](const auto& input) {
      if constexpr (std::is_same_v<std::decay_t<decltype(input)>, at::Tensor>) {
        return input.defined();
      } else {
        return true;
      }
    };
    return (defined(inputs) && ...);
  }

 public:
  // The Autograd kernel of the forward operator.
  static at::Tensor forward(Inputs... inputs) {
    static_assert(S::differentiable_first(), "the differentiable inputs must come first");
    // Before apply(), which reads every input's device and fails on an
    // undefined tensor (None from Python) with "tensor does not have a device".
    TORCH_CHECK(all_tensors_defined(inputs...), Op::kUndefined);
    Op::check_inputs(inputs...);
    // torch.func transforms and forward-mode AD cannot run a C++ autograd
    // Function: there, the differentiable composite of at:: ops.
    const auto tensors =
        first_tensors(std::make_index_sequence<kGrads>(), std::forward_as_tuple(inputs...));
    if (composite::needed_for(tensors)) return Op::composite_forward(inputs...);
    return Op::Function::apply(inputs...);
  }

  // The Autograd kernel of the backward operator: torch.func takes the
  // composite; double backward (create_graph=True) the Op's graph_backward
  // where it has one, else the composite, which autograd differentiates to
  // any order; otherwise the fused kernel.
  static Grads backward(BackwardInputs... inputs) {
    // grad_output and the differentiable inputs.
    const auto tensors =
        first_tensors(std::make_index_sequence<kGrads + 1>(), std::forward_as_tuple(inputs...));
    if (composite::needed_for(tensors)) return Op::composite_backward(inputs...);
    if (composite::builds_graph(tensors)) {
      if constexpr (has_graph_backward<Op>::value) {
        return Op::graph_backward(inputs...);
      } else {
        return Op::composite_backward(inputs...);
      }
    }
    at::AutoDispatchBelowADInplaceOrView guard;
    return S::backward_op().call(inputs...);
  }
};

}  // namespace autograd
}  // namespace pau

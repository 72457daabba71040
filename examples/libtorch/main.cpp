// Runs and trains, in C++, a model with PAU or PWLU layers that was built and
// saved in Python by make_model.py:
//   1. loads the TorchScript model DIR/model.pt and the input DIR/input.pt,
//   2. writes the model's output to DIR/output.pt,
//   3. takes one SGD step (forward, MSE loss against DIR/target.pt,
//      backward(), p -= lr * grad) and writes the updated activation
//      parameters (PAU numerator/denominator, PWLU points/bounds/slopes)
//      to DIR/coefficients.pt as ((name, tensor), ...) pairs (dict() of it in
//      Python gives {name: tensor}),
//   4. before that step, in eval mode, takes the gradient penalty
//      sum((d sum(output) / d input)^2) and its gradients with respect to the
//      activation parameters (double backward) and writes them to
//      DIR/penalty_gradients.pt in the same format.
// The .pt files are read and written with torch::jit::pickle_load/save, which
// use the format of Python's torch.save/torch.load.
//
// Usage: pau_example DIR [LR]   (LR defaults to 0.01)
#include <pau/pau.h>
#include <torch/autograd.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

at::Tensor load_tensor(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  const std::vector<char> bytes{std::istreambuf_iterator<char>(file),
                                std::istreambuf_iterator<char>()};
  return torch::jit::pickle_load(bytes).toTensor();
}

void save(const c10::IValue& value, const std::string& path) {
  const std::vector<char> bytes = torch::jit::pickle_save(value);
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) throw std::runtime_error("cannot write " + path);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_activation_parameter(const std::string& name) {
  for (const char* suffix : {".numerator", ".denominator", ".points", ".bounds", ".slopes"}) {
    if (ends_with(name, suffix)) return true;
  }
  return false;
}

// Step 4 of the header comment: second-order autograd through pau::backward
// (pau::pwlu_backward), whose autograd kernel (registered in C++) builds a
// differentiable graph when create_graph is set.
c10::IValue penalty_gradients(torch::jit::Module& model, const at::Tensor& input) {
  const at::Tensor x = input.detach().requires_grad_();
  const at::Tensor output = model.forward({x}).toTensor();
  const at::Tensor grad_x = torch::autograd::grad({output.sum()}, {x}, {}, /*retain_graph=*/true,
                                                  /*create_graph=*/true)[0];
  const at::Tensor penalty = grad_x.pow(2).sum();
  std::vector<std::string> names;
  std::vector<at::Tensor> parameters;
  for (const auto& parameter : model.named_parameters()) {
    if (!is_activation_parameter(parameter.name)) continue;
    names.push_back(parameter.name);
    parameters.push_back(parameter.value);
  }
  const std::vector<at::Tensor> grads = torch::autograd::grad({penalty}, parameters);
  std::vector<c10::IValue> pairs;
  for (size_t i = 0; i < names.size(); ++i) {
    pairs.push_back(c10::ivalue::Tuple::create(names[i], grads[i]));
  }
  return c10::ivalue::Tuple::create(std::move(pairs));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: " << argv[0] << " DIR [LR]\n"
              << "  DIR holds model.pt, input.pt and target.pt (python make_model.py DIR)\n";
    return 2;
  }
  const std::string dir = argv[1];
  const double lr = argc > 2 ? std::stod(argv[2]) : 0.01;
  try {
    // Linking pau::pau_ops is what registers the operators; this call is only
    // informative (and would keep the library linked even without CMake).
    std::cout << "pau CPU kernels: " << pau::cpu_capability() << "\n";

    torch::jit::Module model = torch::jit::load(dir + "/model.pt");
    const at::Tensor input = load_tensor(dir + "/input.pt");
    const at::Tensor target = load_tensor(dir + "/target.pt");

    // Inference.
    model.eval();
    {
      c10::InferenceMode no_autograd;
      const at::Tensor output = model.forward({input}).toTensor();
      save(output, dir + "/output.pt");
      std::cout << "output " << output.sizes() << " written to " << dir << "/output.pt\n";
    }

    // Double backward.
    save(penalty_gradients(model, input), dir + "/penalty_gradients.pt");
    std::cout << "gradient penalty's gradients written to " << dir << "/penalty_gradients.pt\n";

    // One SGD step: backward() runs pau::backward (pau::pwlu_backward) through
    // the autograd kernel that libpau_ops registers in C++, so no Python is
    // involved.
    model.train();
    const at::Tensor loss = at::mse_loss(model.forward({input}).toTensor(), target);
    loss.backward();
    std::vector<c10::IValue> coefficients;
    {
      at::NoGradGuard no_grad;
      for (const auto& parameter : model.named_parameters()) {
        const at::Tensor& grad = parameter.value.grad();
        if (grad.defined()) parameter.value.sub_(grad, lr);
        if (is_activation_parameter(parameter.name)) {
          coefficients.push_back(
              c10::ivalue::Tuple::create(parameter.name, parameter.value.detach().clone()));
        }
      }
    }
    std::cout << "loss before the step " << loss.item<double>() << "; " << coefficients.size()
              << " activation parameter tensors written to " << dir << "/coefficients.pt\n";
    save(c10::ivalue::Tuple::create(std::move(coefficients)), dir + "/coefficients.pt");
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}

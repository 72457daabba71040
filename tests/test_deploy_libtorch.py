"""The C++ route: pau's CMake package and the LibTorch example program.

The example (examples/libtorch) is configured and built once with CMake
against the installed torch and pau, the way the README does it, in a build
directory kept in pytest's cache (rebuilt when torch, pau or the compiler
change). The one program runs two TorchScript models, make_model.py's PAU
network and its PWLU network; its inference output, its SGD step and its
second-order gradients of a gradient penalty must match Python's on each.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pau
import pytest
import torch
from pau.deploy import cmake_prefix_path, library_path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "libtorch"
LR = 0.05
# Parameter names of the activations whose updates the program writes, per model.
ACTIVATION_PARAMETERS = {
    "pau": (".numerator", ".denominator"),
    "pwlu": (".points", ".bounds", ".slopes"),
}

# The example is about TorchScript, which torch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


def test_installed_cmake_package_and_library():
    config_dir = Path(cmake_prefix_path) / "pau"
    for name in ("pauConfig.cmake", "pauConfigVersion.cmake", "pauTargets.cmake"):
        assert (config_dir / name).is_file(), f"{name} is not installed in {config_dir}"
    header = Path(cmake_prefix_path).parent.parent / "include" / "pau" / "pau.h"
    assert header.is_file(), f"{header} is not installed"
    assert Path(library_path()).is_file()
    # Loading it again is what C++-built extensions or plain torch users do: harmless.
    torch.ops.load_library(library_path())
    assert hasattr(torch.ops.pau, "forward")


def _cxx_compiler() -> str | None:
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed ({' '.join(command)}):\n{result.stdout[-4000:]}"
            f"\n{result.stderr[-4000:]}"
        )


@pytest.fixture(scope="session")
def example_binary(request, tmp_path_factory) -> Path:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("CMake is not installed (pip install cmake): cannot build examples/libtorch")
    compiler = _cxx_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX): cannot build examples/libtorch")
    prefix_path = torch.utils.cmake_prefix_path + ";" + cmake_prefix_path
    # A build directory configured for another torch/pau/compiler would keep
    # their paths in its CMakeCache: start afresh when any of them changes.
    key = "\n".join([prefix_path, torch.__version__, compiler, cmake])
    stamp_text = hashlib.sha256(key.encode()).hexdigest()
    cache = getattr(request.config, "cache", None)
    build = (
        cache.mkdir("libtorch-example")
        if cache is not None
        else tmp_path_factory.mktemp("libtorch-example")
    )
    build = Path(build)
    stamp = build / "pau-test-stamp"
    if not stamp.is_file() or stamp.read_text() != stamp_text:
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(
            [
                cmake,
                "-S",
                str(EXAMPLE),
                "-B",
                str(build),
                *generator,
                f"-DCMAKE_PREFIX_PATH={prefix_path}",
                f"-DCMAKE_CXX_COMPILER={compiler}",
                "-DCMAKE_BUILD_TYPE=Release",
            ],
            "configuring examples/libtorch",
        )
        stamp.write_text(stamp_text)
    _run([cmake, "--build", str(build)], "building examples/libtorch")  # no-op when current
    binary = build / "pau_example"
    assert binary.is_file(), f"the build produced no {binary}"
    return binary


def _load_make_model():
    spec = importlib.util.spec_from_file_location("make_model", EXAMPLE / "make_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=sorted(ACTIVATION_PARAMETERS))
def example_run(request, example_binary, tmp_path_factory) -> tuple[str, Path]:
    """Writes one of the example's models and its data, runs the C++ program on them.

    Returns the model's name in make_model.MODELS and the directory.
    """
    directory = tmp_path_factory.mktemp(f"libtorch-example-{request.param}")
    _load_make_model().make_example(str(directory), model=request.param)
    result = subprocess.run(
        [str(example_binary), str(directory), str(LR)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pau CPU kernels: " + pau._C.cpu_capability() in result.stdout
    return request.param, directory


def test_cpp_inference_matches_python(example_run):
    _, directory = example_run
    model = torch.jit.load(str(directory / "model.pt")).eval()
    x = torch.load(directory / "input.pt")
    with torch.no_grad():
        expected = model(x)
    output = torch.load(directory / "output.pt")
    # The same kernels run in both processes: equal up to float32 rounding
    # (convolutions may reduce in another order with other thread counts).
    torch.testing.assert_close(output, expected, rtol=1e-6, atol=1e-6)


def test_cpp_training_step_matches_python(example_run):
    model_name, directory = example_run
    model = torch.jit.load(str(directory / "model.pt")).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    x = torch.load(directory / "input.pt")
    target = torch.load(directory / "target.pt")
    torch.nn.functional.mse_loss(model(x), target).backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.sub_(parameter.grad, alpha=LR)
    after = dict(model.named_parameters())

    cpp = dict(torch.load(directory / "coefficients.pt"))
    expected_names = {n for n in after if n.endswith(ACTIVATION_PARAMETERS[model_name])}
    assert expected_names and set(cpp) == expected_names
    for name, coefficients in cpp.items():
        step_cpp = coefficients - before[name]
        step_python = after[name].detach() - before[name]
        assert step_python.abs().max() > 1e-6, f"{name}: the Python step did not move it"
        torch.testing.assert_close(step_cpp, step_python, rtol=1e-5, atol=1e-8, msg=name)


def test_cpp_double_backward_matches_python(example_run):
    """Double backward: create_graph=True through the C++ autograd kernels, in a C++ program."""
    model_name, directory = example_run
    path = directory / "penalty_gradients.pt"
    model = torch.jit.load(str(directory / "model.pt")).eval()
    x = torch.load(directory / "input.pt").requires_grad_()
    (grad_x,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    penalty = grad_x.pow(2).sum()
    suffixes = ACTIVATION_PARAMETERS[model_name]
    names = [n for n, _ in model.named_parameters() if n.endswith(suffixes)]
    params = dict(model.named_parameters())
    expected = dict(zip(names, torch.autograd.grad(penalty, [params[n] for n in names])))
    cpp = dict(torch.load(path))
    assert set(cpp) == set(names)
    assert any(expected[name].abs().max() > 0 for name in names)
    for name in names:
        torch.testing.assert_close(cpp[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)

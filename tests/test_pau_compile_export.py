"""torch.compile(fullgraph=True) and torch.export with PAU layers, including a
torch.export save/load round trip in a fresh process that only imports pau."""

from __future__ import annotations

from pathlib import Path

import pau
import pytest
import torch
from helpers.inputs import random_coefficients, random_x
from helpers.processes import run_python
from helpers.tolerances import compute_dtype
from torch import Tensor, nn


class Net(nn.Module):
    """Conv -> per-channel PAU -> conv -> layer-wise abs_sum PAU -> pooled (B, T, C) PAU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = pau.PAU(groups=8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.act2 = pau.PAU(degrees=(3, 2), variant="abs_sum", init="tanh")
        self.act3 = pau.PAU(variant="plain", init="swish", groups=3, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act2(self.conv2(self.act1(self.conv1(x))))
        tokens = h.flatten(2).transpose(1, 2)  # (B, H*W, C), non-contiguous
        return self.act3(tokens)


def _model_and_input(seed: int = 0) -> tuple[Net, Tensor]:
    torch.manual_seed(seed)
    model = Net()
    with torch.no_grad():  # move every group away from its init so groups differ
        for module in model.modules():
            if isinstance(module, pau.PAU):
                module.numerator.mul_(1 + 0.1 * torch.rand_like(module.numerator))
                module.denominator.mul_(1 + 0.1 * torch.rand_like(module.denominator))
    return model, torch.randn(2, 3, 6, 5)


def _grads(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    x = x.clone().requires_grad_()
    out = model(x)
    out.square().mean().backward()
    return out.detach(), [x.grad, *[p.grad for p in model.parameters()]]


def test_compile_fullgraph_forward_backward() -> None:
    """The whole net through AOTAutograd (fake kernels, autograd, backward op), no break."""
    torch._dynamo.reset()
    model, x = _model_and_input()
    eager_out, eager_grads = _grads(model, x)
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out, grads = _grads(compiled, x)
    # Same kernels; only the order of a few aten ops in the traced backward may differ.
    torch.testing.assert_close(out, eager_out, rtol=1e-6, atol=1e-7)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_compile_fullgraph_inductor() -> None:
    """The default backend (inductor), forward and backward, with a small model.

    Kept to PAU layers and elementwise ops: inductor compiles generated C++ for
    every fused kernel, which is slow on a 2-core machine.
    """
    torch._dynamo.reset()
    torch.manual_seed(5)
    model = nn.Sequential(
        pau.PAU(groups=4), pau.PAU(degrees=(3, 2), variant="abs_sum", init="tanh", dim=-1)
    )
    x = torch.randn(3, 4, 5)
    eager_out, eager_grads = _grads(model, x)
    model.zero_grad()
    out, grads = _grads(torch.compile(model, fullgraph=True), x)
    torch.testing.assert_close(out, eager_out, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_compile_dynamic_shapes_functional() -> None:
    """Symbolic sizes reach the fake kernel; no recompilation for a new batch size."""
    torch._dynamo.reset()

    def f(x: Tensor, num: Tensor, den: Tensor) -> Tensor:
        return torch.ops.pau.forward(x * 2, num, den, "safe", -1).sum(dim=-1)

    compiled = torch.compile(f, fullgraph=True, dynamic=True, backend="aot_eager")
    num, den = random_coefficients(4, (5, 4), "safe", torch.float32)
    for batch in (3, 5, 7):
        x = random_x((batch, 9, 8), torch.float32, seed=batch)
        torch.testing.assert_close(compiled(x, num, den), f(x, num, den), rtol=1e-6, atol=1e-6)


def test_compile_rejects_bad_groups_at_trace_time() -> None:
    """The fake kernel's checks run while tracing: a clear error, not a wrong result."""
    torch._dynamo.reset()
    num, den = random_coefficients(3, (5, 4), "safe", torch.float32)
    compiled = torch.compile(
        lambda x: torch.ops.pau.forward(x, num, den, "safe", 1), fullgraph=True, backend="eager"
    )
    with pytest.raises(Exception, match=r"not divisible by the number of groups \(3\)"):
        compiled(torch.randn(2, 4, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_export_keeps_the_operator(dtype: torch.dtype) -> None:
    model, x = _model_and_input(1)
    model = model.to(dtype)  # conv weights follow; PAU coefficients must stay float
    for module in model.modules():
        if isinstance(module, pau.PAU):
            module.float()
    x = x.to(dtype)
    exported = torch.export.export(model, (x,))
    targets = [n.target for n in exported.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.pau.forward.default) == 3
    torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=0)
    # Decompositions keep the custom operator as one node.
    decomposed = exported.run_decompositions()
    targets = [n.target for n in decomposed.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.pau.forward.default) == 3
    torch.testing.assert_close(decomposed.module()(x), model(x), rtol=0, atol=0)


def test_export_dynamic_batch() -> None:
    model, x = _model_and_input(2)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    for size in (1, 2, 5):
        other = torch.randn(size, 3, 6, 5)
        torch.testing.assert_close(exported.module()(other), model(other), rtol=0, atol=0)


def test_export_save_load_in_fresh_process(tmp_path: Path) -> None:
    model, x = _model_and_input(3)
    exported = torch.export.export(model, (x,))
    program = tmp_path / "model.pt2"
    torch.export.save(exported, program)
    data = tmp_path / "data.pt"
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, data)
    out = run_python(
        f"""
        import torch, pau
        program = torch.export.load({str(program)!r})
        data = torch.load({str(data)!r})
        y = program.module()(data["x"])
        torch.testing.assert_close(y, data["y"], rtol=0, atol=0)
        nodes = [n.target for n in program.graph.nodes if n.op == "call_function"]
        assert nodes.count(torch.ops.pau.forward.default) == 3, nodes
        print("export round trip ok")
        """
    )
    assert "export round trip ok" in out


def test_export_of_the_bare_operator_with_float64_coefficients() -> None:
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            num, den = random_coefficients(4, (8, 7), "safe", compute_dtype(torch.float64))
            self.num = nn.Parameter(num)
            self.den = nn.Parameter(den)

        def forward(self, x: Tensor) -> Tensor:
            return torch.ops.pau.forward(x, self.num, self.den, "safe", 1)

    module = Bare()
    x = random_x((2, 4, 7), torch.float32, seed=4)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), module(x), rtol=0, atol=0)

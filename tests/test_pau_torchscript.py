"""TorchScript: scripted and traced models with PAU layers train in-process, and after
save, load and run (forward and backward) in a fresh process that only imports torch and pau."""

from __future__ import annotations

from pathlib import Path

import pau
import pytest
import torch
from helpers.processes import run_python
from torch import Tensor, nn

# TorchScript is deprecated upstream but is what LibTorch deployments load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = pau.PAU(groups=6)
        self.act2 = pau.PAU(degrees=(3, 2), variant="abs_sum", init="tanh", dim=1)
        self.linear = nn.Linear(6, 4)
        self.act3 = pau.PAU(variant="plain", init="swish", groups=4, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act2(self.act1(self.conv(x)))
        return self.act3(self.linear(h.mean(dim=(2, 3))))


def _model_and_input() -> tuple[Net, Tensor]:
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, pau.PAU):
                module.numerator.mul_(1 + 0.1 * torch.rand_like(module.numerator))
                module.denominator.mul_(1 + 0.1 * torch.rand_like(module.denominator))
    return model, torch.randn(2, 3, 5, 4)


def _outputs_and_grads(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    model.zero_grad()
    x = x.clone().requires_grad_()
    y = model(x)
    y.square().sum().backward()
    return y.detach(), [x.grad] + [p.grad for p in model.parameters()]


def _convert(model: nn.Module, x: Tensor, how: str) -> torch.jit.ScriptModule:
    return torch.jit.script(model) if how == "script" else torch.jit.trace(model, (x,))


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_forward_backward_in_process(how: str) -> None:
    model, x = _model_and_input()
    want_y, want_grads = _outputs_and_grads(model, x)
    scripted = _convert(model, x, how)
    assert "pau::forward" in str(scripted.inlined_graph)
    y, grads = _outputs_and_grads(scripted, x)
    torch.testing.assert_close(y, want_y, rtol=0, atol=0)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_scripted_pau_module_alone() -> None:
    """A bare PAU scripts (its attributes are TorchScript types) and keeps its settings."""
    layer = pau.PAU(degrees=(4, 3), variant="abs_sum", groups=2, dim=-1)
    scripted = torch.jit.script(layer)
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(scripted(x), layer(x), rtol=0, atol=0)
    assert scripted.variant == "abs_sum" and scripted.dim == -1


def test_torchscript_save_load_in_fresh_process(tmp_path: Path) -> None:
    """Scripted and traced models saved here run forward and backward in a new process."""
    model, x = _model_and_input()
    want_y, want_grads = _outputs_and_grads(model, x)
    paths = {how: tmp_path / f"model_{how}.pt" for how in ("script", "trace")}
    for how, path in paths.items():
        _convert(model, x, how).save(str(path))
    data = tmp_path / "data.pt"
    torch.save({"x": x, "y": want_y, "grads": want_grads}, data)
    out = run_python(
        f"""
        import torch, pau
        data = torch.load({str(data)!r})
        for path in {[str(p) for p in paths.values()]!r}:
            model = torch.jit.load(path)
            x = data["x"].clone().requires_grad_()
            y = model(x)
            torch.testing.assert_close(y.detach(), data["y"], rtol=0, atol=0)
            y.square().sum().backward()
            grads = [x.grad] + [p.grad for p in model.parameters()]
            assert len(grads) == len(data["grads"])
            for got, want in zip(grads, data["grads"]):
                torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
            print("torchscript round trip ok", path)
        """
    )
    for path in paths.values():
        assert f"torchscript round trip ok {path}" in out

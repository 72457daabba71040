"""ONNX export of pau layers (pau.onnx) checked with onnx.checker and onnxruntime."""

from __future__ import annotations

import sys

import pau
import pau.onnx
import pytest
import torch
from pau.reference import VARIANTS
from torch import nn

_HINT = 'needs the ONNX extras (pip install "pau[onnx]")'
onnx = pytest.importorskip("onnx", reason=_HINT)
pytest.importorskip("onnxscript", reason=_HINT)
ort = pytest.importorskip("onnxruntime", reason=_HINT)


class Net(nn.Module):
    """One PAU on NCHW (dim=1), then one on NHWC (dim=-1), both with ``groups`` groups."""

    def __init__(self, variant: str, degrees: tuple[int, int], groups: int) -> None:
        super().__init__()
        self.act1 = pau.PAU(degrees, variant, groups=groups, dim=1)
        self.act2 = pau.PAU(degrees, variant, groups=groups, dim=-1)
        with torch.no_grad():
            for act in (self.act1, self.act2):  # make the groups differ
                act.numerator.add_(0.05 * torch.randn_like(act.numerator))
                act.denominator.add_(0.05 * torch.randn_like(act.denominator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.act1(x).permute(0, 2, 3, 1))


def export(net: nn.Module, x: torch.Tensor, **kwargs):
    program = torch.onnx.export(
        net,
        (x,),
        dynamo=True,
        custom_translation_table=pau.onnx.translation_table(),
        verbose=False,
        **kwargs,
    )
    model = program.model_proto
    onnx.checker.check_model(model, full_check=True)
    return model


def run_onnxruntime(model, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(y)


@pytest.mark.parametrize("groups", ["1", "C"], ids=["G=1", "G=C"])
@pytest.mark.parametrize("degrees", [(5, 4), (3, 2)], ids=["5,4", "3,2"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_onnxruntime_matches_pytorch(variant, degrees, groups):
    torch.manual_seed(0)
    channels = 6
    net = Net(variant, degrees, 1 if groups == "1" else channels).eval()
    x = 3 * torch.randn(2, channels, 5, channels)  # beyond [-1, 1], where Q matters
    model = export(net, x)
    # Standard operators only: no pau domain or custom-op library needed.
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(run_onnxruntime(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "dtype,tolerance", [(torch.float64, 1e-12), (torch.float16, 2e-3)], ids=["float64", "float16"]
)
def test_other_input_dtypes(dtype, tolerance):
    # float64 computes in float64, float16 in float32 and rounds once, as the operator does.
    torch.manual_seed(2)
    net = Net("abs_sum", (5, 4), groups=6).eval()
    x = (2 * torch.randn(2, 6, 3, 6)).to(dtype)
    model = export(net, x)
    with torch.no_grad():
        expected = net(x)
    y = run_onnxruntime(model, x)
    assert y.dtype == dtype
    torch.testing.assert_close(y, expected, rtol=tolerance, atol=tolerance)


def test_dynamic_shapes_and_groups_between_1_and_c():
    torch.manual_seed(1)
    net = Net("safe", (5, 4), groups=3).eval()
    x = torch.randn(2, 6, 4, 6)
    batch, height = torch.export.Dim("batch"), torch.export.Dim("height")
    model = export(net, x, dynamic_shapes=({0: batch, 2: height},))
    other = 2 * torch.randn(5, 6, 7, 6)  # another batch size and height
    with torch.no_grad():
        expected = net(other)
    torch.testing.assert_close(run_onnxruntime(model, other), expected, rtol=1e-5, atol=1e-5)


def test_rpau_in_eval_mode_exports_as_pau():
    # RPAU is PAU in eval mode (pau::forward); its training-mode noise has no
    # ONNX translation on purpose.
    torch.manual_seed(3)
    net = nn.Sequential(pau.RPAU(variant="safe", groups=6, dim=1)).eval()
    x = 2 * torch.randn(2, 6, 3, 3)
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(run_onnxruntime(export(net, x), x), expected, rtol=1e-5, atol=1e-5)


def test_rpau_in_training_mode_says_to_call_eval():
    # The exporter used to report only "No ONNX function found for pau.rpau_forward".
    net = nn.Sequential(pau.RPAU()).train()
    with pytest.raises(Exception, match=r"RPAU in training mode .* call model.eval\(\)"):
        export(net, torch.randn(2, 3))


def test_export_without_the_translation_table_names_the_operator():
    # torch's own error: the README's ONNX section quotes it and says to pass
    # pau.onnx.translation_table().
    with pytest.raises(Exception, match=r"No ONNX function found for .*pau\.forward"):
        torch.onnx.export(
            nn.Sequential(pau.PAU()).eval(), (torch.randn(2, 3),), dynamo=True, verbose=False
        )


class PwluNet(nn.Module):
    """A PWLU on NCHW (dim=1), then one on NHWC (dim=-1), both with ``groups`` groups."""

    def __init__(self, num_points: int, groups: int) -> None:
        super().__init__()
        self.act1 = pau.PWLU(num_points, groups=groups, dim=1)
        self.act2 = pau.PWLU(num_points, groups=groups, dim=-1, init="leaky_relu")
        with torch.no_grad():
            for act in (self.act1, self.act2):  # make the groups and pieces differ
                act.points.add_(0.2 * torch.randn_like(act.points))
                act.bounds.add_(0.2 * torch.rand_like(act.bounds) - 0.1)
                act.slopes.add_(0.1 * torch.randn_like(act.slopes))
            self.act1.slopes[0] = 0.0  # a flat outer piece: +-inf give its end point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(self.act1(x).permute(0, 2, 3, 1))


def pwlu_input(channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inside and outside the bounds, on the bounds, and NaN and +-inf."""
    x = 3 * torch.randn(2, channels, 5, channels)
    x[0, :, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    x[0, :, 1, :2] = torch.tensor([-3.0, 3.0])  # the initial bounds (before the shifts)
    return x.to(dtype)


def assert_pwlu_close(y: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    assert y.dtype == expected.dtype
    assert torch.equal(y.isnan(), expected.isnan())
    torch.testing.assert_close(
        y.nan_to_num(0), expected.nan_to_num(0), rtol=tolerance, atol=tolerance
    )


@pytest.mark.parametrize("groups", ["1", "C"], ids=["G=1", "G=C"])
@pytest.mark.parametrize("num_points", [1, 16, 64])
def test_pwlu_onnxruntime_matches_pytorch(num_points, groups):
    torch.manual_seed(4)
    channels = 6
    net = PwluNet(num_points, 1 if groups == "1" else channels).eval()
    x = pwlu_input(channels)
    model = export(net, x)
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    with torch.no_grad():
        expected = net(x)
    assert_pwlu_close(run_onnxruntime(model, x), expected, 1e-5)


@pytest.mark.parametrize(
    "dtype,tolerance", [(torch.float64, 1e-12), (torch.float16, 2e-3)], ids=["float64", "float16"]
)
def test_pwlu_other_input_dtypes(dtype, tolerance):
    torch.manual_seed(5)
    net = PwluNet(16, groups=6).eval()
    x = pwlu_input(6, dtype)
    with torch.no_grad():
        expected = net(x)
    assert_pwlu_close(run_onnxruntime(export(net, x), x), expected, tolerance)


def test_pwlu_dynamic_shapes_and_groups_between_1_and_c():
    torch.manual_seed(6)
    net = PwluNet(16, groups=3).eval()
    x = pwlu_input(6)
    batch, height = torch.export.Dim("batch"), torch.export.Dim("height")
    model = export(net, x, dynamic_shapes=({0: batch, 2: height},))
    other = 3 * torch.randn(5, 6, 7, 6)
    with torch.no_grad():
        expected = net(other)
    assert_pwlu_close(run_onnxruntime(model, other), expected, 1e-5)


def test_translation_table_names_every_pau_operator_overload():
    table = pau.onnx.translation_table()
    assert torch.ops.pau.forward.default in table
    assert torch.ops.pau.pwlu_forward.default in table
    assert all(callable(fn) for fn in table.values())


def test_missing_onnxscript_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(ImportError, match=r"pau\[onnx\]"):
        pau.onnx.translation_table()

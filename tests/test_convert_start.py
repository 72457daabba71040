"""pau.convert with example_input: how close the converted model starts to the original.

Each replaced activation's input range is recorded, the new unit's start error on
that range is reported, and the converted model's output is compared with the
original's (cosine); ``init="match:<fit>"`` picks the presets of another fit. The
models are small local ones (torchvision does not import with this torch).
"""

from __future__ import annotations

import math

import pau
import pytest
import torch
import torch.nn.functional as F
from torch import nn

f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4),
    )


def example() -> torch.Tensor:
    # Scaled so that the first ReLU's inputs go well beyond [-3, 3].
    return 4 * torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def recorded_ranges(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float, float]]:
    """(min, max) of each activation's input, recorded independently of pau."""
    ranges = {}

    def hook(name):
        def record(module, args):
            ranges[name] = (float(args[0].min()), float(args[0].max()))
        return record

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, (nn.ReLU, nn.ReLU6, nn.GELU))]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return ranges


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.double().reshape(1, -1), b.double().reshape(1, -1)))


def test_example_input_records_each_input_range_and_the_start_error_on_it():
    model = small_cnn().eval()
    x = example()
    ranges = recorded_ranges(model, x)
    targets = {"2": torch.relu, "4": F.relu6, "8": F.gelu}
    converted, summary = pau.convert(model, example_input=x)
    assert [r.name for r in summary] == ["2", "4", "8"]
    for r in summary:
        lo, hi = ranges[r.name]
        assert r.input_range == pytest.approx((lo, hi), rel=1e-6, abs=1e-6)
        # The unit itself, in float64, against the replaced function on the range.
        grid = torch.cat([torch.linspace(lo, hi, 6001, dtype=f64), torch.zeros(1, dtype=f64)])
        unit = r.module.to(f64)
        with torch.no_grad():
            got = unit(grid.reshape(1, 1, -1)).reshape(-1)
        unit.float()
        want = targets[r.name](grid)
        error = float((got - want).abs().max())
        assert r.range_max_error == pytest.approx(error, rel=1e-6, abs=1e-12)
        assert r.range_rel_error == pytest.approx(error / float(want.abs().max()), rel=1e-6)
    # The first ReLU sees [-7.7, 8.1]: the [-3, 3] number hides most of its error.
    first = summary.replacements[0]
    assert first.input_range[0] < -3 and first.input_range[1] > 3
    assert first.range_max_error > 10 * first.max_error


def test_output_cosine_against_the_original_on_example_input():
    model = small_cnn().eval()
    x = example()
    with torch.no_grad():
        want = model(x)
    converted, summary = pau.convert(model, example_input=x)
    with torch.no_grad():
        got = converted.eval()(x)
    assert summary.output_cosine == pytest.approx(cosine(want, got), abs=1e-12)
    rel = float((got.double() - want.double()).norm() / want.double().norm())
    assert summary.output_rel_error == pytest.approx(rel, rel=1e-9)
    assert summary.output_rel_error > 0  # the relu preset is approximate
    text = str(summary)
    assert "input range" in text and "rel err (range)" in text
    assert f"cosine {summary.output_cosine:.6f}" in text


def test_exact_conversion_reports_cosine_one_and_zero_error():
    # PWLU matches ReLU exactly: nothing to report but agreement.
    model = small_cnn().eval()
    _, summary = pau.convert(model, [nn.ReLU], to="pwlu", example_input=example())
    assert summary.output_cosine == pytest.approx(1.0, abs=1e-9)
    assert summary.output_rel_error < 1e-6
    assert summary.replacements[0].range_max_error < 1e-12


def test_without_example_input_the_report_stays_as_before():
    _, summary = pau.convert(small_cnn())
    assert summary.output_cosine is None and summary.output_rel_error is None
    assert all(r.input_range is None and r.range_max_error is None for r in summary)
    assert "input range" not in str(summary) and "cosine" not in str(summary)


def test_example_input_leaves_modes_and_batchnorm_statistics_alone():
    model = small_cnn().train()
    model[4].eval()  # a mixed-mode model: every module keeps its own mode
    bn = model[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    converted, _ = pau.convert(model, example_input=example(), inplace=True)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]
    assert converted.training and converted[1].training
    assert converted[2].training and not converted[4].training


def test_tuple_and_dict_outputs_are_compared_whole():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.a, self.b = nn.Linear(8, 2), nn.Linear(8, 3)

        def forward(self, x):
            h = self.body(x)
            return {"a": self.a(h), "rest": (self.b(h), torch.arange(3))}

    torch.manual_seed(0)
    model = TwoHeads()
    x = torch.randn(5, 4)
    with torch.no_grad():
        out = model(x)
    converted, summary = pau.convert(model, example_input=x)
    with torch.no_grad():
        new = converted(x)
    want = torch.cat([out["a"].reshape(-1), out["rest"][0].reshape(-1)])
    got = torch.cat([new["a"].reshape(-1), new["rest"][0].reshape(-1)])
    assert summary.output_cosine == pytest.approx(cosine(want, got), abs=1e-12)


def test_match_with_a_fit_picks_that_fits_presets():
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU())
    _, summary = pau.convert(model, init="match:wide")
    assert [r.init for r in summary] == ["relu:wide", "gelu:wide"]
    for r in summary:
        assert r.module.init == r.init
        # F(0) = a_0 = f(0) exactly in the exact-at-0 fits.
        assert float(r.module.numerator[0, 0].detach()) == 0.0
    _, summary = pau.convert(model, init="relu:exact0", to="rpau")
    assert [r.init for r in summary] == ["relu:exact0", "relu:exact0"]


def test_wide_presets_start_closer_where_inputs_go_beyond_three():
    # Inputs spread over [-9, 9] straight into the activation.
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Linear(32, 8)).eval()
    x = 9 * (2 * torch.rand(64, 32) - 1)
    _, default = pau.convert(model, example_input=x)
    _, wide = pau.convert(model, init="match:wide", example_input=x)
    assert wide.replacements[0].range_max_error < 0.2 * default.replacements[0].range_max_error
    assert 1 - wide.output_cosine < 0.2 * (1 - default.output_cosine)


@pytest.mark.parametrize("init", ["match", "match:wide"])
def test_mean_error_over_the_inputs(init):
    # The inputs go straight into the activation: the exact mean is at hand.
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(), nn.Linear(32, 8)).eval()
    x = torch.randn(256, 32) * torch.linspace(0.1, 4, 32)
    _, summary = pau.convert(model, init=init, example_input=x)
    r = summary.replacements[0]
    grid = x.double().reshape(-1)
    with torch.no_grad():
        exact = float((r.module.double()(grid.reshape(1, 1, -1)).reshape(-1)
                       - torch.relu(grid)).abs().mean())
    assert r.input_mean_error == pytest.approx(exact, rel=0.05)
    # Most inputs are near 0, where a unit errs less than at the range's ends.
    assert r.input_mean_error < 0.5 * r.range_max_error
    assert "mean err (inputs)" in str(summary)


@pytest.mark.parametrize("init", ["match:bogus", "match:", "relu:bogus"])
def test_unknown_fit_in_init_is_a_clear_error(init):
    with pytest.raises(ValueError, match=r"pau\.convert: unknown"):
        pau.convert(small_cnn(), init=init)


def test_nonfinite_inputs_are_left_out_of_the_range():
    model = nn.Sequential(nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.tensor([[1.0, -2.0, math.inf], [0.5, math.nan, 0.25]])
    _, summary = pau.convert(model, example_input=x)
    assert summary.replacements[0].input_range == (-2.0, 1.0)

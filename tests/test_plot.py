"""pau.plot and pau.record_inputs: headless PNG/SVG files for PAU, RPAU, PWLU and
whole models; the drawn curves are the units' functions, the dashed one their
initial function, the RPAU band the spread of its coefficient noise and the
histogram the inputs recorded; the running histogram is exact; bad input fails clearly."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pau
import pytest
import torch
import torch.nn.functional as F
from pau import presets
from pau.plot import initial_parameters
from pau.record import InputHistogram
from torch import nn

pytest.importorskip("matplotlib")
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 1),
        nn.GELU(),
        nn.Flatten(),
        nn.Linear(64, 8),
        nn.ReLU6(),
    )


def curves(ax):
    """(label, x, y) of every line in ``ax``."""
    return [(line.get_label(), line.get_xdata(), line.get_ydata()) for line in ax.get_lines()]


def main_axes(fig):
    """The panels (not the histogram twins, which have no lines)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]


def check_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    return data


def check_svg(path):
    text = path.read_text()
    assert "<svg" in text and "</svg>" in text and len(text) > 5000
    return text


# ----------------------------------------------------------------------------
# Single units
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pau", "rpau", "pwlu"])
def test_unit_png_and_svg_with_histogram(kind, tmp_path):
    torch.manual_seed(0)
    unit = {
        "pau": lambda: pau.PAU(init="gelu"),
        "rpau": lambda: pau.RPAU(init="relu", alpha=0.1),
        "pwlu": lambda: pau.PWLU(num_points=8),
    }[kind]()
    x = 1.5 * torch.randn(4, 1, 32, 32)
    with pau.record_inputs(unit) as inputs:
        unit(x)
    fig = pau.plot(unit, path=tmp_path / f"{kind}.png")
    check_png(tmp_path / f"{kind}.png")
    pau.plot(unit, inputs=inputs, path=tmp_path / f"{kind}.svg")
    check_svg(tmp_path / f"{kind}.svg")

    (ax,) = main_axes(fig)
    lines = curves(ax)
    learned = [c for c in lines if c[0] == "learned"]
    initial = [c for c in lines if c[0].startswith("initial")]
    assert len(learned) == 1 and len(initial) == 1
    _, xs, ys = learned[0]
    xs_t = torch.as_tensor(xs, dtype=torch.float32)
    with torch.no_grad():
        expected = unit.eval()(xs_t.reshape(1, 1, -1))
    torch.testing.assert_close(
        torch.as_tensor(ys, dtype=torch.float32), expected.reshape(-1), atol=1e-5, rtol=1e-5
    )
    # The default range covers the recorded inputs (0.1%..99.9% quantiles, widened).
    assert xs[0] < float(torch.quantile(x, 0.01)) and xs[-1] > float(torch.quantile(x, 0.99))
    assert xs[-1] < float(x.max()) + 3
    # The histogram sits on a twin axes and integrates to 1.
    steps = [p for a in fig.axes for p in a.patches if isinstance(p, StepPatch)]
    assert len(steps) == 1
    data = steps[0].get_data()
    values, edges = data.values, data.edges
    assert sum(v * (edges[1] - edges[0]) for v in values) == pytest.approx(1.0, rel=1e-9)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == (1 if kind == "rpau" else 0)


def test_initial_function_is_dashed_after_training():
    torch.manual_seed(1)
    unit = pau.PAU(init="tanh")
    opt = torch.optim.SGD(unit.parameters(), lr=0.5)
    for _ in range(5):
        x = torch.randn(64, 1)
        (unit(x) - F.relu(x)).square().mean().backward()
        opt.step()
        opt.zero_grad()
    fig = pau.plot(unit, x_range=(-2, 2), inputs=False)
    lines = dict((label, (xs, ys)) for label, xs, ys in curves(main_axes(fig)[0]))
    xs, ys = lines["initial (tanh)"]
    assert xs[0] == -2 and xs[-1] == 2
    torch.testing.assert_close(
        torch.as_tensor(ys),
        torch.tanh(torch.as_tensor(xs)),
        atol=presets.info("tanh")["max_error"] * 1.01,
        rtol=0,
    )
    learned = torch.as_tensor(lines["learned"][1])
    assert (learned - torch.as_tensor(ys)).abs().max() > 0.05  # it did move
    dashed = [ln for ln in main_axes(fig)[0].get_lines() if ln.get_label() == "initial (tanh)"]
    assert dashed[0].get_linestyle() == "--"


def test_rpau_band_matches_noise_model():
    unit = pau.RPAU(init="identity", degrees=(3, 2), alpha=0.2)
    fig = pau.plot(unit, x_range=(1, 2), inputs=False)
    (band,) = [c for c in main_axes(fig)[0].collections if isinstance(c, PolyCollection)]
    vertices = band.get_paths()[0].vertices
    # Identity: F(x) = a_1 x, a_1 = 1 perturbed by up to 20%: the band at x is
    # about [0.8 x, 1.2 x] (256 draws get close to the ends).
    at_two = vertices[abs(vertices[:, 0] - 2) < 1e-9][:, 1]
    assert at_two.min() == pytest.approx(1.6, abs=0.02) and at_two.max() == pytest.approx(
        2.4, abs=0.02
    )
    assert at_two.min() >= 1.6 - 1e-9 and at_two.max() <= 2.4 + 1e-9
    none = pau.plot(pau.RPAU(init="relu", alpha=0.0), inputs=False)
    assert not [c for c in main_axes(none)[0].collections if isinstance(c, PolyCollection)]


def test_groups_get_one_curve_each_up_to_max_groups():
    unit = pau.PWLU(num_points=4, groups=3, dim=1)
    with torch.no_grad():
        unit.points[1] *= 2
        unit.points[2] *= -1
    fig = pau.plot(unit, inputs=False)
    labels = [label for label, _, _ in curves(main_axes(fig)[0]) if label.startswith("group")]
    assert labels == ["group 0", "group 1", "group 2"]
    many = pau.PAU(init="relu", groups=32)
    fig = pau.plot(many, max_groups=5, inputs=False)
    solid = [
        c
        for c in main_axes(fig)[0].get_lines()
        if c.get_linestyle() == "-" and len(c.get_xdata()) > 100
    ]
    assert len(solid) == 5
    assert any(c[0] == "5 of 32 groups" for c in curves(main_axes(fig)[0]))


# ----------------------------------------------------------------------------
# Whole models
# ----------------------------------------------------------------------------


def test_converted_model_one_panel_per_unit(tmp_path):
    torch.manual_seed(2)
    for to in ("pau", "rpau", "pwlu"):
        kwargs = {"alpha": 0.05} if to == "rpau" else {}
        model, summary = pau.convert(small_model(), to=to, groups="channel", **kwargs)
        with pau.record_inputs(model) as inputs:
            model(torch.randn(8, 3, 4, 4))
        assert sorted(inputs) == sorted(r.name for r in summary)
        fig = pau.plot(model, path=tmp_path / f"{to}.png")  # latest recording, found alone
        check_png(tmp_path / f"{to}.png")
        panels = main_axes(fig)
        assert len(panels) == len(summary) == 3
        titles = [ax.get_title() for ax in panels]
        assert [t.split(":")[0] for t in titles] == [r.name for r in summary]
        steps = [p for a in fig.axes for p in a.patches if isinstance(p, StepPatch)]
        assert len(steps) == 3
        for ax, r in zip(panels, summary):
            # The dashed initial function is what convert started from: the
            # replaced activation within its recorded error.
            init = [c for c in curves(ax) if c[0].startswith("initial")]
            assert len(init) == 1, (to, r.name)
    svg = tmp_path / "model.svg"
    pau.plot(model, path=svg, title="converted")
    assert "converted" in check_svg(svg)


def test_given_axes_and_too_few():
    from matplotlib.figure import Figure

    model, summary = pau.convert(small_model())
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert pau.plot(model, ax=list(axes), inputs=False) is fig
    assert all(ax.get_lines() for ax in axes)
    with pytest.raises(ValueError, match="3 units to draw but 2 Axes"):
        pau.plot(model, ax=list(axes[:2]))
    single = Figure().subplots()
    assert pau.plot(summary.replacements[0].module, ax=single).axes[0] is single


def test_headless_in_a_fresh_process(tmp_path):
    # No display, no configured backend: plot must neither need nor open a window.
    script = textwrap.dedent(f"""
        import os, sys
        os.environ.pop("DISPLAY", None)
        os.environ.pop("MPLBACKEND", None)
        import torch, pau
        model, _ = pau.convert(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.GELU()))
        with pau.record_inputs(model):
            model(torch.randn(16, 2))
        pau.plot(model, path={str(tmp_path / "fresh.png")!r})
        assert "matplotlib.pyplot" not in sys.modules, "plot imported pyplot"
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    check_png(tmp_path / "fresh.png")


# ----------------------------------------------------------------------------
# record_inputs
# ----------------------------------------------------------------------------


def test_running_histogram_is_exact_across_range_extensions():
    torch.manual_seed(3)
    hist = InputHistogram(bins=16)
    batches = [torch.rand(1000) * 2 - 1, torch.randn(1000) * 5, torch.rand(500) * 40 - 7]
    for b in batches:
        hist.update(b)
    data = torch.cat(batches).double()
    assert hist.lo <= float(data.min()) and hist.hi >= float(data.max())
    assert hist.hi - hist.lo > 40  # doubled at least twice
    expected = torch.histogram(data, bins=hist.edges)[0]
    # Only values on a bin edge (measure zero here) could land differently.
    assert torch.equal(hist.counts.cpu(), expected)
    assert hist.total == 2500 and hist.counts.sum() == 2500
    assert hist.mean == pytest.approx(float(data.mean()), rel=1e-9)
    assert hist.std == pytest.approx(float(data.std(correction=0)), rel=1e-9)
    assert hist.min == float(data.min()) and hist.max == float(data.max())
    assert hist.quantile(0.5) == pytest.approx(float(data.median()), abs=(hist.hi - hist.lo) / 16)


def test_histogram_skips_nonfinite_and_handles_halves():
    hist = InputHistogram(bins=8)
    hist.update(torch.tensor([1.0, float("nan"), 2.0, float("inf"), 3.0], dtype=torch.float16))
    assert hist.total == 3 and hist.nonfinite == 2 and hist.counts.sum() == 3
    hist.update(torch.empty(0))
    assert hist.total == 3
    constant = InputHistogram(bins=8)
    constant.update(torch.full((10,), 0.5))
    assert constant.lo < 0.5 < constant.hi and constant.counts.sum() == 10
    with pytest.raises(ValueError, match="even int"):
        InputHistogram(bins=7)


def test_recorder_hooks_and_lookup():
    model, summary = pau.convert(small_model())
    recorder = pau.record_inputs(model, bins=32)
    x = torch.randn(2, 3, 4, 4)
    model(x)
    model(x)
    first = summary.replacements[0]
    per_call = 2 * 4 * 4 * 4  # the first unit sees the (2, 4, 4, 4) conv output
    assert recorder[first.name].total == 2 * per_call
    assert recorder[first.module] is recorder[first.name]
    recorder.remove()
    model(x)
    assert recorder[first.name].total == 2 * per_call
    # Recording the original activations before conversion works too.
    plain = small_model()
    with pau.record_inputs(plain, types=(nn.ReLU, nn.GELU)) as before:
        plain(x)
    assert sorted(before) == ["2", "4"]  # ReLU6 is a Hardtanh, not a ReLU
    with pytest.raises(ValueError, match="no module of type PAU, PWLU"):
        pau.record_inputs(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        pau.record_inputs("model")


def test_recorder_reads_as_a_mapping_of_names():
    model, summary = pau.convert(small_model())
    with pau.record_inputs(model, bins=32) as recorder:
        model(torch.randn(2, 3, 4, 4))
    names = [r.name for r in summary]
    assert list(recorder.keys()) == list(recorder) == names
    assert [name for name, _ in recorder.items()] == names
    assert all(hist is recorder[name] for name, hist in recorder.items())
    assert list(recorder.values()) == [recorder[name] for name in names]
    assert dict(recorder.items()) == recorder.histograms
    assert names[0] in recorder and summary.replacements[0].module in recorder
    assert "nothing" not in recorder and nn.ReLU() not in recorder


def test_initial_parameters_recovery():
    unit = pau.PAU(init="relu", degrees=(3, 2))
    start = initial_parameters(unit)
    num, den = presets.coefficients("relu", (3, 2), "safe")
    assert torch.equal(start["numerator"][0], num) and torch.equal(start["denominator"][0], den)
    assert initial_parameters(pau.PAU(init=([0.0, 1.0], [0.5]), degrees=(1, 1))) is None
    pw = pau.PWLU(init="identity", num_points=4)
    assert torch.equal(
        initial_parameters(pw)["points"][0], torch.linspace(-3, 3, 5, dtype=torch.float64)
    )


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


def test_bad_input():
    unit = pau.PAU()
    with pytest.raises(TypeError, match="expected a PAU/RPAU/PWLU or a model"):
        pau.plot(torch.randn(3))
    with pytest.raises(ValueError, match="no PAU, RPAU or PWLU module found in Linear"):
        pau.plot(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="x_range must be finite with lo < hi"):
        pau.plot(unit, x_range=(1, -1))
    with pytest.raises(ValueError, match="x_range must be a pair"):
        pau.plot(unit, x_range=3)
    with pytest.raises(ValueError, match="max_groups must be an int >= 1"):
        pau.plot(unit, max_groups=0)
    with pytest.raises(TypeError, match="inputs must be an InputRecorder"):
        pau.plot(unit, inputs={"a": 1})


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pau\[plot\]"):
        pau.plot(pau.PAU())


def test_plot_needs_no_histogram_or_initial():
    unit = pau.PAU(init=([0.0, 1.0, 0.5], [0.1]), degrees=(2, 1))
    fig = pau.plot(unit, inputs=False, initial=True)
    labels = [c[0] for c in curves(main_axes(fig)[0]) if not c[0].startswith("_")]
    assert labels == ["learned"]  # custom init: no initial function to draw
    assert math.isclose(main_axes(fig)[0].get_xlim()[0], -3.0)

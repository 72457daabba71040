"""pau.convert: activations of small CNNs and a transformer block become PAU / RPAU /
PWLU units that start as the replaced function (within the preset's recorded fit
error), train, infer their channel counts, report what they did, and reject bad input.

torchvision is not needed: the models below are local equivalents of ResNet-18's
basic blocks (one ReLU module called twice per block), MobileNetV2's inverted
residuals (ReLU6) and a pre-norm transformer block (GELU); the real torchvision
models are checked too when torchvision is installed.
"""

from __future__ import annotations

import sys
import warnings

import pau
import pytest
import torch
import torch.nn.functional as F
from pau import presets
from pau.convert import DEFAULT_ACTIVATIONS, ConversionSummary
from torch import nn

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet basic block as torchvision writes it: ``self.relu`` is used twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def conv_bn_relu6(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            cin,
            cout,
            3 if groups > 1 or stride > 1 else 1,
            stride,
            1 if groups > 1 or stride > 1 else 0,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            conv_bn_relu6(cin, hidden),
            conv_bn_relu6(hidden, hidden, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TinyMobileNetV2(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu6(3, 8, 2),
            InvertedResidual(8, 8, 1, 2),
            InvertedResidual(8, 12, 2, 3),
            InvertedResidual(12, 12, 1, 3),
            conv_bn_relu6(12, 32),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class TransformerBlock(nn.Module):
    def __init__(self, d: int = 16, heads: int = 2, hidden: int = 32) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Functional(nn.Module):
    """Only functional activations, in all the spellings fx records."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 12)
        self.fc3 = nn.Linear(12, 4)

    def forward(self, x):
        x = F.relu(self.conv(x))  # F.relu
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = torch.relu(self.fc1(x))  # torch.relu
        x = F.gelu(self.fc2(x), approximate="tanh")
        x = F.leaky_relu(x, 0.2)
        return self.fc3(x).relu()  # Tensor.relu


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            x = x * 2
        return F.relu(self.act(self.fc(x)))


def count(model: nn.Module, types) -> int:
    return sum(isinstance(m, types) for m in model.modules())


def convert_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pau.convert(*args, **kwargs)


# ----------------------------------------------------------------------------
# Close to the original at init
# ----------------------------------------------------------------------------


def check_units_match(model: nn.Module, summary: ConversionSummary, x, targets) -> int:
    """Every replacement, fed the inputs it sees inside ``model``, stays within the
    preset's recorded max error of the function it replaced, for inputs in [-3, 3].

    ``targets`` maps a replacement name to the replaced function. Returns how
    many input values inside [-3, 3] were checked.
    """
    seen = {}

    def keeper(name):
        def hook(module, args, out):  # the first call (a shared unit runs more than once)
            seen.setdefault(name, (args[0].detach(), out.detach()))

        return hook

    hooks = [r.module.register_forward_hook(keeper(r.name)) for r in summary]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    checked = 0
    for r in summary:
        xin, out = seen[r.name]
        inside = xin.abs() <= 3
        expected = targets[r.name](xin.double())
        err = (out.double() - expected)[inside].abs().max().item()
        info = presets.info(r.init, r.module.degrees, r.module.variant)
        # float32 evaluation adds rounding on top of the float64 fit error.
        assert err <= info["max_error"] + 1e-5, (r.name, err, info["max_error"])
        assert r.max_error == pytest.approx(info["max_error"], rel=0.05, abs=1e-6)
        checked += int(inside.sum())
    return checked


def test_resnet_every_relu_replaced_and_close_to_relu():
    torch.manual_seed(0)
    model = TinyResNet()
    relus = count(model, nn.ReLU)
    converted, summary = pau.convert(model)
    assert relus == 5
    assert len(summary) == relus
    assert count(converted, nn.ReLU) == 0
    assert count(converted, pau.PAU) == relus
    assert count(model, nn.ReLU) == relus  # not inplace: the original is untouched
    assert summary.counts() == {"ReLU": 5}
    x = torch.randn(2, 3, 16, 16)
    checked = check_units_match(converted, summary, x, {r.name: torch.relu for r in summary})
    assert checked > 1000
    assert all(r.init == "relu" and r.groups == 1 and r.module.degrees == (5, 4) for r in summary)


def test_resnet_shared_relu_note():
    converted, summary = pau.convert(TinyResNet())
    # The block's one ReLU module runs twice: the note says the replacement is shared.
    notes = "\n".join(summary.notes)
    assert "layer1.0.relu" in notes and "2 times" in notes
    assert converted.layer1[0].relu is summary.replacements[1].module


def test_mobilenet_relu6_to_pau_channel():
    torch.manual_seed(1)
    model = TinyMobileNetV2()
    relu6 = count(model, nn.ReLU6)
    with warnings.catch_warnings():
        # ReLU6 starts exactly as well as ReLU's preset: a note, no warning.
        warnings.simplefilter("error")
        converted, summary = pau.convert(model, groups="channel")
    assert relu6 == 8 and len(summary) == relu6 and count(converted, nn.ReLU6) == 0
    for r in summary:
        assert "ReLU6" in r.original and "ReLU6 equals ReLU" in r.note
        # The channel count is the out_channels of the conv two modules before.
        conv = converted.get_submodule(r.name.rsplit(".", 1)[0])[0]
        assert r.channels == conv.out_channels == r.groups
        assert r.module.numerator.shape == (conv.out_channels, 6)
        assert r.module.denominator.shape == (conv.out_channels, 4)
        assert r.module.dim == 1
    x = torch.randn(2, 3, 16, 16)
    assert converted(x).shape == (2, 10)
    check_units_match(converted, summary, x, {r.name: F.relu6 for r in summary})


def test_transformer_block_gelu_whole_output_close():
    torch.manual_seed(2)
    block = TransformerBlock().eval()
    x = torch.randn(3, 5, 16)
    converted, summary = pau.convert(block, groups="channel")
    assert len(summary) == 1 and summary.replacements[0].name == "mlp.1"
    unit = converted.mlp[1]
    assert isinstance(unit, pau.PAU) and unit.dim == -1 and unit.groups == 32
    check_units_match(converted, summary, x, {"mlp.1": F.gelu})
    # The whole block: the preset's 9e-4 error, through one Linear(32, 16).
    with torch.no_grad():
        diff = (converted.eval()(x) - block(x)).abs().max().item()
    bound = presets.info("gelu")["max_error"] * block.mlp[2].weight.abs().sum(1).max().item()
    assert 0 < diff <= bound


def test_gradients_reach_every_new_parameter():
    torch.manual_seed(3)
    for to in ("pau", "rpau", "pwlu"):
        converted, summary = convert_quietly(TinyMobileNetV2(), to=to, groups="channel")
        converted.train()
        loss = converted(torch.randn(4, 3, 16, 16)).square().mean()
        loss.backward()
        params = [p for r in summary for p in r.module.parameters()]
        assert len(params) == len(summary) * (2 if to != "pwlu" else 3)
        for p in params:
            assert p.grad is not None and p.grad.abs().sum() > 0, to


def test_training_step_changes_the_units():
    torch.manual_seed(4)
    converted, summary = pau.convert(TransformerBlock())
    unit = summary.replacements[0].module
    before = unit.numerator.detach().clone()
    opt = torch.optim.SGD(converted.parameters(), lr=0.1)
    converted(torch.randn(2, 4, 16)).square().mean().backward()
    opt.step()
    assert not torch.equal(before, unit.numerator.detach())


# ----------------------------------------------------------------------------
# Targets and inits
# ----------------------------------------------------------------------------


def test_rpau_alpha_and_eval_equals_pau():
    torch.manual_seed(5)
    model = TinyResNet().eval()
    randomized, summary = pau.convert(model, to="rpau", alpha=0.3)
    plain, _ = pau.convert(model, to="pau")
    assert all(isinstance(r.module, pau.RPAU) for r in summary)
    assert all(float(r.module.alpha) == pytest.approx(0.3) for r in summary)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(randomized.eval()(x), plain.eval()(x))
        # In training the noise makes two calls differ.
        randomized.train()
        assert not torch.equal(randomized(x), randomized(x))


def test_pwlu_matches_piecewise_linear_activations_exactly():
    model = nn.Sequential(
        nn.Linear(4, 8),
        nn.ReLU(),
        nn.Linear(8, 8),
        nn.LeakyReLU(0.1),
        nn.Linear(8, 8),
        nn.ReLU6(),
        nn.Linear(8, 8),
        nn.GELU(),
    )
    converted, summary = pau.convert(model, to="pwlu", num_points=16, bound=3.0)
    assert [type(r.module) for r in summary] == [pau.PWLU] * 4
    errors = {r.original.split("(")[0]: r.max_error for r in summary}
    assert errors["ReLU"] < 1e-6 and errors["LeakyReLU"] < 1e-6 and errors["ReLU6"] < 1e-6
    # Linear interpolation of GELU on 16 intervals of [-3, 3]: h^2/8 max|f''| ~ 0.014.
    assert 1e-3 < errors["GELU"] < 0.02
    assert summary.replacements[0].init == "relu"  # PWLU's own init, recoverable by name
    assert summary.replacements[1].init == "sampled LeakyReLU"
    unit = summary.replacements[1].module
    torch.testing.assert_close(unit.slopes[0], torch.tensor([0.1, 1.0]))
    x = torch.linspace(-6, 6, 241).reshape(-1, 1).expand(-1, 8).contiguous()
    torch.testing.assert_close(unit(x), F.leaky_relu(x, 0.1), atol=1e-6, rtol=1e-6)


def test_pwlu_init_by_preset_name():
    converted, summary = pau.convert(
        nn.Sequential(nn.Linear(2, 4), nn.ReLU()), to="pwlu", init="tanh"
    )
    r = summary.replacements[0]
    assert r.init == "sampled tanh"
    breakpoints = torch.linspace(-3, 3, 17, dtype=torch.float64)
    torch.testing.assert_close(
        r.module.points[0].double(), torch.tanh(breakpoints), atol=1e-6, rtol=1e-6
    )
    assert r.max_error > 0.9  # against the ReLU it replaced, tanh is far off


def test_leaky_relu_slopes_and_fit():
    model = nn.Sequential(nn.Linear(2, 4), nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.LeakyReLU(0.1))
    with pytest.warns(UserWarning, match="slope 0.1 has no preset"):
        _, summary = pau.convert(model)
    exact, nearest = summary.replacements
    assert exact.init == "leaky_relu_0.20" and exact.note == ""
    assert nearest.init in ("leaky_relu", "leaky_relu_0.20") and "nearest" in nearest.note
    assert "slope 0.1" in str(summary)
    _, fitted = pau.convert(model, init="fit")
    assert fitted.replacements[1].init == "fit"
    assert fitted.replacements[1].max_error < nearest.max_error / 3


def test_matched_presets_per_activation_type():
    acts = [nn.GELU(), nn.SiLU(), nn.Mish(), nn.ELU(), nn.Tanh(), nn.Sigmoid(), nn.Softplus()]
    layers = []
    for a in acts:
        layers += [nn.Linear(3, 3), a]
    model = nn.Sequential(*layers)
    types = tuple(type(a) for a in acts)
    _, summary = pau.convert(model, activations=types, degrees=(6, 5), variant="abs_sum")
    assert [r.init for r in summary] == [
        "gelu",
        "silu",
        "mish",
        "elu",
        "tanh",
        "sigmoid",
        "softplus",
    ]
    for r in summary:
        info = presets.info(r.init, (6, 5), "abs_sum")
        assert r.module.degrees == (6, 5) and r.module.variant == "abs_sum"
        assert r.max_error == pytest.approx(info["max_error"], rel=0.05, abs=1e-7)
    # Not in the default set: left alone unless asked for.
    _, default = pau.convert(model)
    assert [r.init for r in default] == ["gelu", "silu", "mish", "elu"]


def test_explicit_preset_for_every_replacement_and_its_error():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.GELU())
    _, summary = pau.convert(model, init="leaky_relu")
    assert [r.init for r in summary] == ["leaky_relu", "leaky_relu"]
    # The error is measured against what was replaced, not against the preset.
    assert summary.replacements[0].max_error < 0.1
    assert summary.replacements[1].max_error > 0.1


def test_dtype_and_inplace():
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU()).double()
    converted, summary = pau.convert(model, inplace=True)
    assert converted is model and isinstance(model[1], pau.PAU)
    assert model[1].numerator.dtype == torch.float64
    assert converted(torch.randn(3, 2, dtype=torch.float64)).dtype == torch.float64


# ----------------------------------------------------------------------------
# Functional activations (torch.fx)
# ----------------------------------------------------------------------------


def test_functional_activations_replaced_through_fx():
    torch.manual_seed(7)
    model = Functional()
    converted, summary = convert_quietly(model, groups="channel")
    assert isinstance(converted, torch.fx.GraphModule)
    assert len(summary) == 5 and all(r.kind == "functional" for r in summary)
    originals = [r.original.split(" ")[0] for r in summary]
    assert originals == ["F.relu", "torch.relu", "F.gelu", "F.leaky_relu", "Tensor.relu"]
    assert [r.init for r in summary] == ["relu", "relu", "gelu", "leaky_relu_0.20", "relu"]
    assert [r.groups for r in summary] == [6, 12, 12, 12, 4]
    assert "approximate='tanh'" in summary.replacements[2].note
    code = converted.code
    for fn in ("torch.relu", "torch.nn.functional.relu", "gelu(", "leaky_relu("):
        assert fn not in code, fn
    targets = {
        r.name: fn
        for r, fn in zip(
            summary,
            (
                torch.relu,
                torch.relu,
                lambda t: F.gelu(t, approximate="tanh"),
                lambda t: F.leaky_relu(t, 0.2),
                torch.relu,
            ),
        )
    }
    x = torch.randn(2, 3, 8, 8)
    seen = {}

    def keeper(name):
        def hook(module, args, out):
            seen[name] = (args[0], out)

        return hook

    for r in summary:
        r.module.register_forward_hook(keeper(r.name))
    with torch.no_grad():
        converted(x)
    for r in summary:
        xin, out = seen[r.name]
        err = (out.double() - targets[r.name](xin.double())).abs().max().item()
        assert err <= presets.info(r.init)["max_error"] + 2e-4, r.name  # + tanh-GELU gap


def test_fx_converted_model_survives_torch_save_and_pickle(tmp_path):
    # GraphModule's unpickling re-traces with the recorded tracer class built
    # without arguments; pau's tracer used to require its leaves there.
    import io
    import pickle

    torch.manual_seed(3)
    converted, summary = convert_quietly(Functional(), groups="channel")
    assert isinstance(converted, torch.fx.GraphModule) and len(summary) == 5
    converted.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = converted(x)
    path = tmp_path / "converted.pt"
    torch.save(converted, path)
    buffer = io.BytesIO()
    torch.save(converted, buffer)
    buffer.seek(0)
    loaded = [
        torch.load(path, weights_only=False),
        torch.load(buffer, weights_only=False),
        pickle.loads(pickle.dumps(converted)),
    ]
    for model in loaded:
        assert isinstance(model, torch.fx.GraphModule)
        assert count(model, pau.PAU) == 5
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_functional_off_keeps_module_type():
    converted, summary = pau.convert(Functional(), functional=False)
    assert type(converted) is Functional and len(summary) == 0
    assert "no activation" in str(summary)


def test_untraceable_model_keeps_modules_replaced():
    converted, summary = pau.convert(Untraceable())
    assert type(converted) is Untraceable and isinstance(converted.act, pau.PAU)
    assert len(summary) == 1
    assert any("not torch.fx-traceable" in n for n in summary.notes)
    converted(torch.randn(2, 4))


# ----------------------------------------------------------------------------
# Channel inference
# ----------------------------------------------------------------------------


def test_channel_count_needs_a_source_or_example_input():
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(5, 7, 1), nn.ReLU())
    with pytest.raises(ValueError, match=r"channel count of activation '0'.*example_input"):
        pau.convert(model, groups="channel", functional=False)
    converted, summary = pau.convert(model, groups="channel", example_input=torch.randn(1, 5, 4, 4))
    assert [r.channels for r in summary] == [5, 7]
    assert converted[0].numerator.shape == (5, 6)
    assert converted(torch.randn(2, 5, 3, 3)).shape == (2, 7, 3, 3)


def test_example_input_overrides_static_rule_and_explicit_dim():
    # Registration order says Linear(4, 6) precedes the activation, but it runs on
    # the conv output (3 channels at dim 1).
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 6)
            self.act = nn.GELU()
            self.conv = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return self.act(self.conv(x))

    static, s1 = pau.convert(Odd(), groups="channel", functional=False)
    assert s1.replacements[0].channels == 6 and static.act.dim == -1
    observed, s2 = pau.convert(
        Odd(), groups="channel", example_input=torch.randn(1, 2, 4, 4), dim=1
    )
    assert s2.replacements[0].channels == 3 and observed.act.dim == 1
    assert observed(torch.randn(1, 2, 4, 4)).shape == (1, 3, 4, 4)


def test_integer_groups():
    _, summary = pau.convert(TinyResNet(), groups=4)
    assert all(r.module.numerator.shape == (4, 6) for r in summary)


def test_integer_groups_not_dividing_channels_fail_at_convert():
    # They used to be accepted and fail at the first forward.
    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 64, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x))

    class WideFunctional(Wide):
        def forward(self, x):
            return F.relu(self.conv(x))

    x = torch.randn(1, 3, 2, 2)
    message = r"groups=5 does not divide the 64 channels \(dim 1\) of activation 'act'"
    with pytest.raises(ValueError, match=message):
        pau.convert(Wide(), groups=5)
    # The counts recorded from example_input, and an fx-found F.relu, named after its node.
    with pytest.raises(ValueError, match=r"does not divide the 64 channels .* 'relu_act'"):
        pau.convert(WideFunctional(), groups=5, example_input=x)
    with pytest.raises(ValueError, match=r"does not divide the 64 channels .* 'relu_act'"):
        pau.convert(WideFunctional(), groups=5)
    converted, summary = pau.convert(WideFunctional(), groups=4)
    assert [r.groups for r in summary] == [4]
    assert converted(x).shape == (1, 64, 2, 2)


def test_integer_groups_checked_against_every_count_a_shared_activation_sees():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 12, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    x = torch.randn(1, 3, 2, 2)
    converted, _ = convert_quietly(Shared(), groups=4, example_input=x)
    assert converted(x).shape == (1, 12, 2, 2)
    with pytest.raises(ValueError, match=r"groups=8 does not divide the 12 channels .* 'act'"):
        convert_quietly(Shared(), groups=8, example_input=x)


@pytest.mark.parametrize("init", ["match", "fit"])
def test_degrees_above_the_maximum_fail_before_fitting(init, monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("fitted or looked up a preset")

    # PAU.function_parameters fits through the name its module imported.
    monkeypatch.setattr(sys.modules["pau.nn.pau"], "fit_coefficients", no_fit)
    monkeypatch.setattr(presets, "coefficients", no_fit)
    with pytest.raises(ValueError, match=r"pau.convert: degrees \(m, n\) = \(33, 4\) exceed"):
        pau.convert(TinyResNet(), init=init, degrees=(33, 4))
    with pytest.raises(ValueError, match=r"pau.convert: degrees must be a pair of ints"):
        pau.convert(TinyResNet(), to="rpau", init=init, degrees=(5,))


def test_torchvision_models_if_installed():
    tv = pytest.importorskip("torchvision")
    resnet = tv.models.resnet18(weights=None)
    relus = count(resnet, nn.ReLU)
    converted, summary = pau.convert(resnet, groups="channel")
    assert len(summary) == relus == 9 and count(converted, nn.ReLU) == 0
    assert converted(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    mobilenet = tv.models.mobilenet_v2(weights=None)
    converted, summary = convert_quietly(mobilenet, to="pwlu", groups="channel")
    assert len(summary) == count(mobilenet, nn.ReLU6) == 35
    assert converted(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


# ----------------------------------------------------------------------------
# Summary and errors
# ----------------------------------------------------------------------------


def test_summary_text():
    _, summary = pau.convert(TinyResNet(), groups="channel")
    text = str(summary)
    assert text.splitlines()[0] == "pau.convert: 5 activation(s) replaced by PAU"
    for name in ("relu", "layer1.0.relu", "layer2.1.relu"):
        assert any(line.split()[0] == name for line in text.splitlines()[3:] if line.strip())
    assert "3.39e-02" in text  # relu (5, 4) safe: the preset's max error
    assert summary.max_error == pytest.approx(presets.info("relu")["max_error"], rel=0.05)
    assert [r.groups for r in summary] == [8, 8, 8, 16, 16]


def test_bad_input():
    model = TinyResNet()
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        pau.convert(lambda x: x)
    with pytest.raises(ValueError, match=r"unknown target to='paux'"):
        pau.convert(model, to="paux")
    with pytest.raises(TypeError, match="to must be a str"):
        pau.convert(model, to=pau.PAU)
    with pytest.raises(ValueError, match="groups must be 'layer', 'channel'"):
        pau.convert(model, groups="per-channel")
    with pytest.raises(ValueError, match="groups must be"):
        pau.convert(model, groups=0)
    with pytest.raises(ValueError, match=r"unknown init 'relux'.*gelu"):
        pau.convert(model, init="relux")
    with pytest.raises(TypeError, match="nn.Module subclasses"):
        pau.convert(model, activations=("ReLU",))
    with pytest.raises(TypeError, match="nn.Module subclasses"):
        pau.convert(model, activations=(torch.relu,))
    with pytest.raises(ValueError, match="already a learnable activation"):
        pau.convert(model, activations=(pau.PAU,))
    with pytest.raises(ValueError, match=r"no preset matches SELU.*init='fit'"):
        pau.convert(nn.Sequential(nn.Linear(2, 2), nn.SELU()), activations=(nn.SELU,))
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) alpha for to='pau'"):
        pau.convert(model, alpha=0.1)
    with pytest.raises(TypeError, match="num_points"):
        pau.convert(model, to="pwlu", degrees=(5, 4))
    with pytest.raises(ValueError, match="model is itself an activation"):
        pau.convert(nn.ReLU())
    with pytest.raises(ValueError, match="unknown variant"):
        pau.convert(model, variant="safest")


def test_unknown_type_with_fit_or_preset():
    model = nn.Sequential(nn.Linear(2, 2), nn.SELU())
    _, fitted = pau.convert(model, activations=(nn.SELU,), init="fit")
    assert fitted.replacements[0].max_error < 0.05
    _, named = pau.convert(model, activations=(nn.SELU,), init="elu")
    assert named.replacements[0].init == "elu"


def test_default_activation_set():
    assert nn.ReLU in DEFAULT_ACTIVATIONS and nn.GELU in DEFAULT_ACTIVATIONS
    assert nn.Sigmoid not in DEFAULT_ACTIVATIONS  # gates are opt-in

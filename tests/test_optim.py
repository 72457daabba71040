"""pau.parameter_groups: the PAU / RPAU / PWLU coefficients in their own optimizer group
(own lr, no weight decay by default), every other parameter in the second, each once,
and clear errors for bad arguments."""

from __future__ import annotations

import pau
import pytest
import torch
from torch import nn


def model_with_units() -> nn.Module:
    torch.manual_seed(0)
    shared = pau.PAU(init="relu")
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), pau.PAU(groups=4, init="relu"), nn.BatchNorm2d(4),
        pau.RPAU(init="relu"), nn.Conv2d(4, 4, 1), pau.PWLU(groups=4), shared,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3), shared,
    )


def names_of(model: nn.Module, params) -> set[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_coefficients_apart_from_the_rest_each_once():
    model = model_with_units()
    groups = pau.parameter_groups(model, lr=1e-4)
    assert len(groups) == 2
    coefficients, rest = groups
    assert names_of(model, coefficients["params"]) == {
        "1.numerator", "1.denominator", "3.numerator", "3.denominator",
        "5.points", "5.bounds", "5.slopes", "6.numerator", "6.denominator",
    }
    assert coefficients["lr"] == 1e-4 and coefficients["weight_decay"] == 0.0
    everything = [p for p in model.parameters()]
    assert len(coefficients["params"]) + len(rest["params"]) == len(everything)
    assert {id(p) for p in coefficients["params"] + rest["params"]} == {id(p) for p in everything}
    assert set(rest) == {"params"}  # the optimizer's defaults apply to the rest


def test_adamw_steps_the_coefficients_with_their_own_lr_and_no_decay():
    model = model_with_units()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(pau.parameter_groups(model, lr=1e-4), lr=1e-2,
                                  weight_decay=0.5)
    model(torch.randn(2, 3, 5, 5)).square().sum().backward()
    optimizer.step()
    # Adam's first step moves each coordinate with a gradient by lr (sign of
    # the gradient); decoupled weight decay adds lr * wd * p on the rest only.
    for name, p in model.named_parameters():
        step = (p.detach() - before[name]).abs()
        moved = step[p.grad != 0]
        if name in ("1.numerator", "6.denominator", "5.points"):
            torch.testing.assert_close(moved, torch.full_like(moved, 1e-4), rtol=1e-3, atol=1e-7)
        elif name == "0.weight":
            assert float(moved.max()) > 5e-3


def test_options_frozen_parameters_and_a_model_of_units_only():
    act = pau.PWLU()
    act.points.requires_grad_(False)  # as in PWLU's phase I
    groups = pau.parameter_groups(act, weight_decay=1e-5, betas=(0.8, 0.9))
    assert len(groups) == 1 and "lr" not in groups[0]
    assert groups[0]["betas"] == (0.8, 0.9) and groups[0]["weight_decay"] == 1e-5
    assert any(p is act.points for p in groups[0]["params"])
    torch.optim.Adam(groups, lr=1e-3)  # a valid optimizer setup


def test_package_exports():
    assert pau.parameter_groups is pau.optim.parameter_groups


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((nn.Linear(2, 2),), {}, ValueError, "the model has no PAU, RPAU or PWLU module"),
        (("model",), {}, TypeError, "model must be a torch.nn.Module"),
        ((pau.PAU(),), {"lr": 0.0}, ValueError, "lr must be finite and > 0"),
        ((pau.PAU(),), {"lr": float("nan")}, ValueError, "lr must be finite"),
        ((pau.PAU(),), {"lr": "1e-4"}, TypeError, "lr must be a number"),
        ((pau.PAU(),), {"weight_decay": -1.0}, ValueError, "weight_decay must be finite and >= 0"),
        ((pau.PAU(),), {"weight_decay": None}, TypeError, "weight_decay must be a number"),
        ((pau.PAU(),), {"params": []}, ValueError, "'params' is chosen here"),
    ],
)
def test_bad_arguments_are_clear_errors(args, kwargs, error, match):
    with pytest.raises(error, match=f"pau.parameter_groups: {match}"):
        pau.parameter_groups(*args, **kwargs)

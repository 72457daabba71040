"""Shapes, strides and groups: odd sizes, non-contiguous and channels_last inputs,
dim=-1 per-lane tiles, 0-d tensors, tile boundaries, and bitwise determinism."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from helpers.inputs import VARIANTS, X_DTYPES, random_coefficients, random_x
from helpers.references import check_against_reference, op_grads, reference_grads
from helpers.tolerances import compute_dtype
from torch import Tensor


@pytest.mark.parametrize("size", [0, 1, 7, 129, 4097])
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_odd_sizes_one_group(device: str, dtype: torch.dtype, size: int) -> None:
    x = random_x((size,), dtype, seed=size, device=device)
    numerator, denominator = random_coefficients(
        1, (5, 4), "safe", compute_dtype(dtype), device=device
    )
    check_against_reference(x, numerator, denominator, "safe", 0)


@pytest.mark.parametrize("size", [0, 1, 7, 129, 4097])
@pytest.mark.parametrize("variant", VARIANTS)
def test_odd_sizes_groups(device: str, variant: str, size: int) -> None:
    """(2, 3, size) with one group per channel: runs of `size` elements."""
    x = random_x((2, 3, size), torch.float32, seed=size, device=device)
    numerator, denominator = random_coefficients(3, (5, 4), variant, torch.float32, device=device)
    check_against_reference(x, numerator, denominator, variant, 1)
    # The same sizes along the channel dimension (per-lane tiles for small runs).
    if size:
        y = random_x((3, size, 2), torch.float32, seed=size + 1, device=device)
        num, den = random_coefficients(
            size, (3, 2), variant, torch.float32, seed=size, device=device
        )
        check_against_reference(y, num, den, variant, 1)


@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_zero_dim_input(device: str, dtype: torch.dtype) -> None:
    x = torch.tensor(1.7, dtype=dtype, device=device)
    numerator, denominator = random_coefficients(
        1, (5, 4), "safe", compute_dtype(dtype), device=device
    )
    for dim in (0, -1):
        check_against_reference(x, numerator, denominator, "safe", dim)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 0)
    assert y.dim() == 0


def _views() -> dict[str, Callable[[Tensor], tuple[Tensor, int]]]:
    """Non-contiguous views of a (4, 6, 10, 8) tensor and the dim of their 6 channels."""
    return {
        "slice": lambda t: (t[:, :, 1:8:2, ::3], 1),
        "channel_slice": lambda t: (t[1:, 1:4], 1),  # 3 of the 6 channels
        "transpose": lambda t: (t.transpose(1, 3), 3),
        "permute": lambda t: (t.permute(2, 0, 3, 1), 3),
        "transpose_slice": lambda t: (t.transpose(0, 2)[::2, :, 1:], 1),
        "expand": lambda t: (t[:, :, :1].expand(4, 6, 10, 8), 1),
        "unsqueeze_expand": lambda t: (t[0, :, 0, :].unsqueeze(0).expand(3, 6, 8), 1),
    }


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("view", list(_views()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_non_contiguous(device: str, dtype: torch.dtype, view: str, groups: int) -> None:
    base = random_x((4, 6, 10, 8), dtype, seed=5, device=device)
    x, dim = _views()[view](base)
    assert not x.is_contiguous()
    if x.shape[dim] % groups:
        groups = 1
    numerator, denominator = random_coefficients(
        groups, (5, 4), "safe", compute_dtype(dtype), device=device
    )
    check_against_reference(x, numerator, denominator, "safe", dim)


@pytest.mark.parametrize("groups", ["one", "per_channel", "some"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_channels_last(device: str, dtype: torch.dtype, variant: str, groups: str) -> None:
    channels = 12
    count = {"one": 1, "per_channel": channels, "some": 4}[groups]
    x = random_x((3, channels, 7, 5), dtype, seed=6, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    numerator, denominator = random_coefficients(
        count, (5, 4), variant, compute_dtype(dtype), device=device
    )
    check_against_reference(x, numerator, denominator, variant, 1)
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 1)
    assert y.is_contiguous(memory_format=torch.channels_last), "output should keep channels_last"


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_channels_last_3d(device: str, groups: int) -> None:
    x = random_x((2, 6, 3, 4, 5), torch.float32, seed=7, device=device)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    numerator, denominator = random_coefficients(
        groups, (5, 4), "abs_sum", torch.float32, device=device
    )
    check_against_reference(x, numerator, denominator, "abs_sum", 1)


@pytest.mark.parametrize("groups", ["one", "per_channel", "some"])
@pytest.mark.parametrize("channels", [3, 8, 48, 320])
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_last_dim_channels(device: str, dtype: torch.dtype, channels: int, groups: str) -> None:
    """(batch, tokens, C) with dim=-1: per-channel groups use per-lane tiles."""
    count = {"one": 1, "per_channel": channels, "some": 1 if channels == 3 else 4}[groups]
    if groups == "some" and channels == 3:
        count = 3
    x = random_x((3, 37, channels), dtype, seed=channels, device=device)
    numerator, denominator = random_coefficients(
        count, (5, 4), "safe", compute_dtype(dtype), device=device
    )
    check_against_reference(x, numerator, denominator, "safe", -1)
    check_against_reference(x, numerator, denominator, "safe", 2, grad_seed=None)


@pytest.mark.parametrize("variant", VARIANTS)
def test_last_dim_channels_other_degrees(device: str, variant: str) -> None:
    """Per-lane tiles with run-time degrees and mixed effective degrees across lanes."""
    x = random_x((4, 9, 48), torch.float32, seed=9, device=device)
    numerator, denominator = random_coefficients(48, (8, 7), variant, torch.float32, device=device)
    numerator[::3, -1] = 0  # some lanes have a lower numerator degree
    denominator[1::4, -2:] = 0  # some lanes have a lower denominator degree
    check_against_reference(x, numerator, denominator, variant, -1)


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2, -3, -4])
def test_every_dim(device: str, dim: int) -> None:
    x = random_x((4, 6, 2, 8), torch.float64, seed=10, device=device)
    groups = 2
    numerator, denominator = random_coefficients(groups, (5, 4), "safe", device=device)
    check_against_reference(x, numerator, denominator, "safe", dim)


@pytest.mark.parametrize(
    "shape,dim,groups",
    [
        ((3, 2, 8200), 1, 2),  # a group's run spans two broadcast tiles (> 8192 columns)
        ((2, 1, 40000), 1, 1),  # one group, more than one 32768-element tile
        ((5, 4, 63), 1, 4),  # runs just below the per-lane threshold
        ((5, 4, 64), 1, 4),  # ... at it
        ((5, 4, 65), 1, 4),  # ... and just above
        ((300, 320), -1, 320),  # per-lane: two column tiles (256 + 64), three row tiles
        ((40, 7, 100), -1, 50),  # per-lane with runs of two channels
        ((130, 3, 1), 1, 3),  # runs of one element, few groups
    ],
    ids=str,
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_tile_boundaries(
    device: str, dtype: torch.dtype, shape: tuple[int, ...], dim: int, groups: int
) -> None:
    x = random_x(shape, dtype, seed=11, device=device)
    numerator, denominator = random_coefficients(
        groups, (5, 4), "safe", torch.float32, device=device
    )
    check_against_reference(x, numerator, denominator, "safe", dim)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dense_view_with_storage_offset(device: str, dtype: torch.dtype, variant: str) -> None:
    """A dense view that starts one element into its storage: misaligned for vector loads."""
    x = random_x((1001,), dtype, seed=14, device=device)[1:]
    assert x.is_contiguous() and x.storage_offset() == 1
    numerator, denominator = random_coefficients(
        1, (5, 4), variant, compute_dtype(dtype), device=device
    )
    check_against_reference(x, numerator, denominator, variant, 0)


def test_grad_output_with_other_strides(device: str) -> None:
    """The backward op reads grad_output correctly whatever its strides relative to x."""
    x = random_x((3, 8, 5, 4), torch.float64, seed=12, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    numerator, denominator = random_coefficients(8, (5, 4), "safe", device=device)
    grad = random_x(x.shape, seed=13, device=device)
    grads = {
        "contiguous": grad,
        "channels_last": grad.contiguous(memory_format=torch.channels_last),
        "transposed": random_x((4, 5, 8, 3), seed=13, device=device).permute(3, 2, 1, 0),
        "expanded": random_x((1, 8, 1, 1), seed=13, device=device).expand(x.shape),
    }
    for name, grad in grads.items():
        got = torch.ops.pau.backward(grad, x, numerator, denominator, "safe", 1)
        want = reference_grads(grad, x, numerator, denominator, "safe", 1)[1:]
        for g, w in zip(got, want):
            torch.testing.assert_close(
                g.cpu(), w, rtol=1e-12, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}"
            )


# ---------------------------------------------------------------------------
# Determinism: coefficient gradients are bitwise reproducible.

LARGE_CASES = {
    # name: (shape, dim, groups, channels_last); every case has 2^20 elements or more
    "one_group": ((16, 16, 64, 64), 1, 1, False),
    "per_channel_nchw": ((16, 16, 64, 64), 1, 16, False),
    "per_channel_channels_last": ((16, 16, 64, 64), 1, 16, True),
    "tokens_320_channels": ((64, 52, 320), -1, 320, False),
    "tokens_some_groups": ((64, 52, 320), -1, 8, False),
}


def _large_inputs(
    name: str, dtype: torch.dtype, device: str
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    shape, dim, groups, channels_last = LARGE_CASES[name]
    x = random_x(shape, dtype, seed=20, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = random_x(shape, dtype, seed=21, high=1.0, device=device)
    numerator, denominator = random_coefficients(
        groups, (5, 4), "safe", torch.float32, seed=22, device=device
    )
    assert x.numel() >= 2**20
    return x, grad, numerator, denominator, dim


def _run(x: Tensor, grad: Tensor, numerator: Tensor, denominator: Tensor, dim: int) -> list[Tensor]:
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", dim)
    return [y, *torch.ops.pau.backward(grad, x, numerator, denominator, "safe", dim)]


def _assert_bitwise(first: list[Tensor], second: list[Tensor], what: str) -> None:
    for name, a, b in zip(
        ("output", "grad_x", "grad_numerator", "grad_denominator"), first, second
    ):
        assert torch.equal(a, b), f"{what}: {name} differs"


@pytest.mark.parametrize("case", list(LARGE_CASES))
def test_large_deterministic_and_correct(device: str, case: str, restore_threads: None) -> None:
    # Off the CPU the thread counts change nothing: the runs are plain repetitions.
    x, grad, numerator, denominator, dim = _large_inputs(case, torch.float32, device)
    torch.set_num_threads(2)
    runs = [_run(x, grad, numerator, denominator, dim) for _ in range(3)]
    _assert_bitwise(runs[0], runs[1], "run 2 vs run 1")
    _assert_bitwise(runs[0], runs[2], "run 3 vs run 1")
    torch.set_num_threads(1)
    _assert_bitwise(runs[0], _run(x, grad, numerator, denominator, dim), "1 vs 2 threads")
    # Also right: the many per-tile partial sums add up to the reference.
    check_against_reference(x, numerator, denominator, "safe", dim, grad_seed=21)


def test_large_deterministic_with_blocks_beyond_the_plain_limit(
    device: str, restore_threads: None
) -> None:
    """Blocks that hold an |x| beyond the plain-powers limit take the scaled powers and the
    others the plain ones: the choice depends on the data only, so results stay bitwise
    reproducible, and right."""
    x, grad, numerator, denominator, dim = _large_inputs("per_channel_nchw", torch.float32, device)
    x = x.clone()
    x.view(-1)[::1999] = 1e6  # about one block in eight
    torch.set_num_threads(2)
    first = _run(x, grad, numerator, denominator, dim)
    _assert_bitwise(first, _run(x, grad, numerator, denominator, dim), "run 2 vs run 1")
    torch.set_num_threads(1)
    _assert_bitwise(first, _run(x, grad, numerator, denominator, dim), "1 vs 2 threads")
    check_against_reference(x, numerator, denominator, "safe", dim, grad_seed=21)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64], ids=str)
def test_large_deterministic_other_dtypes(
    device: str, dtype: torch.dtype, restore_threads: None
) -> None:
    x, grad, numerator, denominator, dim = _large_inputs("per_channel_channels_last", dtype, device)
    torch.set_num_threads(2)
    first = _run(x, grad, numerator, denominator, dim)
    _assert_bitwise(first, _run(x, grad, numerator, denominator, dim), "run 2 vs run 1")
    torch.set_num_threads(1)
    _assert_bitwise(first, _run(x, grad, numerator, denominator, dim), "1 vs 2 threads")


def test_autograd_path_is_deterministic(device: str, restore_threads: None) -> None:
    """The same through autograd (loss.backward), which is what training runs."""
    x, grad, numerator, denominator, dim = _large_inputs("one_group", torch.float32, device)
    results = []
    for threads in (2, 2, 1):
        torch.set_num_threads(threads)
        results.append(op_grads(grad, x, numerator, denominator, "safe", dim))
    for other in results[1:]:
        _assert_bitwise(list(results[0]), list(other), "autograd")

"""Small CUDA workload of the pau operators (PAU, RPAU, PWLU) for compute-sanitizer.

Run it under each tool (see cuda/README.md), e.g.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck \\
        --error-exitcode 1 python tests/cuda_sanitizer_workload.py

It launches every kernel kind (PAU's, RPAU's and PWLU's) once or a few times on
small tensors: both tile
kinds (broadcast: one group, NCHW per channel, runs longer than a tile;
per-lane: channels-last per channel, (batch, tokens, C) in groups, runs that
are no multiple of the vector width), the compile-time (5, 4) and the
run-time degree paths (including zero leading coefficients), all variants and
dtypes, odd sizes and a misaligned view (scalar loads); for PWLU N = 1, 16 and
256 intervals and the largest point-gradient histograms (N = 4096 in float32,
2048 in float64). Sizes are small because
the sanitizers slow kernels down by two or three orders of magnitude. Besides
the sanitizer's own report it checks that the results are finite and match
the CPU operator loosely, and exits non-zero otherwise.

``--backward-only`` skips the forward launches (racecheck only needs the
backward's shared-memory reductions); ``--quick`` runs one dtype and variant
and PWLU with N = 16 only (plus the large-N cases).
"""

from __future__ import annotations

import argparse
import sys

import pau
import torch

# (shape, dim, groups, channels_last): the tile kinds of cuda/tiling.h.
LAYOUTS = [
    ((3, 5, 7), 1, 1, False),  # one group, odd size
    ((2, 4, 9, 9), 1, 4, False),  # NCHW per channel, runs of 81 (broadcast, scalar items)
    ((1, 2, 16400), 1, 2, False),  # runs longer than one broadcast tile
    ((2, 6, 5, 5), 1, 6, True),  # channels-last per channel (per-lane, run 1)
    ((3, 7, 12), -1, 4, False),  # (batch, tokens, C) in groups of 3 (per-lane, run 3)
    ((2, 3, 63), 1, 3, False),  # per-lane, run 63 (not a multiple of the vector width)
]
DEGREES = [(5, 4), (3, 3)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
VARIANTS = ["safe", "abs_sum", "plain"]
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def coefficients(groups: int, degrees: tuple[int, int], dtype: torch.dtype, zero_leading: bool):
    generator = torch.Generator().manual_seed(groups * 100 + degrees[0])
    m, n = degrees
    numerator = torch.randn(groups, m + 1, generator=generator, dtype=torch.float64) * 0.3
    # Small b keeps 1 + A(x) (plain) far from zero for |x| <= 3.
    denominator = torch.randn(groups, n, generator=generator, dtype=torch.float64) * 0.005
    numerator[:, 1] += 1.0
    if zero_leading:  # the run-time degree path with effective degrees below (m, n)
        numerator[0, m] = 0.0
        denominator[0, n - 1] = 0.0
    return numerator.to(dtype), denominator.to(dtype)


def close(got: torch.Tensor, want: torch.Tensor, tolerance: float) -> bool:
    got, want = got.detach().cpu().double(), want.detach().double()
    scale = max(want.abs().max().item(), 1.0) if want.numel() else 1.0
    return bool(torch.isfinite(got).all()) and bool(
        ((got - want).abs() <= tolerance * scale).all())


def to_cuda(t: torch.Tensor) -> torch.Tensor:
    """t on the GPU with its strides and storage offset (``t.cuda()`` would drop the
    offset of a misaligned view and start it at a fresh, aligned allocation)."""
    storage = torch.empty(0, dtype=t.dtype).set_(t.untyped_storage()).cuda()
    return storage.as_strided(t.shape, t.stride(), t.storage_offset())


def run_case(x_cpu, numerator, denominator, variant, dim, backward_only) -> list[str]:
    problems = []
    x = to_cuda(x_cpu)
    num, den = numerator.cuda(), denominator.cuda()
    # Keep x's memory layout, as the operator does.
    grad_cpu = torch.empty_like(x_cpu).copy_(torch.randn(x_cpu.shape, dtype=torch.float64))
    grad = grad_cpu.cuda()
    label = (f"{tuple(x.shape)} dim={dim} G={numerator.shape[0]} {x.dtype} {variant} "
             f"m={numerator.shape[1] - 1} n={denominator.shape[1]}")
    tolerance = TOLERANCE[x.dtype]
    if not backward_only:
        y = torch.ops.pau.forward(x, num, den, variant, dim)
        if not close(y, torch.ops.pau.forward(x_cpu, numerator, denominator, variant, dim),
                     tolerance):
            problems.append(f"{label}: forward differs from the CPU operator")
    got = torch.ops.pau.backward(grad, x, num, den, variant, dim)
    want = torch.ops.pau.backward(grad_cpu, x_cpu, numerator, denominator, variant, dim)
    for name, g, w in zip(("grad_x", "grad_numerator", "grad_denominator"), got, want):
        if not close(g, w, tolerance):
            problems.append(f"{label}: {name} differs from the CPU operator")
    torch.cuda.synchronize()
    return problems


SEED_OFFSET = torch.tensor([7, (1 << 32) + 3], dtype=torch.int64)


def run_rpau_case(x_cpu, numerator, denominator, dim, backward_only) -> list[str]:
    """RPAU's kernels (the same tiles with noise tables in shared memory)."""
    problems = []
    alpha = torch.tensor(0.2, dtype=numerator.dtype)
    x, num, den, a = to_cuda(x_cpu), numerator.cuda(), denominator.cuda(), alpha.cuda()
    grad_cpu = torch.empty_like(x_cpu).copy_(torch.randn(x_cpu.shape, dtype=torch.float64))
    label = f"RPAU {tuple(x.shape)} dim={dim} G={numerator.shape[0]} {x.dtype}"
    tolerance = TOLERANCE[x.dtype]
    if not backward_only:
        y = torch.ops.pau.rpau_forward(x, num, den, a, SEED_OFFSET, "safe", dim)
        want = torch.ops.pau.rpau_forward(x_cpu, numerator, denominator, alpha, SEED_OFFSET,
                                          "safe", dim)
        if not close(y, want, tolerance):
            problems.append(f"{label}: forward differs from the CPU operator")
    got = torch.ops.pau.rpau_backward(grad_cpu.cuda(), x, num, den, a, SEED_OFFSET, "safe", dim)
    want = torch.ops.pau.rpau_backward(grad_cpu, x_cpu, numerator, denominator, alpha,
                                       SEED_OFFSET, "safe", dim)
    for name, g, w in zip(("grad_x", "grad_numerator", "grad_denominator"), got, want):
        if not close(g, w, tolerance):
            problems.append(f"{label}: {name} differs from the CPU operator")
    torch.cuda.synchronize()
    return problems


PWLU_INTERVALS = [1, 16, 256]
# The largest shared-memory histograms of the backward, on two layouts each.
PWLU_LARGE = [(torch.float32, 4096), (torch.float64, 2048)]


def pwlu_parameters(groups: int, intervals: int, dtype: torch.dtype):
    """(points, bounds, slopes): bounds around [-3, 3], points near relu, random slopes."""
    generator = torch.Generator().manual_seed(groups * 1000 + intervals)
    left = -3 + 0.5 * torch.rand(groups, generator=generator, dtype=torch.float64)
    right = 3 - 0.5 * torch.rand(groups, generator=generator, dtype=torch.float64)
    steps = torch.arange(intervals + 1, dtype=torch.float64)
    at = left[:, None] + steps * ((right - left) / intervals)[:, None]
    noise = torch.randn(groups, intervals + 1, generator=generator, dtype=torch.float64)
    points = at.clamp_min(0) + 0.3 * noise
    slopes = torch.randn(groups, 2, generator=generator, dtype=torch.float64)
    bounds = torch.stack([left, right], dim=1)
    return points.to(dtype), bounds.to(dtype), slopes.to(dtype)


def run_pwlu_case(x_cpu, intervals, dim, groups, backward_only) -> list[str]:
    """PWLU's kernels; CPU and CUDA locate x in the same interval from the same tables."""
    problems = []
    parameter_dtype = torch.float64 if x_cpu.dtype == torch.float64 else torch.float32
    params_cpu = pwlu_parameters(groups, intervals, parameter_dtype)
    params = [t.cuda() for t in params_cpu]
    x = to_cuda(x_cpu)
    grad_cpu = torch.empty_like(x_cpu).copy_(torch.randn(x_cpu.shape, dtype=torch.float64))
    label = f"PWLU {tuple(x.shape)} dim={dim} G={groups} N={intervals} {x.dtype}"
    tolerance = TOLERANCE[x.dtype]
    if not backward_only:
        y = torch.ops.pau.pwlu_forward(x, *params, dim)
        if not close(y, torch.ops.pau.pwlu_forward(x_cpu, *params_cpu, dim), tolerance):
            problems.append(f"{label}: forward differs from the CPU operator")
    got = torch.ops.pau.pwlu_backward(grad_cpu.cuda(), x, *params, dim)
    want = torch.ops.pau.pwlu_backward(grad_cpu, x_cpu, *params_cpu, dim)
    names = ("grad_x", "grad_points", "grad_bounds", "grad_slopes")
    for name, g, w in zip(names, got, want):
        if not close(g, w, tolerance):
            problems.append(f"{label}: {name} differs from the CPU operator")
    torch.cuda.synchronize()
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backward-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="float32, safe and PWLU N = 16 only")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_sanitizer_workload: no CUDA device", file=sys.stderr)
        return 2
    if not pau._C.has_cuda_kernels():
        print("cuda_sanitizer_workload: this pau build has no CUDA kernels", file=sys.stderr)
        return 2
    dtypes = DTYPES[:1] if args.quick else DTYPES
    variants = VARIANTS[:1] if args.quick else VARIANTS
    problems: list[str] = []
    launches = 0
    for shape, dim, groups, channels_last in LAYOUTS:
        generator = torch.Generator().manual_seed(1)
        x = torch.rand(shape, generator=generator, dtype=torch.float64) * 6.0 - 3.0
        for dtype in dtypes:
            xd = x.to(dtype)
            if channels_last:
                xd = xd.contiguous(memory_format=torch.channels_last)
            coefficient_dtype = torch.float64 if dtype == torch.float64 else torch.float32
            for variant in variants:
                for degrees in DEGREES:
                    for zero_leading in (False, True):
                        num, den = coefficients(groups, degrees, coefficient_dtype, zero_leading)
                        problems += run_case(xd, num, den, variant, dim, args.backward_only)
                        launches += 1
            for degrees in DEGREES:
                num, den = coefficients(groups, degrees, coefficient_dtype, False)
                problems += run_rpau_case(xd, num, den, dim, args.backward_only)
                launches += 1
            for intervals in PWLU_INTERVALS[1:2] if args.quick else PWLU_INTERVALS:
                problems += run_pwlu_case(xd, intervals, dim, groups, args.backward_only)
                launches += 1
    # A misaligned dense view (scalar loads) and an empty tensor.
    base = torch.randn(1 + 1001, dtype=torch.float64).float()
    num, den = coefficients(1, (5, 4), torch.float32, False)
    problems += run_case(base[1:], num, den, "safe", 0, args.backward_only)
    empty = torch.empty(0, 3)
    num, den = coefficients(3, (5, 4), torch.float32, False)
    problems += run_case(empty, num, den, "safe", 1, args.backward_only)
    launches += 2
    # PWLU: the largest histograms (broadcast and per-lane tiles), a misaligned
    # view and an empty tensor.
    generator = torch.Generator().manual_seed(2)
    for dtype, intervals in PWLU_LARGE:
        for shape, dim, groups, channels_last in (LAYOUTS[1], LAYOUTS[3]):
            x = torch.rand(shape, generator=generator, dtype=torch.float64) * 6.0 - 3.0
            x = x.to(dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            problems += run_pwlu_case(x, intervals, dim, groups, args.backward_only)
            launches += 1
    problems += run_pwlu_case(base[1:], 16, 0, 1, args.backward_only)
    problems += run_pwlu_case(empty, 16, 1, 3, args.backward_only)
    launches += 2
    for p in problems:
        print("FAIL", p)
    print(f"cuda_sanitizer_workload: {launches} cases, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

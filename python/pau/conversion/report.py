"""What :func:`pau.convert` reports: a :class:`Replacement` per activation, a
:class:`ConversionSummary` over them, printed as a table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Optional

from torch import nn

__all__ = ["ConversionSummary", "Replacement"]


@dataclass
class Replacement:
    """One activation that :func:`pau.convert` replaced.

    Attributes:
        name: qualified name of the new module in the returned model.
        original: what was there, e.g. ``"ReLU(inplace=True)"`` or
            ``"F.relu (functional, node relu_1)"``.
        kind: ``"module"`` or ``"functional"``.
        module: the new module (a :class:`pau.PAU`, :class:`pau.RPAU` or :class:`pau.PWLU`).
        init: the preset it starts from, ``"fit"`` or ``"sampled <what>"`` for PWLU.
        groups: its number of coefficient groups.
        channels: the channel count used for ``groups="channel"`` (None for layers).
        max_error: max |new(x) - original(x)| for x in [-3, 3] at conversion.
        note: anything approximate about the match (empty when exact).
        input_range: (min, max) of the inputs the activation received on
            ``example_input`` (None without it, or when it received none).
        range_max_error: max |new(x) - original(x)| for x in ``input_range``.
        range_rel_error: ``range_max_error`` / max |original(x)| on ``input_range``.
        input_mean_error: mean |new(x) - original(x)| over the inputs received
            (from a 256-bin histogram of them): the typical start error, where
            ``range_max_error`` is the worst one at the range's ends.
    """

    name: str
    original: str
    kind: str
    module: nn.Module
    init: str
    groups: int
    channels: Optional[int]
    max_error: float
    note: str = ""
    input_range: Optional[tuple[float, float]] = None
    range_max_error: Optional[float] = None
    range_rel_error: Optional[float] = None
    input_mean_error: Optional[float] = None


@dataclass
class ConversionSummary:
    """What :func:`pau.convert` did: the replacements and general notes.

    Iterating yields the :class:`Replacement` entries; ``len()`` counts them;
    ``str()`` is a readable table.

    With ``example_input``, ``output_cosine`` is the cosine between the
    converted and the original model's outputs on it (all floating-point output
    tensors flattened into one vector, eval mode) and ``output_rel_error`` is
    ||converted - original|| / ||original||; both None otherwise.
    """

    to: str
    replacements: list[Replacement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_cosine: Optional[float] = None
    output_rel_error: Optional[float] = None

    def __len__(self) -> int:
        return len(self.replacements)

    def __iter__(self) -> Iterator[Replacement]:
        return iter(self.replacements)

    def counts(self) -> dict[str, int]:
        """Number of replacements per original activation type (e.g. ``{"ReLU": 17}``)."""
        out: dict[str, int] = {}
        for r in self.replacements:
            key = r.original.split("(")[0].split(" ")[0]
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def max_error(self) -> float:
        """The largest ``max_error`` over all replacements (0 when none)."""
        return max((r.max_error for r in self.replacements), default=0.0)

    def __str__(self) -> str:
        head = f"pau.convert: {len(self)} activation(s) replaced by {self.to.upper()}"
        if not self.replacements:
            return "\n".join([head, *(f"note: {n}" for n in self.notes)])
        rows = [("name", "original", "init", "groups", "max err [-3,3]")]
        for r in self.replacements:
            rows.append((r.name, r.original, r.init, str(r.groups), f"{r.max_error:.2e}"))
        if any(r.input_range is not None for r in self.replacements):
            rows = _with_range_columns(rows, self.replacements)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [head]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        if self.output_cosine is not None:
            lines.append(
                f"output on example_input vs the original: cosine {self.output_cosine:.6f}, "
                f"relative error {self.output_rel_error:.2e}"
            )
        notes = [f"{r.name}: {r.note}" for r in self.replacements if r.note] + self.notes
        lines += [f"note: {n}" for n in notes]
        return "\n".join(lines)


def _with_range_columns(
    rows: list[tuple[str, ...]], replacements: list[Replacement]
) -> list[tuple[str, ...]]:
    """The table rows with the input range and the start error on it appended."""
    out = [(*rows[0], "input range", "max err (range)", "rel err (range)", "mean err (inputs)")]
    for row, r in zip(rows[1:], replacements):
        if r.input_range is None:
            out.append((*row, "-", "-", "-", "-"))
        else:
            lo, hi = r.input_range
            out.append(
                (*row, f"[{lo:.3g}, {hi:.3g}]", f"{r.range_max_error:.2e}",
                 f"{r.range_rel_error:.2e}", f"{r.input_mean_error:.2e}")
            )
    return out

"""Functional interface to the ``pau`` operators, one function per unit.

* :func:`pau`: the Padé Activation Unit.
* :func:`rpau`: the Randomized PAU, with :func:`draw_seed_offset` (the seeds
  the module draws) and :func:`rpau_noise` (the perturbations a seed gives).
* :func:`pwlu`: the Piecewise Linear Unit, with its inference tables
  :func:`segment_tables` / :func:`pwlu_segments`.
"""

from ._pau import pau
from ._pwlu import SegmentTables, pwlu, pwlu_segments, segment_tables
from ._rpau import draw_seed_offset, rpau, rpau_noise

__all__ = [
    "SegmentTables",
    "draw_seed_offset",
    "pau",
    "pwlu",
    "pwlu_segments",
    "rpau",
    "rpau_noise",
    "segment_tables",
]

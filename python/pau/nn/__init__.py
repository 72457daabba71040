"""The learnable activation modules: :class:`PAU`, :class:`RPAU` and :class:`PWLU`.

One file per unit (:mod:`pau.nn.pau`, :mod:`pau.nn.rpau`, :mod:`pau.nn.pwlu`),
PWLU's model-wide realignment in :mod:`pau.nn.pwlu_realignment`, and
:class:`Unit`, their common base class: what :func:`pau.convert`,
:func:`pau.plot` and the other tools ask of a unit. All of it is
also available at the top level (``pau.PAU``, ``pau.pwlu_realign``, ...).
"""

from ._unit import Unit
from .pau import PAU
from .pwlu import PWLU
from .pwlu_realignment import pwlu_collect_statistics, pwlu_realign
from .rpau import RPAU

__all__ = ["PAU", "PWLU", "RPAU", "Unit", "pwlu_collect_statistics", "pwlu_realign"]

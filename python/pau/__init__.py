"""pau: learnable activation functions as fast PyTorch custom operators.

``import pau`` registers the operators ``torch.ops.pau.*`` and exposes the
modules (:class:`PAU`, :class:`RPAU`, :class:`PWLU` with its realignment
:func:`pwlu_collect_statistics` / :func:`pwlu_realign`), the functional API
(:mod:`pau.functional`), the plain-PyTorch references (:mod:`pau.reference`), coefficient fitting
(:func:`fit`) and the initialisation presets (:mod:`pau.presets`).
"""

import torch  # noqa: F401  (load torch's libraries before the extension)

from . import _C, functional, presets, reference, rpau
from .deploy import cmake_prefix_path, library_path
from .fit import FitResult, fit
from .modules import PAU
from .pwlu import PWLU, pwlu_collect_statistics, pwlu_realign
from .rpau import RPAU

__version__ = "0.1.0"
__all__ = [
    "PAU",
    "PWLU",
    "RPAU",
    "FitResult",
    "cmake_prefix_path",
    "fit",
    "functional",
    "library_path",
    "presets",
    "pwlu_collect_statistics",
    "pwlu_realign",
    "reference",
    "rpau",
    "_C",
]

"""pau: learnable activation functions as fast PyTorch custom operators.

``import pau`` registers the operators ``torch.ops.pau.*`` and exposes the
modules (:mod:`pau.nn`: :class:`PAU`, :class:`RPAU`, :class:`PWLU` with its
realignment :func:`pwlu_collect_statistics` / :func:`pwlu_realign`), the
functional API (:mod:`pau.functional`: ``pau``, ``rpau``, ``pwlu``), the
plain-PyTorch references (:mod:`pau.reference`), coefficient fitting
(:func:`fit`), the initialisation presets (:mod:`pau.presets`), model
conversion (:func:`convert`), optimizer parameter groups for the coefficients
(:func:`parameter_groups`) and plots of learned activations (:func:`plot`,
:func:`record_inputs`).
"""

import torch  # noqa: F401  (load torch's libraries before the extension)

from . import _C, functional, optim, presets, reference
from .convert import ConversionSummary, convert
from .deploy import cmake_prefix_path, library_path
from .fit import FitResult, fit
from .nn import PAU, PWLU, RPAU, pwlu_collect_statistics, pwlu_realign
from .optim import parameter_groups
from .plot import plot
from .record import InputRecorder, record_inputs

__version__ = "0.1.0"
# pau.nn (a submodule, imported above) stays out of __all__: `from pau import *`
# must not shadow torch's nn.
__all__ = [
    "PAU",
    "PWLU",
    "RPAU",
    "ConversionSummary",
    "FitResult",
    "InputRecorder",
    "cmake_prefix_path",
    "convert",
    "fit",
    "functional",
    "library_path",
    "optim",
    "parameter_groups",
    "plot",
    "presets",
    "pwlu_collect_statistics",
    "pwlu_realign",
    "record_inputs",
    "reference",
    "_C",
]

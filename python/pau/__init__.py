"""pau: learnable activation functions as fast PyTorch custom operators.

``import pau`` registers the operators ``torch.ops.pau.*`` and exposes the
modules (:class:`PAU`), the functional API (:mod:`pau.functional`), the
plain-PyTorch references (:mod:`pau.reference`) and the fitting tools.
"""

from . import _C, functional, reference
from .modules import PAU

__version__ = "0.1.0"
__all__ = ["PAU", "functional", "reference", "_C"]

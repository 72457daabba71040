"""Reproduce the PAU paper's MNIST / Fashion-MNIST experiments (Table 2, appendix A.3).

Run ``python -m pau.experiments --quick`` for a few-minute demo, or see
``python -m pau.experiments --help``. The pieces are usable on their own:
:mod:`.models` (LeNet, VGG-8), :mod:`.data` (offline IDX / digits loaders),
:mod:`.train` (one cached, resumable run), :mod:`.report`, :mod:`.plots`.
"""

from .cli import main

__all__ = ["main"]

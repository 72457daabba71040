"""Importable helpers of the test suite (tests/ is on pytest's pythonpath, see pyproject.toml).

devices     the devices a per-device test runs on, the CUDA skip marker
inputs      parameter grids, seeded random inputs, coefficients and PWLU parameters, layouts
references  the plain-PyTorch references and the checks of the operators against them
tolerances  the per-dtype tolerances and the comparisons that apply them
exact       200-digit decimal evaluation of PAU and its gradients
opchecks    torch.library.opcheck of the PWLU operators; torch.compile against eager
processes   fresh interpreters: running code, loading a saved TorchScript module or exported program
machine     CPU flags and a one-thread context for the references
"""

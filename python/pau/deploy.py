"""Where the installed operator library and its CMake package are.

For C++ programs (see ``examples/libtorch``)::

    cmake -DCMAKE_PREFIX_PATH="$(python -c 'import torch, pau; \
print(torch.utils.cmake_prefix_path + ";" + pau.cmake_prefix_path)')" ...

and in CMake ``find_package(pau REQUIRED)``, ``target_link_libraries(app
PRIVATE pau::pau_ops)``. Programs that do not use CMake can ``dlopen``
:func:`library_path` (or link it with ``-Wl,--no-as-needed``); in Python,
``torch.ops.load_library(pau.library_path())`` is what ``import pau`` does.
"""

from __future__ import annotations

import os

import torch

from . import _C

# The compiled files live beside pau._C: in site-packages/pau for a regular
# install, and there too (not beside this file) for an editable one.
_BINARY_DIR = os.path.dirname(os.path.abspath(_C.__file__))

#: Directory to add to ``CMAKE_PREFIX_PATH`` so that ``find_package(pau)``
#: finds ``share/cmake/pau/pauConfig.cmake``; the counterpart of
#: ``torch.utils.cmake_prefix_path``.
cmake_prefix_path: str = os.path.join(_BINARY_DIR, "share", "cmake")


def library_path() -> str:
    """Absolute path of ``libpau_ops.so``, the library that registers ``torch.ops.pau``."""
    lib_dir = os.path.join(_BINARY_DIR, "lib")
    for name in ("libpau_ops.so", "libpau_ops.dylib", "pau_ops.dll"):
        path = os.path.join(lib_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"pau: the operator library is missing from {lib_dir}; reinstall pau")


#: Dispatch keys :func:`operator_backends` reports.
BACKENDS: tuple[str, ...] = ("CPU", "CUDA", "Meta")


def operator_backends() -> dict[str, tuple[str, ...]]:
    """Each ``pau::*`` operator this build registers, with the backends that have a kernel for it.

    Asks the dispatcher, so it needs no device: a build with CUDA kernels lists
    ``"CUDA"`` on a machine without a GPU too. Backends are among :data:`BACKENDS`.
    """
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("pau::"))
    return {
        name: tuple(b for b in BACKENDS if torch._C._dispatch_has_kernel_for_dispatch_key(name, b))
        for name in names
    }


__all__ = ["BACKENDS", "cmake_prefix_path", "library_path", "operator_backends"]

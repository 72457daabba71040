"""Fresh interpreters: running code in one, and loading a saved TorchScript module there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor


def run_python(
    code: str,
    env: Optional[dict[str, str]] = None,
    timeout: float = 180.0,
    cwd: Optional[Path] = None,
) -> str:
    """Runs ``code`` in a fresh interpreter; returns stdout, fails with stderr on error."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(cwd) if cwd is not None else None,
    )
    assert result.returncode == 0, (
        f"subprocess failed ({result.returncode})\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}"
    )
    return result.stdout


def check_script_module_in_fresh_process(
    scripted: torch.jit.ScriptModule, model: torch.nn.Module, x: Tensor, tmp_path: Path
) -> None:
    """Saves ``scripted``; a fresh interpreter loads it with ``import pau`` alone, reproduces
    ``model(x)`` and backpropagates into every parameter."""
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    run_python(f"""
        import torch, pau
        io = torch.load({str(tmp_path / "io.pt")!r})
        model = torch.jit.load({str(path)!r})
        torch.testing.assert_close(model(io["x"]), io["y"])
        model(io["x"]).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
    """)


def check_exported_program_in_fresh_process(
    model: torch.nn.Module, x: Tensor, tmp_path: Path
) -> None:
    """``torch.export`` s ``model`` and saves it; a fresh interpreter loads it with
    ``import pau`` alone and reproduces ``model(x)``."""
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (x,)), path)
    torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    run_python(f"""
        import torch, pau
        io = torch.load({str(tmp_path / "io.pt")!r})
        program = torch.export.load({str(path)!r})
        torch.testing.assert_close(program.module()(io["x"]), io["y"])
    """)

"""torch.export and AOTInductor with pau layers.

An ExportedProgram keeps ``torch.ops.pau.forward`` as one node; saved with
``torch.export.save`` it loads and runs in a fresh process after ``import
pau``. AOTInductor compiles the rest of the graph to C++ and calls the pau
operator through its proxy executor (the dispatcher), so the package needs the
operator library loaded too, and nothing else.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pau
import torch
from torch import nn


class Net(nn.Module):
    """PAU layers of every variant, G = 1 and G = C, on dim 1 and dim -1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = pau.PAU(variant="safe", groups=1, dim=1)
        self.act2 = pau.PAU(variant="abs_sum", groups=6, dim=1)
        self.fc = nn.Linear(6, 5)
        self.act3 = pau.PAU(degrees=(3, 2), variant="plain", groups=5, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.act1(self.conv(x)))
        return self.act3(self.fc(x.permute(0, 2, 3, 1)))  # (batch, H, W, features)


def make_net() -> Net:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, pau.PAU):  # make the groups of G = C layers differ
                module.numerator.add_(0.05 * torch.randn_like(module.numerator))
                module.denominator.add_(0.05 * torch.randn_like(module.denominator))
    return net


def export(net: nn.Module) -> torch.export.ExportedProgram:
    x = torch.randn(2, 3, 5, 4)
    return torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))


def pau_nodes(program: torch.export.ExportedProgram) -> list:
    return [n for n in program.graph.nodes if n.target is torch.ops.pau.forward.default]


def run_fresh(script: str) -> None:
    """Runs ``script`` in a new interpreter, so only what it imports is registered."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_exported_program_keeps_the_operator():
    program = export(make_net())
    assert len(pau_nodes(program)) == 3
    # No decomposition exists for it, so lowering to core ATen keeps it too.
    assert len(pau_nodes(program.run_decompositions())) == 3


def test_exported_program_trains():
    net = make_net()
    module = export(net).module()
    x = torch.randn(3, 3, 5, 4)  # another batch size: the batch dimension is dynamic
    module(x).square().sum().backward()
    net(x).square().sum().backward()
    grads = dict(module.named_parameters())
    for name, parameter in net.named_parameters():
        torch.testing.assert_close(grads[name].grad, parameter.grad, msg=name)


def test_exported_program_save_load_in_fresh_process(tmp_path):
    net = make_net()
    x = torch.randn(4, 3, 5, 4)
    torch.export.save(export(net), tmp_path / "net.pt2")
    with torch.no_grad():
        torch.save({"x": x, "y": net(x)}, tmp_path / "io.pt")
    run_fresh(f"""
        import torch
        import pau  # registers torch.ops.pau, which the loaded graph calls
        program = torch.export.load({str(tmp_path / "net.pt2")!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            y = program.module()(io["x"])
        torch.testing.assert_close(y, io["y"], rtol=0, atol=0)
    """)


def test_loading_without_import_pau_fails_until_pau_is_imported(tmp_path):
    # torch's own error, which the README's deploy section quotes: the graph
    # names torch.ops.pau.forward.default, which only `import pau` registers.
    net = make_net()
    x = torch.randn(2, 3, 5, 4)
    torch.export.save(export(net), tmp_path / "net.pt2")
    with torch.no_grad():
        torch.save({"x": x, "y": net(x)}, tmp_path / "io.pt")
    run_fresh(f"""
        import contextlib, io, logging
        import torch
        log = io.StringIO()
        logging.getLogger("torch.export").addHandler(logging.StreamHandler(log))
        with contextlib.redirect_stderr(log):
            try:
                torch.export.load({str(tmp_path / "net.pt2")!r})
            except RuntimeError:
                pass
            else:
                raise AssertionError("loaded without the pau operators")
        assert "failed to resolve torch.ops.pau.forward.default" in log.getvalue(), log.getvalue()
        import pau  # registers torch.ops.pau; now the same file loads
        program = torch.export.load({str(tmp_path / "net.pt2")!r})
        data = torch.load({str(tmp_path / "io.pt")!r})
        with torch.no_grad():
            torch.testing.assert_close(program.module()(data["x"]), data["y"], rtol=0, atol=0)
    """)


def test_aoti_package_round_trip_in_fresh_process(tmp_path):
    # Compiles C++ (about 30 s on two cores): one small model only.
    net = make_net()
    x = torch.randn(4, 3, 5, 4)
    with torch.no_grad():
        path = torch._inductor.aoti_compile_and_package(
            export(net), package_path=str(tmp_path / "net_aoti.pt2")
        )
        torch.save({"x": x, "y": net(x)}, tmp_path / "io.pt")
    run_fresh(f"""
        import torch
        import pau  # the package calls pau::forward through the dispatcher
        runner = torch._inductor.aoti_load_package({path!r})
        io = torch.load({str(tmp_path / "io.pt")!r})
        y = runner(io["x"])
        # Inductor may fuse and reorder the conv/linear parts.
        torch.testing.assert_close(y, io["y"], rtol=1e-5, atol=1e-5)
    """)

"""Print one of the README's two set-up commands, so CI runs exactly what users read.

The README opens with a fenced block whose lines are the main-job command and
then the test command.
"""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def setup_commands(text: str) -> list[str]:
    """The non-empty lines of the README's first fenced code block."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("```"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return [line for line in lines[start + 1 : end] if line.strip()]


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "test"
    commands = setup_commands(README.read_text())
    index = {"main": 0, "test": 1}.get(which)
    if index is None or len(commands) < 2:
        sys.exit(f"usage: readme_command.py main|test (README needs two set-up lines: {commands})")
    print(commands[index])


if __name__ == "__main__":
    main()

"""What a user types: the command as this shell finds it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def command_name() -> str:
    """`clipping-edge` as this shell runs it: the bare name when it is on PATH, else its full path (a venv's
    bin/ that is not activated), else the module form. Used in the "next:" lines every command prints."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    found = shutil.which("clipping-edge")
    if found and (script is None or script.name != "clipping-edge" or Path(found).resolve() == script.resolve()):
        return "clipping-edge"
    if script is not None and script.name == "clipping-edge":
        return str(script)
    return f"{sys.executable} -m clipping_edge.cli"

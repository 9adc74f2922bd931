"""How to name the `vigil` command in a printed hint so that the user can paste it as is.

`make` installs `vigil` into `.venv/bin`, which is not on PATH until the venv is activated: a hint
saying plain `vigil up` would then answer "command not found".
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def vigil_command() -> str:
    """`vigil` when the shell finds it on PATH, else the path of the one next to this interpreter
    (`.venv/bin/vigil` from the repository root)."""
    if shutil.which("vigil"):
        return "vigil"
    script = Path(sys.executable).parent / "vigil"
    try:
        relative = os.path.relpath(script)
    except ValueError:  # another drive (Windows): the absolute path still works
        return str(script)
    # Beside or below the working directory (`.venv/bin/vigil` in the repo root) the short form reads
    # best; from elsewhere `../../x/.venv/bin/vigil` is harder to paste than the absolute path.
    return str(script) if relative.startswith("..") else relative

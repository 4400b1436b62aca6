"""What the tests share besides fixtures: the repository root and the one way to run a CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, module: str | None = "sen_infer", env: dict | None = None, timeout: float | None = 300,
            text: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS...` (or `python ARGS...` with module=None) from the repository root.

    Args:
        args: the command line; each is passed through `os.fsencode`, so a surrogate-escaped name reaches
            the child as the raw bytes a shell would pass.
        module: the module to run, or None to run `python` with `args` as they are.
        env: the child's environment (default: this process's).
        timeout: seconds before the child is killed and `subprocess.TimeoutExpired` raised; bounded by
            the work the command does, never a claim about speed.
        text: decode stdout and stderr as text (False: bytes).

    Returns:
        The finished process, its output captured.
    """
    argv = [sys.executable, *(["-m", module] if module else []), *map(str, args)]
    return subprocess.run([os.fsencode(a) for a in argv], cwd=cwd, capture_output=True, text=text, env=env,
                          timeout=timeout)

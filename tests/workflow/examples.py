"""Running and importing the programs in client_examples/ from tests."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "client_examples"


def run_example(*command: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run an example as a user would, in this environment (a fixture may have pointed AWS_* at an
    emulator) plus `env`, with a stdin that is not a terminal."""
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env})
    assert done.returncode == 0, f"{command} exited with {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def python_example(script: str, *args: str, timeout: float = 600) -> str:
    """Run client_examples/<script> with this interpreter; its standard output."""
    return run_example(sys.executable, str(EXAMPLES / script), *args, timeout=timeout).stdout


def import_example(name: str) -> ModuleType:
    """Import an example module (they import their shared helpers by plain name, as scripts do)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)

"""Process settings applied by ``import engine`` (engine/runtime.py), each checked in a fresh interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs the Lite0 trunk on a 288x384 working image (its activations are the multi-megabyte buffers
# of a prediction) after warm-up runs, and prints the page faults per run.
_TRUNK_RUNS = """
import json, resource
import engine, torch
from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict
weights = trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0"))
trunk = Trunk("efficientnet_lite0", weights)
x = torch.rand(1, 3, 384, 288).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    for _ in range(5):
        trunk.eager(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        trunk.eager(x)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GOMP_", "OMP_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stdout.strip()


def test_import_is_cheap_and_loads_torch_on_first_use() -> None:
    code = ("import sys, engine; before = 'torch' in sys.modules; engine.Model; "
            "print(before, 'torch' in sys.modules)")
    assert _python(code) == "False True"


def test_openmp_spinning_is_limited_unless_the_user_chose() -> None:
    code = "import os, engine; print(os.environ.get('GOMP_SPINCOUNT'))"
    assert _python(code) == "10000"
    assert _python(code, GOMP_SPINCOUNT="500") == "500"
    assert _python(code, OMP_WAIT_POLICY="active") == "None"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_activation_buffers_are_reused_instead_of_page_faulted_each_run() -> None:
    assert json.loads(_python(_TRUNK_RUNS)) < 100
    # Buffers mapped afresh for every allocation, as glibc does from its starting threshold of
    # 128 KB (pinned here through the user's own variable, which the engine then leaves alone):
    # thousands of pages faulted in on every run. (glibc's adaptive default lands in between,
    # depending on the allocation history: ~500-5,000 faults per run were seen.)
    assert json.loads(_python(_TRUNK_RUNS, MALLOC_MMAP_THRESHOLD_="131072")) > 2000

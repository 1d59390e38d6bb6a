"""Where the shared datasets live: beside the repository (../shared/datasets), or LOOKOUT_COOKIES_DIR.

A module of its own (not conftest) so that test modules in any folder can import it without
picking up another folder's conftest of the same name.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
COOKIES_DIR = Path(os.environ.get("LOOKOUT_COOKIES_DIR") or REPO_ROOT.parent / "shared" / "datasets" / "cookies")

"""Where the benchmark scripts find the optional shared data.

The data folder is ``$VERIFIER_SHARED`` when that variable is set (the same
variable the test suite reads), else ``../shared`` next to the checkout.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The shared data folder (it may not exist)."""
    return Path(os.environ.get("VERIFIER_SHARED", ROOT.parent / "shared"))


def require(*parts: str) -> Path:
    """``shared_root()/parts``, or exit 2 with a message saying how to point at it."""
    path = shared_root().joinpath(*parts)
    if not path.exists():
        print(f"error: {path} does not exist; this benchmark needs the shared data "
              "(set VERIFIER_SHARED to the folder that holds vnncomp/, models/, datasets/)",
              file=sys.stderr)
        sys.exit(2)
    return path

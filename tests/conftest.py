"""Shared test fixtures: paths to the optional ../shared data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VERIFIER_SHARED", ROOT.parent / "shared"))
VNNCOMP = SHARED / "vnncomp"


def require_shared(*parts: str) -> Path:
    """Return ../shared/<parts>, or skip the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared benchmark data is optional)")
    return path

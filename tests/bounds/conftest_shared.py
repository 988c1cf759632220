"""Re-export the shared-data skip helper of the top-level conftest."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
require_shared = _module.require_shared

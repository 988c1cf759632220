"""verifier: prove or refute properties of neural networks exported to ONNX.

The public API is small and imported lazily (``import verifier`` stays cheap):

    load_model(path) -> Graph                  the ONNX front end
    evaluate(graph, x)                         exact float64 evaluation of the IR
    load_property(path) -> Property            VNN-LIB 1.0 / 2.0 reader
    bound_problems(prop) -> [BoundProblem]     Box, C, d of each unsafe polytope
    compute_bounds(graph, Box(...), method=)   IBP, CROWN, alpha-CROWN
    verify(model, property, Options()) -> Result
    certify_property(model, property, sigma)   randomized smoothing certificate
    VerifierError                              base class of every reported error

BLAS threads: importing this package sets ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to 1 unless they are already set,
for the CLI and the library alike: the bound engines run many small matrix
products between Python steps, and a second BLAS thread contending with the
process (or with a second `verifier run --jobs 2` instance) made one
alpha-CROWN call several times (up to 25x) slower on a 2-core machine;
onnxruntime's own threads are unaffected.
It only takes effect when numpy has not been imported yet; otherwise set the
variables before starting Python (a value you set is never changed).
"""
from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"

if "numpy" not in _sys.modules:
    for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ.setdefault(_name, "1")

_API = {
    "load_model": "verifier.frontend",
    "evaluate": "verifier.ir.evaluate",
    "Graph": "verifier.ir.graph",
    "load_property": "verifier.spec",
    "Property": "verifier.spec",
    "compute_bounds": "verifier.bounds",
    "bound_problems": "verifier.bounds.problem",
    "BoundProblem": "verifier.bounds.problem",
    "Box": "verifier.bounds",
    "L2Ball": "verifier.bounds",
    "verify": "verifier.verify",
    "Options": "verifier.verify",
    "Result": "verifier.result",
    "Verdict": "verifier.result",
    "certify_property": "verifier.smoothing",
    "SmoothedClassifier": "verifier.smoothing",
    "VerifierError": "verifier.errors",
}


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    import importlib

    loaded = importlib.import_module(module)
    # ``verify`` is also the name of its submodule, which the import system
    # binds on this package; that module is callable (it calls its verify()),
    # so verifier.verify(model, prop) works however it was reached
    value = loaded if name == "verify" else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    """The API (imported or not), the version and the loaded subpackages."""
    public = {name for name in globals() if not name.startswith("_")} - {"annotations"}
    return sorted(public | set(_API) | {"__version__"})


__all__ = sorted(_API)

"""verifier: prove or refute properties of neural networks exported to ONNX.

The public API is small and imported lazily (``import verifier`` stays cheap):

    load_model(path) -> Graph                  the ONNX front end
    evaluate(graph, x)                         exact float64 evaluation of the IR
    load_property(path) -> Property            VNN-LIB 1.0 / 2.0 reader
    compute_bounds(graph, Box(...), method=)   IBP, CROWN, alpha-CROWN
    verify(model, property, Options()) -> Result
    certify_property(model, property, sigma)   randomized smoothing certificate
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load_model": "verifier.frontend",
    "evaluate": "verifier.ir.evaluate",
    "Graph": "verifier.ir.graph",
    "load_property": "verifier.spec",
    "Property": "verifier.spec",
    "compute_bounds": "verifier.bounds",
    "Box": "verifier.bounds",
    "L2Ball": "verifier.bounds",
    "verify": "verifier.verify",
    "Options": "verifier.verify",
    "Result": "verifier.result",
    "Verdict": "verifier.result",
    "certify_property": "verifier.smoothing",
    "SmoothedClassifier": "verifier.smoothing",
}


def __getattr__(name):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'verifier' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_API)

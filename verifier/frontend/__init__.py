"""ONNX front end: read a model and lower it into the core IR.

Converters live in ``convert_*.py`` modules, one per op family, and register
themselves in :mod:`verifier.frontend.registry`.
"""
from verifier.frontend.loader import load_model, read_model_proto

__all__ = ["load_model", "read_model_proto"]

"""The library's exceptions: one base class, typed subclasses.

Every error a user can cause (a missing file, a malformed model, an unsupported
op, a malformed property, mismatched sizes) is raised as a subclass of
:class:`VerifierError`. The CLI turns these into a one-paragraph message and
exit code 2; anything else is a bug in the verifier.
"""
from __future__ import annotations

from dataclasses import dataclass


class VerifierError(Exception):
    """Base class of every error the verifier reports to its users."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputFileError(VerifierError):
    """A file named by the user is missing or unreadable."""


class ModelError(VerifierError):
    """The model file is not a valid ONNX model, or its graph is inconsistent."""


@dataclass(frozen=True)
class UnsupportedNode:
    """One node the front end cannot lower, with the reason."""

    name: str
    op_type: str
    opset: int
    reason: str = ""

    def describe(self) -> str:
        text = f"node {self.name!r} (op {self.op_type}, opset {self.opset})"
        return f"{text}: {self.reason}" if self.reason else text


class UnsupportedModelError(ModelError):
    """The model uses ops (or attributes) the front end does not support.

    Lists every offending node at once, so a user learns the whole story in
    one run.
    """

    def __init__(self, nodes: list[UnsupportedNode], path: str | None = None):
        self.nodes = list(nodes)
        where = f" in {path}" if path else ""
        count = len(self.nodes)
        items = "; ".join(n.describe() for n in self.nodes)
        super().__init__(
            f"unsupported model{where}: {count} node{'s' if count != 1 else ''} "
            f"cannot be lowered: {items}"
        )


class UnsupportedGraphError(UnsupportedModelError):
    """The model as a whole is outside what the verifier handles (several
    inputs or outputs, a non-float input, an output that does not depend on
    the input): a model-level reason, no node to blame (``nodes`` is empty)."""

    def __init__(self, reason: str, path: str | None = None):
        self.nodes = []
        self.reason = reason
        where = f" in {path}" if path else ""
        VerifierError.__init__(self, f"unsupported model{where}: {reason}")


class PropertyError(VerifierError):
    """A property file is malformed; names the file, line and column."""

    def __init__(self, message: str, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        self.path = path
        self.line = line
        self.column = column
        where = path or "<property>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")
        self.detail = message


class MismatchError(VerifierError):
    """Sizes or shapes of two inputs do not agree (e.g. property vs model)."""


class DataError(VerifierError):
    """A data file (images, labels) is malformed or does not fit the model."""


class DeviceError(VerifierError):
    """A requested device (e.g. a CUDA GPU) cannot be used on this machine."""

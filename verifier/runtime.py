"""Concrete execution of ONNX models: the only module that imports onnxruntime.

Everything that runs a network on real numbers goes through here (smoothing
samples, counterexample replay, soundness tests), so that provider choice,
thread settings and log levels are decided in one place.

    load_onnx(model) -> onnx.ModelProto        path, .onnx.gz, bytes or proto
    cuda_status() -> (bool, str)               can CUDA really be used here?
    open_session(model, device="auto", threads=None, batching="auto") -> Session
    Session.run(x) -> first output, Session.run_all(x) -> all outputs
    Session.provider / .device / .input_shape / .output_shape / .batch_mode

Facts this module respects (see the design guide, "Numerics"):

- ``onnxruntime-gpu`` without its CUDA libraries logs an error and silently
  falls back to the CPU. CUDA is therefore only requested after a probe
  session has shown that it really loads, logs are kept at error level, and
  :attr:`Session.provider` reports the provider the session actually got.
- On the CPU, intra-op thread spinning is turned off
  (``session.intra_op.allow_spinning = 0``): callers do numpy work between
  ``run()`` calls, and spinning threads steal the cores from it.
- Many exported models (every VNN-COMP network) have a fixed batch of 1.
  Such a model is re-batched (its batch dimension made symbolic) when a check
  on random inputs shows that the re-batched model gives the same outputs
  row by row; otherwise rows are run one at a time ("loop").
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import onnxruntime as ort

from verifier.errors import DeviceError, MismatchError, ModelError
from verifier.frontend import proto as pb

if TYPE_CHECKING:
    import onnx

ModelLike = Union[str, Path, bytes, "onnx.ModelProto"]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
BATCHINGS = ("auto", "loop")

# onnxruntime 1.31 reads IR versions up to 13; onnx 1.23 writes 14 by default.
_MAX_IR_VERSION = 10
_LOG_ERRORS_ONLY = 3
_LOG_FATAL_ONLY = 4

_NUMPY_DTYPES = {
    pb.FLOAT: np.float32,
    pb.DOUBLE: np.float64,
    pb.FLOAT16: np.float16,
}


# --------------------------------------------------------------------------
# Loading


def load_onnx(model: ModelLike) -> onnx.ModelProto:
    """Read a model from a path (``.onnx`` or ``.onnx.gz``), bytes or a proto
    (the front end's reader: :func:`verifier.frontend.read_model_proto`)."""
    from verifier.frontend.loader import read_model_proto

    return read_model_proto(model)


def _graph_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 lists weights as inputs)."""
    weights = {t.name for t in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name not in weights]


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Shape of a value: ints, symbolic names, or None for unknown."""
    dims: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _rebatched(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose input and outputs have a symbolic batch dimension."""
    copy = type(proto)()
    copy.CopyFrom(proto)
    for value in _graph_inputs(copy) + list(copy.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    del copy.graph.value_info[:]  # intermediate shapes may pin the batch to 1
    return copy


# --------------------------------------------------------------------------
# Providers


@contextlib.contextmanager
def _silenced_output():
    """Send what native code and Python print to fds 1 and 2 to /dev/null."""
    import contextlib
    import io
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        # Python-level prints too (onnxruntime's DLL preloading prints with
        # print()), also when sys.stdout is not fd 1 (click's CliRunner)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA provider really loads here, and why not if it does not.

    ``onnxruntime`` lists ``CUDAExecutionProvider`` as available as soon as
    ``onnxruntime-gpu`` is installed, even when CUDA or cuDNN are missing; it
    then logs an error and runs on the CPU. So a tiny probe session is opened
    (with logging silenced) and the provider it really got is checked.
    """
    if CUDA not in ort.get_available_providers():
        return False, "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:  # finds CUDA/cuDNN installed from PyPI wheels
        try:
            with _silenced_output():  # it prints "Failed to load ..." per missing library
                preload()
        except Exception:  # noqa: BLE001 - a failed preload is reported below
            pass
    import onnx

    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    probe = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    probe.ir_version = 8
    options = ort.SessionOptions()
    options.log_severity_level = _LOG_FATAL_ONLY
    ort.set_default_logger_severity(_LOG_FATAL_ONLY)
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options,
                                       providers=[CUDA, CPU])
        session.run(None, {"x": np.ones(1, np.float32)})
    except Exception as exc:  # noqa: BLE001
        return False, f"the CUDA provider failed to start ({type(exc).__name__}: {exc})"
    finally:
        ort.set_default_logger_severity(_LOG_ERRORS_ONLY)
    if session.get_providers()[0] != CUDA:
        return False, "the CUDA provider did not load (CUDA 13 / cuDNN 9 libraries not found)"
    return True, "CUDA provider loads"


def cuda_available() -> bool:
    """True when sessions can really run on a CUDA GPU."""
    return cuda_status()[0]


def _providers(device: str) -> list:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return [CPU]
    ok, why = cuda_status()
    if ok:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceError(f"device 'cuda' was asked for, but {why}")
    return [CPU]


def _session_options(threads: int | None, cpu: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = _LOG_ERRORS_ONLY
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        options.intra_op_num_threads = threads
    if cpu:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _inference_session(proto: onnx.ModelProto, providers: list, threads: int | None,
                       where: str) -> ort.InferenceSession:
    options = _session_options(threads, cpu=providers[0] == CPU)
    if proto.ir_version > _MAX_IR_VERSION:
        lowered = type(proto)()
        lowered.CopyFrom(proto)
        lowered.ir_version = _MAX_IR_VERSION
        proto = lowered
    try:
        return ort.InferenceSession(proto.SerializeToString(), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot load {where}: {_first_line(exc)}") from None


# --------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True)
class TensorInfo:
    """Name, per-sample shape (batch dimension dropped) and dtype of a tensor."""

    name: str
    shape: tuple  # ints; None or a string for a free dimension
    dtype: type


class Session:
    """An onnxruntime session that runs float batches of one model.

    Use :func:`open_session` to make one. Attributes:

    - ``provider``: the execution provider the session really uses.
    - ``device``: ``"cuda"`` or ``"cpu"``.
    - ``input_shape`` / ``output_shape``: per-sample shapes (no batch dim).
    - ``extra_inputs``: names of the graph inputs after the first; they are
      not batched and are fed through ``run(x, extra={...})``.
    - ``batch_mode``: ``"dynamic"`` (the model takes any batch),
      ``"rebatched"`` (a fixed batch of 1 made symbolic and checked),
      ``"loop"`` (a fixed batch of 1; rows are run one at a time) or
      ``"unbatched"`` (the first dimension is fixed and not 1, so the input
      has no batch dimension: a sample is the whole tensor, run one at a time).
    """

    def __init__(self, session: ort.InferenceSession, input_info: TensorInfo,
                 outputs: tuple[TensorInfo, ...], batch_mode: str, where: str,
                 extra_inputs: tuple[str, ...] = ()):
        self._session = session
        self.input = input_info
        self.extra_inputs = extra_inputs
        self.outputs = outputs
        self.batch_mode = batch_mode
        self.where = where
        self.provider = session.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA else "cpu"

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def input_shape(self) -> tuple:
        return self.input.shape

    @property
    def input_size(self) -> int:
        return int(np.prod([d for d in self.input.shape if isinstance(d, int)], dtype=np.int64))

    @property
    def output_shape(self) -> tuple:
        return self.outputs[0].shape

    def describe(self) -> str:
        return f"{self.provider}, batch {self.batch_mode}"

    def _as_batch(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype == self.input.dtype and x.flags.c_contiguous and x.shape[1:] == self.input.shape:
            return x  # the fast path of sampling loops
        fixed = all(isinstance(d, int) for d in self.input.shape)
        shape = tuple(self.input.shape)
        if fixed and x.ndim >= 1 and x.shape[1:] != shape:
            if int(np.prod(x.shape[1:], dtype=np.int64)) == self.input_size:
                x = x.reshape((x.shape[0],) + shape)  # flat C-order rows are accepted
            else:
                raise MismatchError(f"model {self.where} takes samples of shape {shape}, "
                                    f"got a batch of shape {x.shape}")
        if x.ndim != len(shape) + 1:
            raise MismatchError(f"model {self.where} takes samples of shape {shape}, "
                                f"got a batch of shape {x.shape}")
        return np.ascontiguousarray(x, dtype=self.input.dtype)

    def run_all(self, x, extra: dict | None = None) -> list[np.ndarray]:
        """Run a batch ``x`` of shape (B, *input_shape); return every output.

        Rows may also be given flat (C order), as VNN-LIB numbers them.
        ``extra`` feeds the model's other inputs (see :attr:`extra_inputs`);
        they are passed unchanged with every row or batch.
        """
        x = self._as_batch(x)
        feeds = dict(extra or {})
        missing = [name for name in self.extra_inputs if name not in feeds]
        if missing:
            raise MismatchError(f"model {self.where} also needs inputs {', '.join(missing)}")
        name = self.input.name
        if self.batch_mode in ("dynamic", "rebatched") or (self.batch_mode == "loop" and len(x) == 1):
            return self._session.run(None, {name: x, **feeds})
        if not len(x):
            return [np.zeros((0,) + tuple(d if isinstance(d, int) else 0 for d in o.shape),
                             o.dtype or np.float32) for o in self.outputs]
        if self.batch_mode == "unbatched":
            rows = [self._session.run(None, {name: x[i], **feeds}) for i in range(len(x))]
            return [np.stack([r[k] for r in rows]) for k in range(len(self.outputs))]
        rows = [self._session.run(None, {name: x[i:i + 1], **feeds}) for i in range(len(x))]
        return [np.concatenate([r[k] for r in rows]) for k in range(len(self.outputs))]

    def run(self, x, extra: dict | None = None) -> np.ndarray:
        """Run a batch and return the first output, shape (B, *output_shape)."""
        return self.run_all(x, extra)[0]


def _tensor_info(value, drop_batch: bool = True) -> TensorInfo:
    dims = _dims(value)
    elem = value.type.tensor_type.elem_type
    dtype = _NUMPY_DTYPES.get(elem)  # None: not a float tensor
    return TensorInfo(value.name, tuple(dims[1:] if drop_batch else dims), dtype)


def _first_run(session: ort.InferenceSession, input_info: TensorInfo, batched: bool,
               extra: tuple[str, ...], where: str) -> None:
    """Run the new session once on zeros; a :class:`ModelError` with
    onnxruntime's message if it cannot.

    Some models load but fail on their first run (a Conv with dilations and
    ``auto_pad=SAME_UPPER``: "Dilation not supported for AutoPadType::..."),
    so a session is only handed out once it has run. Free dimensions are
    taken as 1; models with further inputs are not probed (their feeds are
    the caller's).
    """
    if extra:
        return
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in input_info.shape)
    x = np.zeros(((1,) if batched else ()) + shape, dtype=input_info.dtype)
    try:
        session.run(None, {input_info.name: x}, _quiet())
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot run {where}: {_first_line(exc)}") from None


def _quiet() -> ort.RunOptions:
    """Run options of probe runs: their errors are raised or handled, not logged."""
    options = ort.RunOptions()
    options.log_severity_level = _LOG_FATAL_ONLY
    return options


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _same_outputs(batched: list[np.ndarray], rows: list[list[np.ndarray]]) -> bool:
    for k, out in enumerate(batched):
        expect = np.concatenate([r[k] for r in rows])
        if out.shape != expect.shape:
            return False
        finite = np.abs(expect[np.isfinite(expect)])
        scale = max(1.0, float(finite.max()) if finite.size else 1.0)
        # infinities must match exactly (allclose compares them as equal values)
        if not np.allclose(out, expect, rtol=1e-4, atol=1e-5 * scale, equal_nan=True):
            return False
    return True


def open_session(model: ModelLike, device: str = "auto", threads: int | None = None,
                 batching: str = "auto", seed: int = 0, name: str | None = None) -> Session:
    """Open ``model`` (path, bytes or proto) for batched float inference.

    The first graph input is the batched one; any further inputs are fed
    unchanged with each call (``Session.extra_inputs``).

    ``device``: ``"auto"`` (CUDA when it really loads, else CPU), ``"cpu"``
    or ``"cuda"`` (a :class:`DeviceError` when CUDA cannot be used).
    ``threads``: onnxruntime intra-op threads (default: its own choice).
    ``batching``: ``"auto"`` re-batches a fixed batch-1 model when that is
    checked to be exact on random inputs (drawn from ``seed``); ``"loop"``
    keeps the model byte for byte and runs rows one at a time (use it to
    replay a counterexample exactly as a checker would).
    ``name``: how errors name the model (default: its path, or "the model").

    The session has run once on zeros: a model that onnxruntime loads but
    cannot run raises :class:`ModelError` here, with onnxruntime's message.
    """
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
    where = name or (str(model) if isinstance(model, (str, Path)) else "the model")
    proto = load_onnx(model)
    inputs = _graph_inputs(proto)
    if not inputs:
        raise ModelError(f"{where} has no inputs")
    if not proto.graph.output:
        raise ModelError(f"{where} has no outputs")
    dims = _dims(inputs[0])
    if not dims:
        raise ModelError(f"{where}: input {inputs[0].name!r} is a scalar; expected a batch dimension")
    batch = dims[0]
    if not isinstance(batch, int) or batch == 0:
        mode = "dynamic"
    elif batch == 1:
        mode = "loop"
    else:  # no batch dimension: the whole tensor is one sample
        mode = "unbatched"
    has_batch = mode != "unbatched"
    input_info = _tensor_info(inputs[0], drop_batch=has_batch)
    if input_info.dtype is None:
        raise ModelError(f"{where}: input {inputs[0].name!r} is not a floating-point tensor")
    outputs = tuple(_tensor_info(v, drop_batch=has_batch) for v in proto.graph.output)
    providers = _providers(device)
    session = _inference_session(proto, providers, threads, where)
    extra = tuple(v.name for v in inputs[1:])
    _first_run(session, input_info, has_batch, extra, where)
    if (mode == "loop" and batching == "auto" and not extra
            and all(isinstance(d, int) for d in input_info.shape)):
        probe = np.random.default_rng(seed).standard_normal(
            (3,) + tuple(input_info.shape)).astype(input_info.dtype)
        try:
            candidate = _inference_session(_rebatched(proto), providers, threads, where)
            batched = candidate.run(None, {input_info.name: probe}, _quiet())
            rows = [session.run(None, {input_info.name: probe[i:i + 1]}) for i in range(3)]
            if _same_outputs(batched, rows):
                session, mode = candidate, "rebatched"
        except Exception:  # noqa: BLE001 - a model that cannot be re-batched is looped
            pass
    return Session(session, input_info, outputs, mode, where, extra)


def run_model(model: ModelLike, x, device: str = "cpu") -> np.ndarray:
    """One-shot convenience: open ``model`` and return its first output on ``x``."""
    return open_session(model, device=device).run(x)

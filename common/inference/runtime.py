"""Scoring with ONNX Runtime: the same network, exported once per ``fedami predict``, about twice as fast on a CPU.

:class:`OnnxRuntimeModel` is a drop-in ``nn.Module`` for :func:`common.training.engine.predict`: it
takes and returns torch tensors, so windowed and whole-record scoring, batching and the card's
settings stay exactly those of evaluation. Its scores equal the torch network's to float32 rounding
(tests/test_runtime.py checks every registered model); ``benchmarks/bench_model.py`` measures both.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Final, Literal

import torch
from torch import nn

from common.data.leads import N_LEADS
from common.models.blocks import N_DEMO

Engine = Literal["onnx", "torch"]
ENGINES: Final[tuple[str, ...]] = ("onnx", "torch")
DEFAULT_ENGINE: Final[Engine] = "onnx"
OPSET: Final[int] = 17


class RuntimeUnavailable(RuntimeError):
    """ONNX Runtime is not installed or cannot run this network."""


def export_onnx(model: nn.Module, n_samples: int, path: Path) -> Path:
    """Write ``model`` as ONNX with a free batch size and record length; inputs ``x`` (B, 12, T), ``demo`` (B, 5)."""
    model.eval()
    x, demo = torch.zeros(2, N_LEADS, n_samples), torch.zeros(2, N_DEMO)
    with warnings.catch_warnings():  # the exporter's notes on LSTM batch sizes concern fixed-batch export only
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x, demo), str(path), input_names=["x", "demo"], output_names=["logit"],
            dynamic_axes={"x": {0: "batch", 2: "time"}, "demo": {0: "batch"}, "logit": {0: "batch"}},
            dynamo=False, opset_version=OPSET,
        )  # fmt: skip
    return path


def session_feed(session: Any, **arrays: Any) -> dict[str, Any]:
    """Those of ``arrays`` that ``session`` takes: a network that ignores an input (no demographics) is
    exported without it, and ONNX Runtime refuses an input it does not know."""
    return {i.name: arrays[i.name] for i in session.get_inputs()}


def cpu_session(onnx: bytes, threads: int | None = None, **settings: object) -> Any:
    """An ONNX Runtime CPU session of an exported model: ``threads`` intra-op threads (default: torch's), one
    inter-op thread, ORT's own notices off; ``settings`` are further ``SessionOptions`` attributes."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise RuntimeUnavailable(f"ONNX Runtime is not installed ({err}); use the torch engine") from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # ORT's own notices would flood a scoring log
    for key, value in settings.items():
        setattr(options, key, value)
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


class OnnxRuntimeModel(nn.Module):
    """A network exported to ONNX and run by ONNX Runtime on the CPU, called like the network itself.

    Parameters
    ----------
    model
        The loaded torch network (its weights are exported; it is not kept).
    n_samples
        A record length to export with (any length can be scored afterwards).
    threads
        ONNX Runtime's intra-op threads (default: torch's current number).

    Attributes
    ----------
    onnx
        The exported ONNX model (bytes).
    session
        The ONNX Runtime session that scores.
    """

    def __init__(self, model: nn.Module, n_samples: int, threads: int | None = None) -> None:
        super().__init__()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                self.onnx = export_onnx(model, n_samples, Path(tmp) / "model.onnx").read_bytes()
                self.session = cpu_session(self.onnx, threads)
            except RuntimeUnavailable:  # ONNX Runtime not installed: said as it is, not as this network's fault
                raise
            except Exception as err:  # the exporter or the runtime refusing an operator: say so, never a traceback
                name, why = type(model).__name__, f"{type(err).__name__}: {err}"
                raise RuntimeUnavailable(f"{name} cannot run in ONNX Runtime ({why}); use the torch engine") from err

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        feed = session_feed(self.session, x=x.contiguous().numpy(), demo=demo.contiguous().numpy())
        (logit,) = self.session.run(None, feed)
        return torch.from_numpy(logit)


def scoring_model(model: nn.Module, n_samples: int, engine: Engine, threads: int | None = None) -> nn.Module:
    """The network as ``engine`` runs it: itself for ``torch``, an :class:`OnnxRuntimeModel` for ``onnx``."""
    if engine == "torch":
        return model
    if engine == "onnx":
        return OnnxRuntimeModel(model, n_samples, threads)
    raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")

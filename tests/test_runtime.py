"""ONNX Runtime scoring: the same scores as torch for every registered model, and clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from common.config import TrainConfig
from common.data.arrays import EcgArrays
from common.inference import runtime
from common.inference.runtime import OnnxRuntimeModel, RuntimeUnavailable, scoring_model
from common.models import create_model, list_models
from common.training.engine import predict

pytest.importorskip("onnxruntime")


def _arrays(n: int, n_samples: int, seed: int = 0) -> EcgArrays:
    rng = np.random.default_rng(seed)
    # records that differ in amplitude and rhythm, not only in white noise
    t = np.arange(n_samples) / 100
    wave = np.sin(2 * np.pi * rng.uniform(0.8, 2.5, (n, 1, 1)) * t) * rng.uniform(0.1, 2.0, (n, 12, 1))
    x = (wave + rng.normal(0, 0.1, (n, 12, n_samples))).astype(np.float32)
    demo = np.zeros((n, 5), np.float32)
    demo[:, 0] = rng.normal(0, 1, n)
    demo[np.arange(n), 2 + rng.integers(0, 3, n)] = 1
    return EcgArrays(x, demo, np.zeros(n, np.float32), pd.DataFrame({"record_id": range(n)}))


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("aggregate", ["whole", "mean"])
def test_onnx_runtime_scores_every_model_as_torch_does(name: str, aggregate: str) -> None:
    # Prepare: a network with every weight and BatchNorm statistic moved off its initial value, and 10 s records
    torch.manual_seed(0)
    model = create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    data = _arrays(37, 1000)
    cfg = TrainConfig(model=name, window_aggregate=aggregate)
    # Execute
    want = predict(model, data, cfg, batch_size=16)
    got = predict(OnnxRuntimeModel(model, 1000, threads=1), data, cfg, batch_size=16)
    # Assert: float32 rounding apart, the same probabilities; and they are not all alike
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.std(want) > 1e-3


def test_a_network_exported_with_one_length_scores_another() -> None:
    torch.manual_seed(1)
    model = create_model("conv_bilstm_attn").eval()
    data = _arrays(5, 500)
    np.testing.assert_allclose(
        predict(OnnxRuntimeModel(model, 1000, threads=1), data), predict(model, data), rtol=0, atol=2e-5
    )


def test_a_network_the_exporter_refuses_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise torch.onnx.errors.UnsupportedOperatorError("aten::odd", 17, 18)

    monkeypatch.setattr(runtime.torch.onnx, "export", refuse)
    with pytest.raises(RuntimeUnavailable, match=r"cannot run in ONNX Runtime.*use the torch engine"):
        OnnxRuntimeModel(create_model("cnn1d"), 1000)


def test_the_torch_engine_is_the_network_itself_and_an_unknown_engine_is_named() -> None:
    model = create_model("cnn1d")
    assert scoring_model(model, 1000, "torch") is model
    assert isinstance(scoring_model(model, 1000, "onnx", threads=1), OnnxRuntimeModel)
    with pytest.raises(ValueError, match="unknown engine 'tpu'; known: onnx, torch"):
        scoring_model(model, 1000, "tpu")  # type: ignore[arg-type]

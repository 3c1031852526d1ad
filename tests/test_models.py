from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.models import UnknownModelError, count_parameters, create_model, list_models

ZOO = (
    "bilstm",
    "cnn1d",
    "conv_bilstm_attn",
    "conv_bilstm_attn_nodemo",
    "inception1d",
    "resnet1d",
    "xresnet1d101",
    "xresnet1d50",
)


def test_the_zoo_is_registered_under_its_exact_names() -> None:
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("n_samples", [250, 1000, 2500])
def test_every_model_maps_a_batch_to_one_logit_each(name: str, n_samples: int) -> None:
    model = create_model(name).eval()
    x, demo = torch.randn(3, 12, n_samples), torch.randn(3, 5)

    with torch.no_grad():
        out = model(x, demo)

    assert out.shape == (3,)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


@pytest.mark.parametrize("name", list_models())
def test_every_model_backpropagates_finite_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    x, demo, y = torch.randn(2, 12, 1000), torch.randn(2, 5), torch.tensor([0.0, 1.0])

    torch.nn.functional.binary_cross_entropy_with_logits(model(x, demo), y).backward()

    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"known models: .*cnn1d") as err:
        create_model("resnet_typo")
    assert all(name in str(err.value) for name in list_models())


def test_demographics_change_the_output_only_when_used() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 12, 1000)
    with_demo = create_model("cnn1d").eval()
    without = create_model("cnn1d", use_demographics=False).eval()

    assert not torch.allclose(with_demo(x, torch.zeros(2, 5)), with_demo(x, torch.ones(2, 5)))
    assert torch.equal(without(x, torch.zeros(2, 5)), without(x, torch.ones(2, 5)))


@pytest.mark.parametrize("n_samples", [1000, 2500])
def test_conv_bilstm_attn_returns_a_distribution_over_time(n_samples: int) -> None:
    torch.manual_seed(0)
    model = create_model("conv_bilstm_attn").eval()
    x, demo = torch.randn(2, 12, n_samples), torch.randn(2, 5)

    with torch.no_grad():
        logits, attention = model(x, demo, return_attention=True)
        plain = model(x, demo)

    assert attention.shape == (2, math.ceil(n_samples / 16))
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(logits, plain)


def test_the_nodemo_ablation_ignores_demographics() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 12, 1000)
    with_demo = create_model("conv_bilstm_attn").eval()
    without = create_model("conv_bilstm_attn_nodemo").eval()

    with torch.no_grad():
        assert not torch.allclose(with_demo(x, torch.zeros(2, 5)), with_demo(x, torch.ones(2, 5)))
        assert torch.equal(without(x, torch.zeros(2, 5)), without(x, torch.ones(2, 5)))
    assert without.use_demographics is False
    with pytest.raises(ValueError, match="conv_bilstm_attn"):
        create_model("conv_bilstm_attn_nodemo", use_demographics=True)


def test_every_factory_accepts_use_demographics_false() -> None:
    for name in list_models():
        model = create_model(name, use_demographics=False)
        assert model.use_demographics is False, name


def test_the_cli_lists_every_model_with_its_parameter_count() -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "common.models"], cwd=root, capture_output=True, text=True, timeout=120, check=True
    )

    rows = {m[1]: (int(m[2]), m[3]) for m in re.finditer(r"^(\S+)\s+(\d+)\s+(yes|no)\b", proc.stdout, re.M)}
    assert set(rows) == set(list_models())
    for name, (n_params, demo) in rows.items():
        assert n_params == count_parameters(create_model(name))
        assert demo == ("no" if name.endswith("_nodemo") else "yes")

from __future__ import annotations

import pytest
import torch

from common.models import UnknownModelError, count_parameters, create_model, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("n_samples", [1000, 2500])
def test_every_model_maps_a_batch_to_one_logit_each(name: str, n_samples: int) -> None:
    model = create_model(name).eval()
    x, demo = torch.randn(3, 12, n_samples), torch.randn(3, 5)

    out = model(x, demo)

    assert out.shape == (3,)
    assert torch.isfinite(out).all()
    assert count_parameters(model) > 0


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"known models: .*cnn1d"):
        create_model("resnet_typo")


def test_demographics_change_the_output_only_when_used() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 12, 1000)
    with_demo = create_model("cnn1d").eval()
    without = create_model("cnn1d", use_demographics=False).eval()

    assert not torch.allclose(with_demo(x, torch.zeros(2, 5)), with_demo(x, torch.ones(2, 5)))
    assert torch.equal(without(x, torch.zeros(2, 5)), without(x, torch.ones(2, 5)))

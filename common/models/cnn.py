"""The plain 1-D CNN baseline."""

from __future__ import annotations

import torch
from torch import nn

from common.data.leads import N_LEADS
from common.models.blocks import EcgClassifier, FusionHead, concat_pool, conv_bn
from common.models.registry import register_model


class CNN1d(EcgClassifier):
    """Plain 1-D CNN: four strided conv blocks, average+max pooling, late demographic fusion."""

    cam_layer = "features"

    def __init__(self, width: int = 32, use_demographics: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(N_LEADS, width, 7, 2),
            conv_bn(width, 2 * width, 5, 2),
            conv_bn(2 * width, 2 * width, 5, 2),
            conv_bn(2 * width, 4 * width, 3, 2),
        )
        self.head = FusionHead(8 * width, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return concat_pool(self.features(x))


@register_model("cnn1d")
def cnn1d(**kwargs: object) -> nn.Module:
    return CNN1d(**kwargs)  # type: ignore[arg-type]

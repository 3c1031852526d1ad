"""InceptionTime-style baseline (the PTB-XL benchmark's inception1d)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from common.data.leads import N_LEADS
from common.models.blocks import EcgClassifier, FusionHead, Residual
from common.models.registry import register_model


class _InceptionModule(nn.Module):
    """Bottleneck 1x1 conv, three parallel long convs on it, a max-pool + 1x1 branch on the input; BN + ReLU."""

    def __init__(self, c_in: int, n_filters: int, bottleneck: int, kernel_sizes: Sequence[int]) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(c_in, bottleneck, 1, bias=False)
        self.convs = nn.ModuleList(
            nn.Conv1d(bottleneck, n_filters, k, padding=k // 2, bias=False) for k in kernel_sizes
        )
        self.pool = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, n_filters, 1, bias=False))
        self.bn_act = nn.Sequential(nn.BatchNorm1d(n_filters * (len(kernel_sizes) + 1)), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        out: torch.Tensor = self.bn_act(torch.cat([*(conv(b) for conv in self.convs), self.pool(x)], dim=1))
        return out


class Inception1d(EcgClassifier):
    """InceptionTime-style network (Fawaz et al. 2020; the PTB-XL benchmark's ``inception1d``).

    ``depth`` inception modules with kernels 39/19/9 (odd, so "same" padding is symmetric) after a
    ``bottleneck``-channel 1x1 conv, plus a max-pool branch; each module outputs ``4 * n_filters``
    channels; a residual connection around every 3 modules; global average pooling. InceptionTime uses
    32 filters; the default 16 (64 channels) quarters the cost, which at stride 1 is otherwise the
    largest of the zoo.
    """

    cam_layer = "features"

    def __init__(
        self,
        use_demographics: bool = True,
        n_filters: int = 16,
        bottleneck: int = 16,
        depth: int = 6,
        kernel_sizes: Sequence[int] = (39, 19, 9),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if depth % 3:
            raise ValueError(f"depth must be a multiple of 3 (one residual per 3 modules), got {depth}")
        width = n_filters * (len(kernel_sizes) + 1)
        groups: list[nn.Module] = []
        c_in = N_LEADS
        for _ in range(depth // 3):
            modules = [
                _InceptionModule(c_in if i == 0 else width, n_filters, bottleneck, kernel_sizes) for i in range(3)
            ]
            groups.append(Residual(nn.Sequential(*modules), c_in, width))
            c_in = width
        self.features = nn.Sequential(*groups)
        self.head = FusionHead(width, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x).mean(-1)
        return out


@register_model("inception1d")
def inception1d(**kwargs: Any) -> nn.Module:
    return Inception1d(**kwargs)

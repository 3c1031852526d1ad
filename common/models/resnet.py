"""Convolutional residual baselines: Wang's 1-D ResNet and the PTB-XL benchmark's xresnet1d."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import torch
from torch import nn

from common.data.leads import N_LEADS
from common.models.blocks import EcgClassifier, FusionHead, Residual, concat_pool, conv_bn
from common.models.registry import register_model


class ResNet1d(EcgClassifier):
    """Wang et al. 2017 ("Time series classification from scratch") 1-D ResNet.

    Three residual blocks of three convs (kernels 8, 5, 3; 64, 128, 128 channels), stride 1 throughout,
    global average pooling. The shortcut is a 1x1 conv + BN where the width changes and the identity
    otherwise (Wang's code puts a BN there too; it only rescales).
    """

    cam_layer = "features"

    def __init__(self, use_demographics: bool = True, widths: Sequence[int] = (64, 128, 128), dropout: float = 0.2):
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = N_LEADS
        for c in widths:
            branch = nn.Sequential(conv_bn(c_in, c, 8), conv_bn(c, c, 5), conv_bn(c, c, 3, act=False))
            blocks.append(Residual(branch, c_in, c))
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = FusionHead(c_in, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.features(x).mean(-1)
        return out


@register_model("resnet1d")
def resnet1d(**kwargs: Any) -> nn.Module:
    return ResNet1d(**kwargs)


class XResNet1d(EcgClassifier):
    """1-D xresnet (He et al. 2019 "Bag of tricks", ResNet-D) as in the PTB-XL benchmark (Strodthoff et al. 2021).

    Stem of three k=5 convs (12 -> 32 -> 32 -> 64, the first with stride 2) and a stride-2 max-pool; four
    stages of bottleneck blocks (1x1 -> k=5 -> 1x1, expansion 4) with stride 2 from the second stage on, so
    the total stride is 32; average-pool down-sampling in the shortcut; the last BN of every branch starts
    at zero so that every block starts as the identity; avg+max concat pooling.

    ``widths`` are the bottleneck widths of the four stages (each stage outputs 4x its width). The
    benchmark's code keeps 64 in every stage (256 channels out; its ImageNet-style doubling is commented
    out), which is the default: ~0.9 M / ~1.8 M parameters for 50 / 101 layers. Doubling per stage,
    ``(64, 128, 256, 512)`` as in fastai's 2-D xresnet50, would cost ~19 M / ~33 M.
    """

    expansion: Final[int] = 4
    cam_layer = "features"

    def __init__(
        self,
        layers: Sequence[int],
        use_demographics: bool = True,
        widths: Sequence[int] = (64, 64, 64, 64),
        kernel_size: int = 5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if len(widths) != len(layers):
            raise ValueError(f"one width per stage: {len(layers)} stages, {len(widths)} widths")
        stem = [conv_bn(N_LEADS, 32, kernel_size, 2), conv_bn(32, 32, kernel_size), conv_bn(32, 64, kernel_size)]
        blocks: list[nn.Module] = [*stem, nn.MaxPool1d(3, stride=2, padding=1)]
        c_in = 64
        for i, (n_blocks, hidden) in enumerate(zip(layers, widths, strict=True)):
            c_out = hidden * self.expansion
            for j in range(n_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                expand = conv_bn(hidden, c_out, 1, act=False)
                nn.init.zeros_(next(m for m in expand if isinstance(m, nn.BatchNorm1d)).weight)
                branch = nn.Sequential(conv_bn(c_in, hidden, 1), conv_bn(hidden, hidden, kernel_size, stride), expand)
                blocks.append(Residual(branch, c_in, c_out, stride))
                c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = FusionHead(2 * c_in, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return concat_pool(self.features(x))


@register_model("xresnet1d50")
def xresnet1d50(**kwargs: Any) -> nn.Module:
    return XResNet1d((3, 4, 6, 3), **kwargs)


@register_model("xresnet1d101")
def xresnet1d101(**kwargs: Any) -> nn.Module:
    return XResNet1d((3, 4, 23, 3), **kwargs)

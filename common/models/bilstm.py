"""The recurrent baseline: a strided conv, then a 2-layer bidirectional LSTM."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from common.data.leads import N_LEADS
from common.models.blocks import EcgClassifier, FusionHead, concat_pool, conv_bn
from common.models.registry import register_model


class BiLSTM(EcgClassifier):
    """Recurrent baseline: one strided conv (k=9, stride 5, 12 -> 64 channels, BN + ReLU), then a 2-layer
    bidirectional LSTM (64 hidden units per direction), mean+max pooled over time.

    The conv only shortens the sequence (T = 1000 -> 200 steps of 50 ms) so that the LSTM is affordable on
    a CPU and its gradients span the whole 10 s; all temporal modelling is recurrent.
    """

    cam_layer = "proj"

    def __init__(
        self,
        use_demographics: bool = True,
        proj_channels: int = 64,
        hidden: int = 64,
        num_layers: int = 2,
        stride: int = 5,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.proj = conv_bn(N_LEADS, proj_channels, 2 * stride - 1, stride)
        self.lstm = nn.LSTM(
            proj_channels,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,  # nn.LSTM warns about dropout after the last layer
        )
        self.head = FusionHead(4 * hidden, use_demographics, dropout=dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.lstm(self.proj(x).transpose(1, 2))
        return concat_pool(seq.transpose(1, 2))


@register_model("bilstm")
def bilstm(**kwargs: Any) -> nn.Module:
    return BiLSTM(**kwargs)

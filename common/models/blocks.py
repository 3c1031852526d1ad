"""Building blocks shared by the zoo: conv + BN, residual blocks, pooling and the late-fusion head.

Every model maps ``(x (B, 12, T), demographics (B, 5))`` to one AMI logit: a subclass of
:class:`EcgClassifier` encodes the ECG into a feature vector and :class:`FusionHead` joins it with
the demographic vector of :data:`common.data.preprocess.DEMOGRAPHIC_FEATURES`.
"""

from __future__ import annotations

from typing import ClassVar, Final

import torch
from torch import nn

from common.data.preprocess import DEMOGRAPHIC_FEATURES

N_DEMO: Final[int] = len(DEMOGRAPHIC_FEATURES)


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """Conv1d (no bias: BN follows) + BatchNorm (+ ReLU), padded so that the output length is ceil(T / stride).

    Even kernels (Wang's 8) are padded asymmetrically, one more sample on the right, like Keras' "same";
    PyTorch's ``padding="same"`` would do the same but warns and rejects strides.
    """
    left, right = (k - 1) // 2, k // 2
    layers: list[nn.Module] = [] if left == right else [nn.ConstantPad1d((left, right), 0.0)]
    layers += [nn.Conv1d(c_in, c_out, k, stride=stride, padding=left if left == right else 0, bias=False)]
    layers += [nn.BatchNorm1d(c_out)] + ([nn.ReLU(inplace=True)] if act else [])
    return nn.Sequential(*layers)


class FusionHead(nn.Module):
    """Late fusion: pooled ECG features (+ demographics) -> small MLP -> one logit.

    Parameters
    ----------
    n_features
        Width of the pooled ECG feature vector.
    use_demographics
        Concatenate the ``(B, N_DEMO)`` demographic vector before the MLP; when False it is ignored.
    hidden, dropout
        The MLP's hidden width and the dropout before its output layer.
    """

    def __init__(self, n_features: int, use_demographics: bool, hidden: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.use_demographics = use_demographics
        self.n_features = n_features
        n_in = n_features + (N_DEMO if use_demographics else 0)
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, z: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        if self.use_demographics:
            z = torch.cat([z, demo], dim=1)
        out: torch.Tensor = self.mlp(z).squeeze(-1)
        return out


AUX_HEAD: Final[str] = "aux_head"
"""The attribute (and state-dict prefix) of the auxiliary-target head, used in training only."""


class EcgClassifier(nn.Module):
    """Base of the zoo: a subclass builds ``self.head`` and implements ``encode`` (B, 12, T) -> (B, F).

    :meth:`add_auxiliary_head` adds a linear head from the same ECG features to auxiliary targets (PTB-XL's
    diagnostic superclasses, say): training calls :meth:`forward_with_auxiliary`; ``forward``, and so every
    score, never reads it.
    """

    head: FusionHead
    cam_layer: ClassVar[str | None] = None
    """The module whose output maps Score-CAM upsamples by default: the last convolutional stage before the
    sequence model or the pooling (``common.explain.maps``); None where the network has none."""

    @property
    def use_demographics(self) -> bool:
        return self.head.use_demographics

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encode(x), demo)
        return out

    def add_auxiliary_head(self, n_targets: int) -> None:
        setattr(self, AUX_HEAD, nn.Linear(self.head.n_features, n_targets))

    def forward_with_auxiliary(self, x: torch.Tensor, demo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The AMI logit (B,) as ``forward`` computes it and the auxiliary logits (B, n_targets)."""
        z = self.encode(x)
        aux: torch.Tensor = getattr(self, AUX_HEAD)(z)
        logit: torch.Tensor = self.head(z, demo)
        return logit, aux


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """ResNet-D identity path: average-pool to down-sample (a strided 1x1 conv would drop 3 of 4 samples),
    then a 1x1 conv + BN only where the width changes; empty (identity) otherwise."""
    layers: list[nn.Module] = [nn.AvgPool1d(stride, ceil_mode=True)] if stride > 1 else []
    if c_in != c_out:
        layers += [nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """``relu(branch(x) + shortcut(x))``; ``branch`` must map c_in -> c_out at ``stride``."""

    def __init__(self, branch: nn.Module, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.branch(x) + self.shortcut(x))
        return out


def basic_block(c_in: int, c_out: int, k: int, stride: int) -> Residual:
    branch = nn.Sequential(conv_bn(c_in, c_out, k, stride), conv_bn(c_out, c_out, k, act=False))
    return Residual(branch, c_in, c_out, stride)


def concat_pool(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h.mean(-1), h.amax(-1)], dim=1)

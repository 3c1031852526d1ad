"""Model registry. Every model maps ``(x (B, 12, T), demographics (B, 5))`` to one AMI logit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import torch
from torch import nn

from common.leads import N_LEADS
from common.preprocess import DEMOGRAPHIC_FEATURES

N_DEMO: Final[int] = len(DEMOGRAPHIC_FEATURES)

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


class UnknownModelError(KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under its exact public name."""

    def deco(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_models() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Instantiate a registered model by exact name; an unknown name lists the known ones."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv_bn(c_in: int, c_out: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(inplace=True),
    )


class CNN1d(nn.Module):
    """Plain 1-D CNN: four strided conv blocks, average+max pooling, late demographic fusion."""

    def __init__(self, width: int = 32, use_demographics: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.use_demographics = use_demographics
        self.features = nn.Sequential(
            _conv_bn(N_LEADS, width, 7, 2),
            _conv_bn(width, 2 * width, 5, 2),
            _conv_bn(2 * width, 2 * width, 5, 2),
            _conv_bn(2 * width, 4 * width, 3, 2),
        )
        n_in = 8 * width + (N_DEMO if use_demographics else 0)
        self.head = nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        z = torch.cat([h.mean(-1), h.amax(-1)], dim=1)
        if self.use_demographics:
            z = torch.cat([z, demo], dim=1)
        out: torch.Tensor = self.head(z).squeeze(-1)
        return out


@register_model("cnn1d")
def cnn1d(**kwargs: object) -> nn.Module:
    return CNN1d(**kwargs)  # type: ignore[arg-type]

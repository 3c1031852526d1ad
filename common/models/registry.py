"""The model registry: factories under their exact public name; an unknown name lists the known ones."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

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

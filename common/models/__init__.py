"""The model zoo: a registry by exact name (an unknown one lists the known), shared blocks, a file per
family; importing this package registers them all (``python -m common.models`` lists them)."""

from common.models import bilstm, cnn, conv_bilstm_attn, inception, resnet  # noqa: F401  (they register)
from common.models.registry import (
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    register_model,
)

__all__ = ["UnknownModelError", "count_parameters", "create_model", "list_models", "register_model"]

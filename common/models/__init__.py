"""The model zoo: a registry of every network by exact name, shared blocks, one file per family.

Every model maps ``(x (B, 12, T) in mV, demographics (B, 5))`` to one AMI logit; importing this
package registers them all. ``python -m common.models`` lists them with their sizes.
"""

from common.models import bilstm, cnn, conv_bilstm_attn, inception, resnet  # noqa: F401  (they register)
from common.models.registry import (
    UnknownModelError,
    count_parameters,
    create_model,
    list_models,
    register_model,
)

__all__ = ["UnknownModelError", "count_parameters", "create_model", "list_models", "register_model"]

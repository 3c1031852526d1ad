"""``python -m common.models``: every registered model with its size."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torch import nn

from common.models import count_parameters, create_model, list_models


def _uses_demographics(model: nn.Module) -> bool:
    return bool(getattr(model, "use_demographics", True))


def main(argv: Sequence[str] | None = None) -> int:
    """Print every registered model with its parameter count (12-lead input) and whether it uses demographics."""
    parser = argparse.ArgumentParser(prog="python -m common.models", description=main.__doc__)
    parser.parse_args(argv)
    rows = [(name, create_model(name)) for name in list_models()]
    w = max(len("model"), *(len(name) for name, _ in rows))
    print(f"{'model':<{w}}  {'parameters':>10}  demographics  class")
    for name, model in rows:
        demo = "yes" if _uses_demographics(model) else "no"
        print(f"{name:<{w}}  {count_parameters(model):>10d}  {demo:<12}  {type(model).__name__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

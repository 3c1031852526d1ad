"""Bytes a hospital sends and receives per federated round, for every registered model.

Usage: python benchmarks/bench_communication.py [--models NAME[,NAME...]]

A round sends each hospital the global weights twice (the train message and the validation message) and
takes its trained weights back once, beside small configs, metrics and the validation reply (score
histograms, ``benchmarks/bench_test_reply.py`` sizes the test round's). This builds the weights' records
as the handlers build them (``ArrayRecord`` of the model's state dict) and prints their size as Flower
serialises them (protobuf), per message and per round and hospital (down: 2 x, up: 1 x), and, for
comparison, the same state dict in float16 and as 8-bit codes (one byte per value plus a float32 scale and
offset per tensor): the sizes an update compression would send. fedami does not compress updates (yet), so
these two are sizes only, not a claim about what compression costs in AUROC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def record_bytes(state: dict[str, object]) -> int:
    """Size of ``{"arrays": ArrayRecord(state)}`` as Flower serialises a message's content."""
    from flwr.common import Array, ArrayRecord, RecordDict
    from flwr.common.serde import recorddict_to_proto

    from common.federation import protocol as P

    arrays = ArrayRecord({k: Array(v) for k, v in state.items()})  # type: ignore[arg-type]
    return int(recorddict_to_proto(RecordDict({P.ARRAYS: arrays})).ByteSize())


def eight_bit(state: dict[str, object]) -> dict[str, object]:
    """Each float tensor as uint8 codes with its float32 (offset, scale); integer buffers as they are."""
    import numpy as np

    out: dict[str, object] = {}
    for k, v in state.items():
        a = np.asarray(v)
        if a.dtype.kind != "f":
            out[k] = a
            continue
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        scale = (hi - lo) / 255 or 1.0
        out[k] = np.round((a - lo) / scale).astype(np.uint8)
        out[f"{k}.offset-scale"] = np.array([lo, scale], np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    from common.models import count_parameters, create_model, list_models

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="comma-separated (default: every registered model)")
    args = p.parse_args(argv)
    names = args.models.split(",") if args.models else list(list_models())

    print(f"{'model':<26}{'parameters':>12}{'weights MB':>12}{'round MB':>10}{'float16 MB':>12}{'8-bit MB':>10}")
    for name in names:
        model = create_model(name)
        state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        full = record_bytes(state)
        half = record_bytes({k: v.astype("float16") if v.dtype.kind == "f" else v for k, v in state.items()})
        q8 = record_bytes(eight_bit(state))
        print(
            f"{name:<26}{count_parameters(model):>12,}{full / 1e6:>12.3f}{3 * full / 1e6:>10.3f}"
            f"{half / 1e6:>12.3f}{q8 / 1e6:>10.3f}"
        )
    print("weights: one message's weights; round: per hospital and round (2 x down, 1 x up), float32 as sent today")
    return 0


if __name__ == "__main__":
    sys.exit(main())

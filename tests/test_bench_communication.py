"""benchmarks/bench_communication.py sizes the weights the handlers send, and the compressed variants shrink them."""

from __future__ import annotations

import numpy as np
from flwr.common import ArrayRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from benchmarks import bench_communication as B
from common.federation import protocol as P
from common.models import create_model


def test_the_sized_weights_are_the_handlers_record_and_compression_shrinks_them() -> None:
    model = create_model("conv_bilstm_attn")
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    as_sent = recorddict_to_proto(RecordDict({P.ARRAYS: ArrayRecord(model.state_dict())})).ByteSize()

    full, q8 = B.record_bytes(state), B.record_bytes(B.eight_bit(state))
    half = B.record_bytes({k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in state.items()})

    assert full == as_sent
    assert 0.45 * full < half < 0.55 * full and q8 < 0.7 * half


def test_eight_bit_codes_rebuild_every_tensor_within_half_a_step() -> None:
    state = {"w": np.linspace(-1.0, 3.0, 1000, dtype=np.float32).reshape(10, 100), "n": np.array([7], np.int64)}
    coded = B.eight_bit(state)
    lo, scale = coded["w.offset-scale"]  # type: ignore[misc]
    rebuilt = lo + scale * np.asarray(coded["w"], np.float32)
    assert np.asarray(coded["w"]).dtype == np.uint8 and np.array_equal(np.asarray(coded["n"]), state["n"])
    assert np.abs(rebuilt - state["w"]).max() <= scale / 2 + 1e-6

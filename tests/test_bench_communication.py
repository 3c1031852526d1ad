"""benchmarks/bench_communication.py sizes the weights the handlers send, and the compressed variants shrink them."""

from __future__ import annotations

import numpy as np
from flwr.common import ArrayRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from benchmarks import bench_communication as B
from common.federation import compression as C
from common.federation import protocol as P
from common.models import create_model


def test_the_sized_weights_are_the_handlers_record_and_compression_shrinks_them() -> None:
    model = create_model("conv_bilstm_attn")
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    as_sent = recorddict_to_proto(RecordDict({P.ARRAYS: ArrayRecord(model.state_dict())})).ByteSize()

    full, half, q8 = (
        B.record_bytes(state),
        B.record_bytes(B.upload(state, "float16")),
        B.record_bytes(B.upload(state, "int8")),
    )

    assert full == as_sent
    assert 0.45 * full < half < 0.55 * full and q8 < 0.7 * half


def test_the_sized_uploads_are_what_the_encoder_sends() -> None:
    state = {"w": np.linspace(-1.0, 3.0, 1000, dtype=np.float32).reshape(10, 100), "n": np.array([7], np.int64)}

    coded = B.upload(state, "int8")

    assert set(coded) == {"w", "w" + C.RANGE_SUFFIX, "n"}
    assert coded["w"].dtype == np.uint8 and np.array_equal(coded["n"], state["n"])

"""Update compression: what a hospital encodes, the server decodes back to within the encoding's error."""

from __future__ import annotations

import numpy as np
import pytest

from common.federation import compression as C


def _weights(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Global weights as sent, and the same after a small training step (plus an integer buffer)."""
    rng = np.random.default_rng(seed)
    sent = {
        "conv.weight": rng.normal(0, 1, (8, 12, 5)).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2, 8).astype(np.float32),
        "bn.num_batches_tracked": np.array(40, np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    trained = {k: (v + rng.normal(0, 1e-2, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v + 7
               for k, v in sent.items()}  # fmt: skip
    return sent, trained


def test_no_compression_sends_the_trained_weights_as_they_are() -> None:
    sent, trained = _weights()

    got = C.decode(C.encode(trained, sent, "none"), sent, "none")

    assert all(np.array_equal(got[k], trained[k]) for k in trained)


def test_float16_sends_half_precision_updates_and_decodes_to_within_their_rounding() -> None:
    sent, trained = _weights()

    encoded = C.encode(trained, sent, "float16")
    got = C.decode(encoded, sent, "float16")

    assert encoded["conv.weight"].dtype == np.float16 and set(encoded) == set(sent)
    delta = trained["conv.weight"].astype(np.float64) - sent["conv.weight"]
    # float16 keeps 11 significant bits: relative error <= 2**-11 of the update, plus float32's own rounding
    err = np.abs(got["conv.weight"].astype(np.float64) - trained["conv.weight"])
    assert (err <= np.abs(delta) * 2**-11 + np.abs(trained["conv.weight"]) * 2**-23).all()
    assert got["conv.weight"].dtype == np.float32
    assert got["bn.num_batches_tracked"] == 47  # integer buffers travel exactly


def test_int8_sends_one_byte_per_value_and_a_range_per_tensor() -> None:
    sent, trained = _weights()

    encoded = C.encode(trained, sent, "int8")
    got = C.decode(encoded, sent, "int8")

    assert encoded["conv.weight"].dtype == np.uint8 and encoded["conv.weight"].shape == (8, 12, 5)
    lo, scale = encoded["conv.weight" + C.RANGE_SUFFIX]
    delta = trained["conv.weight"].astype(np.float64) - sent["conv.weight"]
    assert lo == pytest.approx(delta.min(), rel=1e-6) and scale == pytest.approx(np.ptp(delta) / 255, rel=1e-6)
    err = np.abs(got["conv.weight"].astype(np.float64) - trained["conv.weight"])
    assert err.max() <= scale / 2 + 1e-6
    assert err.max() > 0  # it is lossy: a test that could not fail would pass here too
    assert got["empty"].shape == (0, 3) and got["bn.num_batches_tracked"] == 47


def test_a_constant_update_decodes_exactly() -> None:
    sent = {"w": np.zeros(5, np.float32)}
    trained = {"w": np.full(5, 0.25, np.float32)}

    got = C.decode(C.encode(trained, sent, "int8"), sent, "int8")

    assert np.array_equal(got["w"], trained["w"])


@pytest.mark.parametrize("method", ["float16", "int8"])
def test_a_zero_dimensional_tensor_stays_an_array(method: str) -> None:
    sent = {"t": np.array(1.5, np.float32)}

    got = C.decode(C.encode({"t": np.array(2.0, np.float32)}, sent, method), sent, method)

    assert isinstance(got["t"], np.ndarray) and got["t"].shape == () and float(got["t"]) == pytest.approx(2.0)


@pytest.mark.parametrize("method", ["float16", "int8"])
def test_a_non_finite_update_decodes_to_non_finite_weights_for_the_server_to_reject(method: str) -> None:
    sent, trained = _weights()
    trained["conv.weight"][0, 0, 0] = np.nan

    with np.errstate(invalid="raise"):  # no warning on the way: the encoder handles it
        got = C.decode(C.encode(trained, sent, method), sent, method)

    assert not np.isfinite(got["conv.weight"]).all()
    assert np.isfinite(got["bn.running_var"]).all()


def _drop_range(e: dict[str, np.ndarray]) -> None:
    del e["conv.weight" + C.RANGE_SUFFIX]


def _float_codes(e: dict[str, np.ndarray]) -> None:
    e["conv.weight"] = e["conv.weight"].astype(np.float32)


def _reshape(e: dict[str, np.ndarray]) -> None:
    e["bn.running_var"] = e["bn.running_var"][:4]


def _long_range(e: dict[str, np.ndarray]) -> None:
    e["conv.weight" + C.RANGE_SUFFIX] = np.zeros(3, np.float32)


def _extra(e: dict[str, np.ndarray]) -> None:
    e["other"] = np.zeros(2, np.uint8)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_drop_range, r"int8 update for other parameters: \['conv.weight\|int8-range'\]"),
        (_float_codes, r"int8 update of 'conv.weight' in float32, not uint8"),
        (_reshape, r"update of shape \(4,\) for 'bn.running_var' of shape \(8,\)"),
        (_long_range, r"int8 range of 'conv.weight' is float32 \(3,\)"),
        (_extra, r"other parameters: \['other'\]"),
    ],
)
def test_a_malformed_encoding_is_refused_with_its_reason(change: object, reason: str) -> None:
    sent, trained = _weights()
    encoded = C.encode(trained, sent, "int8")
    change(encoded)  # type: ignore[operator]

    with pytest.raises(C.CompressionError, match=reason):
        C.decode(encoded, sent, "int8")


def test_an_unknown_method_names_the_known_ones() -> None:
    sent, trained = _weights()

    with pytest.raises(ValueError, match="unknown update compression 'zip'; known: none, float16, int8"):
        C.encode(trained, sent, "zip")


def test_a_buffer_the_server_sends_as_float_is_encoded_as_the_server_expects() -> None:
    # FedAvg averages every array, so after round 1 a batch norm's step count goes down as a float
    sent = {"bn.num_batches_tracked": np.array(40.0, np.float64)}
    trained = {"bn.num_batches_tracked": np.array(47, np.int64)}

    encoded = C.encode(trained, sent, "int8")
    got = C.decode(encoded, sent, "int8")

    assert all(isinstance(a, np.ndarray) for a in [*encoded.values(), *got.values()])  # Flower's Array takes no scalar
    assert encoded["bn.num_batches_tracked"].dtype == np.uint8
    assert got["bn.num_batches_tracked"].dtype == np.float64 and got["bn.num_batches_tracked"] == 47.0

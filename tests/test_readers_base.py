from __future__ import annotations

import math

import numpy as np
import pytest

from common.data.leads import LEADS
from common.data.readers.base import (
    QCReason,
    RecordError,
    Unreadable,
    canonical_lead,
    normalise_age,
    normalise_sex,
    parse_age,
    parse_sex,
    to_canonical,
    unit_scale_to_mv,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("AVR", "aVR"), ("avl", "aVL"), ("aVF", "aVF"), ("MLII", "II"), (" v1 ", "V1"), ("DIII", "III"), ("X", None),
     ("Lead V1", "V1"), ("LEAD_aVF", "aVF"), ("-aVR", None), ("LEAD", None)],
)  # fmt: skip
def test_lead_names_are_normalised(name: str, expected: str | None) -> None:
    assert canonical_lead(name) == expected


def test_an_inverted_lead_is_named_as_such() -> None:
    from common.data.readers.base import lead_of_channel

    assert lead_of_channel("-aVR") == ("aVR", True) and lead_of_channel("aVR") == ("aVR", False)
    assert lead_of_channel("-lead II") == ("II", True)


def test_units_convert_to_mv() -> None:
    assert unit_scale_to_mv("uV") == 1e-3 and unit_scale_to_mv("mV") == 1.0 and unit_scale_to_mv("V") == 1e3
    with pytest.raises(RecordError) as err:
        unit_scale_to_mv("furlong")
    assert err.value.reason is QCReason.UNKNOWN_UNITS


def test_to_canonical_reorders_selects_and_scales() -> None:
    names = ["V6", "V5", "V4", "V3", "V2", "V1", "AVF", "AVL", "AVR", "III", "II", "I", "VX"]
    sig = np.arange(13, dtype=np.float64)[None, :].repeat(4, 0) * 1000.0  # channel k holds 1000*k uV

    out = to_canonical(sig, names, ["uV"] * 13)

    assert out.shape == (12, 4)
    for lead_i, lead in enumerate(LEADS):
        channel = names.index(lead.upper() if lead.startswith("aV") else lead)
        assert out[lead_i, 0] == pytest.approx(channel)  # mV


def test_missing_lead_is_named() -> None:
    with pytest.raises(RecordError, match="V6") as err:
        to_canonical(np.zeros((5, 11)), list(LEADS[:11]), ["mV"] * 11)
    assert err.value.reason is QCReason.MISSING_LEAD


def test_demographics_normalisation() -> None:
    assert normalise_age(300, ptbxl=True) == 90 and normalise_age(300) == 300  # PTB-XL's top code only
    assert normalise_age("61") == 61 and math.isnan(normalise_age(None)) and math.isnan(normalise_age("Unknown"))
    assert [normalise_sex(v, "ptbxl") for v in (0, 1, "Male", "female", None, float("nan"), "x")] == [
        "M", "F", "M", "F", "", "", "",
    ]  # fmt: skip
    assert [normalise_sex(v, "iso5218") for v in (1, 2, 0, 9, "1.0")] == ["M", "F", "", "", "M"]


@pytest.mark.parametrize(
    ("text", "years"),
    [("61", 61.0), ("61.5", 61.5), ("61,5", 61.5), ("61 y", 61.0), ("61y", 61.0), ("61 years", 61.0),
     ("61 Jahre", 61.0), ("90+", 90.0), (">89", 90.0), (" 45 ", 45.0)],
)  # fmt: skip
def test_ages_written_in_common_ways_are_read(text: str, years: float) -> None:
    assert parse_age(text) == years


@pytest.mark.parametrize("text", ["6 m", "forty", "45-50", "n.a.x", "1e3y"])
def test_an_age_that_cannot_be_read_is_not_taken_as_missing(text: str) -> None:
    assert isinstance(parse_age(text), Unreadable) and parse_age(text) == text


def test_numeric_sex_codes_are_read_only_under_a_declared_coding() -> None:
    assert [parse_sex(v) for v in ("M", "female", "", "unknown")] == ["M", "F", "", ""]
    assert all(isinstance(parse_sex(v), Unreadable) for v in ("1", "2", "0", 1.0, "x"))  # ambiguous: 1 is F in PTB-XL


def test_record_errors_survive_pickling() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(RecordError(QCReason.CHECKSUM, "lead V2")))

    assert err.reason is QCReason.CHECKSUM and err.detail == "lead V2" and str(err) == "checksum_mismatch: lead V2"

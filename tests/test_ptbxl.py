"""PTB-XL readers and ingest on the real shared data (skipped with a reason where it is absent)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.config import IngestConfig, PtbxlData
from common.data.arrays import load_split
from common.data.ingest import REPORT_FILE, ingest, site_table
from common.data.leads import LEADS
from common.data.readers.ptbxl import (
    MI_SUBCLASS_TARGETS,
    SUBCLASS_TARGETS,
    SUBCLASSES,
    SUPERCLASS_TARGETS,
    SUPERCLASSES,
    PtbxlCombinedSource,
    PtbxlFilteredSource,
    PtbxlSource,
    ptbxl_table,
)
from common.training.engine import auxiliary_matrix

from .shared_data import PTBXL, PTBXL_FILTERED, needs_ptbxl, needs_ptbxl_filtered

pytestmark = [pytest.mark.shared, needs_ptbxl]


def test_index_lists_only_records_on_disk_with_study_labels() -> None:
    index = PtbxlSource(root=PTBXL).index()
    present = (PTBXL / "records100" / "RECORDS_present.txt").read_text().split()

    assert len(index) == len(present) == 1016
    assert index["patient_id"].str.startswith("ptbxl-p").all()
    assert set(index["sex"]) <= {"M", "F", ""}
    assert index["age"].max() < 110  # never PTB-XL's 300 code for 90 or over
    by_site = pd.read_csv(PTBXL / "metadata" / "present_by_site.csv")
    assert int(index["label"].sum()) <= int(by_site["MI50"].sum())
    assert index.loc[index["site"] == "site_1", "label"].sum() > index.loc[index["site"] == "site_0", "label"].sum()


def test_labels_follow_the_scp_statements() -> None:
    mi = PtbxlSource(root=PTBXL, label="mi").index().set_index("ecg_id")["label"]
    acute = PtbxlSource(root=PTBXL, label="acute").index().set_index("ecg_id")["label"]
    normal = PtbxlSource(root=PTBXL, label="normal").index().set_index("ecg_id")["label"]
    db = pd.read_csv(PTBXL / "metadata" / "ptbxl_database.csv").set_index("ecg_id")

    # ecg 8 is an IMI with likelihood 35 in PTB-XL: below the 50 threshold, so not positive
    assert "IMI': 35" in db.loc[8, "scp_codes"] and mi.loc[8] == 0
    assert 0 < acute.sum() < mi.sum()
    assert not ((normal == 1) & (mi == 1)).any()


def test_superclasses_follow_ptbxl_s_statement_table() -> None:
    # Prepare: every present record's SCP statements, read independently of the reader
    index = PtbxlSource(root=PTBXL).index()
    db = pd.read_csv(PTBXL / "metadata" / "ptbxl_database.csv").set_index("ecg_id")
    statements = pd.read_csv(PTBXL / "metadata" / "scp_statements.csv", index_col=0)

    # Assert: superclass_<c> is 1 exactly where a statement of class c is listed (at any likelihood)
    for _, row in index.iterrows():
        codes = ast.literal_eval(db.loc[row["ecg_id"], "scp_codes"])
        classes = {statements.loc[c, "diagnostic_class"] for c in codes if c in statements.index}
        assert [row[f"superclass_{c}"] for c in SUPERCLASSES] == [int(c in classes) for c in SUPERCLASSES]
    assert tuple(f"superclass_{c}" for c in ("NORM", "STTC", "CD", "HYP")) == SUPERCLASS_TARGETS
    assert all(0 < index[t].mean() < 1 for t in SUPERCLASS_TARGETS)
    assert ((index["superclass_MI"] == 1) | (index["label"] == 0)).all()  # every MI label is an MI-class statement


def test_subclasses_follow_ptbxl_s_statement_table() -> None:
    # Prepare: every present record's SCP statements, read independently of the reader
    index = PtbxlSource(root=PTBXL).index()
    db = pd.read_csv(PTBXL / "metadata" / "ptbxl_database.csv").set_index("ecg_id")
    statements = pd.read_csv(PTBXL / "metadata" / "scp_statements.csv", index_col=0)
    names = {
        "LAFB/LPFB": "LAFB_LPFB",
        "_AVB": "AVB",
        "NST_": "NST",
        "ISC_": "ISC",
        "LAO/LAE": "LAO_LAE",
        "RAO/RAE": "RAO_RAE",
    }

    # Assert: subclass_<s> is 1 exactly where a statement of subclass s is listed (at any likelihood)
    for _, row in index.iterrows():
        codes = ast.literal_eval(db.loc[row["ecg_id"], "scp_codes"])
        subs = {statements.loc[c, "diagnostic_subclass"] for c in codes if c in statements.index}
        for sub in SUBCLASSES:
            assert row[f"subclass_{names.get(sub, sub)}"] == int(sub in subs), (row["ecg_id"], sub)
    assert len(SUBCLASS_TARGETS) == 19 and len(MI_SUBCLASS_TARGETS) == 4
    assert set(SUBCLASS_TARGETS).isdisjoint(MI_SUBCLASS_TARGETS)
    assert {"subclass_ISCA", "subclass_CLBBB", "subclass_LVH", "subclass_NORM"} <= set(SUBCLASS_TARGETS)
    assert ((index[list(MI_SUBCLASS_TARGETS)].max(axis=1) == 1) == (index["superclass_MI"] == 1)).all()


def test_a_statement_table_with_other_subclasses_is_refused(tmp_path: Path) -> None:
    # Prepare: PTB-XL's metadata with one subclass moved to another class
    (tmp_path / "metadata").mkdir()
    db = pd.read_csv(PTBXL / "metadata" / "ptbxl_database.csv").head(5)
    db.to_csv(tmp_path / "metadata" / "ptbxl_database.csv", index=False)
    statements = pd.read_csv(PTBXL / "metadata" / "scp_statements.csv", index_col=0)
    statements.loc[statements["diagnostic_subclass"] == "LVH", "diagnostic_class"] = "CD"
    statements.to_csv(tmp_path / "metadata" / "scp_statements.csv")

    # Execute / Assert: the auxiliary columns would mean something else, so the table is refused by name
    refused = r"scp_statements.csv maps diagnostic subclasses to classes as \[\(.LVH., .CD.\)\]"
    with pytest.raises(ValueError, match=refused):
        ptbxl_table(tmp_path, label="mi", likelihood=50.0, hospital_column="site")


def test_wfdb_records_come_back_in_canonical_order_and_mv() -> None:
    src = PtbxlSource(root=PTBXL)
    row = src.index().iloc[0]

    raw = src.load(row)

    assert raw.signal.shape == (12, 1000) and raw.fs == 100
    assert np.abs(raw.signal).max() < 10  # mV, not µV
    np.testing.assert_allclose(raw.signal[2], raw.signal[1] - raw.signal[0], atol=0.0025)  # III = II - I
    assert LEADS[3] == "aVR"  # the header spells AVR; the reader maps it


@needs_ptbxl_filtered
def test_combined_prefers_raw_and_counts_the_filtered_duplicates(tmp_path: Path) -> None:
    combined = PtbxlCombinedSource(
        raw=PtbxlSource(root=PTBXL), filtered=PtbxlFilteredSource(root=PTBXL_FILTERED, ptbxl_root=PTBXL)
    )
    cfg = PtbxlData(root=PTBXL).ingest  # what `fedami ingest --data ptbxl` and `fedami run --data ptbxl` use

    result = ingest(combined, cfg, tmp_path, workers=2, progress=False, echo=lambda *_: None)
    again = ingest(combined, cfg, tmp_path, workers=2, progress=False, echo=lambda *_: None)

    table = site_table(result.stores)
    print(
        "\nPTB-XL (raw + filtered) by recording site, sites under 100 records merged:\n" + table.to_string(index=False)
    )
    print(result.report.table().to_string(index=False))
    index = pd.read_csv(PTBXL_FILTERED / "index.csv")
    assert result.report.skipped_total().get("duplicate_record") == int(index["also_raw"].sum()) == 77
    assert table.iloc[-1]["ecgs"] == 1016 + 1819 - 77 - sum(
        c for r, c in result.report.skipped_total().items() if r != "duplicate_record"
    )
    assert all(s.metadata["site"].iloc[0] == s.site for s in result.stores)
    assert "other" in {s.site for s in result.stores}
    assert min(len(s.metadata) for s in result.stores) >= 84
    report = json.loads((result.path / REPORT_FILE).read_text())
    assert sum(r["read"] for r in report["per_site"]) == len(combined.index())
    assert again.cached and [s.path for s in again.stores] == [s.path for s in result.stores]
    assert again.report.to_dict() == result.report.to_dict()
    for store in result.stores:  # PTB-XL's folds: patient-disjoint by construction
        meta = store.metadata
        assert meta.groupby("patient_id")["split"].nunique().max() == 1
        assert set(meta.loc[meta["strat_fold"] == 10, "split"]) <= {"test"}
    for store in result.stores:  # the superclasses travel into the store as auxiliary targets
        assert auxiliary_matrix(store.metadata, SUPERCLASS_TARGETS).shape == (len(store.metadata), 4)
    x = np.asarray(load_split(result.stores[1], "test", 100).x)
    np.testing.assert_allclose(x.mean(-1), 0, atol=1e-3)  # per-record standardisation
    np.testing.assert_allclose(x.std(-1), 1, atol=1e-2)


def test_filtered_needs_per_record_standardisation(tmp_path: Path) -> None:
    combined = PtbxlCombinedSource(
        raw=PtbxlSource(root=PTBXL), filtered=PtbxlFilteredSource(root=PTBXL_FILTERED, ptbxl_root=PTBXL)
    )

    with pytest.raises(ValueError, match="per-record standardisation"):
        ingest(combined, IngestConfig(), tmp_path, workers=1, progress=False)

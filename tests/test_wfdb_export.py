from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import wfdb

from common.data.leads import LEADS
from common.data.store import SiteStore
from common.data.wfdb_export import STATEMENTS_FILE, export_wfdb


def test_exported_records_read_back_with_wfdb(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    for store in (tiny_cohort[0], tiny_cohort[2]):  # 500 Hz and 100 Hz
        out = tmp_path / store.site
        db = pd.read_csv(export_wfdb(store, out, records=np.arange(6)))
        column = "filename_hr" if store.manifest.fs == 500 else "filename_lr"

        for k, row in db.iterrows():
            rec = wfdb.rdrecord(str(out / row[column]))
            assert rec.fs == store.manifest.fs
            assert rec.sig_name == list(LEADS)
            assert rec.units == ["mV"] * 12
            np.testing.assert_allclose(rec.p_signal.T, store.signals()[k], atol=5.01e-4)  # 1 µV ADC steps
            assert rec.comments[0] == f"Age: {int(store.metadata['age'].iloc[k])}"


def test_database_labels_follow_ptbxl_conventions(tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    store = tiny_cohort[1]
    meta = store.metadata

    db = pd.read_csv(export_wfdb(store, tmp_path))
    statements = pd.read_csv(tmp_path / STATEMENTS_FILE).set_index("code")

    assert len(db) == len(meta)
    assert set(db["strat_fold"][meta["split"] == "test"]) == {10}
    assert set(db["strat_fold"][meta["split"] == "val"]) == {9}
    assert set(db["strat_fold"][meta["split"] == "train"]) <= set(range(1, 9))
    assert (db["sex"] == (meta["sex"] == "F").astype(int)).all()
    for row in db.itertuples():
        codes = ast.literal_eval(row.scp_codes)
        is_mi = any(statements.loc[c, "diagnostic_class"] == "MI" for c in codes)
        if row.label == 1:
            assert is_mi and row.infarction_stadium1 == "Stadium I"
        assert "AMI" not in codes  # PTB-XL's AMI means anterior MI; never written
    assert db.groupby("patient_id")["record_id"].count().max() >= 2

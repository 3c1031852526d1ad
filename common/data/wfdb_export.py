"""Export a site store as WFDB records with a PTB-XL-style database table.

This turns (a small part of) the synthetic cohort into the same shape as a real PTB-XL download, so
the real readers can be exercised end to end. Signals are written in format 16 at 1000 ADC units
per mV (1 µV steps), as PTB-XL does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import wfdb

from common.data.leads import LEADS, UNITS
from common.data.store import SiteStore

ADC_GAIN: Final[float] = 1000.0
DATABASE_FILE: Final[str] = "ptbxl_database.csv"
STATEMENTS_FILE: Final[str] = "scp_statements.csv"

# SCP statements used for the synthetic patterns. PTB-XL's "AMI" is *anterior* MI; we use ASMI.
_MI_CODE: Final[dict[str, str]] = {"anterior": "ASMI", "inferior": "IMI", "lateral": "LMI"}
_INJ_CODE: Final[dict[str, str]] = {"anterior": "INJAS", "inferior": "INJIN", "lateral": "INJLA"}
_STATEMENTS: Final[list[tuple[str, str, str, str]]] = [
    # code, description, diagnostic_class, diagnostic_subclass
    ("NORM", "normal ECG", "NORM", "NORM"),
    ("ASMI", "anteroseptal myocardial infarction", "MI", "AMI"),
    ("IMI", "inferior myocardial infarction", "MI", "IMI"),
    ("LMI", "lateral myocardial infarction", "MI", "LMI"),
    ("INJAS", "subendocardial injury in anteroseptal leads", "MI", "AMI"),
    ("INJIN", "subendocardial injury in inferior leads", "MI", "IMI"),
    ("INJLA", "subendocardial injury in lateral leads", "MI", "LMI"),
    ("LVH", "left ventricular hypertrophy", "HYP", "LVH"),
    ("NST_", "non-specific ST changes", "STTC", "NST_"),
    ("NDT", "non-diagnostic T abnormalities", "STTC", "STTC"),
]
_FOLD: Final[dict[str, int]] = {"val": 9, "test": 10}


def _scp(row: pd.Series) -> tuple[dict[str, float], str]:
    """SCP codes (statement -> likelihood) and infarction stadium for one synthetic record."""
    codes: dict[str, float] = {}
    stadium = ""
    if row["label"] == 1:
        territory = row["territory"] or "anterior"
        codes[_INJ_CODE[territory] if row["pattern"] == "subtle" else _MI_CODE[territory]] = 100.0
        stadium = "Stadium I"
    mimic = row["mimic"]
    if mimic == "lvh_strain":
        codes["LVH"] = 100.0
    elif mimic == "nonspecific":
        codes["NST_"] = 100.0
    elif mimic == "early_repol":
        codes["NDT"] = 50.0
    elif mimic == "old_mi" and not codes:
        codes["IMI"] = 100.0
        stadium = "Stadium III"
    return (codes or {"NORM": 100.0}), stadium


def export_wfdb(store: SiteStore, out_dir: Path, *, records: np.ndarray | None = None, ecg_id_start: int = 1) -> Path:
    """Write records (default: all) of ``store`` under ``out_dir``; return the database CSV path.

    Layout and columns follow PTB-XL: ``records{fs}/NNN00/NNNNN_{lr|hr}``, ``ecg_id``,
    ``patient_id``, ``age``, ``sex`` (0 male, 1 female), ``site``, ``device``, ``scp_codes``,
    ``infarction_stadium1``, ``strat_fold`` (train 1-8, val 9, test 10), ``filename_lr`` /
    ``filename_hr``; plus ``filename`` (any rate), ``record_id``, ``label`` and ``fs``.
    """
    out_dir = Path(out_dir)
    meta = store.metadata
    idx = np.arange(len(meta)) if records is None else np.asarray(records)
    fs = store.manifest.fs
    suffix = {100: "lr", 500: "hr"}.get(fs, str(fs))
    sig = store.signals()
    patient_num = {p: i + 1 for i, p in enumerate(pd.unique(meta["patient_id"]))}
    rows = []
    for n, i in enumerate(idx):
        row = meta.iloc[int(i)]
        ecg_id = ecg_id_start + n
        rel = f"records{fs}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_{suffix}"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        age, sex = row["age"], row["sex"]
        wfdb.wrsamp(
            Path(rel).name,
            fs=fs,
            units=[UNITS] * len(LEADS),
            sig_name=list(LEADS),
            p_signal=np.asarray(sig[int(i)], dtype=np.float64).T,
            fmt=["16"] * len(LEADS),
            adc_gain=[ADC_GAIN] * len(LEADS),
            baseline=[0] * len(LEADS),
            comments=[f"Age: {'' if pd.isna(age) else int(age)}", f"Sex: {sex}"],
            write_dir=str((out_dir / rel).parent),
        )
        codes, stadium = _scp(row)
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": float(patient_num[row["patient_id"]]),
                "age": age,
                "sex": {"M": 0, "F": 1}.get(row["sex"], np.nan),
                "site": float(store.manifest.source.get("site_index", 0)),
                "device": f"synthetic-{fs}Hz",
                "scp_codes": repr(codes),
                "infarction_stadium1": stadium,
                "strat_fold": _FOLD.get(row["split"], 1 + (ecg_id % 8)),
                "filename": rel,
                "filename_lr": rel if fs == 100 else "",
                "filename_hr": rel if fs == 500 else "",
                "record_id": row["record_id"],
                "label": int(row["label"]),
                "fs": fs,
            }
        )
    db = out_dir / DATABASE_FILE
    pd.DataFrame(rows).to_csv(db, index=False)
    stm = pd.DataFrame(_STATEMENTS, columns=["code", "description", "diagnostic_class", "diagnostic_subclass"])
    stm.insert(2, "diagnostic", 1.0)
    stm.to_csv(out_dir / STATEMENTS_FILE, index=False)
    return db

"""A hospital's own export: WFDB records listed in a CSV manifest.

One row per ECG::

    record,patient_id,site,age,sex,label,ward
    2024/ecg_000017,P-0042,hospital_b,67,F,1,cardiology
    /mnt/export/ecg_000018,P-0043,hospital_b,,M,0,emergency

* ``record``: the WFDB record path without extension (a trailing ``.hea``/``.dat``/``.mat`` is
  tolerated), relative to the manifest's folder or absolute.
* ``patient_id``: the hospital's pseudonymous patient id; where empty, the record id is used, so
  patient-disjoint splits cannot be guaranteed for those rows (a warning says how many).
* ``site``: the hospital (required, non-empty).
* ``age``: years (``61``, ``61.5``, ``61,5``, ``61 y``, ``90+``); empty is missing (NaN); anything
  else is counted as ``unreadable_age``. ``sex``: M/F or male/female; numeric codes only with a
  declared coding (``sex_codes``: ``iso5218`` 1 male 2 female, or ``ptbxl`` 0 male 1 female), since
  a 1 is a man in one and a woman in the other; empty or unknown is missing; anything else is
  counted as ``unreadable_sex``.
* ``label``: 1 (AMI), 0, or empty when unknown (kept as NaN, counted as ``missing_label``).
* ``record_id`` (optional): the id to store; by default the ``record`` value.

Any other column is kept in the index as metadata (a ``strat_fold`` or ``units`` column too: the
splits are drawn per hospital, PTB-XL's folds apply to PTB-XL only). The columns in
:data:`RESERVED_COLUMNS` are reserved (the readers and the ingest write them). A record listed
twice with the same metadata is passed on, so the ingest counts the copy as ``duplicate_record``;
the same record id with
*different* metadata (another label, patient or file) is ambiguous and a :class:`ValueError`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from common.config import ManifestData
from common.data.readers.base import INDEX_COLUMNS, RawEcg, SexCoding, demographics_columns
from common.data.readers.wfdb_reader import read_wfdb

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: Final[tuple[str, ...]] = ("record", "patient_id", "site", "age", "sex", "label")
RESERVED_COLUMNS: Final[tuple[str, ...]] = (
    "path", "split", "fs", "padded", "fold", "signal_units", "duplicate_of", "reader",
    "age_unreadable", "sex_unreadable", "label_unreadable", "unreadable",
)  # fmt: skip
_TEXT_COLUMNS: Final[tuple[str, ...]] = ("record", "record_id", "patient_id", "site", "sex")
_KNOWN: Final[frozenset[str]] = frozenset({*REQUIRED_COLUMNS, "record_id", *RESERVED_COLUMNS})
_EXTENSIONS: Final[tuple[str, ...]] = (".hea", ".dat", ".mat")


def _rows(df: pd.DataFrame, mask: pd.Series | np.ndarray, limit: int = 10) -> str:
    """Manifest line numbers (header = line 1) of the rows in ``mask``, for error messages."""
    lines = [str(i + 2) for i in np.flatnonzero(np.asarray(mask))]
    return ", ".join(lines[:limit]) + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _strip_extension(record: str) -> str:
    return record[: -len(ext)] if (ext := Path(record).suffix.lower()) in _EXTENSIONS else record


def _label(value: object) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return math.nan
    try:
        x = float(str(value).strip())
    except ValueError:
        return -1.0  # flagged as invalid by the caller
    return x if x in (0.0, 1.0) else -1.0


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest as written (column names stripped; known names matched case-insensitively).

    A missing file, a folder, text that is not UTF-8 and a manifest without rows are clear errors.
    """
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if not path.is_file():
        raise ValueError(f"manifest {path} is not a file (a CSV with one row per ECG is expected)")
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"manifest {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ValueError(f"manifest {path} is empty") from None
    except pd.errors.ParserError as err:
        raise ValueError(f"manifest {path} is not a readable CSV: {err}") from None
    if df.empty:
        raise ValueError(f"manifest {path} lists no records (it has a header line only)")
    renames = {c: c.strip().lower() if c.strip().lower() in _KNOWN else c.strip() for c in df.columns}
    return df.rename(columns=renames)


class ManifestSource(BaseModel):
    """WFDB records listed in a CSV manifest (see the module docstring for its columns)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    sex_codes: SexCoding = ManifestData.model_fields["sex_codes"].default

    def describe(self) -> dict[str, Any]:
        """Kind, path, the sex coding and the manifest's sha256, so an edited manifest is ingested anew."""
        try:
            digest: str | None = hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            digest = None
        return {"kind": "manifest", "path": str(self.path), "sex_codes": self.sex_codes, "sha256": digest}

    def index(self) -> pd.DataFrame:
        """One row per manifest row: :data:`~common.data.readers.base.INDEX_COLUMNS`, then the extra columns."""
        file = self.path.resolve()
        df = read_manifest(file)
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(
                f"manifest {file} lacks the required column(s) {missing} (it has {list(df.columns)}; "
                f"required: {list(REQUIRED_COLUMNS)})"
            )
        reserved = [c for c in RESERVED_COLUMNS if c in df.columns]
        if reserved:
            raise ValueError(f"manifest {file} has reserved column(s) {reserved}: rename them")
        for c in _TEXT_COLUMNS:
            if c in df.columns:
                df[c] = df[c].str.strip()

        record = df["record"].map(_strip_extension)
        if (record == "").any():
            raise ValueError(f"manifest {file}: empty 'record' on line(s) {_rows(df, record == '')}")
        if (df["site"] == "").any():
            raise ValueError(f"manifest {file}: empty 'site' on line(s) {_rows(df, df['site'] == '')}")
        label = df["label"].map(_label)
        if (label == -1.0).any():
            bad = label == -1.0
            values = sorted(set(df.loc[bad, "label"]))[:10]
            raise ValueError(f"manifest {file}: label must be 0, 1 or empty; line(s) {_rows(df, bad)} have {values}")

        record_id = df["record_id"].where(df["record_id"] != "", record) if "record_id" in df.columns else record
        no_patient = df["patient_id"] == ""
        if no_patient.any():
            log.warning(
                "manifest %s: %d rows without patient_id use their record id (patient-disjointness not guaranteed)",
                file,
                int(no_patient.sum()),
            )
        numeric_sex = df["sex"].str.fullmatch(r"\d+(\.0)?")
        if self.sex_codes == "letters" and numeric_sex.any():
            codes = sorted(set(df.loc[numeric_sex, "sex"]))[:10]
            raise ValueError(
                f"manifest {file}: column 'sex' holds numeric codes {codes} on line(s) {_rows(df, numeric_sex)}; "
                "a 1 is a man under ISO 5218 and a woman under PTB-XL's coding: say which with "
                "--set data.sex-codes=iso5218 (1 male, 2 female) or --set data.sex-codes=ptbxl (0 male, 1 female)"
            )
        base = file.parent
        demo = demographics_columns(df["age"].tolist(), df["sex"].tolist(), coding=self.sex_codes)
        index = pd.DataFrame(
            {
                "record_id": record_id,
                "patient_id": df["patient_id"].where(~no_patient, record_id),
                "site": df["site"],
                "age": np.asarray(demo["age"], dtype=np.float64),
                "sex": demo["sex"],
                "label": label.astype(np.float64),
                "path": [str(p if (p := Path(r)).is_absolute() else base / p) for r in record],
                "age_unreadable": demo["age_unreadable"],
                "sex_unreadable": demo["sex_unreadable"],
            },
            index=df.index,
        )
        extras = [c for c in df.columns if c not in _KNOWN]
        index = pd.concat([index, _infer(df[extras])], axis=1)

        distinct = index[list(INDEX_COLUMNS)].drop_duplicates()
        conflicting = sorted(set(distinct.loc[distinct["record_id"].duplicated(), "record_id"]))
        if conflicting:
            raise ValueError(
                f"manifest {file}: record id(s) {conflicting[:10]} appear more than once with different "
                "metadata (label, patient, site, age, sex or file); keep one row per ECG"
            )
        return index.reset_index(drop=True)

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        return read_wfdb(Path(str(row["path"])))


def _infer(extra: pd.DataFrame) -> pd.DataFrame:
    """Extra columns with numbers as numbers (empty = NaN) and everything else as text."""
    out = {}
    for c in extra.columns:
        col = extra[c].str.strip()
        numeric = pd.to_numeric(col.where(col != ""), errors="coerce")
        out[c] = numeric if numeric.notna().sum() == (col != "").sum() and (col != "").any() else extra[c]
    return pd.DataFrame(out, index=extra.index)

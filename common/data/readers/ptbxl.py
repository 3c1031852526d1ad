"""PTB-XL: the raw WFDB release, and the shared filtered array that joins it.

Labels come from the SCP statements with a likelihood threshold:

* ``mi``: any statement whose diagnostic class is MI (PTB-XL's ``AMI`` means *anterior* MI);
* ``acute``: a proxy for an acute event: an ``INJ*`` statement (subendocardial injury) or
  ``infarction_stadium1`` in Stadium I, I-II or II;
* ``normal``: the ``NORM`` statement.

Ages of 90 and over are written 300 in PTB-XL and become 90 here. ``strat_fold`` is kept so the
splits can follow PTB-XL's folds (1-8 train, 9 validation, 10 test).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from common.config import PtbxlData
from common.config import PtbxlLabel as Label
from common.data.leads import N_LEADS
from common.data.readers.base import QCReason, RawEcg, RecordError, demographics_columns
from common.data.readers.wfdb_reader import read_wfdb

log = logging.getLogger(__name__)

DATABASE_FILE: Final[str] = "ptbxl_database.csv"
STATEMENTS_FILE: Final[str] = "scp_statements.csv"
_DEFAULTS: Final = PtbxlData(root=Path("."))
"""The reader's defaults are the typed settings' (:class:`common.config.PtbxlData`)."""
ACUTE_STADIA: Final[frozenset[str]] = frozenset({"Stadium I", "Stadium I-II", "Stadium II"})
SUPERCLASSES: Final[tuple[str, ...]] = ("NORM", "MI", "STTC", "CD", "HYP")
"""PTB-XL's diagnostic superclasses; the store keeps one 0/1 column ``superclass_<name>`` per class."""
SUPERCLASS_COLUMNS: Final[tuple[str, ...]] = tuple(f"superclass_{c}" for c in SUPERCLASSES)
SUPERCLASS_TARGETS: Final[tuple[str, ...]] = tuple(c for c in SUPERCLASS_COLUMNS if c != "superclass_MI")
"""The superclasses other than MI: auxiliary targets for the AMI model (``train.auxiliary_targets``)."""
SUBCLASSES: Final[dict[str, str]] = {
    "NORM": "NORM",
    "STTC": "STTC", "NST_": "STTC", "ISC_": "STTC", "ISCA": "STTC", "ISCI": "STTC",
    "CLBBB": "CD", "CRBBB": "CD", "ILBBB": "CD", "IRBBB": "CD", "IVCD": "CD", "LAFB/LPFB": "CD", "WPW": "CD",
    "_AVB": "CD",
    "LVH": "HYP", "RVH": "HYP", "LAO/LAE": "HYP", "RAO/RAE": "HYP", "SEHYP": "HYP",
    "AMI": "MI", "IMI": "MI", "LMI": "MI", "PMI": "MI",
}  # fmt: skip
"""PTB-XL's 23 diagnostic subclasses and their superclass; the store keeps a 0/1 column per subclass."""


def subclass_column(subclass: str) -> str:
    """``subclass_<name>`` with PTB-XL's ``/`` and edge underscores made column-safe (``_AVB`` -> ``subclass_AVB``)."""
    return "subclass_" + re.sub(r"[^A-Za-z0-9]+", "_", subclass).strip("_")


SUBCLASS_TARGETS: Final[tuple[str, ...]] = tuple(subclass_column(s) for s, c in SUBCLASSES.items() if c != "MI")
"""The 19 subclasses outside MI (the AMI label's mimics told apart): auxiliary targets for the AMI model."""
MI_SUBCLASS_TARGETS: Final[tuple[str, ...]] = tuple(subclass_column(s) for s, c in SUBCLASSES.items() if c == "MI")
"""MI's subclasses by territory (anterior, inferior, lateral, posterior): auxiliary targets that localise it."""


def _metadata_file(root: Path, name: str) -> Path:
    for candidate in (root / name, root / "metadata" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found in {root} or {root / 'metadata'}")


def _statements(db: pd.DataFrame) -> pd.Series:
    """Each record's SCP statements with their likelihoods, parsed once for every column derived from them."""
    return db["scp_codes"].map(lambda s: {k: float(v) for k, v in ast.literal_eval(str(s)).items()})


def _labels(
    codes: pd.Series, db: pd.DataFrame, statements: pd.DataFrame, label: Label, likelihood: float
) -> np.ndarray:
    mi_codes = set(statements.index[statements["diagnostic_class"] == "MI"])
    sure = codes.map(lambda d: {k for k, v in d.items() if v >= likelihood})
    if label == "mi":
        out = sure.map(lambda c: bool(c & mi_codes))
    elif label == "normal":
        out = sure.map(lambda c: "NORM" in c)
    else:
        stadium = db.get("infarction_stadium1", pd.Series("", index=db.index)).fillna("").astype(str).str.strip()
        out = sure.map(lambda c: any(k.startswith("INJ") for k in c)) | stadium.isin(ACUTE_STADIA)
    return out.to_numpy(dtype=np.float64)


_TERRITORY_CODES: Final[dict[str, tuple[str, ...]]] = {
    "AMI": ("anterior",), "ASMI": ("anterior",), "ALMI": ("anterior", "lateral"), "LMI": ("lateral",),
    "IMI": ("inferior",), "ILMI": ("inferior", "lateral"), "IPMI": ("inferior",), "IPLMI": ("inferior", "lateral"),
    "INJAS": ("anterior",), "INJAL": ("anterior", "lateral"), "INJIN": ("inferior",), "INJLA": ("lateral",),
    "INJIL": ("inferior", "lateral"),
}  # fmt: skip
"""Infarct and injury statements -> territories (:data:`common.data.leads.TERRITORY_LEADS`); posterior MI (PMI)
has no facing lead of the 12 and is left out."""


def _territories(codes: pd.Series, likelihood: float) -> np.ndarray:
    """``territory``: the territories of a record's infarct or injury statements at ``likelihood`` or more."""

    def one(record: dict[str, float]) -> str:
        found = {t for c, v in record.items() if v >= likelihood for t in _TERRITORY_CODES.get(c, ())}
        return "+".join(sorted(found))

    return codes.map(one).to_numpy(dtype=object)


def _memberships(
    codes: pd.Series, group_of: Mapping[str, str], groups: Iterable[str], column: Callable[[str], str]
) -> dict[str, np.ndarray]:
    """``column(g)``: 1 where any of the record's SCP statements belongs to group ``g``, at any likelihood.

    Any likelihood, as PTB-XL's own example code aggregates them (its diagnostic statements mostly carry 100;
    the AMI label itself keeps the ``likelihood`` threshold).
    """
    found = codes.map(lambda record: {group_of.get(k) for k in record})
    return {column(g): found.map(lambda listed, g=g: g in listed).to_numpy(np.int64) for g in groups}


def _superclasses(codes: pd.Series, statements: pd.DataFrame) -> dict[str, np.ndarray]:
    """``superclass_<name>`` per diagnostic class (:data:`SUPERCLASSES`)."""
    return _memberships(codes, statements["diagnostic_class"].dropna().to_dict(), SUPERCLASSES, "superclass_{}".format)


def _subclasses(codes: pd.Series, statements: pd.DataFrame) -> dict[str, np.ndarray]:
    """``subclass_<name>`` per diagnostic subclass (:data:`SUBCLASSES`, :func:`subclass_column`).

    No columns when the statement table has no ``diagnostic_subclass`` column: a run that asks for them as auxiliary
    targets then stops with an error naming them, rather than training on columns of zeros.
    """
    if "diagnostic_subclass" not in statements.columns:
        return {}
    table = statements.dropna(subset=["diagnostic_subclass"])
    found = set(zip(table["diagnostic_subclass"], table["diagnostic_class"], strict=True))
    if other := sorted(found - set(SUBCLASSES.items()), key=str):  # a table may list fewer statements, never others
        raise ValueError(f"{STATEMENTS_FILE} maps diagnostic subclasses to classes as {other}, not as PTB-XL does")
    return _memberships(codes, table["diagnostic_subclass"].to_dict(), SUBCLASSES, subclass_column)


def _hospital(db: pd.DataFrame, column: Literal["site", "device"]) -> pd.Series:
    raw = db[column]
    if column == "site":
        return raw.map(lambda v: "site_unknown" if pd.isna(v) else f"site_{int(v)}")
    return raw.fillna("unknown").astype(str).str.strip().str.replace(r"\s+", "_", regex=True)


def ptbxl_table(
    root: Path, *, label: Label, likelihood: float, hospital_column: Literal["site", "device"]
) -> pd.DataFrame:
    """PTB-XL metadata as an index without ``path``: every row of the database."""
    text_columns = ("scp_codes", "infarction_stadium1", "device", "filename_lr", "filename_hr")
    db = pd.read_csv(_metadata_file(root, DATABASE_FILE), dtype=dict.fromkeys(text_columns, str))
    statements = pd.read_csv(_metadata_file(root, STATEMENTS_FILE), index_col=0)
    demo = demographics_columns(db["age"].tolist(), db["sex"].tolist(), coding="ptbxl", ptbxl=True)
    codes = _statements(db)
    return pd.DataFrame(
        {
            "record_id": "ptbxl-" + db["ecg_id"].astype(int).astype(str),
            "patient_id": "ptbxl-p" + db["patient_id"].astype(int).astype(str),
            "site": _hospital(db, hospital_column),
            "age": np.asarray(demo["age"], dtype=np.float64),
            "sex": demo["sex"],
            "label": _labels(codes, db, statements, label, likelihood),
            **_superclasses(codes, statements),
            **_subclasses(codes, statements),
            "territory": _territories(codes, likelihood),
            "age_unreadable": demo["age_unreadable"],
            "sex_unreadable": demo["sex_unreadable"],
            "ecg_id": db["ecg_id"].astype(int),
            "strat_fold": db["strat_fold"].astype(int),
            "fold": db["strat_fold"].astype(int),  # PTB-XL's protocol: the ingest splits by it
            "device": db["device"].fillna("").astype(str).str.strip(),
            "filename_lr": db["filename_lr"].fillna(""),
            "filename_hr": db["filename_hr"].fillna(""),
        }
    )


class PtbxlSource(BaseModel):
    """Raw PTB-XL WFDB records present under ``root`` at the chosen rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    rate: Literal[100, 500] = _DEFAULTS.rate
    label: Label = _DEFAULTS.label
    likelihood: float = _DEFAULTS.likelihood
    hospital_column: Literal["site", "device"] = _DEFAULTS.hospital

    def describe(self) -> dict[str, Any]:
        return {"kind": "ptbxl", **self.model_dump(mode="json")}

    def index(self) -> pd.DataFrame:
        table = ptbxl_table(
            self.root, label=self.label, likelihood=self.likelihood, hospital_column=self.hospital_column
        )
        rel = table["filename_lr" if self.rate == 100 else "filename_hr"]
        present = rel.map(lambda r: bool(r) and (self.root / f"{r}.hea").is_file())
        log.info(
            "PTB-XL: %d of %d records present at %d Hz under %s", int(present.sum()), len(table), self.rate, self.root
        )
        out = table[present].copy()
        out["path"] = [str(self.root / r) for r in rel[present]]
        out["reader"] = "wfdb"
        return out.drop(columns=["filename_lr", "filename_hr"]).reset_index(drop=True)

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        return read_wfdb(Path(str(row["path"])))


class PtbxlFilteredSource(BaseModel):
    """The shared filtered PTB-XL array (``signals.npy`` float16 (n, 1000, 12), z-scored, 100 Hz).

    Its index joins ``index.csv`` with the PTB-XL metadata of ``ptbxl_root``. Its signals are
    dimensionless (each lead was z-scored), so they can only be pooled with other records under
    per-record standardisation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    ptbxl_root: Path
    label: Label = _DEFAULTS.label
    likelihood: float = _DEFAULTS.likelihood
    hospital_column: Literal["site", "device"] = _DEFAULTS.hospital

    FS: ClassVar[int] = 100

    def describe(self) -> dict[str, Any]:
        return {"kind": "ptbxl_filtered", **self.model_dump(mode="json")}

    def index(self) -> pd.DataFrame:
        idx = pd.read_csv(self.root / "index.csv")
        table = ptbxl_table(
            self.ptbxl_root, label=self.label, likelihood=self.likelihood, hospital_column=self.hospital_column
        )
        out = idx[["row", "ecg_id"]].merge(table, on="ecg_id", how="left", validate="one_to_one")
        missing = out["record_id"].isna()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} rows of {self.root / 'index.csv'} have no PTB-XL metadata")
        out["path"] = [f"{self.root / 'signals.npy'}#{int(r)}" for r in out["row"]]
        out["reader"] = "ptbxl_filtered"
        out["signal_units"] = "z-score"
        return out.drop(columns=["row", "filename_lr", "filename_hr"]).reset_index(drop=True)

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        file, _, r = str(row["path"]).partition("#")
        arr = np.load(file, mmap_mode="r")
        if arr.ndim != 3 or arr.shape[2] != N_LEADS:
            raise RecordError(QCReason.UNREADABLE, f"{file} has shape {arr.shape}, expected (n, T, 12)")
        return RawEcg(np.asarray(arr[int(r)], dtype=np.float32).T.copy(), float(self.FS), "z-score")


class PtbxlCombinedSource(BaseModel):
    """Raw PTB-XL records plus the filtered array's records; a record in both takes the raw copy.

    The filtered copies of records that are present raw are listed in the index with
    ``duplicate_of`` set, so the ingest counts them as duplicates instead of losing them silently.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    raw: PtbxlSource
    filtered: PtbxlFilteredSource

    def describe(self) -> dict[str, Any]:
        return {"kind": "ptbxl_combined", "raw": self.raw.describe(), "filtered": self.filtered.describe()}

    def index(self) -> pd.DataFrame:
        raw, filt = self.raw.index(), self.filtered.index()
        raw["signal_units"] = "mV"
        raw["duplicate_of"] = ""
        filt["duplicate_of"] = np.where(filt["ecg_id"].isin(raw["ecg_id"]), filt["record_id"], "")
        filt.loc[filt["duplicate_of"] != "", "record_id"] += "-filtered"
        return pd.concat([raw, filt], ignore_index=True)

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        return self.filtered.load(row) if row["reader"] == "ptbxl_filtered" else self.raw.load(row)


def ptbxl_source(
    root: Path,
    filtered: Path | None = None,
    *,
    rate: Literal[100, 500] = _DEFAULTS.rate,
    label: Label = _DEFAULTS.label,
    likelihood: float = _DEFAULTS.likelihood,
    hospital_column: Literal["site", "device"] = _DEFAULTS.hospital,
) -> PtbxlSource | PtbxlCombinedSource:
    """Raw PTB-XL, or raw plus the shared filtered array when ``filtered`` is given."""
    opts: dict[str, Any] = {"label": label, "likelihood": likelihood, "hospital_column": hospital_column}
    raw = PtbxlSource(root=root, rate=rate, **opts)
    if filtered is None:
        return raw
    return PtbxlCombinedSource(raw=raw, filtered=PtbxlFilteredSource(root=filtered, ptbxl_root=root, **opts))

"""The PhysioNet/Computing in Cardiology Challenge 2020/2021 12-lead ECG format.

Each record is ``NAME.hea`` + ``NAME.mat``. The ``.mat`` file is a MATLAB v4 file whose single
matrix ``val`` holds the int16 samples (leads x samples); MATLAB stores it column-major, so after
the file's 24-byte v4 preamble the samples are interleaved exactly like a WFDB format-16 signal
file, and the header says so (``A0001.mat 16+24 1000/mV 16 0 28 -1716 0 I``: format 16 at byte
offset 24). ``wfdb`` therefore reads it as an ordinary record. Demographics and diagnoses are
header comments::

    #Age: 74
    #Sex: Male
    #Dx: 59118001,164865005

Records have variable lengths and rates (PTB: 1000 Hz, INCART: 257 Hz, the rest 500 Hz).

Labels come from the SNOMED CT codes of ``#Dx`` (the codes and names are those of the challenge's
``dx_mapping_scored.csv`` / ``dx_mapping_unscored.csv``):

* ``mi``: any of :data:`MI_CODES`: myocardial infarction (164865005), acute MI (57054005),
  anterior MI (54329005), old MI (164867002). ST elevation alone is *not* an MI here.
* ``acute``: any of :data:`ACUTE_CODES`: acute MI (57054005) or ST elevation (164931005). ST
  elevation is a proxy: it is the ECG sign of an acute (STEMI-type) infarction, but it also comes
  with early repolarisation, pericarditis, left ventricular hypertrophy, bundle branch blocks and
  aneurysm, and most non-ST-elevation infarctions have none. Records coded only MI, anterior MI or
  old MI are *negative* for ``acute``.

A record without a usable ``#Dx`` line (missing, empty, ``Unknown``) has label NaN, which the
ingest counts as ``missing_label``. The challenge publishes no patient ids, so ``patient_id`` is
the record name: patient-disjoint splits cannot be guaranteed (some databases, e.g. the PTB
Diagnostic and INCART ones, hold several recordings of one person).

The challenge distributes one folder per source database (``training/cpsc_2018``,
``training/georgia``, ...). Point ``root`` at the folder that holds those and each database
becomes a site; point it at one database and give ``site`` (otherwise its sub-folders, e.g.
``g1``, become the sites).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from common.config import ChallengeData, ChallengeLabel
from common.data.readers.base import INDEX_COLUMNS, RawEcg, Unreadable, demographics_columns
from common.data.readers.wfdb_header import read_text
from common.data.readers.wfdb_reader import header_fields, read_wfdb

log = logging.getLogger(__name__)

# SNOMED CT codes as used in the challenge's Dx mapping tables.
MYOCARDIAL_INFARCTION: Final[int] = 164865005
ACUTE_MYOCARDIAL_INFARCTION: Final[int] = 57054005
ANTERIOR_MYOCARDIAL_INFARCTION: Final[int] = 54329005
OLD_MYOCARDIAL_INFARCTION: Final[int] = 164867002
ST_ELEVATION: Final[int] = 164931005
# Related findings, named for reference; none of them makes a record positive.
MYOCARDIAL_ISCHEMIA: Final[int] = 164861001
ACUTE_MYOCARDIAL_ISCHEMIA: Final[int] = 413444003
CHRONIC_MYOCARDIAL_ISCHEMIA: Final[int] = 413844008
ST_DEPRESSION: Final[int] = 429622005
Q_WAVE_ABNORMAL: Final[int] = 164917005
SINUS_RHYTHM: Final[int] = 426783006

MI_CODES: Final[frozenset[int]] = frozenset(
    {MYOCARDIAL_INFARCTION, ACUTE_MYOCARDIAL_INFARCTION, ANTERIOR_MYOCARDIAL_INFARCTION, OLD_MYOCARDIAL_INFARCTION}
)
"""Codes that make a record positive for ``label="mi"`` (any MI, old or new)."""
ACUTE_CODES: Final[frozenset[int]] = frozenset({ACUTE_MYOCARDIAL_INFARCTION, ST_ELEVATION})
"""Codes that make a record positive for ``label="acute"`` (ST elevation is a proxy, see above)."""
POSITIVE_CODES: Final[dict[str, frozenset[int]]] = {"mi": MI_CODES, "acute": ACUTE_CODES}

DEFAULT_SITE: Final[str] = "challenge"
_MISSING: Final[frozenset[str]] = frozenset({"", "nan", "unknown", "none", "n/a", "na"})


_DX_TOKEN: Final = re.compile(r"^(?P<code>\d+)(?:\.0+)?(?:\s*\(.*\))?$")
"""A SNOMED CT code as written in real headers: ``164865005``, ``164865005.0``, ``164865005 (MI)``."""


def parse_dx(value: str | None) -> frozenset[int] | None:
    """SNOMED CT codes of a ``#Dx`` value (``"59118001,164865005"``); None when there are none."""
    codes, _ = read_dx(value)
    return codes or None


def read_dx(value: str | None) -> tuple[frozenset[int], tuple[str, ...]]:
    """The codes of a ``#Dx`` value and the tokens that are no code (empty when the value is missing)."""
    if value is None or value.strip().lower() in _MISSING:
        return frozenset(), ()
    codes, bad = set(), []
    for token in value.replace(";", ",").split(","):
        token = token.strip()
        if not token:
            continue
        m = _DX_TOKEN.match(token)
        if m is None:
            bad.append(token)
        else:
            codes.add(int(m["code"]))
    return frozenset(codes), tuple(bad)


def label_of_dx(value: str | None, label: ChallengeLabel) -> float | Unreadable:
    """1.0 if a code is positive for ``label``; 0.0 if none is and every token is a code; NaN without codes.

    A token that is no code could be the positive diagnosis written otherwise, so a record whose
    readable codes are all negative but has such a token is :class:`Unreadable`, not negative.
    """
    codes, bad = read_dx(value)
    if codes & POSITIVE_CODES[label]:
        return 1.0
    if bad:
        return Unreadable(f"#Dx token(s) {list(bad)} are not SNOMED CT codes")
    return float(label_from_codes(codes or None, label))


def header_comments(hea: Path) -> tuple[str, ...]:
    """The ``#`` comment lines of a header, read as text so a corrupt header still gives them.

    Raises ``OSError`` when the file cannot be read at all (a broken or looping link, a folder).
    """
    text = read_text(hea)
    return tuple(line.strip() for line in text.splitlines() if line.lstrip().startswith("#"))


def label_from_codes(codes: frozenset[int] | None, label: ChallengeLabel) -> float:
    """1.0 if any code is positive for ``label``, 0.0 if none is, NaN when there are no codes."""
    if codes is None:
        return math.nan
    return float(bool(codes & POSITIVE_CODES[label]))


HEADER_COLUMNS: Final[tuple[str, ...]] = (
    *INDEX_COLUMNS, "dx", "age_unreadable", "sex_unreadable", "label_unreadable", "unreadable",
)  # fmt: skip


def header_row(hea: Path, record_id: str, site: str, label: ChallengeLabel | None) -> dict[str, Any]:
    """One index row from a WFDB header's comments: age, sex and (with ``label``) the label of its ``#Dx``.

    ``label=None`` reads no label (NaN). A header that cannot be read is a row saying so (``unreadable``).
    """
    try:
        fields, unreadable = header_fields(header_comments(hea)), ""
    except OSError as err:
        fields, unreadable = {}, f"cannot read {hea.name}: {err.strerror or err}"
    dx = fields.get("dx", "")
    value: float | Unreadable = math.nan if label is None else label_of_dx(dx, label)
    # the challenge distributes PTB-XL's records with their top code: 300 is 90 or over
    demo = demographics_columns([fields.get("age")], [fields.get("sex")], ptbxl=True)
    return {
        "record_id": record_id,
        "patient_id": Path(record_id).name,
        "site": site,
        **{k: v[0] for k, v in demo.items()},
        "label": math.nan if isinstance(value, Unreadable) else value,
        "label_unreadable": str(value) if isinstance(value, Unreadable) else "",
        "unreadable": unreadable,
        "path": str(hea.with_suffix("")),
        "dx": dx,
    }


def header_index(rows: list[dict[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=list(HEADER_COLUMNS))
    out["age"] = out["age"].astype(np.float64)
    out["label"] = out["label"].astype(np.float64)
    return out


class ChallengeSource(BaseModel):
    """Every ``*.hea`` record under ``root`` (recursively) in the challenge format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path
    label: ChallengeLabel = ChallengeData.model_fields["label"].default
    site: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "challenge",
            "root": str(self.root),
            "label": self.label,
            "site": self.site,
            "positive_codes": sorted(POSITIVE_CODES[self.label]),
        }

    def _site(self, rel: Path) -> str:
        if self.site:
            return self.site
        return rel.parts[0] if len(rel.parts) > 1 else DEFAULT_SITE

    def index(self) -> pd.DataFrame:
        """One row per header, sorted by relative path; unparseable headers are listed too.

        Columns: :data:`~common.data.readers.base.INDEX_COLUMNS`, ``dx`` (the codes as written) and what
        could not be read (``age_unreadable``, ``sex_unreadable``, ``label_unreadable``; empty when read).
        """
        root = self.root.resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"challenge root {root} is not a folder")
        found = sorted(root.rglob("*.hea"), key=lambda p: p.relative_to(root).as_posix())
        hidden = [p for p in found if any(part.startswith(".") for part in p.relative_to(root).parts)]
        if hidden:  # editor backups, notebook checkpoints, macOS metadata: never records of a hospital
            log.warning(
                "challenge: %d header(s) under hidden folders or with hidden names are not read, e.g. %s",
                len(hidden),
                hidden[0].relative_to(root),
            )
        headers = [p for p in found if p not in set(hidden)]
        if not headers:
            raise FileNotFoundError(f"no *.hea records under {root}")
        rows = []
        for hea in headers:
            rel = hea.relative_to(root).with_suffix("")
            rows.append(header_row(hea, rel.as_posix(), self._site(rel), self.label))
        out = header_index(rows)
        log.info(
            "challenge: %d records under %s, %d %s-positive, %d without Dx",
            len(out),
            root,
            int((out["label"] == 1).sum()),
            self.label,
            int(out["label"].isna().sum()),
        )
        return out

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        return read_wfdb(Path(str(row["path"])))

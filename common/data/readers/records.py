"""WFDB records named one by one or found under folders, with no label: what ``fedami predict`` scores.

Age and sex come from the header comments (``#Age: 63``, ``#Sex: Male``), as in the challenge
format; a record that is missing or unreadable is still a row, so the caller can list it with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd
from pydantic import BaseModel, ConfigDict

from common.data.readers.base import RawEcg
from common.data.readers.challenge import header_index, header_row
from common.data.readers.wfdb_reader import read_wfdb

log = logging.getLogger(__name__)

INPUT_SITE: Final[str] = "input"
_EXTENSIONS: Final[tuple[str, ...]] = (".hea", ".dat", ".mat")


def _record_of(path: Path) -> Path:
    """A record path without extension (``a/b.hea`` and ``a/b.dat`` name the record ``a/b``)."""
    return path.with_suffix("") if path.suffix.lower() in _EXTENSIONS else path


class RecordsSource(BaseModel):
    """Records given as paths: a record (with or without extension) or a folder searched recursively."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    paths: tuple[Path, ...]
    site: str = INPUT_SITE

    def describe(self) -> dict[str, Any]:
        return {"kind": "records", "paths": [str(p) for p in self.paths], "site": self.site}

    def records(self) -> list[tuple[str, Path]]:
        """(record id, header path) of every record, in the order given; a folder's sorted by relative path."""
        out: list[tuple[str, Path]] = []
        for given in self.paths:
            if given.is_dir():
                # a signal file without its header is listed too (as unreadable), never silently passed over
                found = {_record_of(p) for ext in _EXTENSIONS for p in given.rglob(f"*{ext}")}
                hidden = {p for p in found if any(part.startswith(".") for part in p.relative_to(given).parts)}
                if hidden:
                    log.warning("%d record(s) under hidden folders or names in %s are not read", len(hidden), given)
                visible = sorted(found - hidden, key=lambda p: p.relative_to(given).as_posix())
                if not visible:
                    raise FileNotFoundError(f"no WFDB records (*.hea) under {given}")
                out += [(p.relative_to(given).as_posix(), p.with_name(p.name + ".hea")) for p in visible]
            else:
                record = _record_of(given)
                out.append((record.as_posix(), record.with_name(record.name + ".hea")))
        return out

    def index(self) -> pd.DataFrame:
        return header_index([header_row(hea, rid, self.site, None) for rid, hea in self.records()])

    def load(self, row: Mapping[str, Any]) -> RawEcg:
        return read_wfdb(Path(str(row["path"])))

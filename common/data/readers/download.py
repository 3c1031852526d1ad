"""Resumable download of PTB-XL from PhysioNet into the layout :class:`~common.data.readers.ptbxl.PtbxlSource` reads.

::

    dest/ptbxl_database.csv
    dest/scp_statements.csv
    dest/RECORDS
    dest/records100/00000/00001_lr.hea, 00001_lr.dat, ...   (rate=100; records500/..._hr for 500)

Only the chosen rate is fetched (about 0.5 GB at 100 Hz instead of 3 GB for both). A file that
already exists with a non-zero size is skipped, and each file is written to a temporary name and
renamed when complete, so an interrupted download is resumed by running it again.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

import pandas as pd
from tqdm import tqdm

PTBXL_URL: Final[str] = "https://physionet.org/files/ptb-xl/1.0.3/"
METADATA_FILES: Final[tuple[str, ...]] = ("ptbxl_database.csv", "scp_statements.csv", "RECORDS")
_CHUNK: Final[int] = 1 << 16


def _present(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _safe_relative(rel: str) -> PurePosixPath:
    """A relative path from the database, refused if it could escape ``dest``."""
    p = PurePosixPath(rel.strip())
    if not rel.strip() or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"refusing unsafe record path {rel!r} from the PTB-XL database")
    return p


def fetch(url: str, target: Path, opener: Callable[..., Any], timeout: float) -> None:
    """Write ``url`` to ``target`` atomically (a temporary file renamed when complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        with opener(url, timeout=timeout) as response, tmp.open("wb") as f:
            shutil.copyfileobj(response, f, _CHUNK)
        if tmp.stat().st_size == 0:
            raise OSError(f"{url} returned an empty file")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def record_files(database: Path, rate: Literal[100, 500]) -> Iterator[PurePosixPath]:
    """The ``.hea`` and ``.dat`` files of every record of ``rate`` listed in ``ptbxl_database.csv``."""
    column = "filename_lr" if rate == 100 else "filename_hr"
    db = pd.read_csv(database, usecols=[column])
    for rel in db[column].dropna().astype(str):
        record = _safe_relative(rel)
        yield record.with_name(record.name + ".hea")
        yield record.with_name(record.name + ".dat")


def download_ptbxl(
    dest: Path,
    *,
    rate: Literal[100, 500] = 100,
    base_url: str = PTBXL_URL,
    opener: Callable[..., Any] = urllib.request.urlopen,
    progress: bool = True,
    workers: int = 4,
    timeout: float = 60.0,
) -> Path:
    """Download PTB-XL's metadata and the records of ``rate`` into ``dest``; return ``dest``.

    ``opener(url, timeout=...)`` returns a readable context manager, as :func:`urllib.request.urlopen`
    does (tests pass a fake). Files present with a non-zero size are not fetched again. Records are
    fetched by ``workers`` threads; the first failure stops the download and is raised (what was
    fetched stays, so running again resumes).
    """
    if rate not in (100, 500):
        raise ValueError(f"rate must be 100 or 500, not {rate!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    base = base_url if base_url.endswith("/") else base_url + "/"
    for name in METADATA_FILES:
        if not _present(dest / name):
            fetch(base + name, dest / name, opener, timeout)

    todo = [rel for rel in record_files(dest / METADATA_FILES[0], rate) if not _present(dest.joinpath(rel))]
    bar = tqdm(total=len(todo), desc=f"PTB-XL records{rate}", unit="file", disable=not progress)
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            futures = [pool.submit(fetch, base + str(rel), dest.joinpath(rel), opener, timeout) for rel in todo]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()
    return dest

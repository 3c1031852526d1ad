"""Readers: one per source, torch-free and Flower-free, all producing the same index and RawEcg."""

from common.readers.base import INDEX_COLUMNS, QCReason, RawEcg, RecordError, Source
from common.readers.challenge import ChallengeSource
from common.readers.download import download_ptbxl
from common.readers.manifest import ManifestSource
from common.readers.ptbxl import PtbxlCombinedSource, PtbxlFilteredSource, PtbxlSource
from common.readers.wfdb_reader import read_wfdb

__all__ = [
    "INDEX_COLUMNS",
    "ChallengeSource",
    "ManifestSource",
    "PtbxlCombinedSource",
    "PtbxlFilteredSource",
    "PtbxlSource",
    "QCReason",
    "RawEcg",
    "RecordError",
    "Source",
    "download_ptbxl",
    "read_wfdb",
]

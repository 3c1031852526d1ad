"""Readers: one per source, torch-free and Flower-free, all producing the same index and RawEcg."""

from common.data.readers.base import INDEX_COLUMNS, QCReason, RawEcg, RecordError, Source
from common.data.readers.challenge import ChallengeSource
from common.data.readers.download import download_ptbxl
from common.data.readers.manifest import ManifestSource
from common.data.readers.ptbxl import PtbxlCombinedSource, PtbxlFilteredSource, PtbxlSource
from common.data.readers.wfdb_reader import read_wfdb

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

"""Data, flowing one way: readers -> quality control -> preprocessing -> ingest -> store -> splits -> arrays.

Canonical conventions (``leads``), one reader per source (``readers``), the on-disk site store
(``store``), patient-disjoint splits and study folds (``splits``), and model-ready arrays read from
a store (``arrays``). Torch-free and Flower-free.
"""

"""Evaluation: one score-level kernel for AUROC, AUPRC and the Youden threshold (``metrics``) and the
study's statistics on it (bootstrap, thresholds, subgroups, calibration, comparisons, summary, tables, plots)."""

"""The clinical study's evaluation table for one model's validation and test scores.

AUROC and AUPRC with patient-bootstrap CIs; the Youden threshold chosen on validation and applied
unchanged to test (sensitivity, specificity, PPV, NPV, accuracy, weighted F1); AUROC per age band
and sex; calibration. Everything undefined for the data given is ``None`` with the reason, never a
crash or a NaN in JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd
from numpy.typing import ArrayLike

from common.evaluation.bootstrap import BootstrapCI, bootstrap_ci
from common.evaluation.calibration import brier_score, expected_calibration_error
from common.evaluation.metrics import (
    MetricError,
    YoudenPoint,
    finite_scores,
    jsonable,
    labels01,
    need_both_classes,
    youden_point,
)
from common.evaluation.subgroups import SubgroupAUROC, subgroup_aurocs
from common.evaluation.tables import NA, format_ci_pair, format_value, markdown_table
from common.evaluation.thresholds import ThresholdMetrics, threshold_metrics

ABSTRACT_LABELS: Final[tuple[str, ...]] = (
    "AUROC [95% CI]",
    "AUPRC",
    "Threshold (Youden, validation)",
    "Sensitivity",
    "Specificity",
    "NPV",
    "Weighted F1",
    "Subgroup AUROC range",
)
"""Row labels of :func:`summary_markdown_rows`, as in the study's abstract (for ``alpha=0.05``)."""


@dataclass(frozen=True)
class ClinicalSummary:
    """The study's table for one model: discrimination, operating point, subgroups, calibration.

    Attributes
    ----------
    auroc, auprc : BootstrapCI
        On test, with patient-bootstrap CIs.
    prevalence : float
        Fraction of positive test ECGs.
    youden : YoudenPoint
        Chosen on validation.
    at_threshold : ThresholdMetrics
        ``youden.threshold`` applied to test.
    subgroups : tuple of SubgroupAUROC
        On test.
    subgroup_auroc_min, subgroup_auroc_max : float or None
        Range over the subgroups whose AUROC is defined (None when none is).
    brier, ece : float or None
        On test; None when the scores are not probabilities in [0, 1] (see ``notes``).
    notes : tuple of str
        Why something is None.
    """

    name: str
    n_test: int
    n_patients_test: int
    positives_test: int
    prevalence: float
    auroc: BootstrapCI
    auprc: BootstrapCI
    youden: YoudenPoint
    at_threshold: ThresholdMetrics
    subgroups: tuple[SubgroupAUROC, ...]
    subgroup_auroc_min: float | None
    subgroup_auroc_max: float | None
    brier: float | None
    ece: float | None
    ece_bins: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and flat where it matters: plain numbers and strings, None for undefined.

        Headline keys: ``auroc``, ``auroc_ci`` (``[lower, upper]``), ``auprc``, ``auprc_ci``, ``ci_level``,
        ``prevalence``, ``threshold`` (Youden, validation), ``sensitivity``, ``specificity``, ``ppv``, ``npv``,
        ``accuracy``, ``weighted_f1`` (test, at that threshold), ``subgroup_auroc_min`` / ``_max``, ``brier``,
        ``ece``. Details: ``auroc_bootstrap``, ``auprc_bootstrap``, ``youden_validation``, ``at_threshold``
        (with the confusion counts), ``subgroups``, ``notes``.
        """
        t = self.at_threshold
        out: dict[str, Any] = jsonable(
            {
                "name": self.name,
                "n_test": self.n_test,
                "n_patients_test": self.n_patients_test,
                "positives_test": self.positives_test,
                "prevalence": self.prevalence,
                "auroc": self.auroc.estimate,
                "auroc_ci": [self.auroc.lower, self.auroc.upper],
                "auprc": self.auprc.estimate,
                "auprc_ci": [self.auprc.lower, self.auprc.upper],
                "ci_level": 1 - self.auroc.alpha,
                "threshold": self.youden.threshold,
                "sensitivity": t.sensitivity,
                "specificity": t.specificity,
                "ppv": t.ppv,
                "npv": t.npv,
                "accuracy": t.accuracy,
                "weighted_f1": t.weighted_f1,
                "subgroup_auroc_min": self.subgroup_auroc_min,
                "subgroup_auroc_max": self.subgroup_auroc_max,
                "brier": self.brier,
                "ece": self.ece,
                "ece_bins": self.ece_bins,
                "auroc_bootstrap": self.auroc.to_dict(),
                "auprc_bootstrap": self.auprc.to_dict(),
                "youden_validation": self.youden.to_dict(),
                "at_threshold": t.to_dict(),
                "subgroups": [g.to_dict() for g in self.subgroups],
                "notes": list(self.notes),
            }
        )
        return out


def clinical_summary(
    y_val: ArrayLike,
    s_val: ArrayLike,
    y_test: ArrayLike,
    s_test: ArrayLike,
    test_meta: pd.DataFrame,
    name: str = "",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> ClinicalSummary:
    """Compose the study's evaluation table for one model.

    Parameters
    ----------
    y_val, s_val : array-like
        Validation labels and scores; only used to choose the Youden threshold.
    y_test, s_test : array-like
        Test labels and scores.
    test_meta : DataFrame
        One row per test ECG (same order) with columns ``patient_id``, ``age``, ``sex``.
    name : str
        The model's name (for tables).
    n_boot, seed, alpha : int, int, float
        Patient bootstrap of the AUROC, AUPRC and subgroup AUROCs (see :func:`bootstrap_ci`).
    n_bins : int
        Bins of the expected calibration error.

    Raises
    ------
    MetricError
        When validation or test has one class only, or the inputs do not line up.
    """
    missing = [c for c in ("patient_id", "age", "sex") if c not in test_meta.columns]
    if missing:
        raise MetricError(f"clinical summary: test_meta lacks columns {missing}")
    yt = labels01(y_test, "clinical summary")
    st = finite_scores(s_test, len(yt), "clinical summary")
    if len(test_meta) != len(yt):
        raise MetricError(f"clinical summary: {len(yt)} test labels but {len(test_meta)} rows of test_meta")
    need_both_classes(yt, "clinical summary (test)")
    pid = test_meta["patient_id"].to_numpy()
    youden = youden_point(y_val, s_val)
    roc_ci = bootstrap_ci("auroc", yt, st, pid, n_boot=n_boot, seed=seed, alpha=alpha)
    pr_ci = bootstrap_ci("auprc", yt, st, pid, n_boot=n_boot, seed=seed, alpha=alpha)
    at = threshold_metrics(yt, st, youden.threshold)
    subs = subgroup_aurocs(
        yt, st, test_meta["age"].to_numpy(), test_meta["sex"].to_numpy(), pid, n_boot=n_boot, seed=seed, alpha=alpha
    )
    defined = [g.auroc for g in subs if g.auroc is not None]
    notes = [f"subgroup {g.group} {g.subgroup}: {g.reason}" for g in subs if g.reason is not None]
    brier = ece = None
    if st.min() >= 0.0 and st.max() <= 1.0:
        brier = brier_score(yt, st)
        ece = expected_calibration_error(yt, st, n_bins)
    else:
        notes.append("Brier and ECE undefined: test scores are not probabilities in [0, 1]")
    return ClinicalSummary(
        name=name,
        n_test=len(yt),
        n_patients_test=roc_ci.n_patients,
        positives_test=int(yt.sum()),
        prevalence=float(yt.mean()),
        auroc=roc_ci,
        auprc=pr_ci,
        youden=youden,
        at_threshold=at,
        subgroups=subs,
        subgroup_auroc_min=min(defined) if defined else None,
        subgroup_auroc_max=max(defined) if defined else None,
        brier=brier,
        ece=ece,
        ece_bins=n_bins,
        notes=tuple(notes),
    )


SummaryLike = ClinicalSummary | Mapping[str, Any]
"""A :class:`ClinicalSummary` or its :meth:`ClinicalSummary.to_dict` (for example read back from JSON)."""


def _range(lo: Any, hi: Any, digits: int) -> str:
    if format_value(lo, digits) == NA or format_value(hi, digits) == NA:
        return NA
    return f"{format_value(lo, digits)}-{format_value(hi, digits)}"


def summary_markdown_rows(summary: SummaryLike, digits: int = 3, extended: bool = False) -> list[tuple[str, str]]:
    """``(label, value)`` rows with the labels of the study's abstract (:data:`ABSTRACT_LABELS`).

    Parameters
    ----------
    summary : ClinicalSummary or its ``to_dict()``
    digits : int
        Decimals.
    extended : bool
        Also prevalence, PPV, Brier and ECE after the abstract's rows.

    Returns
    -------
    list of (label, value)
        Values: ``"0.848 [0.829-0.866]"`` for AUROC and AUPRC (patient-bootstrap CI), fractions with
        ``digits`` decimals, ``"n/a"`` where undefined, the subgroup range as ``"min-max"``. The CI label
        carries the confidence level (``"AUROC [95% CI]"`` for ``alpha=0.05``).
        ``pd.DataFrame(rows, columns=["metric", name])`` makes a table of it.
    """
    d = summary.to_dict() if isinstance(summary, ClinicalSummary) else summary
    level = f"{100 * float(d.get('ci_level', 0.95)):.4g}"
    lo, hi = d.get("subgroup_auroc_min"), d.get("subgroup_auroc_max")
    rows = [
        (f"AUROC [{level}% CI]", format_ci_pair(d.get("auroc"), d.get("auroc_ci"), digits)),
        ("AUPRC", format_ci_pair(d.get("auprc"), d.get("auprc_ci"), digits)),
        ("Threshold (Youden, validation)", format_value(d.get("threshold"), digits)),
        ("Sensitivity", format_value(d.get("sensitivity"), digits)),
        ("Specificity", format_value(d.get("specificity"), digits)),
        ("NPV", format_value(d.get("npv"), digits)),
        ("Weighted F1", format_value(d.get("weighted_f1"), digits)),
        ("Subgroup AUROC range", _range(lo, hi, digits)),
    ]
    if extended:
        rows += [
            ("Prevalence", format_value(d.get("prevalence"), digits)),
            ("PPV", format_value(d.get("ppv"), digits)),
            ("Brier", format_value(d.get("brier"), digits)),
            (f"ECE ({d.get('ece_bins', 10)} bins)", format_value(d.get("ece"), digits)),
        ]
    return rows


def summary_table(
    summaries: Mapping[str, SummaryLike] | Sequence[SummaryLike], digits: int = 3, extended: bool = False
) -> pd.DataFrame:
    """A ``Metric`` column plus one column per model (``name -> summary``, or a sequence named by ``name``)."""
    if isinstance(summaries, Mapping):
        items = list(summaries.items())
    else:
        items = []
        for i, s in enumerate(summaries):
            name = s.name if isinstance(s, ClinicalSummary) else str(s.get("name", ""))
            items.append((name or f"model {i + 1}", s))
    if not items:
        raise ValueError("summary_table needs at least one summary")
    cols: dict[str, list[str]] = {}
    for name, s in items:
        rows = summary_markdown_rows(s, digits, extended)
        cols.setdefault("Metric", [label for label, _ in rows])
        cols[name] = [value for _, value in rows]
    return pd.DataFrame(cols)


def summary_markdown(
    summaries: Mapping[str, SummaryLike] | Sequence[SummaryLike], digits: int = 3, extended: bool = False
) -> str:
    """:func:`summary_table` as a Markdown table ."""
    return markdown_table(summary_table(summaries, digits, extended))

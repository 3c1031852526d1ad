"""A 12-lead ECG drawn as clinicians read it, on pink paper, with an optional relevance band under each trace.

The layout is the standard one: three rows of four 2.5 s segments (I, aVR, V1, V4 / II, aVL, V2, V5 /
III, aVF, V3, V6, each column showing the next 2.5 s of the record) and a lead II rhythm strip over the
whole 10 s. The paper is exact: 25 mm/s and 10 mm/mV at the figure's dpi, because a clinician measures
intervals and amplitudes on the grid, and a figure that only looks like ECG paper would mislead them.

Everything is laid out in millimetres. One Axes covers the grid area with data coordinates in mm, so one
data unit is exactly ``dpi / 25.4`` pixels in both directions; :func:`panel_layout` and
:func:`grid_to_pixel` expose that layout so that tests and callers never restate its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox, TransformedBbox

from common.data.leads import LEAD_INDEX, LEADS

MM_PER_S: Final[float] = 25.0
"""Paper speed: 25 mm of paper per second."""
MM_PER_MV: Final[float] = 10.0
"""Gain: 10 mm of paper per millivolt."""
MM_PER_INCH: Final[float] = 25.4

GRID_MAJOR: Final[str] = "#f4a6a6"
"""Colour of the major grid lines (every 5 mm: 0.2 s, 0.5 mV)."""
GRID_MINOR: Final[str] = "#fbe0e0"
"""Colour of the minor grid lines (every 1 mm: 0.04 s, 0.1 mV)."""
TRACE_COLOUR: Final[str] = "#000000"
MINOR_MM: Final[float] = 1.0
MAJOR_MM: Final[float] = 5.0
MINOR_LINEWIDTH_PT: Final[float] = 0.4
MAJOR_LINEWIDTH_PT: Final[float] = 0.8
TRACE_LINEWIDTH_PT: Final[float] = 0.7

RELEVANCE_COLOURS: Final[tuple[str, ...]] = ("#ffffff", "#fb6a4a", "#a50f15")
"""Colour ramp of the relevance band, from 0 (white: blank paper) to the record's maximum (dark red)."""

STANDARD_LAYOUT: Final[tuple[tuple[str, ...], ...]] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
"""Leads of the three 2.5 s rows, left to right; column ``c`` shows the record's time [2.5c, 2.5c + 2.5) s."""
RHYTHM_LEAD: Final[str] = "II"
SEGMENT_S: Final[float] = 2.5
RECORD_S: Final[float] = 10.0
"""Time shown on the paper; a longer record is cut here, a shorter one leaves the paper blank after it."""

CALIBRATION_MM: Final[float] = 10.0
"""Gutter on the left of the grid holding each row's 1 mV calibration pulse, before time 0."""
ROW_MM: Final[float] = 40.0
"""Pitch of one row: the relevance band at its bottom, the trace region above it."""
BAND_GAP_MM: Final[float] = 1.0
BAND_MM: Final[float] = 3.0
TRACE_BOTTOM_MM: Final[float] = 5.0
"""Height, from the row's bottom, where the trace region starts (above the band and its gaps)."""
BASELINE_MM: Final[float] = 20.0
"""Height of the 0 mV line from the row's bottom: 1.5 mV room below it, 2 mV above, on a major line."""
N_ROWS: Final[int] = len(STANDARD_LAYOUT) + 1

GRID_WIDTH_MM: Final[float] = CALIBRATION_MM + RECORD_S * MM_PER_S
GRID_HEIGHT_MM: Final[float] = N_ROWS * ROW_MM
MARGIN_LEFT_MM: Final[float] = 10.0
MARGIN_RIGHT_MM: Final[float] = 10.0
MARGIN_TOP_MM: Final[float] = 14.0
MARGIN_BOTTOM_MM: Final[float] = 16.0

LABEL_FONT_PT: Final[float] = 7.0
TITLE_FONT_PT: Final[float] = 9.0
FOOTER_FONT_PT: Final[float] = 6.5

"""How a relevance method is named on the figure; an unknown name is written as given."""


@dataclass(frozen=True)
class FigureInfo:
    """What the figure says about the record and the model's decision.

    Attributes
    ----------
    record_id
        Identifier of the record, written first in the title.
    age
        Age in years, or None when unknown.
    sex
        ``"M"``, ``"F"`` or None when unknown.
    score
        The model's probability of AMI, or None when not scored.
    threshold
        Decision threshold on ``score``, or None when there is none.
    label
        1 AMI, 0 not AMI, None unknown.
    method
        The relevance map shown, as its title reads (``common.explain.maps.METHOD_TITLES``).
    """

    record_id: str
    age: float | None
    sex: str | None
    score: float | None
    threshold: float | None
    label: int | None
    method: str = "Score-CAM"


@dataclass(frozen=True)
class Panel:
    """One trace segment of the layout, in mm of grid coordinates (origin at the grid's bottom-left).

    Attributes
    ----------
    lead
        Lead drawn in this panel.
    row, column
        Position in the layout; row 0 is the top row, row 3 the rhythm strip (one column).
    t0_s, t1_s
        Time window of the record shown, ``[t0_s, t1_s)`` seconds.
    x0_mm, y0_mm, width_mm, height_mm
        The trace region: traces are clipped to it.
    baseline_mm
        Height of the 0 mV line.
    band_y0_mm, band_height_mm
        Vertical extent of the relevance band, which spans the same ``x0_mm`` .. ``x0_mm + width_mm``.
    """

    lead: str
    row: int
    column: int
    t0_s: float
    t1_s: float
    x0_mm: float
    y0_mm: float
    width_mm: float
    height_mm: float
    baseline_mm: float
    band_y0_mm: float
    band_height_mm: float

    @property
    def trace_box(self) -> tuple[float, float, float, float]:
        """The trace region as ``(x0_mm, y0_mm, width_mm, height_mm)``."""
        return (self.x0_mm, self.y0_mm, self.width_mm, self.height_mm)

    @property
    def band_box(self) -> tuple[float, float, float, float]:
        """The relevance band as ``(x0_mm, y0_mm, width_mm, height_mm)``."""
        return (self.x0_mm, self.band_y0_mm, self.width_mm, self.band_height_mm)

    def x_mm(self, t_s: float) -> float:
        """Horizontal position in mm of record time ``t_s`` (seconds) within this panel."""
        return self.x0_mm + (t_s - self.t0_s) * MM_PER_S


def _panel(lead: str, row: int, column: int, t0_s: float, t1_s: float) -> Panel:
    row_bottom = GRID_HEIGHT_MM - (row + 1) * ROW_MM
    return Panel(
        lead=lead,
        row=row,
        column=column,
        t0_s=t0_s,
        t1_s=t1_s,
        x0_mm=CALIBRATION_MM + t0_s * MM_PER_S,
        y0_mm=row_bottom + TRACE_BOTTOM_MM,
        width_mm=(t1_s - t0_s) * MM_PER_S,
        height_mm=ROW_MM - TRACE_BOTTOM_MM,
        baseline_mm=row_bottom + BASELINE_MM,
        band_y0_mm=row_bottom + BAND_GAP_MM,
        band_height_mm=BAND_MM,
    )


def panel_layout() -> tuple[Panel, ...]:
    """All 13 panels: the three rows left to right, top row first, then the lead II rhythm strip.

    Returns
    -------
    tuple of Panel
        In mm of grid coordinates; see :func:`grid_to_pixel` to find them in a rendered image.
    """
    panels = [
        _panel(lead, row, column, column * SEGMENT_S, (column + 1) * SEGMENT_S)
        for row, leads in enumerate(STANDARD_LAYOUT)
        for column, lead in enumerate(leads)
    ]
    panels.append(_panel(RHYTHM_LEAD, len(STANDARD_LAYOUT), 0, 0.0, RECORD_S))
    return tuple(panels)


def figure_size_mm() -> tuple[float, float]:
    """Width and height of the whole figure in mm: the grid plus its margins."""
    return (
        MARGIN_LEFT_MM + GRID_WIDTH_MM + MARGIN_RIGHT_MM,
        MARGIN_BOTTOM_MM + GRID_HEIGHT_MM + MARGIN_TOP_MM,
    )


def grid_to_pixel(x_mm: float, y_mm: float, dpi: float) -> tuple[float, float]:
    """Where a point of the grid (mm, origin bottom-left) lies in the saved image.

    Parameters
    ----------
    x_mm, y_mm
        Grid coordinates in mm, as in :class:`Panel`.
    dpi
        Resolution the figure was drawn and saved at.

    Returns
    -------
    tuple of float
        ``(column, row)`` in pixels of the image array, row 0 at the top, to within a pixel (the image
        size is truncated to whole pixels).
    """
    scale = dpi / MM_PER_INCH
    _, height_mm = figure_size_mm()
    return ((MARGIN_LEFT_MM + x_mm) * scale, (height_mm - MARGIN_BOTTOM_MM - y_mm) * scale)


def format_title(info: FigureInfo, *, with_method: bool = True) -> str:
    """The figure's title line: record, demographics, score against threshold, label and map shown.

    Parameters
    ----------
    info
        What is known of the record; None (or NaN) values are written as ``n/a``/``unknown``.
    with_method
        Whether to name the relevance map (only meaningful when one is drawn).
    """
    age = f"age {info.age:.0f}" if info.age is not None and math.isfinite(info.age) else "age n/a"
    sex = info.sex if info.sex else "sex unknown"
    score = f"score {info.score:.3f}" if info.score is not None and math.isfinite(info.score) else "score n/a"
    if info.threshold is None or not math.isfinite(info.threshold):
        score += " (threshold n/a)"
    elif info.score is None or not math.isfinite(info.score):
        score += f" (threshold {info.threshold:.3f})"
    else:
        score += f" (threshold {info.threshold:.3f}: {'above' if info.score >= info.threshold else 'below'})"
    label = (
        {1: "label AMI", 0: "label not AMI"}.get(info.label, "label unknown")
        if info.label is not None
        else "label unknown"
    )
    parts = [info.record_id, age, sex, score, label]
    if with_method:
        parts.append(info.method)
    return " · ".join(parts)


def _check_inputs(signal: np.ndarray, fs: float, relevance: np.ndarray | None, dpi: int) -> np.ndarray | None:
    if signal.ndim != 2 or signal.shape[0] != len(LEADS) or signal.shape[1] < 1:
        raise ValueError(f"signal must have shape ({len(LEADS)}, n_samples) with n_samples >= 1, got {signal.shape}")
    if not np.all(np.isfinite(signal)):
        raise ValueError("signal contains non-finite values (NaN or inf)")
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"fs must be a positive, finite sampling rate in Hz, got {fs}")
    if dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi}")
    if relevance is None:
        return None
    rel = np.asarray(relevance, dtype=np.float64)
    if rel.shape != signal.shape:
        raise ValueError(f"relevance must have the signal's shape {signal.shape}, got {rel.shape}")
    if not np.all(np.isfinite(rel)):
        raise ValueError("relevance contains non-finite values (NaN or inf)")
    if np.any(rel < 0):
        raise ValueError("relevance must be non-negative")
    return rel


def _draw_grid(ax: Axes) -> None:
    # Whole-mm integer steps avoid float drift: line k is at exactly k mm.
    xs = np.arange(0, round(GRID_WIDTH_MM / MINOR_MM) + 1) * MINOR_MM
    ys = np.arange(0, round(GRID_HEIGHT_MM / MINOR_MM) + 1) * MINOR_MM
    step = round(MAJOR_MM / MINOR_MM)
    for is_major, colour, width, z in (
        (False, GRID_MINOR, MINOR_LINEWIDTH_PT, 0.0),
        (True, GRID_MAJOR, MAJOR_LINEWIDTH_PT, 0.1),
    ):
        keep_x = (np.arange(len(xs)) % step == 0) == is_major
        keep_y = (np.arange(len(ys)) % step == 0) == is_major
        segments = [((x, 0.0), (x, GRID_HEIGHT_MM)) for x in xs[keep_x]]
        segments += [((0.0, y), (GRID_WIDTH_MM, y)) for y in ys[keep_y]]
        ax.add_collection(
            LineCollection(segments, colors=colour, linewidths=width, zorder=z, capstyle="butt", antialiased=True)
        )


def _clip_box(ax: Axes, x0: float, y0: float, width: float, height: float) -> TransformedBbox:
    return TransformedBbox(Bbox.from_bounds(x0, y0, width, height), ax.transData)


def _relevance_cmap() -> LinearSegmentedColormap:
    return LinearSegmentedColormap.from_list("fedami_relevance", list(RELEVANCE_COLOURS))


def _draw_calibration(ax: Axes, baseline: float) -> None:
    # A 1 mV, 0.2 s square pulse: the reader checks the gain against it before measuring anything.
    width = 0.2 * MM_PER_S
    x0 = (CALIBRATION_MM - width) / 2
    xs = [x0 - 1.0, x0, x0, x0 + width, x0 + width, x0 + width + 1.0]
    ys = [baseline, baseline, baseline + MM_PER_MV, baseline + MM_PER_MV, baseline, baseline]
    ax.plot(xs, ys, color=TRACE_COLOUR, linewidth=TRACE_LINEWIDTH_PT, zorder=3, solid_joinstyle="miter")


def draw_ecg(
    signal: np.ndarray,
    fs: float,
    info: FigureInfo,
    relevance: np.ndarray | None = None,
    *,
    dpi: int = 100,
) -> Figure:
    """Draw a 12-lead ECG in the standard layout on ECG paper at 25 mm/s and 10 mm/mV.

    Parameters
    ----------
    signal
        ``(12, n_samples)`` millivolts in :data:`~common.data.leads.LEADS` order, ``n_samples >= 1``,
        all finite. Only the first :data:`RECORD_S` seconds are drawn.
    fs
        Sampling rate in Hz, positive.
    info
        Record and decision written in the title.
    relevance
        Optional non-negative ``(12, n_samples)`` map of how much each sample drove the score, drawn as a
        colour band under each segment (lead II's under the rhythm strip), normalised to the record's
        maximum over all leads; all zero draws a blank band.
    dpi
        Resolution of the figure; the paper scale holds exactly at any dpi.

    Returns
    -------
    Figure
        A figure with an Agg canvas attached, ready for :func:`save_ecg`.

    Raises
    ------
    ValueError
        On a signal that is not ``(12, n)`` with ``n >= 1`` or has non-finite values, on ``fs <= 0``, on a
        relevance of another shape, non-finite or negative, or on ``dpi <= 0``.
    """
    signal = np.asarray(signal)
    rel = _check_inputs(signal, float(fs), relevance, dpi)
    n = signal.shape[1]
    t = np.arange(n, dtype=np.float64) / fs

    width_mm, height_mm = figure_size_mm()
    fig = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    # Axes placed by exact mm fractions with limits in mm: one data unit is dpi / 25.4 pixels on both axes.
    ax = fig.add_axes(
        (
            MARGIN_LEFT_MM / width_mm,
            MARGIN_BOTTOM_MM / height_mm,
            GRID_WIDTH_MM / width_mm,
            GRID_HEIGHT_MM / height_mm,
        ),
        label="ecg-grid",
    )
    ax.set_axis_off()
    ax.set_autoscale_on(False)
    _draw_grid(ax)

    cmap = _relevance_cmap()
    peak = float(rel.max()) if rel is not None else 0.0
    # An all-zero map stays all zero (a blank band) rather than dividing by zero.
    scaled = rel / peak if rel is not None and peak > 0 else rel

    for panel in panel_layout():
        lead = LEAD_INDEX[panel.lead]
        shown = (t >= panel.t0_s) & (t < panel.t1_s)
        if panel.column == 0:
            _draw_calibration(ax, panel.baseline_mm)
        elif panel.row < len(STANDARD_LAYOUT):
            # A short tick where one lead's segment gives way to the next, as on printed 12-lead ECGs.
            ax.plot(
                [panel.x0_mm, panel.x0_mm],
                [panel.baseline_mm - 2.5, panel.baseline_mm + 2.5],
                color=TRACE_COLOUR,
                linewidth=TRACE_LINEWIDTH_PT,
                zorder=3,
            )
        ax.text(
            panel.x0_mm + 1.0,
            panel.y0_mm + panel.height_mm - 1.0,
            panel.lead,
            fontsize=LABEL_FONT_PT,
            ha="left",
            va="top",
            zorder=4,
        )
        if not shown.any():
            continue
        xs = panel.x0_mm + (t[shown] - panel.t0_s) * MM_PER_S
        ys = panel.baseline_mm + signal[lead, shown].astype(np.float64) * MM_PER_MV
        (line,) = ax.plot(xs, ys, color=TRACE_COLOUR, linewidth=TRACE_LINEWIDTH_PT, zorder=3, solid_joinstyle="round")
        # Clip at the row's band so a tall QRS cannot run across the neighbouring rows.
        line.set_clip_box(_clip_box(ax, *panel.trace_box))
        if scaled is not None:
            first, last = float(t[shown][0]), float(t[shown][-1])
            # Each sample owns [t_i, t_i + 1/fs): the band lines up with the trace sample by sample.
            x_left = panel.x_mm(first)
            x_right = panel.x_mm(min(last + 1.0 / fs, panel.t1_s))
            ax.imshow(
                scaled[lead, shown][np.newaxis, :],
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                aspect="auto",
                interpolation="nearest",
                origin="lower",
                extent=(x_left, x_right, panel.band_y0_mm, panel.band_y0_mm + panel.band_height_mm),
                zorder=2,
            )

    # imshow moves the limits to its extent; the mm scale needs the whole grid, set last.
    ax.set_xlim(0.0, GRID_WIDTH_MM)
    ax.set_ylim(0.0, GRID_HEIGHT_MM)

    fig.suptitle(
        format_title(info, with_method=rel is not None),
        x=MARGIN_LEFT_MM / width_mm,
        y=1.0 - (MARGIN_TOP_MM / 2) / height_mm,
        ha="left",
        va="center",
        fontsize=TITLE_FONT_PT,
    )
    duration = n / fs
    footer = (
        f"{MM_PER_S:g} mm/s · {MM_PER_MV:g} mm/mV · {fs:g} Hz · "
        f"{min(duration, RECORD_S):.2f} s shown of {duration:.2f} s"
    )
    fig.text(
        MARGIN_LEFT_MM / width_mm,
        (MARGIN_BOTTOM_MM / 2) / height_mm,
        footer,
        ha="left",
        va="center",
        fontsize=FOOTER_FONT_PT,
    )
    if rel is not None:
        _draw_colour_bar(fig, cmap, info.method, width_mm, height_mm)
    return fig


def _draw_colour_bar(
    fig: Figure, cmap: LinearSegmentedColormap, method: str, width_mm: float, height_mm: float
) -> None:
    bar_w, bar_h = 40.0, 2.5
    x0 = width_mm - MARGIN_RIGHT_MM - bar_w
    y0 = MARGIN_BOTTOM_MM / 2
    cax = fig.add_axes((x0 / width_mm, y0 / height_mm, bar_w / width_mm, bar_h / height_mm), label="relevance-bar")
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=cax, orientation="horizontal")
    bar.set_ticks([0.0, 0.5, 1.0])
    bar.ax.tick_params(labelsize=FOOTER_FONT_PT - 1, length=2, pad=1)
    bar.outline.set_linewidth(0.4)
    fig.text(
        (x0 - 2.0) / width_mm,
        (y0 + bar_h / 2) / height_mm,
        f"relevance ({method}), normalised to the record's maximum",
        ha="right",
        va="center",
        fontsize=FOOTER_FONT_PT,
    )


def save_ecg(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.pdf`` at the figure's own dpi, creating the folder.

    Parameters
    ----------
    fig
        A figure from :func:`draw_ecg`.
    stem
        Path without suffix; a dot in its name is kept (``ptbxl-1.2`` gives ``ptbxl-1.2.png``).

    Returns
    -------
    tuple of Path
        The PNG and the PDF.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    pdf = stem.with_name(stem.name + ".pdf")
    # The dpi is passed on explicitly: a user's savefig.dpi rcParam would otherwise break the paper scale,
    # and no bbox_inches="tight", which would crop the margins and shift the grid.
    fig.savefig(png, format="png", dpi=fig.dpi, facecolor="white")
    fig.savefig(pdf, format="pdf", dpi=fig.dpi, facecolor="white")
    return png, pdf


def draw_profiles(curves: dict[str, dict[str, dict[str, object]]], *, dpi: int = 100) -> Figure:
    """The J-point profiles of each method (one panel each): relevance around the J point relative to the
    record's mean, per curve (:func:`common.explain.checks.summarise_profiles`); chance is 1."""
    from common.explain.maps import METHOD_TITLES

    fig = Figure(figsize=(4.0 * max(len(curves), 1), 3.2), dpi=dpi)
    FigureCanvasAgg(fig)
    for k, (method, by_curve) in enumerate(curves.items()):
        ax = fig.add_subplot(1, max(len(curves), 1), k + 1)
        for name, c in by_curve.items():
            ax.plot(c["offsets_ms"], c["mean"], label=f"{name} (n={c['n']})", lw=1.5)  # type: ignore[arg-type]
        ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
        ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
        ax.set_title(METHOD_TITLES.get(method, method), fontsize=10)
        ax.set_xlabel("ms from the J point")
        if k == 0:
            ax.set_ylabel("relevance / record mean")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig

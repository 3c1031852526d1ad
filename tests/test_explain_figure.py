"""The ECG figure: files written, exact paper scale in pixels, relevance band placement, bad inputs, title."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.image import imread

from common.data.leads import LEAD_INDEX, LEADS
from common.explain.figure import (
    CALIBRATION_MM,
    GRID_HEIGHT_MM,
    GRID_MAJOR,
    GRID_WIDTH_MM,
    MAJOR_MM,
    MARGIN_LEFT_MM,
    MARGIN_RIGHT_MM,
    MM_PER_INCH,
    MM_PER_S,
    RECORD_S,
    RELEVANCE_COLOURS,
    FigureInfo,
    Panel,
    draw_ecg,
    figure_size_mm,
    format_title,
    grid_to_pixel,
    panel_layout,
    save_ecg,
)

FS = 100.0
INFO = FigureInfo(record_id="ptbxl-123", age=67.0, sex="M", score=0.812, threshold=0.439, label=1)
COLOUR_TOL = 0.08
"""Per-channel tolerance on pixel colours, for antialiased edges of lines."""


def synthetic_ecg(seconds: float = 10.0, fs: float = FS) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    waves = [0.3 * np.sin(2 * np.pi * 1.2 * t + i) + 1.2 * (np.mod(t, 0.8) < 0.02) for i in range(len(LEADS))]
    return np.stack(waves).astype(np.float32)


def rgb(image: np.ndarray) -> np.ndarray:
    return image[..., :3].astype(np.float64)


def matches(pixels: np.ndarray, colour: str) -> np.ndarray:
    return np.all(np.abs(pixels - np.array(to_rgb(colour))) <= COLOUR_TOL, axis=-1)


def line_centres(hits: np.ndarray) -> np.ndarray:
    """Centres of runs of adjacent True entries: one antialiased line may be 1-3 pixels wide."""
    idx = np.flatnonzero(hits)
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    return np.array([g.mean() for g in groups if g.size])


def mean_spacing(centres: np.ndarray, expected: float) -> float:
    """Average spacing over the whole run of lines, robust to a line hidden under a trace (a double gap)."""
    span = float(centres[-1] - centres[0])
    return span / round(span / expected)


def render(tmp_path: Path, signal: np.ndarray, relevance: np.ndarray | None, dpi: int) -> tuple[Figure, np.ndarray]:
    fig = draw_ecg(signal, FS, INFO, relevance, dpi=dpi)
    png, _ = save_ecg(fig, tmp_path / "ecg")
    return fig, imread(png)


def pixel_box(panel_box: tuple[float, float, float, float], dpi: int, inset_mm: float) -> tuple[slice, slice]:
    """Rows and columns of the image inside a box of grid mm, ``inset_mm`` away from its edges."""
    x0, y0, w, h = panel_box
    c0, r1 = grid_to_pixel(x0 + inset_mm, y0 + inset_mm, dpi)
    c1, r0 = grid_to_pixel(x0 + w - inset_mm, y0 + h - inset_mm, dpi)
    rows, cols = slice(round(r0), round(r1)), slice(round(c0), round(c1))
    assert rows.stop > rows.start and cols.stop > cols.start, "box smaller than its inset"
    return rows, cols


def panel(lead: str, row: int) -> Panel:
    return next(p for p in panel_layout() if p.lead == lead and p.row == row)


@pytest.mark.parametrize("with_relevance", [False, True])
def test_png_and_pdf_are_written_at_the_figure_size_and_paper_width(tmp_path: Path, with_relevance: bool) -> None:
    # Prepare
    signal = synthetic_ecg()
    relevance = np.abs(signal) if with_relevance else None
    dpi = 100

    # Execute
    fig = draw_ecg(signal, FS, INFO, relevance, dpi=dpi)
    png, pdf = save_ecg(fig, tmp_path / "out" / "ptbxl-123")
    image = imread(png)

    # Assert
    assert png == tmp_path / "out" / "ptbxl-123.png" and pdf == tmp_path / "out" / "ptbxl-123.pdf"
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    assert pdf.read_bytes().startswith(b"%PDF")
    width_in, height_in = fig.get_size_inches()
    assert abs(image.shape[1] - width_in * dpi) < 1 and abs(image.shape[0] - height_in * dpi) < 1
    assert GRID_WIDTH_MM - CALIBRATION_MM == pytest.approx(RECORD_S * MM_PER_S) == pytest.approx(250.0)
    assert width_in * MM_PER_INCH == pytest.approx(MARGIN_LEFT_MM + GRID_WIDTH_MM + MARGIN_RIGHT_MM)
    assert (width_in * MM_PER_INCH, height_in * MM_PER_INCH) == pytest.approx(figure_size_mm())
    grid = next(ax for ax in fig.axes if ax.get_label() == "ecg-grid")
    grid_w_px = grid.get_window_extent().width
    assert grid_w_px / dpi * MM_PER_INCH == pytest.approx(GRID_WIDTH_MM, abs=1e-6)


def test_the_layout_is_a_whole_number_of_major_squares_in_the_standard_order() -> None:
    # Execute
    panels = panel_layout()

    # Assert
    assert (GRID_WIDTH_MM / MAJOR_MM).is_integer() and (GRID_HEIGHT_MM / MAJOR_MM).is_integer()
    rows = [[p.lead for p in panels if p.row == r] for r in range(4)]
    assert rows == [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"], ["II"]]
    for p in panels:
        assert p.x0_mm == pytest.approx(CALIBRATION_MM + p.t0_s * MM_PER_S)
        assert p.width_mm == pytest.approx((p.t1_s - p.t0_s) * MM_PER_S)
        assert p.band_y0_mm + p.band_height_mm <= p.y0_mm < p.baseline_mm < p.y0_mm + p.height_mm
    assert [(p.t0_s, p.t1_s) for p in panels if p.row == 1] == [(0.0, 2.5), (2.5, 5.0), (5.0, 7.5), (7.5, 10.0)]


def test_major_grid_lines_are_5_mm_apart_in_pixels_at_the_chosen_dpi(tmp_path: Path) -> None:
    # Prepare: a flat signal, so traces are only the baselines and calibration pulses, whose places we know
    dpi = 200
    flat = np.zeros((len(LEADS), int(RECORD_S * FS)), dtype=np.float32)
    expected_px = MAJOR_MM * dpi / MM_PER_INCH
    top = panel("I", 0)
    grid_left, _ = grid_to_pixel(CALIBRATION_MM, 0.0, dpi)
    grid_right, grid_bottom = grid_to_pixel(GRID_WIDTH_MM, 0.0, dpi)
    _, grid_top = grid_to_pixel(0.0, GRID_HEIGHT_MM, dpi)

    # Execute
    _, image = render(tmp_path, flat, None, dpi)
    pixels = rgb(image)

    # Assert: along a pixel row 12.5 mm above a baseline (between minor lines, below the lead labels)
    _, y_row = grid_to_pixel(0.0, top.baseline_mm + 12.5, dpi)
    across = pixels[round(y_row), round(grid_left) : round(grid_right)]
    xs = line_centres(matches(across, GRID_MAJOR))
    assert len(xs) >= 40
    assert np.median(np.diff(xs)) == pytest.approx(expected_px, abs=1.0)
    assert mean_spacing(xs, expected_px) == pytest.approx(expected_px, abs=0.1)
    # and down a pixel column at 1.7 s, away from segment ticks, labels and calibration pulses
    x_col, _ = grid_to_pixel(top.x_mm(1.7), 0.0, dpi)
    down = pixels[round(grid_top) : round(grid_bottom), round(x_col)]
    ys = line_centres(matches(down, GRID_MAJOR))
    assert len(ys) >= 25
    assert np.median(np.diff(ys)) == pytest.approx(expected_px, abs=1.0)
    assert mean_spacing(ys, expected_px) == pytest.approx(expected_px, abs=0.1)


def test_relevance_on_v2_colours_only_v2s_band_at_those_seconds(tmp_path: Path) -> None:
    # Prepare: V2 is in column 2, which shows 5.0-7.5 s; relevance only between 5.5 and 6.5 s
    dpi = 150
    signal = synthetic_ecg()
    relevance = np.zeros_like(signal)
    t = np.arange(signal.shape[1]) / FS
    hot_t0, hot_t1 = 5.5, 6.5
    relevance[LEAD_INDEX["V2"], (t >= hot_t0) & (t < hot_t1)] = 3.0
    v2 = panel("V2", 1)
    strong = RELEVANCE_COLOURS[-1]

    # Execute
    _, image = render(tmp_path, signal, relevance, dpi)
    pixels = rgb(image)

    # Assert
    x0, y0, _, h = v2.band_box
    hot = (v2.x_mm(hot_t0), y0, (hot_t1 - hot_t0) * MM_PER_S, h)
    rows, cols = pixel_box(hot, dpi, inset_mm=0.5)
    assert matches(pixels[rows, cols], strong).all()
    before = (x0, y0, v2.x_mm(hot_t0) - x0, h)
    after = (v2.x_mm(hot_t1), y0, v2.x_mm(v2.t1_s) - v2.x_mm(hot_t1), h)
    for box in (before, after):
        rows, cols = pixel_box(box, dpi, inset_mm=0.5)
        assert matches(pixels[rows, cols], "#ffffff").all()
    for other in panel_layout():
        if other != v2:
            rows, cols = pixel_box(other.band_box, dpi, inset_mm=0.5)
            assert matches(pixels[rows, cols], "#ffffff").all(), other.lead


def test_an_all_zero_relevance_draws_a_blank_band(tmp_path: Path) -> None:
    # Prepare
    dpi = 100
    signal = synthetic_ecg()

    # Execute
    _, image = render(tmp_path, signal, np.zeros_like(signal), dpi)

    # Assert
    for p in panel_layout():
        rows, cols = pixel_box(p.band_box, dpi, inset_mm=0.5)
        assert matches(rgb(image)[rows, cols], "#ffffff").all()


@pytest.mark.parametrize("seconds", [3.0, 12.0])
def test_shorter_and_longer_records_are_drawn_up_to_10_s(tmp_path: Path, seconds: float) -> None:
    # Prepare
    signal = synthetic_ecg(seconds)

    # Execute
    fig = draw_ecg(signal, FS, INFO, np.ones_like(signal), dpi=50)
    png, pdf = save_ecg(fig, tmp_path / "ecg")

    # Assert
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    grid = next(ax for ax in fig.axes if ax.get_label() == "ecg-grid")
    assert grid.get_xlim() == (0.0, GRID_WIDTH_MM) and grid.get_ylim() == (0.0, GRID_HEIGHT_MM)
    traces = [np.asarray(line.get_xdata(), dtype=np.float64) for line in grid.get_lines()]
    trace_ends = [x[-1] for x in traces if x.size > 10]
    assert max(trace_ends) <= CALIBRATION_MM + min(seconds, RECORD_S) * MM_PER_S


@pytest.mark.parametrize(
    ("signal", "fs", "relevance", "match"),
    [
        (np.zeros((11, 1000), np.float32), FS, None, r"signal must have shape \(12, n_samples\)"),
        (np.zeros((12, 0), np.float32), FS, None, r"n_samples >= 1"),
        (np.zeros(1000, np.float32), FS, None, r"signal must have shape"),
        (np.full((12, 1000), np.nan, np.float32), FS, None, r"signal contains non-finite"),
        (np.zeros((12, 1000), np.float32), 0.0, None, r"fs must be a positive"),
        (np.zeros((12, 1000), np.float32), -100.0, None, r"fs must be a positive"),
        (np.zeros((12, 1000), np.float32), FS, np.zeros((12, 999)), r"relevance must have the signal's shape"),
        (np.zeros((12, 1000), np.float32), FS, np.full((12, 1000), np.inf), r"relevance contains non-finite"),
        (np.zeros((12, 1000), np.float32), FS, -np.ones((12, 1000)), r"relevance must be non-negative"),
    ],
)
def test_bad_inputs_are_rejected_with_a_clear_message(
    signal: np.ndarray, fs: float, relevance: np.ndarray | None, match: str
) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match=match):
        draw_ecg(signal, fs, INFO, relevance)


def test_title_names_record_demographics_score_threshold_label_and_method() -> None:
    # Prepare
    signal = synthetic_ecg()

    # Execute
    fig = draw_ecg(signal, FS, INFO, np.abs(signal), dpi=50)
    title = format_title(INFO)
    unknown = format_title(FigureInfo("r-9", None, None, None, None, None, method="attention"))

    # Assert
    assert title == "ptbxl-123 · age 67 · M · score 0.812 (threshold 0.439: above) · label AMI · Score-CAM"
    assert any(text.get_text() == title for text in fig.texts)
    assert unknown == "r-9 · age n/a · sex unknown · score n/a (threshold n/a) · label unknown · attention"
    below = format_title(FigureInfo("r-1", 50.4, "F", 0.2, 0.439, 0), with_method=False)
    assert below == "r-1 · age 50 · F · score 0.200 (threshold 0.439: below) · label not AMI"

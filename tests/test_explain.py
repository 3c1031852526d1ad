"""Relevance maps with known answers, the checks' arithmetic, case selection and ``fedami explain`` on a real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from common.data.leads import LEAD_INDEX, N_LEADS
from common.explain.beats import Beats
from common.explain.checks import (
    curve_area,
    deletion_curves,
    j_profile,
    profile_offsets,
    record_masses,
    summarise_occlusion,
    summarise_profiles,
    territory_leads,
    window_occlusion,
)
from common.explain.maps import ExplainError, relevance, score_cam, target_layer
from common.explain.report import select_cases
from common.models.blocks import N_DEMO
from common.models.registry import create_model, list_models

T = 400
LEAD, WINDOW = LEAD_INDEX["V2"], slice(200, 240)


class _Bumps(nn.Module):
    """Activation maps that do not depend on the input: one box per 20-sample slot of the record."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.zeros(x.shape[0], T // 20, T // 4)
        for c in range(T // 20):
            maps[:, c, c * 5 : (c + 1) * 5] = 1.0
        return maps + 0 * x[:, :1, ::4]


class _OneWindow(nn.Module):
    """A 'convolutional' toy that reads lead V2 between samples 200 and 240 only."""

    cam_layer = "features"

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(_Bumps(), nn.Conv1d(T // 20, T // 20, 1))
        with torch.no_grad():
            self.features[1].weight.copy_(torch.eye(T // 20)[..., None])
            self.features[1].bias.zero_()

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        self.features(x)
        return 20.0 * x[:, LEAD, WINDOW].mean(-1) - 10.0  # a decisive reader: gains of up to 10 logits


def _records(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.1, (n, N_LEADS, T)).astype(np.float32) + 1.0, np.zeros((n, N_DEMO), np.float32)


@pytest.mark.parametrize("masks", ["keep", "delete"])
def test_score_cam_finds_the_one_window_a_model_reads(masks: Literal["keep", "delete"]) -> None:
    # Prepare
    model, (x, demo) = _OneWindow().eval(), _records(3)
    # Execute
    rel = score_cam(model, x, demo, masks=masks)
    # Assert: nearly all relevance on V2 inside the window, none elsewhere on V2 or on any other lead
    inside = rel[:, LEAD, WINDOW].sum((1,))
    assert rel.shape == x.shape and (rel >= 0).all()
    assert np.all(inside / rel.sum((1, 2)) > 0.9)
    assert rel[:, LEAD, WINDOW].min() > 10 * np.delete(rel, LEAD, axis=1).max()


def test_score_cam_without_lead_resolution_is_the_same_on_every_lead() -> None:
    model, (x, demo) = _OneWindow().eval(), _records(2)
    rel = score_cam(model, x, demo, per_lead=False)
    assert np.allclose(rel, rel[:, :1])
    assert rel[:, 0, WINDOW].mean() > 10 * rel[:, 0, :150].mean()


def test_deletion_of_the_relevant_cells_drops_the_score_faster_than_random() -> None:
    model, (x, demo) = _OneWindow().eval(), _records(4)
    rel = score_cam(model, x, demo)
    by_rel, by_rand = deletion_curves(model, x, demo, rel, None, fs=100.0, seed=0)
    assert by_rel[:, 0] == pytest.approx(by_rand[:, 0])
    assert np.all(curve_area(by_rel) < curve_area(by_rand))
    assert by_rel[:, 1] == pytest.approx(1 / (1 + np.exp(10.0)), abs=1e-6)  # the window zeroed within the first 5 %


def _occlude(model: nn.Module, x: np.ndarray, demo: np.ndarray, lead_indices: list[int]) -> pd.DataFrame:
    """:func:`window_occlusion` at 100 Hz with ST-T windows over samples 190-250 (around the toys' read window)
    and QRS windows over 100-120, on the leads ``lead_indices`` of every record."""
    stt, qrs = np.zeros(T, bool), np.zeros(T, bool)
    stt[190:250], qrs[100:120] = True, True
    leads = np.zeros(N_LEADS, bool)
    leads[lead_indices] = True
    return window_occlusion(model, x, demo, [{"ST-T": stt, "QRS": qrs}] * len(x), [leads] * len(x), None, 100.0)


def test_window_occlusion_finds_the_window_the_model_reads_and_not_the_other() -> None:
    # Prepare: ST-T windows over the window the toy reads on V2, QRS windows elsewhere; 100 Hz
    model, (x, demo) = _OneWindow().eval(), _records(6)
    # Execute
    occ = _occlude(model, x, demo, [LEAD_INDEX["V1"], LEAD])
    summary = summarise_occlusion(occ)
    # Assert: zeroing the read window takes the whole logit (20 x mean ~ 20, clipped at eps), the other nothing
    assert occ["ST-T_drop"].min() > 5 and np.allclose(occ["QRS_drop"], 0.0, atol=1e-6)
    assert occ["ST-T_seconds"].tolist() == [1.2] * 6 and occ["QRS_seconds"].tolist() == pytest.approx([0.4] * 6)
    assert occ["ST-T_drop_per_s"].to_numpy() == pytest.approx(occ["ST-T_drop"].to_numpy() / 1.2)
    assert summary["n"] == 6 and summary["p_STT_vs_QRS_drop_per_s"] < 0.05 and summary["QRS_drop"] == 0.0
    # kept alone, the read window carries the whole logit (-10 on the all-zero record, about +10 on it alone)
    assert occ["ST-T_kept_gain"].min() > 15 and np.allclose(occ["QRS_kept_gain"], 0.0, atol=1e-6)
    assert occ["ST-T_kept_gain_per_s"].to_numpy() == pytest.approx(occ["ST-T_kept_gain"].to_numpy() / 1.2)
    assert summary["p_STT_vs_QRS_kept_gain"] < 0.05


class _InContext(nn.Module):
    """A toy that reads V2's window only beside its 'QRS' (samples 100-120): the product of the two means."""

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        return 20.0 * x[:, LEAD, WINDOW].mean(-1) * x[:, LEAD, 100:120].mean(-1) - 10.0


def test_a_window_read_only_in_context_counts_when_zeroed_but_not_when_kept_alone() -> None:
    # Prepare
    model, (x, demo) = _InContext().eval(), _records(6, seed=1)
    # Execute
    occ = _occlude(model, x, demo, [LEAD])
    # Assert: zeroing either window takes the logit to the all-zero record's; keeping either alone gains nothing
    assert occ["ST-T_drop"].min() > 15 and occ["QRS_drop"].min() > 15
    assert np.allclose(occ[["ST-T_kept_gain", "QRS_kept_gain"]].to_numpy(), 0.0, atol=1e-6)


class _InContextCam(_OneWindow):
    """:class:`_InContext` with :class:`_OneWindow`'s activation maps, for Score-CAM."""

    def forward(self, x: torch.Tensor, demo: torch.Tensor) -> torch.Tensor:
        self.features(x)
        return _InContext()(x, demo)


def test_deletion_masks_find_what_a_model_reads_only_in_context_and_keep_masks_do_not() -> None:
    # Prepare: the toy's logit is 20 x (V2's window mean) x (V2's 'QRS' mean) - 10, about +10 on these records
    model, (x, demo) = _InContextCam().eval(), _records(3, seed=2)
    read = np.zeros(T, bool)
    read[100:120], read[WINDOW] = True, True
    # Execute
    kept, deleted = (score_cam(model, x, demo, masks=m) for m in ("keep", "delete"))
    # Assert: a kept box alone leaves the product at 0 (every gain 0: the maps' plain mean, spread everywhere);
    # deleting the 'QRS' box (or half the window) drops the logit by 20 (10): V2's read samples take the mass
    share = lambda rel: rel[:, LEAD, read].sum(-1) / rel.sum((1, 2))  # noqa: E731
    assert np.all(share(deleted) > 0.9)
    assert np.all(share(kept) < 3 * read.mean() / N_LEADS)


@pytest.mark.parametrize("name", [m for m in list_models()])
def test_every_registered_model_is_explained_deterministically(name: str) -> None:
    # Prepare
    torch.manual_seed(0)
    model = create_model(name).eval()
    x, demo = _records(2)
    # Execute
    methods = ("scorecam", "scorecam_delete", "integrated_gradients")
    maps = {m: relevance(m, model, x, demo, batch_size=256) for m in methods}
    # Assert: shape, finite, non-negative; one record alone (a rerun in another batch) gets exactly its map
    for m, rel in maps.items():
        assert rel.shape == x.shape and np.isfinite(rel).all() and (rel >= 0).all(), m
        alone = relevance(m, model, x[1:2], demo[1:2], batch_size=256)
        assert np.allclose(alone[0], rel[1], rtol=1e-3, atol=1e-6 * rel.max()), m


def test_attention_map_is_the_models_own_weights_upsampled() -> None:
    torch.manual_seed(0)
    model = create_model("conv_bilstm_attn").eval()
    x, demo = _records(2)
    rel = relevance("attention", model, x, demo)
    with torch.no_grad():
        _, w = model(torch.from_numpy(x), torch.from_numpy(demo), return_attention=True)
    assert rel.shape == x.shape and np.allclose(rel, rel[:, :1])
    assert rel[:, 0].mean(-1) == pytest.approx(w.mean(-1).numpy(), rel=0.05)


def test_unknown_method_layer_and_attention_less_model_are_refused_clearly() -> None:
    model, (x, demo) = create_model("cnn1d").eval(), _records(1)
    with pytest.raises(ExplainError, match="known: scorecam, scorecam_delete, attention, integrated_gradients"):
        relevance("gradcam++", model, x, demo)
    with pytest.raises(ExplainError, match=r"no convolutional layer 'head'.*features"):
        target_layer(model, "head")
    with pytest.raises(ExplainError, match="no attention pooling"):
        relevance("attention", model, x, demo)


def test_record_masses_on_a_hand_built_map() -> None:
    # Prepare: 10 samples; P 0-2, QRS 2-4, ST-T 4-8; relevance 1 on the inferior leads' ST-T and 4 on I's QRS
    n = 10
    windows = {w: np.zeros(n, bool) for w in ("P", "QRS", "ST-T")}
    windows["P"][0:2], windows["QRS"][2:4], windows["ST-T"][4:8] = True, True, True
    rel = np.zeros((N_LEADS, n))
    inferior = territory_leads("inferior")
    assert inferior is not None
    rel[inferior, 4:8] = 1.0  # 3 leads x 4 samples = 12
    rel[LEAD_INDEX["I"], 2] = 4.0
    # Execute
    out = record_masses(rel, windows, inferior)
    # Assert
    assert out["mass"] == 16.0
    assert out["ST-T_share"] == pytest.approx(12 / 16) and out["ST-T_time"] == pytest.approx(0.4)
    assert out["QRS_share"] == pytest.approx(4 / 16)
    assert out["ST-T_share_II"] == 1.0 and out["QRS_share_I"] == 1.0 and np.isnan(out["ST-T_share_V1"])
    assert out["territory_share"] == pytest.approx(12 / 16) and out["territory_chance"] == pytest.approx(3 / 12)
    assert out["territory_ST-T_enrichment"] == pytest.approx((12 / 16) / (3 / 12 * 0.4))
    assert out["territory_QRS_enrichment"] == 0.0


def test_j_profile_peaks_where_the_map_does_and_skips_beats_at_the_edges() -> None:
    # Prepare: 100 Hz, 10 s, J points at 1.5, 4.5, 7.5 and 9.9 s (the last too close to the end); relevance 1
    # everywhere, 4 on the inferior leads 50 ms after each J point
    fs, n = 100.0, 1000
    j = np.array([150, 450, 750, 990])
    beats = Beats(fs, n, r=j - 5, qrs_on=j - 10, j=j, t_end=j + 30, p_on=j - 30)
    rel = np.ones((N_LEADS, n))
    inferior = territory_leads("inferior")
    assert inferior is not None
    rel[np.ix_(inferior, j[:3] + 5)] = 4.0
    # Execute
    prof = j_profile(rel, beats, inferior)
    alone = j_profile(rel, beats, None)
    # Assert
    offsets = profile_offsets(fs)
    assert len(offsets) == 60 and offsets[0] == -200.0 and offsets[-1] == 390.0
    mean = rel.mean()
    assert offsets[np.argmax(prof["territory"])] == 50.0
    assert prof["territory"].max() == pytest.approx(4.0 / mean) and prof["other"] == pytest.approx(1.0 / mean)
    assert alone["all"].max() == pytest.approx((3 * 4.0 + 9 * 1.0) / 12 / mean)
    assert j_profile(np.zeros((N_LEADS, n)), beats, None) == {}


def test_summarise_profiles_averages_records_and_reads_peak_and_spans() -> None:
    # Prepare: two TP records on the territory's leads at 100 Hz, one TN; the profiles peak at +50 ms
    offsets = profile_offsets(100.0)
    cols = [f"{v:g}" for v in offsets]
    bump = np.where(offsets == 50.0, 3.0, 1.0)
    rows = [
        {"method": "scorecam", "record_id": r, "group": g, "leads": leads, **dict(zip(cols, curve, strict=True))}
        for r, g, leads, curve in (
            ("a", "TP", "territory", bump), ("b", "TP", "territory", bump + 1.0), ("c", "TN", "all", np.ones(60)),
        )
    ]  # fmt: skip
    # Execute
    curves = summarise_profiles(pd.DataFrame(rows))["scorecam"]
    # Assert
    tp = curves["TP territory"]
    assert set(curves) == {"TP territory", "TN all"} and tp["n"] == 2
    assert tp["peak_ms"] == 50.0 and tp["peak"] == pytest.approx(3.5)
    assert tp["before_J"] == pytest.approx(1.5) and tp["J_to_200ms"] == pytest.approx(1.5 + 2.0 / 20)
    assert tp["200_to_400ms"] == pytest.approx(1.5) and curves["TN all"]["J_to_200ms"] == pytest.approx(1.0)


def test_territory_leads() -> None:
    both = territory_leads("inferior+lateral")
    assert both is not None and both.sum() == 7
    assert territory_leads("") is None and territory_leads(float("nan")) is None
    with pytest.raises(ValueError, match="unknown territory 'posterior'"):
        territory_leads("posterior")


def test_select_cases_takes_the_most_confident_of_each_kind() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.95, 0.1, 0.6, 0.3])
    labels = np.array([1, 1, 0, 1, 0, 1, 0, 0])
    cases = select_cases(scores, labels, threshold=0.5, k=2)
    assert cases["TP"].tolist() == [0, 1]
    assert cases["FP"].tolist() == [4, 2]
    assert cases["FN"].tolist() == [5, 3]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sim.run import main as run_main

    root = tmp_path_factory.mktemp("explain")
    out = root / "run"
    argv = ["--clients", "3", "--n-ecgs", "600", "--arms", "pooled", "--rounds", "3", "--boot", "20"]
    assert run_main([*argv, "--data-dir", str(root / "data"), "--out", str(out)]) == 0
    return out


def test_fedami_explain_writes_figures_checks_and_links_them(
    small_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.explain import main as explain_main

    # Execute
    rc = explain_main(["--run", str(small_run), "--top-k", "1", "--check-records", "8", "--methods", "scorecam"])
    # Assert
    assert rc == 0, capsys.readouterr().err
    out = small_run / "explanations" / "gah-pooled"
    summary = json.loads((out / "explain.json").read_text())
    assert summary["arm"] == "pooled" and summary["methods"] == ["scorecam"]
    for e in summary["figures"]:
        assert (out / "figures" / e["png"]).stat().st_size > 10_000 and (out / "figures" / e["pdf"]).is_file()
    assert {e["case"] for e in summary["figures"]} <= {"TP", "FP", "FN"} and summary["figures"]
    rows = pd.read_csv(out / "checks.csv")
    assert set(rows["group"]) <= {"TP", "TN"} and len(rows) + len(summary["checks_skipped"]) > 0
    assert "scorecam" in summary["checks"]
    profiles = pd.read_csv(out / "j_profile.csv")
    assert set(profiles["record_id"]) <= set(rows["record_id"]) and set(profiles["leads"]) <= {
        "territory",
        "other",
        "all",
    }
    if len(profiles):
        assert (out / "j_profile.png").stat().st_size > 5_000
        assert "Where in the beat" in (out / "explain.md").read_text()
    occlusion = pd.read_csv(out / "occlusion.csv")
    assert summary["occlusion"]["n"] == len(occlusion)
    assert set(occlusion["record_id"]) <= set(rows.loc[rows["group"] == "TP", "record_id"])
    assert "explanations/gah-pooled/explain.md" in (small_run / "results.md").read_text()


def test_fedami_explain_refuses_what_it_cannot_explain(small_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from sim.explain import main as explain_main

    assert explain_main(["--run", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert explain_main(["--run", str(small_run), "--arm", "federated"]) == 2
    assert "no arm 'federated'; its arms: pooled" in capsys.readouterr().err
    assert explain_main(["--run", str(small_run), "--methods", "attention,nonsense"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_fedami_predict_explain_draws_the_records_it_scored(small_run: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from common.data.store import SiteStore
    from common.data.wfdb_export import export_wfdb
    from sim.predict import main as predict_main

    # Prepare: three raw WFDB records exported from a hospital of the run's own data
    prepared = Path(json.loads((small_run / "results.json").read_text())["prepared"])
    folder = tmp_path / "wfdb"
    export_wfdb(SiteStore.open(prepared / "hospital_a"), folder, records=np.arange(3))
    out = tmp_path / "scored"
    model = small_run / "gah" / "pooled" / "model.pt"
    # Execute
    argv = ["--model", str(model), "--wfdb", str(folder), "--out", str(out), "--no-progress", "--boot", "10"]
    rc = predict_main([*argv, "--explain", "--explain-max", "2", "--methods", "scorecam,attention"])
    # Assert: two records drawn with both methods, the third said, not dropped silently
    printed = capsys.readouterr().out
    assert rc == 0
    assert len(list((out / "explanations").glob("*.png"))) == 4 and len(list((out / "explanations").glob("*.pdf"))) == 4
    assert "1 more scored records not drawn (--explain-max 2)" in printed

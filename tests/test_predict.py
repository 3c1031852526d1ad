"""Model cards and ``fedami predict``: round trips, refusals, and scores equal to the run's own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.config import PreprocessConfig, StudyConfig, TrainConfig
from common.data.arrays import concat, load_split
from common.data.store import SiteStore
from common.models import create_model, list_models
from common.models.card import (
    CardError,
    HospitalData,
    InputSpec,
    ModelCard,
    card_path,
    common_spec,
    load_model,
    make_card,
    read_card,
    spec_of_stores,
    write_card,
)
from common.training.engine import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _card(model_name: str = "cnn1d", spec: InputSpec | None = None, threshold: float | None = 0.4) -> ModelCard:
    spec = spec or InputSpec(preprocessing=PreprocessConfig(), model_fs=100)
    return make_card(
        create_model(model_name),
        train=TrainConfig(model=model_name),
        spec=spec,
        arm="pooled",
        training_data={"a": HospitalData(ecgs=10, positives=2)},
        kept="epoch 1",
        validation_auroc=0.8,
        threshold=threshold,
        threshold_source="test",
        config=TrainConfig(),
    )


@pytest.mark.parametrize("name", list_models())
def test_every_model_round_trips_through_its_checkpoint_and_card(name: str, tmp_path: Path) -> None:
    # Prepare
    model = create_model(name)
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(checkpoint, model.state_dict(), {})
    card = _card(name)
    # Execute
    write_card(checkpoint, card)
    loaded, got = load_model(checkpoint)
    # Assert: the card reads back equal, the network is rebuilt with the same weights, in eval mode
    assert got == card == read_card(card_path(checkpoint))
    assert got.n_parameters == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert json.loads(card_path(checkpoint).read_text())["input"]["leads"][:3] == ["I", "II", "III"]
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), k
    assert not loaded.training


def test_a_checkpoint_trained_with_auxiliary_targets_loads_without_its_auxiliary_head(tmp_path: Path) -> None:
    # Prepare: a network trained with two auxiliary targets (its state carries the auxiliary head)
    train = TrainConfig(model="conv_bilstm_attn", auxiliary_targets=("superclass_NORM", "superclass_CD"))
    model = build_model(train)
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(checkpoint, model.state_dict(), {})
    plain_card = _card("conv_bilstm_attn")
    write_card(checkpoint, make_card(model, **{**_card_fields(plain_card), "train": train}))
    # Execute
    loaded, got = load_model(checkpoint)
    # Assert: the scoring network only, with the trained weights, and the card counts its parameters alone
    assert not hasattr(loaded, "aux_head") and got.train.auxiliary_targets == train.auxiliary_targets
    assert got.n_parameters == sum(p.numel() for p in loaded.parameters()) == plain_card.n_parameters
    x, demo = torch.randn(2, 12, 300), torch.randn(2, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, demo), model.eval()(x, demo))
    write_card(checkpoint, plain_card)  # a card that says nothing of auxiliary targets: the extra weights are refused
    with pytest.raises(CardError, match="does not hold the weights of conv_bilstm_attn"):
        load_model(checkpoint)


def _card_fields(card: ModelCard) -> dict[str, object]:
    return {
        "spec": card.input, "arm": card.arm, "training_data": card.training_data, "kept": card.kept,
        "validation_auroc": card.validation_auroc, "threshold": card.threshold,
        "threshold_source": card.threshold_source, "config": card.train,
    }  # fmt: skip


def test_a_checkpoint_without_a_fitting_card_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "m.pt"
    save_checkpoint(checkpoint, create_model("cnn1d").state_dict(), {})
    with pytest.raises(CardError, match="has no model card"):
        load_model(checkpoint)
    write_card(checkpoint, _card("bilstm"))  # the card names another network
    with pytest.raises(CardError, match="does not hold the weights of bilstm"):
        load_model(checkpoint)
    card_path(checkpoint).write_text('{"model": "cnn1d"}')
    with pytest.raises(CardError, match="not a model card"):
        load_model(checkpoint)
    bad = json.loads(_card().model_dump_json())
    bad["input"]["demographics"]["age_scale"] = 10.0
    card_path(checkpoint).write_text(json.dumps(bad))
    with pytest.raises(CardError, match="encodes age and sex differently"):
        load_model(checkpoint)


def test_hospitals_prepared_differently_have_no_common_spec() -> None:
    mv = InputSpec(preprocessing=PreprocessConfig(), model_fs=100)
    z = InputSpec(preprocessing=PreprocessConfig(normalise="per_record"), model_fs=100)
    assert common_spec({"a": mv, "b": mv}) == mv
    with pytest.raises(CardError, match=r"'a' and 'b' were prepared differently \(preprocessing.normalise"):
        common_spec({"a": mv, "b": z})


@pytest.fixture(scope="module")
def study(tiny_cohort: list[SiteStore], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch study of cnn1d on the tiny cohort: its checkpoint, card and saved scores."""
    from common.data.ingest import site_table
    from common.experiments.study import run_study

    out = tmp_path_factory.mktemp("study")
    cfg = StudyConfig(data_dir=out / "data", out_dir=out, models=("cnn1d",), epochs=1, patience=None, n_boot=20)
    train, val, test = (concat([load_split(s, split, 100) for s in tiny_cohort]) for split in ("train", "val", "test"))
    run_study(cfg, ["cnn1d"], train, val, test, title="t", data_table=site_table(tiny_cohort),
              spec=spec_of_stores(tiny_cohort, 100), echo=lambda *a: None)  # fmt: skip
    return out


def test_a_study_checkpoint_has_a_card_describing_its_training(study: Path, tiny_cohort: list[SiteStore]) -> None:
    card = read_card(study / "checkpoints" / "cnn1d.pt")
    assert card.model == "cnn1d" and card.arm == "pooled (study)" and card.threshold is not None
    assert set(card.training_data) == {s.site for s in tiny_cohort}
    n_train = sum(int((s.metadata["split"] == "train").sum()) for s in tiny_cohort)
    assert card.training_totals.ecgs == n_train
    # the synthetic cohort's raw device signals: resampled to the model's rate and band-passed, kept in mV
    assert card.input.model_fs == 100 and card.input.preprocessing.bandpass_hz == (0.5, 40.0)
    assert card.input.preprocessing.normalise == "none" and card.input.n_samples == 1000


def test_predict_on_the_stores_gives_the_study_s_own_test_scores(study: Path, tiny_cohort: list[SiteStore]) -> None:
    from common.inference.predict import predict_store
    from common.inference.runtime import OnnxRuntimeModel

    model, card = load_model(study / "checkpoints" / "cnn1d.pt")
    want = np.load(study / "models" / "cnn1d.npz")["test"]
    got = np.concatenate([predict_store(model, card, s, "test").rows["score"].to_numpy() for s in tiny_cohort])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # fedami predict's default engine, ONNX Runtime: the same scores to float32 rounding
    ort = OnnxRuntimeModel(model, card.input.n_samples, threads=1)
    got = np.concatenate([predict_store(ort, card, s, "test").rows["score"].to_numpy() for s in tiny_cohort])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def _export(store: SiteStore, folder: Path, split: str) -> pd.DataFrame:
    from common.data.wfdb_export import export_wfdb

    idx = np.flatnonzero(store.metadata["split"].to_numpy() == split)
    db = pd.read_csv(export_wfdb(store, folder, records=idx))
    db["record"] = db["filename"]
    return db


def _corrupt(folder: Path, db: pd.DataFrame) -> dict[str, str]:
    """Spoil some exported records in known ways; returns record -> the status predict must give it."""
    import wfdb

    spoilt = {}
    rec = folder / db["record"][0]
    dat = rec.with_name(rec.name + ".dat")
    dat.write_bytes(dat.read_bytes()[:500])
    spoilt[db["record"][0]] = "truncated"
    rec = folder / db["record"][1]
    rec.with_name(rec.name + ".hea").unlink()
    spoilt[db["record"][1]] = "unreadable"
    for k, (status, change) in enumerate(
        [("flat_lead", lambda x: x * np.r_[0, np.ones(11)]), ("implausible_amplitude", lambda x: x * 20)], start=2
    ):
        rec = folder / db["record"][k]
        sig = wfdb.rdrecord(str(rec))
        x = change(sig.p_signal)
        wfdb.wrsamp(rec.name, fs=sig.fs, units=sig.units, sig_name=sig.sig_name, p_signal=x, fmt=["32"] * 12,
                    adc_gain=[1000.0] * 12, baseline=[0] * 12, comments=sig.comments,
                    write_dir=str(rec.parent))  # fmt: skip
        spoilt[db["record"][k]] = status
    return spoilt


def test_predict_on_raw_records_lists_every_bad_one_and_scores_the_rest_as_evaluation_does(
    study: Path, tiny_cohort: list[SiteStore], tmp_path: Path
) -> None:
    # Prepare: the 500 Hz hospital's test records as WFDB files (1 uV steps), four of them spoilt
    from common.data.readers.records import RecordsSource
    from common.inference.predict import SCORED, predict_source, predict_store

    store = tiny_cohort[0]
    db = _export(store, tmp_path / "wfdb", "test")
    spoilt = _corrupt(tmp_path / "wfdb", db)
    model, card = load_model(study / "checkpoints" / "cnn1d.pt")
    # Execute
    pred = predict_source(model, card, RecordsSource(paths=(tmp_path / "wfdb",)), progress=False)
    # Assert: every record is a row; the spoilt ones carry their reason; the others score as the store does
    rows = pred.rows.set_index("record_id")
    assert set(rows.index) == set(db["record"])  # a signal file without its header is listed too
    for record, status in spoilt.items():
        assert rows.loc[record, "status"] == status, (record, rows.loc[record].to_dict())
        assert np.isnan(rows.loc[record, "score"])
    good = db[~db["record"].isin(list(spoilt))]
    want = predict_store(model, card, store, "test").rows.set_index("record_id")["score"]
    got = rows.loc[good["record"], "score"].to_numpy()
    assert (rows.loc[good["record"], "status"] == SCORED).all()
    np.testing.assert_allclose(got, want.loc[good["record_id"]].to_numpy(), atol=2e-3)
    assert rows.loc[good["record"], "age"].notna().all()  # age and sex come from the header comments


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "sim" / "predict.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd="/")  # fmt: skip


def test_fedami_predict_scores_a_manifest_with_labels(
    study: Path, tiny_cohort: list[SiteStore], tmp_path: Path
) -> None:
    # Prepare: two hospitals' test records in a manifest, one listed with a missing file
    frames = []
    for store in tiny_cohort[:2]:
        db = _export(store, tmp_path / "export" / store.site, "test")
        meta = store.metadata[store.metadata["split"] == "test"].reset_index(drop=True)
        frames.append(pd.DataFrame({"record": [f"{store.site}/{r}" for r in db["record"]],
                                    "patient_id": meta["patient_id"], "site": store.site, "age": meta["age"],
                                    "sex": meta["sex"], "label": meta["label"]}))  # fmt: skip
    manifest = pd.concat(frames, ignore_index=True)
    manifest.loc[len(manifest)] = ["hospital_a/nowhere", "p-x", "hospital_a", 50, "M", 0]
    manifest.to_csv(tmp_path / "export" / "manifest.csv", index=False)
    out = tmp_path / "scored"
    # Execute
    proc = _cli("--model", str(study / "checkpoints" / "cnn1d.pt"),
                "--manifest", str(tmp_path / "export" / "manifest.csv"),
                "--out", str(out), "--boot", "50", "--no-progress")  # fmt: skip
    # Assert
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pd.read_csv(out / "predictions.csv")
    assert list(rows.columns) == ["record_id", "patient_id", "site", "age", "sex", "label", "score", "flag", "status",
                                  "detail"]  # fmt: skip
    assert len(rows) == len(manifest) and (rows["status"] == "scored").sum() == len(manifest) - 1
    assert rows.loc[rows["record_id"] == "hospital_a/nowhere", "status"].item() == "unreadable"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored"] == len(manifest) - 1 and summary["skipped"] == {"unreadable": 1}
    assert summary["auroc_ci"][0] <= summary["auroc"] <= summary["auroc_ci"][1]
    assert 0 <= summary["sensitivity"] <= 1 and summary["card"]["model"] == "cnn1d"
    assert summary["engine"] == "onnx"
    scored = rows[rows["status"] == "scored"]
    assert ((scored["score"] >= summary["threshold"]) == (scored["flag"] == 1)).all()
    assert "AUROC" in proc.stdout and "not scored: 1 unreadable" in proc.stdout


def test_a_store_prepared_differently_is_refused(study: Path, tiny_cohort: list[SiteStore], tmp_path: Path) -> None:
    # Prepare: the same checkpoint under a card saying its data were standardised per record
    shutil.copy(study / "checkpoints" / "cnn1d.pt", tmp_path / "z.pt")
    card = read_card(study / "checkpoints" / "cnn1d.pt")
    pre = card.input.preprocessing.model_copy(update={"normalise": "per_record"})
    write_card(
        tmp_path / "z.pt", card.model_copy(update={"input": card.input.model_copy(update={"preprocessing": pre})})
    )
    # Execute
    proc = _cli("--model", str(tmp_path / "z.pt"), "--store", str(tiny_cohort[1].path), "--out", str(tmp_path / "o"))
    # Assert: a clear refusal, no traceback, nothing scored
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "prepared differently" in proc.stderr and "normalise" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "predictions.csv").exists()

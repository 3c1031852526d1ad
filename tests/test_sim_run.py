"""End-to-end: ``python sim/run.py`` on a tiny synthetic cohort, as a user runs it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "sim" / "run.py"), *args], capture_output=True, text=True, timeout=900, cwd="/"
    )


def _strict(constant: str) -> None:
    raise AssertionError(f"results.json is not strict JSON: {constant}")


def _check_outputs(out: Path, arms: set[str]) -> dict:  # type: ignore[type-arg]
    results = json.loads((out / "results.json").read_text(), parse_constant=_strict)
    config = json.loads((out / "config.json").read_text())
    assert results["config"] == config
    assert [row["site"] for row in results["hospitals"]] == ["hospital_a", "hospital_b", "hospital_c"]
    assert {row["arm"] for row in results["scores"]} == arms
    for name in ("results.md", "learning_curves.png"):
        assert (out / name).stat().st_size > 0, name
    return results


def test_centralised_arms_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "run"

    proc = _run("--n-ecgs", "300", "--rounds", "2", "--arms", "pooled,local", "--boot", "50", "--seed", "3",
                "--data-dir", str(tmp_path / "data"), "--out", str(out))  # fmt: skip

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AUROC [95% CI]" in proc.stdout.splitlines()[-2] or "AUROC [95% CI]" in proc.stdout
    results = _check_outputs(out, {"pooled", "local:hospital_a", "local:hospital_b", "local:hospital_c"})
    assert len(results["scores"]) == 4 + 3 * 4  # each model at 3 test sites and at all of them pooled
    assert results["folds"][0]["comparisons"] == []  # no federated model to compare the others with
    assert {r["test_site"] for r in results["scores"]} == {"hospital_a", "hospital_b", "hospital_c", "all"}
    # what each arm trained with is recorded as it ran: rounds x local epochs passes, the pooled batch, the seed
    arms = {a["arm"]: a for a in results["folds"][0]["arms"]}
    pooled = arms["pooled"]["trained_with"]
    assert pooled["passes"] == 2 and len(arms["pooled"]["curve"]) == 2 and "epochs" not in results["config"]["train"]
    assert (pooled["train"]["batch_size"], pooled["train"]["seed"], pooled["train"]["num_threads"]) == (64, 3, 2)
    assert arms["local:hospital_b"]["trained_with"]["hospitals"] == ["hospital_b"]
    # every arm's kept model is saved with its card: threshold and training data as the arm reported them
    from common.models.card import load_model

    for arm, folder in (("pooled", "pooled"), ("local:hospital_b", "local-hospital_b")):
        _, card = load_model(out / "gah" / folder / "model.pt")
        assert card.arm == arm and card.threshold == pytest.approx(arms[arm]["threshold"])
        assert {h: d.ecgs for h, d in card.training_data.items()} == arms[arm]["trained_with"]["train_ecgs"]


@pytest.mark.slow
def test_default_command_runs_all_three_arms(tmp_path: Path) -> None:
    out = tmp_path / "run"

    proc = _run(
        "--clients",
        "3",
        "--n-ecgs",
        "300",
        "--rounds",
        "2",
        "--boot",
        "50",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(out),
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    arms = {"federated", "pooled", "local:hospital_a", "local:hospital_b", "local:hospital_c"}
    results = _check_outputs(out, arms)
    assert results["federation_overhead"]["ratio"] > 0
    # the federated model against each of the 4 other arms, paired, at every test site with an AUROC (a tiny
    # hospital's test split can be of one class) and at all of them
    paired = results["folds"][0]["comparisons"]
    defined = {r["test_site"] for r in results["scores"] if r["arm"] == "federated" and r["auroc"] is not None}
    assert "all" in defined and {(c["test_site"], c["other"]) for c in paired} == {
        (s, a) for s in defined for a in arms - {"federated"}
    }
    assert all(0 <= c["p_bootstrap"] <= 1 and c["n_boot"] > 0 for c in paired)
    assert "## Federated against the other arms, paired" in (out / "results.md").read_text()
    fed = next(a for a in results["folds"][0]["arms"] if a["arm"] == "federated")
    assert [p["passes"] for p in fed["curve"]] == [1, 2]
    assert fed["trained_with"]["train"]["batch_size"] == 21 and fed["trained_with"]["train"]["num_threads"] == 1
    assert set(fed["trained_with"]["per_hospital"]) == {"hospital_a", "hospital_b", "hospital_c"}
    assert "federation overhead" in proc.stdout
    # what a deployed run writes too: the same score rows the comparison reports for the federated arm
    run = out / "gah" / "federated"
    assert (run / "results.md").stat().st_size > 0 and (run / "learning_curve.png").stat().st_size > 0
    deployed_rows = json.loads((run / "results.json").read_text())["scores"]
    fed_rows = [r for r in results["scores"] if r["arm"] == "federated"]
    assert [r["test_site"] for r in deployed_rows] == [r["test_site"] for r in fed_rows]
    for mine, theirs in zip(deployed_rows, fed_rows, strict=True):
        for key in ("n", "positives", "auroc", "auroc_lo", "auroc_hi", "auprc", "sensitivity", "specificity"):
            a, b = mine[key], theirs[key]
            assert a == b or (a is None and math.isnan(b)), (key, mine, theirs)  # None is NaN in the table
    _federated_figures_agree_with_central_scoring(results, out, tmp_path / "data", n_boot=50)
    from common.models.card import load_model

    _, card = load_model(run / "best.pt")  # the kept round's card, with the threshold the test round used
    assert card.arm == "federated" and card.threshold == pytest.approx(fed["threshold"])
    assert {h: d.ecgs for h, d in card.training_data.items()} == fed["trained_with"]["train_ecgs"]
    assert all(d.positives is not None and d.positives > 0 for d in card.training_data.values())


def _federated_figures_agree_with_central_scoring(results: dict, out: Path, data: Path, n_boot: int) -> None:
    """The federated arm's figures come from the hospitals' histograms and replicates; scoring its model where
    the data is gives the same AUROC of the binned scores and CIs of the same width and place."""
    from common.config import TrainConfig
    from common.data.arrays import concat, load_split
    from common.data.store import SiteStore
    from common.evaluation.bootstrap import bootstrap_ci
    from common.federation import histograms as H
    from common.models import create_model
    from common.training.engine import load_checkpoint, predict

    app = json.loads((out / "gah" / "federated" / "app_config.json").read_text())
    train = TrainConfig(**app["train"])
    model = create_model(train.model)
    model.load_state_dict(load_checkpoint(out / "gah" / "federated" / "best.pt"))
    (cohort,) = data.glob("synthetic-*")
    tests = {h: load_split(SiteStore.open(cohort / h), "test", train.target_fs) for h in ("hospital_a", "hospital_b",
                                                                                           "hospital_c")}  # fmt: skip
    tests["all"] = concat(list(tests.values()))
    federated = {r["test_site"]: r for r in results["scores"] if r["arm"] == "federated"}
    for site, d in tests.items():
        if d.n_positive in (0, len(d)):
            auroc = federated[site]["auroc"]
            assert auroc is None or math.isnan(auroc), site  # one class: no rank figure either way
            continue
        binned = H.EDGES[H.bin_of(predict(model, d, train))]  # what a histogram keeps of each score
        central = bootstrap_ci("auroc", d.y, binned, d.meta["patient_id"].to_numpy(), n_boot=n_boot)
        got = federated[site]
        assert got["auroc"] == pytest.approx(central.estimate, abs=1e-9), site
        assert central.lower is not None and central.upper is not None
        width = central.upper - central.lower
        assert abs(got["auroc_lo"] - central.lower) < 0.5 * width + 0.02, (site, got, central)
        assert abs(got["auroc_hi"] - central.upper) < 0.5 * width + 0.02, (site, got, central)


def test_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    unknown = _run("--model", "nope", "--out", str(tmp_path / "a"))
    one_site = _run("--clients", "1", "--out", str(tmp_path / "b"))
    strategy = _run("--strategy", "fedsgd", "--out", str(tmp_path / "c"))

    assert unknown.returncode == 2 and "known models:" in unknown.stderr and "cnn1d" in unknown.stderr
    assert one_site.returncode == 2 and "data.cohort.n-sites (--clients)" in one_site.stderr
    assert strategy.returncode == 2 and "known: fedavg" in strategy.stderr
    assert not any((tmp_path / d).exists() for d in "abc")


def test_a_manifest_of_hospital_exports_runs_the_comparison(tiny_cohort: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    import pandas as pd

    from common.data.wfdb_export import export_wfdb

    rows = []
    for store in tiny_cohort:
        db = pd.read_csv(export_wfdb(store, tmp_path / "export" / store.site))
        meta = store.metadata
        records = [f"{store.site}/{r}" for r in db["filename"]]
        rows.append(
            pd.DataFrame(
                {
                    "record": records,
                    "patient_id": meta["patient_id"],
                    "site": store.site,
                    "age": meta["age"],
                    "sex": meta["sex"],
                    "label": meta["label"],
                }
            )
        )
    pd.concat(rows).to_csv(tmp_path / "export" / "manifest.csv", index=False)
    out = tmp_path / "run"

    proc = _run("--data", "manifest", "--manifest", str(tmp_path / "export" / "manifest.csv"), "--arms", "pooled",
                "--rounds", "1", "--boot", "20", "--data-dir", str(tmp_path / "data"), "--out", str(out))  # fmt: skip

    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert {r["test_site"] for r in results["scores"]} == {"hospital_a", "hospital_b", "hospital_c", "all"}
    assert results["config"]["data"]["kind"] == "manifest"

"""One source of truth: the typed settings, their flat Flower run config, pyproject and the command lines."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest
from flwr.common.config import flatten_dict
from pydantic import ValidationError

from common.config import AppConfig, PrepareConfig, PtbxlData, RunConfig, StudyConfig, SyntheticData, TrainConfig
from common.config import flat as F
from common.config import options as O
from common.federation.hospital import app_config

REPO = Path(__file__).resolve().parents[1]

CHANGED: dict[str, F.FlatValue] = {
    "cohort.seed": 5, "cohort.n-sites": 4, "cohort.n-ecgs": 900, "cohort.difficulty": 0.25,
    "cohort.ecgs-per-patient": 2.0, "cohort.duration-s": 8.0, "cohort.split-fractions": "0.6,0.2,0.2",
    "cohort.sites": "", "cohort.store-fs": 100, "data.dir": "/srv/stores", "data.stores": "/srv/stores/cohort-x",
    "data.hospitals": "site_a,site_b", "train.model": "bilstm", "train.batch-size": 32, "train.lr": 0.0005,
    "train.weight-decay": 0.1, "train.target-fs": 250, "train.seed": 3, "train.num-threads": 4, "train.loss": "focal",
    "train.pos-weight": "none", "train.focal-gamma": 1.0, "train.crop-s": 1.5, "train.window-aggregate": "max",
    "train.auxiliary-targets": "superclass_NORM,superclass_CD", "train.auxiliary-weight": 0.5,
    "train.augment-gain": 0.1, "train.augment-noise": 0.05, "train.augment-wander": 0.2,
    "train.progress": True, "federated.strategy": "fedavgm", "federated.rounds": 7, "federated.local-epochs": 2,
    "federated.local-batch-size": 16, "federated.hospital-threads": 2, "federated.proximal-mu": 0.1,
    "federated.server-lr": 2.0, "federated.server-momentum": 0.5, "federated.trim-beta": 0.3,
    "federated.krum-malicious": 1, "federated.hospital-wait-s": 30.0, "federated.min-hospitals": 2,
    "federated.update-compression": "int8",
    "evaluation.n-boot": 200,
    "output.dir": "/srv/out", "output.resume": "/srv/out-old",
}  # fmt: skip
"""Every flat key of AppConfig at a value other than its default (``cohort.sites``: see its own test)."""


def test_every_setting_round_trips_through_the_flat_run_config() -> None:
    # Prepare: every key, each at a non-default value
    defaults = F.flatten(AppConfig())
    assert set(CHANGED) == set(defaults), "a setting was added or removed: give it a non-default value here"
    assert [k for k in CHANGED if CHANGED[k] == defaults[k]] == ["cohort.sites"]

    # Execute
    cfg = F.parse(AppConfig, CHANGED)

    # Assert: typed as declared, and back to the very same table
    assert (
        cfg.train.crop_s == 1.5 and cfg.federated.local_batch_size == 16 and cfg.data.hospitals == ("site_a", "site_b")
    )
    assert cfg.data.stores == Path("/srv/stores/cohort-x") and cfg.cohort.split_fractions == (0.6, 0.2, 0.2)
    assert F.flatten(cfg) == CHANGED


def test_explicit_hospital_specs_round_trip_as_json() -> None:
    from common.config import CohortConfig, default_sites

    cohort = CohortConfig(n_sites=2, sites=default_sites(2))
    flat = F.flatten(AppConfig(cohort=cohort))

    assert flat["cohort.sites"].startswith("[{")  # type: ignore[union-attr]
    assert F.parse(AppConfig, flat).cohort == cohort


def test_empty_means_none_or_automatic() -> None:
    cfg = F.parse(AppConfig, {"federated.local-batch-size": "", "federated.server-lr": "", "train.crop-s": ""})

    assert cfg.federated.local_batch_size is None and cfg.federated.server_lr is None and cfg.train.crop_s is None
    assert cfg == AppConfig(train=TrainConfig(crop_s=None))


def test_an_unknown_key_is_an_error_that_lists_the_known_ones() -> None:
    with pytest.raises(F.UnknownSettingError) as err:
        app_config({"federated.round": 50})

    text = str(err.value)
    assert "'federated.round' (did you mean 'federated.rounds'?)" in text
    assert "known settings: cohort.seed, cohort.n-sites" in text and "train.weight-decay" in text


def test_a_bad_value_names_its_setting() -> None:
    with pytest.raises(ValidationError, match=r"train\.lr"):
        app_config({"train.lr": "fast"})
    with pytest.raises(ValidationError, match=r"federated\.local_epochs"):
        app_config({"federated.local-epochs": 0})


def test_pyproject_carries_the_typed_defaults_exactly() -> None:
    # Prepare: the table `flwr run .` reads, flattened the way Flower flattens it
    app = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    pyproject = flatten_dict(app)

    typed = F.flatten(AppConfig())

    # Assert: the same keys with the same values and types (regenerate with `fedami config app --toml`)
    assert list(pyproject) == list(typed)
    for key, value in typed.items():
        assert pyproject[key] == value and type(pyproject[key]) is type(value), key


def test_the_generated_toml_is_what_flower_reads() -> None:
    table = tomllib.loads(F.toml_table(F.flatten(AppConfig(output={"dir": Path('/a b/"q"')}))))  # type: ignore[arg-type]

    assert F.parse(AppConfig, flatten_dict(table)).output.dir == Path('/a b/"q"')


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from sim import ingest, run, study

    return {"run": run.build_parser(), "study": study.build_parser(), "ingest": ingest.build_parser()}


@pytest.mark.parametrize("command", ["run", "study", "ingest"])
def test_command_lines_leave_every_default_to_the_typed_settings(command: str, tmp_path: Path) -> None:
    parser = _parsers()[command]

    args = parser.parse_args([])

    set_by_argparse = {
        a.dest: a.default
        for a in parser._actions
        if a.default is not None and a.dest not in ("help", "data") and not isinstance(a, argparse._StoreTrueAction)
    }
    assert set_by_argparse == {}
    assert args.data == "synthetic"


def test_no_options_build_the_typed_default_configs(tmp_path: Path) -> None:
    from sim.cli import settings
    from sim.run import OPTIONS as RUN
    from sim.study import OPTIONS as STUDY

    paths = {"data_dir": tmp_path, "out_dir": tmp_path / "out"}
    run_args = _parsers()["run"].parse_args([])
    study_args = _parsers()["study"].parse_args([])

    assert settings(run_args, RunConfig, RUN, **paths) == RunConfig(**paths)
    assert settings(study_args, StudyConfig, STUDY, **paths) == StudyConfig(**paths)


def test_options_and_set_reach_their_settings(tmp_path: Path) -> None:
    from sim.cli import settings
    from sim.run import OPTIONS

    argv = ["--seed", "4", "--rounds", "3", "--arms", "pooled,local", "--set", "train.weight-decay=0.05",
            "--set", "data.cohort.ecgs-per-patient=2", "--clients", "5"]  # fmt: skip
    args = _parsers()["run"].parse_args(argv)

    cfg = settings(args, RunConfig, OPTIONS, data_dir=tmp_path, out_dir=tmp_path)

    assert isinstance(cfg.data, SyntheticData)
    assert (cfg.data.cohort.seed, cfg.train.seed, cfg.data.cohort.n_sites, cfg.data.cohort.ecgs_per_patient) == (
        4,
        4,
        5,
        2.0,
    )
    assert (cfg.federated.rounds, cfg.arms, cfg.train.weight_decay) == (3, ("pooled", "local"), 0.05)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "train.weight-decai=1"], "did you mean 'train.weight-decay'"),
        (["--ptbxl-root", "/x"], "--ptbxl-root applies to --data ptbxl, not --data synthetic"),
        (["--data", "ptbxl"], "data.root (--ptbxl-root): Field required"),
        (["--clients", "1"], "data.cohort.n-sites (--clients): Input should be greater than or equal to 2"),
        (["--arms", ""], "arms (--arms): Tuple should have at least 1 item"),
        (["--rounds", "0"], "federated.rounds (--rounds): Input should be greater than or equal to 1"),
    ],
)
def test_bad_command_lines_name_the_setting(argv: list[str], message: str, tmp_path: Path) -> None:
    from sim.cli import settings
    from sim.run import OPTIONS

    args = _parsers()["run"].parse_args(argv)

    with pytest.raises(O.SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings(args, RunConfig, OPTIONS, data_dir=tmp_path, out_dir=tmp_path)


def test_ingest_and_run_prepare_the_same_store_from_the_same_options(tmp_path: Path) -> None:
    from sim import ingest, run
    from sim.cli import settings

    argv = ["--data", "ptbxl", "--ptbxl-root", str(tmp_path / "ptbxl"), "--seed", "2"]

    via_run = settings(run.build_parser().parse_args(argv), RunConfig, run.OPTIONS, data_dir=tmp_path, out_dir=tmp_path)
    via_ingest = settings(ingest.build_parser().parse_args(argv), PrepareConfig, ingest.OPTIONS, data_dir=tmp_path)

    assert via_run.data == via_ingest.data
    assert isinstance(via_run.data, PtbxlData)
    assert via_run.data.ingest.preprocess.normalise == "per_record" and via_run.data.ingest.min_site_records == 100
    assert via_run.data.ingest.seed == 2


def test_help_shows_the_typed_default() -> None:
    from common.config import DEFAULT_ROUNDS

    text = _parsers()["run"].format_help()

    assert f"(default: {DEFAULT_ROUNDS})" in " ".join(text.split())


def test_an_optional_number_option_takes_none() -> None:
    # Prepare: the run's parser; crops are on by default
    from sim.run import build_parser

    parser = build_parser()
    # Execute
    off = O.given(parser.parse_args(["--crop-s", "none", "--local-batch-size", ""]), O.TRAIN_OPTIONS, "synthetic")
    on = O.given(parser.parse_args(["--crop-s", "5"]), O.TRAIN_OPTIONS, "synthetic")
    # Assert: "none" (or empty) is the flat config's none; a number stays a number; anything else is refused
    assert F.parse(TrainConfig, {k.removeprefix("train."): v for k, v in off.items()}).crop_s is None
    assert on == {"train.crop-s": 5.0}
    with pytest.raises(SystemExit):
        parser.parse_args(["--crop-s", "abc"])

"""Command-line options bound to typed settings: each option's type, choices and default come from its field.

An :class:`Option` names the flat keys (:mod:`common.config.flat`) it sets; argparse gets the
field's type, its literal choices and a help text with the field's description and default, and
the parsed value is ``None`` unless given, so the typed config fills every default itself. The
option tables below are shared by ``fedami run``, ``fedami study``, ``fedami ingest`` and the
benchmarks, so a setting has one spelling and one default everywhere.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from common.config import flat as F
from common.config.sections import DATA_KINDS, ChallengeData, ManifestData, PtbxlData, RunConfig, SyntheticData

DATA_CLASSES: dict[str, type[BaseModel]] = {
    "synthetic": SyntheticData,
    "ptbxl": PtbxlData,
    "manifest": ManifestData,
    "challenge": ChallengeData,
}
REAL_KINDS: tuple[str, ...] = ("ptbxl", "manifest", "challenge")


class SettingsError(ValueError):
    """Settings that cannot be used together, or a bad value: the message names the option."""


@dataclass(frozen=True)
class Option:
    """A command-line flag that sets one or more flat keys of a config.

    ``keys`` are relative to the config the command builds (``train.lr``); keys under ``data.``
    are relative to the data kind chosen with ``--data``, and ``kinds`` lists the kinds the option
    applies to (empty: every kind). The first key gives the type, the choices and the default.
    """

    flag: str
    keys: tuple[str, ...]
    kinds: tuple[str, ...] = ()
    help: str | None = None
    per_kind: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Kind-specific keys instead of ``keys`` (``--seed`` seeds the cohort or the ingest's splits)."""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def keys_for(self, kind: str) -> tuple[str, ...]:
        return self.per_kind.get(kind, self.keys)


REQUIRED = "(required)"


def _lookup(model: type[BaseModel], key: str) -> tuple[Any, Any, str]:
    """Annotation, default (:data:`REQUIRED` if none) and description of the field at flat ``key`` of ``model``."""
    parts = key.split(".")
    cls: type[BaseModel] = model
    for i, part in enumerate(parts):
        name = part.replace("-", "_")
        if name not in cls.model_fields:
            raise F.UnknownSettingError(f"{key!r} is not a setting of {model.__name__}")
        info = cls.model_fields[name]
        if i == len(parts) - 1:
            default = REQUIRED if info.is_required() else info.get_default(call_default_factory=True)
            return info.annotation, default, info.description or ""
        nested = F.section_of(info.annotation)
        if nested is None:
            raise F.UnknownSettingError(f"{key!r}: {'.'.join(parts[: i + 1])} is not a section")
        cls = nested
    raise AssertionError("unreachable")


def _model_for(option: Option, command: type[BaseModel], kind: str) -> tuple[type[BaseModel], str]:
    key = option.keys_for(kind)[0]
    if key.startswith("data."):
        return DATA_CLASSES[kind], key.removeprefix("data.")
    return command, key


def _or_none(tp: type) -> Any:
    """An argparse type for an optional number: ``none`` (or empty) is the flat config's "" (none)."""

    def parse(text: str) -> Any:
        return "" if text.strip().lower() in ("", "none") else tp(text)

    parse.__name__ = tp.__name__  # argparse names the type in its error message
    return parse


def _argparse_type(annotation: Any) -> dict[str, Any]:
    union = F.union_args(annotation)
    args = [a for a in union if a is not type(None)]
    tp = args[0] if args else str
    if type(None) in union and tp in (int, float):
        return {"type": _or_none(tp), "metavar": tp.__name__.upper()}
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        return {"type": type(choices[0]), "choices": choices}
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp in (int, float):
        return {"type": tp}
    if tp is Path:
        return {"type": Path}
    return {"type": str}


def _default_text(default: Any) -> str:
    if default is REQUIRED:
        return "required"
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return ",".join(map(str, default)) or "none"
    return str(default)


def add_options(
    parser: argparse.ArgumentParser, command: type[BaseModel], options: Iterable[Option], *, kind: str = "synthetic"
) -> None:
    """Add each option to ``parser`` with its field's type, choices, description and default."""
    for opt in options:
        model, key = _model_for(opt, command, opt.kinds[0] if opt.kinds else kind)
        annotation, default, description = _lookup(model, key)
        spec = _argparse_type(annotation)
        defaults = {k: _lookup(DATA_CLASSES[k], opt.keys_for(k)[0].removeprefix("data."))[1] for k in opt.kinds}
        if len({_default_text(d) for d in defaults.values()}) > 1:
            shown = "; ".join(f"{_default_text(d)} for {k}" for k, d in defaults.items())
        else:
            shown = _default_text(default)
        applies = f" [--data {'/'.join(opt.kinds)}]" if opt.kinds and set(opt.kinds) != set(DATA_KINDS) else ""
        text = f"{opt.help or description} (default: {shown}){applies}"
        if spec.get("action") is argparse.BooleanOptionalAction:
            parser.add_argument(opt.flag, dest=opt.dest, default=None, help=text, action=spec["action"])
        else:
            parser.add_argument(opt.flag, dest=opt.dest, default=None, help=text, **spec)


def given(args: argparse.Namespace, options: Iterable[Option], kind: str) -> F.FlatConfig:
    """The flat settings of the options given on the command line, for data kind ``kind``."""
    out: F.FlatConfig = {}
    for opt in options:
        value = getattr(args, opt.dest, None)
        if value is None:
            continue
        if opt.kinds and kind not in opt.kinds:
            raise SettingsError(f"{opt.flag} applies to --data {'/'.join(opt.kinds)}, not --data {kind}")
        for key in opt.keys_for(kind):
            out[key] = str(value.expanduser().resolve()) if isinstance(value, Path) else value
    return out


def assignments(texts: Sequence[str] | None) -> F.FlatConfig:
    """``--set KEY=VALUE`` items as a flat table."""
    out: F.FlatConfig = {}
    for text in texts or ():
        try:
            key, value = F.parse_assignment(text)
        except ValueError as err:
            raise SettingsError(f"--set: {err}") from None
        out[key] = value
    return out


def build(
    command: type[BaseModel],
    kind: str,
    settings: Mapping[str, Any],
    *,
    flags: Mapping[str, str] | None = None,
    **fixed: Any,
) -> Any:
    """The command's typed config from flat ``settings`` (options and ``--set`` together) and ``fixed`` fields.

    Keys under ``data.`` belong to the data kind's section, the rest to the command's config; an
    unknown key lists the known ones, and a bad value names its setting (and ``flags[key]``, the
    option that set it).
    """
    data_flat = {k.removeprefix("data."): v for k, v in settings.items() if k.startswith("data.")}
    rest = {k: v for k, v in settings.items() if not k.startswith("data.")}
    data_cls = DATA_CLASSES[kind]
    try:
        try:
            data = data_cls.model_validate(F.over_defaults(data_cls, F.nested(data_cls, {**data_flat, "kind": kind})))
        except ValidationError as err:
            raise SettingsError(describe_errors(err, "data", flags)) from None
        body = F.over_defaults(command, F.nested(command, rest))
        return command.model_validate({**body, "data": data, **fixed})
    except F.UnknownSettingError as err:
        raise SettingsError(str(err)) from None
    except ValidationError as err:
        raise SettingsError(describe_errors(err, "", flags)) from None


def flags_of(options: Iterable[Option], kind: str) -> dict[str, str]:
    """Flat key -> the option that sets it, for ``kind``."""
    return {key: opt.flag for opt in options if not opt.kinds or kind in opt.kinds for key in opt.keys_for(kind)}


def describe_errors(err: ValidationError, prefix: str = "", flags: Mapping[str, str] | None = None) -> str:
    """One line per bad setting: its dotted key (and option), pydantic's message and the value given."""
    lines = []
    for e in err.errors():
        where = ".".join([prefix] * bool(prefix) + [F.kebab(str(p)) for p in e["loc"]]) or "settings"
        flag = (flags or {}).get(where)
        scalar = isinstance(e["input"], str | int | float | bool | Path) or e["input"] is None
        got = f" (got {e['input']!r})" if e["type"] != "missing" and scalar else ""
        message = str(e["msg"]).removeprefix("Value error, ")
        lines.append(f"  {where}{f' ({flag})' if flag else ''}: {message}{got}")
    return "invalid settings:\n" + "\n".join(lines)


# ------------------------------------------------------------------------------------------- option tables

DATA_OPTIONS: tuple[Option, ...] = (
    Option("--clients", ("data.cohort.n-sites",), ("synthetic",), help="synthetic hospitals (>= 2)"),
    Option("--n-ecgs", ("data.cohort.n-ecgs",), ("synthetic",), help="ECGs in the synthetic cohort, all hospitals"),
    Option("--difficulty", ("data.cohort.difficulty",), ("synthetic",), help="synthetic task difficulty, 0 to 1"),
    Option("--ptbxl-root", ("data.root",), ("ptbxl",), help="PTB-XL's folder, e.g. ../shared/data/ptbxl"),
    Option("--ptbxl-filtered", ("data.filtered",), ("ptbxl",), help="also the shared filtered PTB-XL array"),
    Option("--ptbxl-rate", ("data.rate",), ("ptbxl",)),
    Option("--ptbxl-label", ("data.label",), ("ptbxl",)),
    Option("--likelihood", ("data.likelihood",), ("ptbxl",)),
    Option("--hospital-by", ("data.hospital",), ("ptbxl",)),
    Option("--manifest", ("data.path",), ("manifest",), help="the CSV manifest of WFDB records"),
    Option("--challenge-root", ("data.root",), ("challenge",), help="the folder of challenge records"),
    Option("--challenge-label", ("data.label",), ("challenge",)),
    Option(
        "--store-fs",
        ("data.ingest.preprocess.target-fs",),
        ("synthetic", *REAL_KINDS),
        help="sampling rate of the store",
        per_kind={"synthetic": ("data.cohort.store-fs",)},
    ),
    Option("--normalise", ("data.ingest.preprocess.normalise",), REAL_KINDS),
    Option("--notch", ("data.ingest.preprocess.notch-hz",), REAL_KINDS),
    Option("--min-site-records", ("data.ingest.min-site-records",), REAL_KINDS),
)
SEED_OPTION = Option(
    "--seed",
    ("train.seed",),
    help="seeds the synthetic cohort or the patient splits, and all training",
    per_kind={
        "synthetic": ("data.cohort.seed", "train.seed"),
        **{k: ("data.ingest.seed", "train.seed") for k in REAL_KINDS},
    },
)
DATA_SEED_OPTION = Option(
    "--seed",
    ("data.cohort.seed",),
    help="seeds the synthetic cohort or the patient splits",
    per_kind={"synthetic": ("data.cohort.seed",), **{k: ("data.ingest.seed",) for k in REAL_KINDS}},
)
TRAIN_OPTIONS: tuple[Option, ...] = (
    Option("--model", ("train.model",)),
    Option("--batch-size", ("train.batch-size",)),
    Option("--lr", ("train.lr",)),
    Option("--crop-s", ("train.crop-s",)),
    Option("--loss", ("train.loss",)),
    Option("--threads", ("train.num-threads",)),
    Option(
        "--auxiliary-targets",
        ("train.auxiliary-targets",),
        help="comma-separated 0/1 metadata columns trained as auxiliary targets, e.g. PTB-XL's superclass_NORM,"
        "superclass_STTC,superclass_CD,superclass_HYP",
    ),
)
FEDERATED_OPTIONS: tuple[Option, ...] = (
    Option("--strategy", ("federated.strategy",)),
    Option("--rounds", ("federated.rounds",)),
    Option("--local-epochs", ("federated.local-epochs",)),
    Option("--local-batch-size", ("federated.local-batch-size",)),
    Option("--proximal-mu", ("federated.proximal-mu",)),
    Option("--server-lr", ("federated.server-lr",)),
    Option("--server-momentum", ("federated.server-momentum",)),
    Option("--update-compression", ("federated.update-compression",)),
)
RUN_OPTIONS: tuple[Option, ...] = (
    Option("--protocol", ("protocol",)),
    Option("--arms", ("arms",), help="comma-separated subset of federated,pooled,local"),
    Option("--boot", ("n-boot",)),
)
STUDY_OPTIONS: tuple[Option, ...] = (
    Option("--models", ("models",), help="comma-separated registered names and/or features_logreg"),
    Option("--epochs", ("epochs",)),
    Option("--patience", ("patience",)),
    Option("--seeds", ("seeds",)),
    Option("--boot", ("n-boot",)),
)


def add_data_options(parser: argparse.ArgumentParser, command: type[BaseModel] = RunConfig) -> None:
    """``--data KIND`` and every data option (each applies to the kinds it names)."""
    parser.add_argument("--data", choices=DATA_KINDS, default="synthetic", help="what to read (default: synthetic)")
    add_options(parser, command, DATA_OPTIONS)


def _presets() -> dict[str, tuple[str, F.FlatConfig]]:
    from common.config.sections import STUDY_ECGS, STUDY_PATIENTS, TrainConfig

    train_fs = TrainConfig.model_fields["target_fs"].default
    return {
        "paper": (
            f"the clinical study's size: {STUDY_ECGS:,} synthetic ECGs from about {STUDY_PATIENTS:,} patients, "
            f"stored at the training rate ({train_fs} Hz)",
            {
                "data.cohort.n-ecgs": STUDY_ECGS,
                "data.cohort.ecgs-per-patient": round(STUDY_ECGS / STUDY_PATIENTS, 4),
                "data.cohort.store-fs": train_fs,
            },
        )
    }


def add_preset_option(parser: argparse.ArgumentParser) -> None:
    presets = _presets()
    parser.add_argument(
        "--preset",
        choices=tuple(presets),
        default=None,
        help="a named set of settings under the options given (--data synthetic): "
        + "; ".join(f"{name}: {text}" for name, (text, _) in presets.items()),
    )


def preset(args: argparse.Namespace) -> F.FlatConfig:
    """The flat settings of ``--preset`` (empty without one); options and ``--set`` override them."""
    name = getattr(args, "preset", None)
    if name is None:
        return {}
    if getattr(args, "data", "synthetic") != "synthetic":
        raise SettingsError(f"--preset {name} applies to --data synthetic, not --data {args.data}")
    return dict(_presets()[name][1])


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="set_",
        action="append",
        metavar="KEY=VALUE",
        help="any other setting by its dotted key, e.g. --set train.weight-decay=0.05 (repeatable; "
        "`fedami config` lists every key with its default)",
    )

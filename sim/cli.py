"""The ``fedami`` command: one sub-command per entry point, and what they share.

    fedami run      federated vs pooled vs local-only (sim/run.py)
    fedami study    the pooled model study (sim/study.py)
    fedami ingest   prepare a data source's stores (sim/ingest.py)
    fedami predict  score new ECGs with a trained checkpoint (sim/predict.py)
    fedami explain  relevance maps of a run's test cases, drawn as 12-lead ECGs and checked (sim/explain.py)
    fedami deploy   keys, registrations and launches of a per-hospital deployment (sim/deploy.py)
    fedami config   every setting with its default, or the Flower run config as TOML

Each sub-command takes ``--help``. A new entry point is one more row in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("sim.run", "federated vs pooled vs local-only AMI detection (the main job)"),
    "study": ("sim.study", "every model of the zoo trained pooled and evaluated as the clinical study"),
    "ingest": ("sim.ingest", "prepare a data source's hospital stores (nodes only read prepared data)"),
    "predict": ("sim.predict", "score new ECGs with a trained checkpoint, prepared as its model card says"),
    "explain": ("sim.explain", "Score-CAM, attention and gradient maps of a run's test cases, drawn and checked"),
    "deploy": ("sim.deploy", "a real deployment: keys, connection, registrations, and a run launched and followed"),
    "config": ("sim.cli", "every setting and its default; the Flower run config as TOML"),
}


def add_paths(p: argparse.ArgumentParser, *, resume: bool = False, out: bool = True) -> None:
    """``--data-dir``, ``--out`` (and ``--resume``): the folders a command reads and writes."""
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="root of the prepared stores (default $FEDAMI_DATA_DIR or ~/.cache/fedami)",
    )
    if out:
        p.add_argument(
            "--out",
            type=Path,
            default=None,
            help="output folder (default: runs/<command>-<time> in the current folder, or under $FEDAMI_RUNS_DIR)",
        )
    if resume:
        p.add_argument(
            "--resume", type=Path, default=None, help="continue the federated run saved in this folder (GAH)"
        )


def paths(args: argparse.Namespace, kind: str) -> dict[str, Path]:
    """The absolute data and output folders of a command (defaults resolved now, never in site-packages)."""
    from common.config.paths import default_data_dir, default_out_dir

    out = {"data_dir": (args.data_dir or default_data_dir()).expanduser().resolve()}
    if hasattr(args, "out"):
        out["out_dir"] = args.out.expanduser().resolve() if args.out else default_out_dir(kind)
    return out


def settings(args: argparse.Namespace, command: type[M], options: Sequence[Any], **fixed: Any) -> M:
    """The command's typed config from its options, ``--set`` and the ``fixed`` fields."""
    from common.config import options as O

    given = {**O.preset(args), **O.given(args, options, args.data), **O.assignments(args.set_)}
    cfg: M = O.build(command, args.data, given, flags=O.flags_of(options, args.data), **fixed)
    return cfg


def check_names(model: str | Sequence[str], strategy: str | None = None) -> None:
    """Registry names are checked before any data is prepared (an unknown one lists the known ones)."""
    from common.config.options import SettingsError
    from common.models import UnknownModelError, create_model

    for name in [model] if isinstance(model, str) else model:
        try:
            create_model(name)
        except UnknownModelError as err:
            raise SettingsError(str(err)) from None
    if strategy is not None:
        from server.strategies import STRATEGIES

        if strategy not in STRATEGIES:
            raise SettingsError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def settings_table(command: type[BaseModel]) -> list[tuple[str, Any]]:
    """Every flat key of a command's config with its default; data keys once per data kind."""
    from common.config import flat as F
    from common.config.options import DATA_CLASSES

    def placeholders(cls: type[BaseModel]) -> dict[str, Any]:
        return {name: "(required)" for name, info in cls.model_fields.items() if info.is_required()}

    if "data" not in command.model_fields:
        return list(F.flatten(command()).items())
    flat = F.flatten(command.model_validate(placeholders(command)))
    rows = [(k, v) for k, v in flat.items() if k != "data"]
    for kind, cls in DATA_CLASSES.items():
        data = F.flatten(cls.model_validate(placeholders(cls)))
        rows += [(f"data.{k}  (--data {kind})", v) for k, v in data.items() if k != "kind"]
    return rows


def check_writable(folder: Path) -> None:
    """The output folder can be made and written, checked before any work (it is left in place, empty)."""
    from common.config.options import SettingsError

    probe = folder / ".fedami-write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise SettingsError(f"cannot write the output folder {folder}: {err.strerror or err}") from None


def config_main(argv: Sequence[str] | None = None) -> int:
    """``fedami config``: every setting of a command (its flat key and default), or the Flower run config."""
    from common.config import AppConfig, RunConfig, StudyConfig
    from common.config import flat as F

    commands: dict[str, type[BaseModel]] = {"app": AppConfig, "run": RunConfig, "study": StudyConfig}
    p = argparse.ArgumentParser(prog="fedami config", description=config_main.__doc__)
    p.add_argument("which", choices=tuple(commands), nargs="?", default="app", help="app: the Flower app's run config")
    p.add_argument("--toml", action="store_true", help="app: print the [tool.flwr.app.config] table of pyproject.toml")
    args = p.parse_args(argv)
    if args.toml:
        if args.which != "app":
            p.error("--toml prints the Flower app's run config: fedami config app --toml")
        print("[tool.flwr.app.config]")
        print(F.toml_table(F.flatten(AppConfig())))
        return 0
    rows = settings_table(commands[args.which])
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value!r}")
    return 0


def _runner(name: str) -> Callable[[Sequence[str]], int]:
    if name == "config":
        return config_main
    module = importlib.import_module(COMMANDS[name][0])
    main: Callable[[Sequence[str]], int] = module.main
    return main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "\n".join(f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items())
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: fedami COMMAND [options]\n\ncommands:\n{usage}\n\n`fedami COMMAND --help` for each.")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"fedami: unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return _runner(argv[0])(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""The commands packages above the runtime add to `clipping-edge` (training's, export's, benchmarks'), found through
the `clipping_edge.commands` entry points an install declares. The runtime imports none of those packages; a device
install still lists their commands, each saying which extra brings what it lacks."""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import ClippingEdgeError

ENTRY_POINT_GROUP = "clipping_edge.commands"
Command = Callable[[argparse.Namespace], Any]


@dataclass(frozen=True)
class Needs:
    """What a command imports beyond the runtime, and the extra that installs it."""

    extra: str
    modules: tuple[str, ...]

    def missing(self) -> list[str]:
        return [name for name in self.modules if importlib.util.find_spec(name) is None]

    def install(self) -> str:
        return f"pip install 'clipping-edge[{self.extra}]'"


class Commands:
    """A (sub)command table as a package sees it: `add` one command, or a `group` of them (`data synth`, ...)."""

    def __init__(self, subparsers: argparse._SubParsersAction):
        self.subparsers = subparsers

    def add(self, name: str, func: Command, help: str, needs: Needs | None = None, **parser_options) -> argparse.ArgumentParser:
        lacking = needs.missing() if needs else []
        if needs and lacking:
            help = f"{help} [this install lacks {lacking[0]}: {needs.install()}]"
        parser = self.subparsers.add_parser(name, help=help, **parser_options)
        parser.set_defaults(func=_checking(func, name, needs) if needs else func)
        return parser

    def group(self, name: str, help: str) -> Commands:
        parser = self.subparsers.add_parser(name, help=help)
        return Commands(parser.add_subparsers(dest=f"{name}_command", required=True))


def _checking(func: Command, name: str, needs: Needs) -> Command:
    """`func`, refusing in one line before it starts when the install lacks what it needs."""
    def run(args: argparse.Namespace):
        lacking = needs.missing()
        if lacking:
            raise ClippingEdgeError(f"`clipping-edge {name}` needs {', '.join(lacking)}, which this install lacks: "
                                    f"{needs.install()} (from a clone of the repository)")
        return func(args)
    return run


@dataclass(frozen=True)
class CommandGroup:
    """One package's commands, as its entry point names them. `stage` orders the groups in --help the way a user
    meets them (training 10, export 20, benchmarks 30); the runtime's own commands come after."""

    stage: int
    register: Callable[[Commands], None]


def add_installed_commands(commands: Commands) -> None:
    groups = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            group = point.load()
        except Exception as exc:  # one broken package must not take the runtime's commands down with it
            warnings.warn(f"the {point.name} commands could not load ({type(exc).__name__}: {exc}): reinstall clipping-edge")
            continue
        if not isinstance(group, CommandGroup):
            warnings.warn(f"entry point {point.value} is not a clipping_edge.commands.CommandGroup: ignored")
            continue
        groups.append(group)
    for group in sorted(groups, key=lambda g: g.stage):
        group.register(commands)

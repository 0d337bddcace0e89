"""The argparse types and readers that commands in more than one package share (the runtime's, training's,
export's, benchmarks'): one place for how a label list, a number or a config dataclass becomes a flag."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from .errors import ClippingEdgeError


def read_list_file(path: Path, what: str, example: str) -> list[str]:
    """One entry a line, or a .json list of strings."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ClippingEdgeError(f"{what} file {path} is not UTF-8 text: save it as UTF-8") from None
    if path.suffix != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ClippingEdgeError(f"{what} file {path} is not valid JSON ({exc}): write a list such as {example}") from None
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ClippingEdgeError(f"{what} file {path} must hold a JSON list of strings, such as {example}")
    return entries


def is_existing_file(path: Path) -> bool:
    """`Path.is_file` that answers False for a name no file system can hold (a long label list is not a path)."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_labels(value: str) -> list[str]:
    """A .txt file (one label a line), a .json list of strings, or a comma-separated list."""
    path = Path(value)
    if path.suffix in (".txt", ".json") or is_existing_file(path):
        if not is_existing_file(path):
            raise ClippingEdgeError(f"labels file {path} does not exist: pass a .txt with one label a line, or 'a,b,c'")
        return read_list_file(path, "labels", '["cat", "dog"]')
    labels = [part.strip() for part in value.split(",") if part.strip()]
    if not labels:
        raise ClippingEdgeError(f"the label list is empty (--labels {value!r}): pass at least two classes ('a,b'), or the "
                                "path of a labels file")
    if len(labels) == 1:
        # One class always scores 1.0; a lone word is far more often a mistyped labels file.
        raise ClippingEdgeError(f"--labels {value!r} is one class and no such file exists: pass at least two "
                                "classes ('a,b'), or the path of a labels file")
    return labels


def number(kind: type, minimum: float, strict: bool = False):
    """An argparse type: an int or finite float of at least `minimum` (above it, with `strict`)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        problem = out_of_range(value, minimum, strict)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} {problem}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def out_of_range(value: float, minimum: float, strict: bool = False) -> str:
    """What is wrong with `value` against its lower bound ('' when nothing): NaN and inf never pass."""
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        return f"must be {'above' if strict else 'at least'} {minimum:g}"
    return ""


POSITIVE = number(int, 1)


def field_comments(cls: type) -> dict[str, str]:
    """Each dataclass field's comments (the lines just above it and its own line's tail), so `--help`
    says what the source says and the two cannot drift apart."""
    import inspect
    import re

    comments, pending = {}, []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("# "))
            continue
        match = re.match(r"(\w+): [^=#]+(?:=.*?)?(?:#\s*(.*))?$", stripped)
        if match:
            comments[match.group(1)] = " ".join(pending + ([match.group(2)] if match.group(2) else []))
        pending = []
    return comments


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, minimums: dict[str, tuple[float, bool]]) -> None:
    """One --flag per config field: the dataclass stays the single place defaults and their reasons live."""
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        about = comments.get(f.name, "").replace("%", "%%")
        base = str(f.type).replace(" | None", "")
        if base == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=about or None)
        else:
            kind = {"int": int, "float": float}.get(base)
            parse = number(kind, *minimums.get(f.name, (-math.inf, False))) if kind else str
            if f.default is dataclasses.MISSING:
                parser.add_argument(flag, type=parse, required=True, help=about or None)
            else:
                shown = "" if f.default is None else f" (default: {f.default})"  # None: the comment says what unset does
                parser.add_argument(flag, type=parse, default=f.default, help=f"{about}{shown}".lstrip())
